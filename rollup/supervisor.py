"""Runs the backend as a child process beside the node, as `rollup-init` does inside the machine.

The backend gets `ROLLUP_HTTP_SERVER_URL` and nothing else from us. If the node is killed
(even with SIGKILL) the backend must not outlive it, or it would keep polling a dead server and,
after a restart, race the new backend: on Linux the child asks the kernel for SIGKILL when its
parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from typing import IO, Sequence

log = logging.getLogger(__name__)

_SHELL_CHARS = set("|&;<>()$`\\\"'*?[]#~=%{}\n")
PR_SET_PDEATHSIG = 1


class BackendStartError(Exception):
    """The backend command could not be started."""


def backend_argv(command: str | Sequence[str]) -> list[str]:
    """A shell string runs through `sh -c exec ...` only when it needs a shell."""
    if not isinstance(command, str):
        return [str(part) for part in command]
    if any(ch in _SHELL_CHARS for ch in command):
        return ["/bin/sh", "-c", "exec " + command]
    return shlex.split(command)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


class Supervisor:
    """Starts, watches and restarts one backend process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so the node calls
    `start` only from its long-lived worker thread (or the main thread).
    """

    def __init__(
        self,
        command: str | Sequence[str],
        rollup_url: str,
        env: dict[str, str] | None = None,
        log_file: IO[bytes] | None = None,
    ) -> None:
        self.argv = backend_argv(command)
        self.rollup_url = rollup_url
        self.extra_env = dict(env or {})
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            env = dict(os.environ)
            env.update(self.extra_env)
            env["ROLLUP_HTTP_SERVER_URL"] = self.rollup_url
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=self.log_file if self.log_file is not None else None,
                    stderr=subprocess.STDOUT if self.log_file is not None else None,
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise BackendStartError(f"cannot start backend {self.argv!r}: {exc}") from exc
            self.starts += 1
            log.info("backend started (pid %d): %s", self.proc.pid, " ".join(self.argv))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
