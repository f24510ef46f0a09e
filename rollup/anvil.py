"""Run a local anvil chain from the pinned npm package, as a context manager.

Why a wrapper: tests, benches and the devnet all need a chain on a *free loopback port* that is
*always* torn down (no orphaned anvil after a crashed test run), optionally with its state kept on
disk. anvil is started in its own process group and killed by group, on ``stop()``, on leaving
the ``with`` block, and at interpreter exit (atexit); if our process dies without cleanup (SIGKILL)
the kernel sends anvil SIGTERM (PR_SET_PDEATHSIG).

Public API::

    from rollup.anvil import Anvil, DEV_ACCOUNTS, DEV_MNEMONIC

    with Anvil() as chain:                 # free port, --silent, automine
        chain.url                          # "http://127.0.0.1:<port>"
        chain.rpc("anvil_mine", ["0x5"])   # raw JSON-RPC helper
    Anvil(port=8545, block_time=2, state_path=Path(".run/devnet/anvil-state.json"))

``DEV_ACCOUNTS`` are the first 10 accounts of anvil's default mnemonic ("test test ... junk").
THESE KEYS ARE PUBLIC TEST KEYS, known to everyone: never send real funds to them and never use
them on a public chain. Account 0 is the devnet's deployer and Authority owner.

The binary is ``node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`` (node_modules found from the
repo root, or ``$TRIBUTARY_NODE_MODULES``), or ``$TRIBUTARY_ANVIL`` if set.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from rollup.supervisor import die_with_parent

log = logging.getLogger(__name__)

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_CHAIN_ID = 31337


class AnvilError(RuntimeError):
    """anvil could not be found, started, or did not answer."""


@dataclass(frozen=True)
class DevAccount:
    """One of anvil's default (public!) test accounts."""

    index: int
    address: str
    private_key: str


