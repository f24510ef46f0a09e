"""Fixtures and helpers for the node tests: a real anvil with the real Cartesi artifacts, apps
deployed per test, the echo backend, and small JSON-RPC / chain helpers. The chain helpers are
`tests.chain_fixtures`' functions bound to one chain (`Chain`).

Import what you need: `from tests.node_fixtures import *` brings the fixtures into a test module.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from eth_utils import to_checksum_address

from rollup.anvil import DEV_ACCOUNTS, Anvil
from rollup.chain import connect, contract
from rollup.deploy import Deployment, deploy_devnet
from rollup.node import Node
from tests import chain_fixtures

ECHO_PATH = Path(__file__).resolve().parent / "backends" / "echo.py"
ECHO = [sys.executable, str(ECHO_PATH)]
ECHO_CMD = f"{sys.executable} {ECHO_PATH}"
OWNER = DEV_ACCOUNTS[0]
USER = DEV_ACCOUNTS[1]
OTHER = DEV_ACCOUNTS[2]  # sends test transactions: account 0 is the node's claimer (nonce races)
EPOCH_LENGTH = 4


class Chain:
    """A running anvil plus a web3 on it."""

    def __init__(self, anvil: Anvil) -> None:
        self.anvil = anvil
        self.url = anvil.url
        self.w3 = connect(anvil.url)

    def mine(self, blocks: int = 1) -> None:
        self.anvil.mine(blocks)

    @property
    def block(self) -> int:
        return int(self.w3.eth.block_number)

    def deploy(self, epoch_length: int = EPOCH_LENGTH) -> Deployment:
        return deploy_devnet(self.w3, OWNER.private_key, epoch_length=epoch_length, rpc_url=self.url)

    def add_input(self, dep: Deployment, payload: bytes, key: str = USER.private_key) -> int:
        """addInput; returns the block it landed in."""
        return int(chain_fixtures.add_input(self.w3, dep, key, payload)["blockNumber"])

    def deposit_ether(self, dep: Deployment, value: int, data: bytes = b"", key: str = USER.private_key) -> int:
        return int(chain_fixtures.deposit_ether(self.w3, dep, key, value, data)["blockNumber"])

    def pass_epoch(self, dep: Deployment) -> None:
        """Mine until the epoch of the current block is over (a claim for it is then possible)."""
        L = dep.epoch_length
        block = self.block
        self.mine(L - block % L + 1)

    def claims(self, dep: Deployment) -> dict[int, bytes]:
        """epoch -> accepted root, from the Authority's ClaimAccepted events."""
        auth = contract(self.w3, "Authority", dep.authority)
        out = {}
        for ev in auth.events.ClaimAccepted().get_logs(
            from_block=0, argument_filters={"appContract": to_checksum_address(dep.application)}
        ):
            epoch = int(ev["args"]["lastProcessedBlockNumber"]) // dep.epoch_length
            assert epoch not in out, "two accepted claims for one epoch"
            out[epoch] = bytes(ev["args"]["outputsMerkleRoot"])
        return out


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    anvil = Anvil().start()
    try:
        yield Chain(anvil)
    finally:
        anvil.stop()


def marked_processes(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (a node's children inherit it):
    how the tests see whether anything outlived the process that started it."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def rpc(api_url: str, method: str, params: Any = None, timeout: float = 10.0) -> dict[str, Any]:
    """One JSON-RPC call; returns the whole answer (result or error). The node's one application
    is filled in when `params` names none (the official API requires `application`; tests of
    that rule post their own bodies, see tests/test_cartesi_rpc.py)."""
    params = {} if params is None else params
    if isinstance(params, dict) and "application" not in params and method not in _NO_APP:
        apps = post_json(api_url + "/rpc", {"jsonrpc": "2.0", "id": 0, "method": "cartesi_listApplications",
                                            "params": {}}, timeout)[1]
        params = dict(params, application=apps["result"]["data"][0]["iapplication_address"])
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return post_json(api_url + "/rpc", body, timeout)[1]


_NO_APP = ("cartesi_listApplications", "cartesi_getChainId", "cartesi_getNodeVersion", "rpc.discover")


def post_json(url: str, body: Any, timeout: float = 10.0) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def result(answer: dict[str, Any]) -> Any:
    assert "error" not in answer, answer
    return answer["result"]


def wait_claims(node: Node, chain: Chain, dep: Deployment, timeout: float = 30) -> None:
    """Pass the current epoch and wait until every epoch with inputs is claimed."""
    chain.pass_epoch(dep)
    node.wait_caught_up(timeout)
    deadline = time.monotonic() + timeout
    while True:
        epochs, _ = node.store.list_epochs()  # type: ignore[union-attr]
        if all(e.status == "CLAIM_ACCEPTED" for e in epochs):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"epochs not claimed: {epochs}")
        node.wait_caught_up(timeout)


__all__ = ["chain", "Chain", "marked_processes", "rpc", "post_json", "result", "wait_claims", "ECHO", "ECHO_CMD", "OWNER",
           "USER", "OTHER", "EPOCH_LENGTH"]
