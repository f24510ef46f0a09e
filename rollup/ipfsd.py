"""The bundled IPFS daemon (js-ipfs 0.66.1 from tools/ipfs), for `tributary dev up --ipfs` and tests.

Why js-ipfs: it installs from npm like our other tools (no kubo binary to fetch), and
`make ipfs` (or `cd tools/ipfs && npm ci`) pins it. It runs offline: a local market needs no
swarm, and "not found" then means "this daemon does not hold the block", never "the network
did not answer in time".

Ports: the HTTP RPC API listens where the client and the README expect it,
`/ip4/127.0.0.1/tcp/5001/http` (js-ipfs's own default is 5002, kubo's 5001); the gateway and the
gRPC-over-websocket API, which nothing here uses, get free loopback ports at each start.

    with IpfsDaemon(repo=Path(".run/ipfs"), api_port=5001) as d:   # a persistent repo
        d.api   # "/ip4/127.0.0.1/tcp/5001/http"
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from rollup.anvil import free_port
from rollup.supervisor import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[1]
JSIPFS = REPO_ROOT / "tools" / "ipfs" / "node_modules" / ".bin" / "jsipfs"
DEFAULT_API_PORT = 5001


class IpfsDaemonError(RuntimeError):
    """The daemon could not be set up; the message says why (and carries its log)."""


def api_answers(port: int, timeout: float = 2.0) -> bool:
    """Whether an IPFS HTTP RPC API answers `version` on this loopback port."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/api/v0/version", method="POST"),
            timeout=timeout,
        ) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class IpfsDaemon:
    """`jsipfs daemon --offline` on `repo` (initialised on first use), API on `api_port`.

    `start()` returns once the API answers; `stop()` sends SIGTERM to its process group, SIGKILL
    after `stop_timeout`. The daemon also gets SIGTERM if the thread that started it dies (even
    by SIGKILL), so no daemon outlives its market."""

    def __init__(self, repo: str | Path, api_port: int | None = DEFAULT_API_PORT, *,
                 log_path: str | Path | None = None, stop_timeout: float = 5.0) -> None:
        self.repo = Path(repo)
        self.api_port = api_port if api_port else free_port()
        self.log_path = Path(log_path) if log_path else self.repo.parent / f"{self.repo.name}-daemon.log"
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        """The API as a multiaddr, as `--ipfs-api` and `--store ipfs:...` take it."""
        return f"/ip4/127.0.0.1/tcp/{self.api_port}/http"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["IPFS_PATH"] = str(self.repo)
        env.pop("DEBUG", None)
        return env

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run([str(JSIPFS), *args], env=self._env(), capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            raise IpfsDaemonError(f"jsipfs {' '.join(args)} failed ({proc.returncode}): "
                                  f"{proc.stderr.decode(errors='replace')[-2000:]}")

    def start(self, timeout: float = 60.0) -> "IpfsDaemon":
        if not JSIPFS.exists():
            raise IpfsDaemonError(f"the bundled IPFS daemon is not installed ({JSIPFS} is missing): "
                                  "run `make ipfs` (or `cd tools/ipfs && npm ci`)")
        if api_answers(self.api_port, 0.5):
            raise IpfsDaemonError(f"something already answers as an IPFS API on port {self.api_port}: "
                                  f"stop it, or use it with --ipfs-api {self.api} instead of --ipfs")
        if not (self.repo / "config").exists():
            self.repo.parent.mkdir(parents=True, exist_ok=True)
            self._run("init", "--profile", "test")
        self._clear_stale()
        # Edit the JSON directly: `jsipfs config` costs a Node.js start (seconds) per key.
        cfg_path = self.repo / "config"
        cfg = json.loads(cfg_path.read_text())
        cfg.setdefault("Addresses", {}).update({
            "API": f"/ip4/127.0.0.1/tcp/{self.api_port}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{free_port()}",
            "RPC": f"/ip4/127.0.0.1/tcp/{free_port()}",
            "Swarm": ["/ip4/127.0.0.1/tcp/0"]})
        cfg_path.write_text(json.dumps(cfg, indent=2))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(JSIPFS), "daemon", "--offline"], env=self._env(),
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         preexec_fn=die_with_parent(signal.SIGTERM))
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise IpfsDaemonError(f"jsipfs daemon exited ({self.proc.returncode}): {self.log_tail()}")
                if b"Daemon is ready" in self.log_path.read_bytes() and api_answers(self.api_port):
                    return self
                if time.monotonic() > deadline:
                    raise IpfsDaemonError(f"jsipfs daemon not ready in {timeout} s: {self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def _clear_stale(self) -> None:
        """A daemon killed with SIGKILL leaves `api` (which makes the CLI talk to a dead daemon)
        and `repo.lock` behind: remove them unless that daemon still answers."""
        api_file = self.repo / "api"
        with contextlib.suppress(OSError, ValueError):
            port = int(api_file.read_text().strip().split("/tcp/")[1].split("/")[0])
            if api_answers(port, 0.5):
                raise IpfsDaemonError(f"an IPFS daemon already runs on {self.repo} (API port {port}): "
                                      f"stop it, or use it with --ipfs-api /ip4/127.0.0.1/tcp/{port}/http")
        api_file.unlink(missing_ok=True)
        lock = self.repo / "repo.lock"
        if lock.is_dir():
            shutil.rmtree(lock, ignore_errors=True)
        else:
            lock.unlink(missing_ok=True)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> "IpfsDaemon":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