# Well-known keys of anvil's default mnemonic, m/44'/60'/0'/0/i. Hard-coded (rather than derived
# with eth-account's "unaudited" HD wallet feature) so importing this module costs nothing;
# tests/test_deploy.py checks them against the derivation.
_DEV_KEYS = [
    ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    ("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    ("0x90F79bf6EB2c4f870365E785982E1f101E93b906", "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
    ("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"),
    ("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc", "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"),
    ("0x976EA74026E726554dB657fA54763abd0C3a0aa9", "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"),
    ("0x14dC79964da2C08b23698B3D3cc7Ca32193d9955", "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"),
    ("0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f", "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97"),
    ("0xa0Ee7A142d267C1f36714E4a8F75612F20a79720", "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"),
]
DEV_ACCOUNTS: list[DevAccount] = [DevAccount(i, a, k) for i, (a, k) in enumerate(_DEV_KEYS)]


def repo_root() -> Path:
    """The repository root (the folder holding ``rollup/``)."""
    return Path(__file__).resolve().parent.parent


def node_modules_dir() -> Path:
    """Where the pinned npm packages live: ``$TRIBUTARY_NODE_MODULES`` or ``<repo>/node_modules``."""
    env = os.environ.get("TRIBUTARY_NODE_MODULES")
    return Path(env) if env else repo_root() / "node_modules"


def anvil_binary() -> Path:
    """Path of the pinned anvil binary; raises AnvilError with a setup hint if it is missing."""
    env = os.environ.get("TRIBUTARY_ANVIL")
    path = Path(env) if env else node_modules_dir() / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    if not path.is_file():
        raise AnvilError(f"anvil binary not found at {path}; run `make setup` (npm ci)")
    return path


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (SO_REUSEADDR, as anvil binds: a port whose old
    connections linger in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# Every running Anvil, held strongly (a weak set would lose an instance whose last reference died
# with a traceback), so an interpreter exit still kills its process group.
_LIVE: "dict[int, Anvil]" = {}


@atexit.register
def _kill_all() -> None:
    for chain in list(_LIVE.values()):
        chain.stop()


class Anvil:
    """One anvil process. Use as a context manager, or call ``start()``/``stop()``.

    state_path: anvil's ``--state`` file (loaded at start if present, dumped at stop and every
    ``state_interval`` seconds) so a second run continues the same chain. If the file cannot be
    loaded, ``start()`` raises AnvilError; ``rollup.devnet`` moves it aside and starts fresh.

    die_with_parent: on Linux anvil gets SIGTERM when the thread that started it exits, even if
    the process is SIGKILLed (atexit never runs then). Start it from the main thread or another
    long-lived one; pass False to let a chain outlive its starter.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        block_time: float | None = None,
        state_path: Path | str | None = None,
        state_interval: int | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        extra_args: list[str] | None = None,
        start_timeout: float = 20.0,
        die_with_parent: bool = True,
    ) -> None:
        self.port = port
        self.block_time = block_time
        self.state_path = Path(state_path) if state_path is not None else None
        self.state_interval = state_interval
        self.chain_id = chain_id
        self.extra_args = list(extra_args or [])
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr_path: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise AnvilError("anvil has not been started")
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port), "--silent",
               "--chain-id", str(self.chain_id)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--state", str(self.state_path)]
            if self.state_interval is not None:
                cmd += ["--state-interval", str(self.state_interval)]
        return cmd + self.extra_args

    def start(self) -> "Anvil":
        if self.proc is not None:
            return self
        auto_port = self.port is None
        attempts = 3 if auto_port else 1
        for attempt in range(attempts):
            if auto_port:
                self.port = free_port()
            elif not port_is_free(self.port):  # type: ignore[arg-type]
                raise AnvilError(f"port {self.port} on 127.0.0.1 is already in use")
            try:
                self._spawn()
                return self
            except AnvilError as exc:
                # Another process may grab a "free" port between our probe and anvil's bind.
                if attempt + 1 < attempts and "in use" in str(exc).lower():
                    log.debug("port %s was taken meanwhile; retrying", self.port)
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        cmd = self.command()
        log.debug("starting anvil: %s", " ".join(cmd))
        # stderr goes to a small temp file so a failed start (e.g. a corrupt state file) can be
        # reported with anvil's own message, without a pipe that could fill up and block anvil.
        fd, name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
        self._stderr_path = Path(name)
        with os.fdopen(fd, "wb") as errf:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                start_new_session=True,  # own process group: stop() kills anvil and nothing else
                # SIGTERM (anvil then dumps --state and exits) if our process dies, even by SIGKILL
                preexec_fn=die_with_parent(signal.SIGTERM) if self.die_with_parent else None,
            )
        _LIVE[id(self)] = self
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _stderr_text(self) -> str:
        if self._stderr_path and self._stderr_path.exists():
            return self._stderr_path.read_text(errors="replace")[-2000:]
        return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AnvilError(
                    f"anvil exited with code {self.proc.returncode} at start: {self._stderr_text().strip()}"
                )
            try:
                got = self.rpc("eth_chainId", [], timeout=1.0)
                if int(got, 16) != self.chain_id:
                    raise AnvilError(f"anvil on port {self.port} reports chain id {got}")
                return
            except (requests.RequestException, AnvilError) as exc:
                if isinstance(exc, AnvilError) and "chain id" in str(exc):
                    raise
                last_err = exc
                time.sleep(0.05)
        raise AnvilError(f"anvil did not answer on {self.url} within {self.start_timeout}s: {last_err}")

    def rpc(self, method: str, params: list[Any] | None = None, timeout: float = 30.0) -> Any:
        """One raw JSON-RPC call (for anvil_* methods that web3 has no wrapper for)."""
        r = requests.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
                          timeout=timeout)
        r.raise_for_status()
        body = r.json()
        if "error" in body:
            raise AnvilError(f"{method} failed: {body['error']}")
        return body["result"]

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (anvil dumps ``--state`` on SIGTERM), SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        _LIVE.pop(id(self), None)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("anvil (pid %s) ignored SIGTERM; killing it", proc.pid)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout)
        if self._stderr_path is not None:
            self._stderr_path.unlink(missing_ok=True)
            self._stderr_path = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "Anvil":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
