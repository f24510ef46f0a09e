"""A real js-ipfs daemon for tests: offline, in a temporary repo, on free loopback ports.

js-ipfs 0.66.1 (tools/ipfs, installed by `make setup`) is the IPFS node that installs from a
registry here (no kubo binary is reachable). Use `ipfs_daemon()` as a context manager, or the
`ipfs_api` fixture (module scope: the daemon takes ~3 s to start).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
JSIPFS = REPO_ROOT / "tools" / "ipfs" / "node_modules" / ".bin" / "jsipfs"


class IpfsDaemonError(RuntimeError):
    """The test daemon could not be set up; the message carries its log."""


@dataclass(frozen=True)
class IpfsDaemon:
    api: str  # multiaddr of the HTTP RPC API, e.g. /ip4/127.0.0.1/tcp/PORT/http
    api_port: int
    repo: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["IPFS_PATH"] = str(repo)
    env.pop("DEBUG", None)
    return env


def _run(cmd: list[str], repo: Path, *, input: bytes | None = None, timeout: float = 60) -> bytes:
    proc = subprocess.run(cmd, env=_env(repo), input=input, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise IpfsDaemonError(f"{' '.join(cmd[1:])} failed ({proc.returncode}): "
                              f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout


@contextlib.contextmanager
def ipfs_daemon(start_timeout: float = 60.0) -> Iterator[IpfsDaemon]:
    """Start `jsipfs daemon --offline`; stop it and remove its repo on exit, whatever happens."""
    if not JSIPFS.exists():
        raise IpfsDaemonError(f"{JSIPFS} is missing: run `make setup` "
                              "(or `cd tools/ipfs && npm ci`)")
    tmp = Path(tempfile.mkdtemp(prefix="tributary-ipfs-"))
    repo = tmp / "repo"
    log_path = tmp / "daemon.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        _run([str(JSIPFS), "init", "--profile", "test"], repo)
        api_port, gw_port, rpc_port = _free_port(), _free_port(), _free_port()
        for key, value in (("Addresses.API", f"/ip4/127.0.0.1/tcp/{api_port}"),
                           ("Addresses.Gateway", f"/ip4/127.0.0.1/tcp/{gw_port}"),
                           ("Addresses.RPC", f"/ip4/127.0.0.1/tcp/{rpc_port}")):
            _run([str(JSIPFS), "config", key, value], repo)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([str(JSIPFS), "daemon", "--offline"], env=_env(repo),
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise IpfsDaemonError(f"jsipfs daemon exited ({proc.returncode}): "
                                      f"{log_path.read_text(errors='replace')[-2000:]}")
            if b"Daemon is ready" in log_path.read_bytes() and _answers(api_port):
                break
            if time.monotonic() > deadline:
                raise IpfsDaemonError(f"jsipfs daemon not ready in {start_timeout} s: "
                                      f"{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield IpfsDaemon(f"/ip4/127.0.0.1/tcp/{api_port}/http", api_port, repo)
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                # The repo is deleted next, so a graceful shutdown buys nothing past 2 s.
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}/api/v0/version", method="POST"),
            timeout=2,
        ) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def ipfs_api() -> Iterator[IpfsDaemon]:
    """A js-ipfs daemon for the tests of one module."""
    with ipfs_daemon() as daemon:
        yield daemon
