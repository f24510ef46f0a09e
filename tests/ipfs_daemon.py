"""A real js-ipfs daemon for tests: offline, in a temporary repo, on free loopback ports.

js-ipfs 0.66.1 (tools/ipfs, installed by `make ipfs`, which `make test` runs) is the IPFS node
that installs from a registry here (no kubo binary is reachable). The daemon itself is
`rollup.ipfsd.IpfsDaemon`, the same one `tributary dev up --ipfs` starts (there on port 5001, in
`.run/ipfs`). Use `ipfs_daemon()` as a context manager, or the `ipfs_api` fixture (module
scope: the daemon takes a few seconds to start).
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rollup.ipfsd import JSIPFS, IpfsDaemonError
from rollup.ipfsd import IpfsDaemon as _Daemon

__all__ = ["JSIPFS", "IpfsDaemon", "IpfsDaemonError", "ipfs_api", "ipfs_daemon"]


@dataclass(frozen=True)
class IpfsDaemon:
    api: str  # multiaddr of the HTTP RPC API, e.g. /ip4/127.0.0.1/tcp/PORT/http
    api_port: int
    repo: Path


@contextlib.contextmanager
def ipfs_daemon(start_timeout: float = 60.0) -> Iterator[IpfsDaemon]:
    """Start `jsipfs daemon --offline`; stop it and remove its repo on exit, whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix="tributary-ipfs-"))
    # The repo is deleted next, so a graceful shutdown buys nothing past 2 s.
    daemon = _Daemon(tmp / "repo", api_port=None, log_path=tmp / "daemon.log", stop_timeout=2.0)
    try:
        daemon.start(start_timeout)
        yield IpfsDaemon(daemon.api, daemon.api_port, daemon.repo)
    finally:
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ipfs_api() -> Iterator[IpfsDaemon]:
    """A js-ipfs daemon for the tests of one module."""
    with ipfs_daemon() as daemon:
        yield daemon
