"""Runs the backend as a child process beside the node, as `rollup-init` does inside the machine.

The backend gets `ROLLUP_HTTP_SERVER_URL` and nothing else from us; that URL carries the rollup
server's per-run secret path prefix (`rollup.server.RollupHttpServer.url`), so only the backend,
not any other local process, can post outputs. Never log it: `Supervisor` logs the command only.

If the node is killed (even with SIGKILL) the backend must not outlive it, or it would keep
polling a dead server and,
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
from typing import IO, Callable, Sequence

log = logging.getLogger(__name__)

_SHELL_CHARS = set("|&;<>()$`\\\"'*?[]#~=%{}\n")
PR_SET_PDEATHSIG = 1
CLAIMER_KEY_ENV = "TRIBUTARY_CLAIMER_KEY"  # rollup.claimer's (not imported: it pulls in web3)
# the node's own secrets, never the app's: ours, and the official node's key settings (`rollup node`
# reads CARTESI_AUTH_PRIVATE_KEY as the claimer's key)
NODE_SECRET_ENV = (CLAIMER_KEY_ENV, "CARTESI_AUTH_PRIVATE_KEY", "CARTESI_AUTH_MNEMONIC")


class BackendStartError(Exception):
    """The backend command could not be started."""


def backend_argv(command: str | Sequence[str]) -> list[str]:
    """A shell string runs through `sh -c exec ...` only when it needs a shell."""
    if not isinstance(command, str):
        return [str(part) for part in command]
    if any(ch in _SHELL_CHARS for ch in command):
        return ["/bin/sh", "-c", "exec " + command]
    return shlex.split(command)


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved in the parent: loading a library in the child between fork and
    exec could deadlock on a lock another thread held at fork time."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get `sig` when the thread that forked it dies.

    Why: a node killed with SIGKILL runs no cleanup, and an orphaned backend would keep polling
    (and, after a restart, race the new one); an orphaned anvil would hold the chain's port. The
    kernel delivers `sig` to the child when its parent *thread* exits, so start children from a
    long-lived thread. If the parent died before the child could ask (a race at fork), the child
    exits at once. Returns None where prctl is unavailable (not Linux).
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent is already gone: nobody will ever signal us
            os._exit(1)

    return preexec


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
        self.starts = 0  # processes started so far: the first start plus every restart
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            env = dict(os.environ)
            for var in NODE_SECRET_ENV:  # the claimer's key is the node's, never the app's
                env.pop(var, None)
            env.update(self.extra_env)
            env["ROLLUP_HTTP_SERVER_URL"] = self.rollup_url
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=self.log_file if self.log_file is not None else None,
                    stderr=subprocess.STDOUT if self.log_file is not None else None,
                    preexec_fn=die_with_parent(signal.SIGKILL),
                )
            except OSError as exc:
                raise BackendStartError(f"cannot start backend {self.argv!r}: {exc}") from exc
            self.starts += 1
            log.info("backend started (pid %d): %s", self.proc.pid, " ".join(self.argv))

    @property
    def restarts(self) -> int:
        """How many times the backend was started again after its first start."""
        return max(0, self.starts - 1)

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
