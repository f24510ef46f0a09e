"""Cartesi's own npm clients, unmodified, against our node: `@cartesi/rpc` over every read method
(each answer validated against the OpenRPC schema), `@cartesi/viem`'s L2 actions, and its L1 side
(`validateOutput`, `executeOutput` with proofs served by our node) on a real anvil with the real
Cartesi 2.2.0 contracts. Once straight at the node's ports, once through the `cartesi run`-style
gateway (`/rpc`, `/anvil` on one port), as a front-end written for `cartesi run` would.

The clients are the versions pinned in package.json (installed by `npm ci`); the driver is
tests/js/cartesi_clients.mjs, which prints what the clients returned as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
from eth_utils import to_checksum_address

from rollup import openrpc
from rollup.gateway import Gateway
from tests.node_fixtures import OWNER, chain, post_json  # noqa: F401
from tests.test_cartesi_rpc import NAME, Live

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "js" / "cartesi_clients.mjs"
PACKAGES = ("@cartesi/rpc", "@cartesi/viem", "viem")


def _modules() -> Path | None:
    """The node_modules holding the pinned clients: the repository's (npm ci), or
    $TRIBUTARY_CARTESI_NODE_MODULES for a checkout that has not installed them yet."""
    for cand in (os.environ.get("TRIBUTARY_CARTESI_NODE_MODULES"), str(REPO / "node_modules")):
        if cand and all((Path(cand) / p / "package.json").is_file() for p in PACKAGES):
            return Path(cand)
    return None


MODULES = _modules()
pytestmark = [
    pytest.mark.chain,
    pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js for Cartesi's npm clients"),
    pytest.mark.skipif(MODULES is None, reason="run `npm ci`: @cartesi/rpc and @cartesi/viem are not installed"),
]


@pytest.fixture(scope="module")
def live(chain: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:  # noqa: F811
    state = Live(chain, tmp_path_factory.mktemp("cartesi-clients"))
    yield state
    state.node.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The driver script beside a node_modules link (ES modules resolve from the script's place)."""
    where = tmp_path_factory.mktemp("js")
    shutil.copy(SCRIPT, where / SCRIPT.name)
    assert MODULES is not None
    (where / "node_modules").symlink_to(MODULES, target_is_directory=True)
    return where / SCRIPT.name


def run_clients(driver: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(["node", str(driver), json.dumps(cfg)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def config(live: Live, rpc: str, anvil: str, l1: bool) -> dict[str, Any]:
    return {"rpc": rpc, "anvil": anvil, "app": live.app, "name": NAME, "key": OWNER.private_key,
            "notice": "0x0", "voucher": "0x4", "epoch": "0x" + format(live.first_epoch(), "x"),
            "input": "0x1", "report": "0x0", "l1": l1}


PRT_GETS = {"cartesi_getTournament", "cartesi_getCommitment", "cartesi_getMatch", "cartesi_getMatchAdvanced"}


def check_raw(live: Live, raw: dict[str, Any]) -> None:
    """Every method answered as the official node answers an Authority app, and every result
    validates against the OpenRPC schema."""
    assert set(openrpc.PARAM_NAMES) <= {k.removesuffix("_byName") for k in raw}
    for key, got in raw.items():
        method = key.removesuffix("_byName")
        if method in PRT_GETS:
            assert got["error"]["code"] == -32001, (key, got)
        elif method == "cartesi_listWithdrawals":
            assert got["error"]["code"] == -32601, got  # newer than the rollups 2.2.0 node
        else:
            assert "ok" in got, (key, got)
            jsonschema.validate(got["ok"], openrpc.result_schema(method), cls=jsonschema.Draft202012Validator)
    assert raw["cartesi_getApplication"]["ok"] == raw["cartesi_getApplication_byName"]["ok"]
    assert raw["cartesi_getProcessedInputCount"]["ok"] == {"data": "0x5"}
    assert raw["cartesi_getChainId"]["ok"] == {"data": hex(live.node.chain_id)}


def check_viem(live: Live, viem: dict[str, Any]) -> None:
    failed = {k: v["error"] for k, v in viem.items() if "error" in v}
    assert not failed, failed
    got = {k: v["ok"] for k, v in viem.items()}
    assert got["getChainId"] == live.node.chain_id and got["getNodeVersion"]
    assert got["getApplication"]["applicationAddress"] == to_checksum_address(live.app)
    assert got["getApplication"]["name"] == NAME and got["getApplication"]["consensusType"] == "AUTHORITY"
    assert got["listApplications"]["data"] == [got["getApplication"]]
    assert got["getProcessedInputCount"] == "bigint:5"
    assert got["listNotices"]["data"] and {o["decodedData"]["type"] for o in got["listNotices"]["data"]} == {"Notice"}
    assert {o["decodedData"]["type"] for o in got["listVouchers"]["data"]} == {"Voucher"}
    epoch = f"bigint:{live.first_epoch()}"
    assert got["listOutputsByEpoch"]["data"] and {o["epochIndex"] for o in got["listOutputsByEpoch"]["data"]} == {epoch}
    assert got["listOutputsByEpoch"]["pagination"]["limit"] == 2
    assert got["getEpoch"]["index"] == epoch and got["getEpoch"]["status"] == "CLAIM_ACCEPTED"
    assert got["getLastAcceptedEpochIndex"].startswith("bigint:")
    assert {i["epochIndex"] for i in got["listInputsByEpoch"]["data"]} == {epoch}
    deposit = got["getInput"]["decodedData"]  # the EtherPortal's input: depositor, value, then our data
    assert deposit["sender"] == "0xA632c5c05812c6a6149B7af5C56117d1D2603828"
    assert deposit["payload"].endswith(b"fund".hex()) and got["getInput"]["status"] == "ACCEPTED"
    assert got["getOutput"]["decodedData"] == {"type": "Voucher", "payload": "0x", "destination": live.payee,
                                               "value": "bigint:12345"}
    assert len(got["getOutput"]["outputHashesSiblings"]) == 63
    assert bytes.fromhex(got["getReport"]["rawData"][2:]) == b"hello report"
    for key in ("listTournaments", "listCommitments", "listMatches", "listMatchAdvances"):
        assert got[key]["data"] == [] and got[key]["pagination"]["totalCount"] == 0


def test_npm_clients_read_everything_and_execute_a_voucher_through_the_gateway(live: Live, driver: Path) -> None:
    gw = Gateway(live.node.api_url, live.chain.url, port=0).start()
    try:
        out = run_clients(driver, config(live, gw.url + "/rpc", gw.url + "/anvil", l1=True))
    finally:
        gw.stop()
    check_raw(live, out["raw"])
    check_viem(live, out["viem"])
    l1 = out["l1"]
    assert l1["validateNotice"] == {"ok": True} and l1["validateVoucher"] == {"ok": True}
    assert l1["validateForged"] == {"ok": False}
    assert l1["execute"]["ok"]["status"] == "success", l1
    assert "error" in l1["executeAgain"] and "error" in l1["executeNotice"], l1
    assert live.chain.w3.eth.get_balance(live.payee) == 12345
    tx = l1["execute"]["ok"]["hash"]
    deadline = time.monotonic() + 30  # the node reads OutputExecuted and reports the execution
    while True:
        _, answer = post_json(live.node.api_url + "/rpc", {"jsonrpc": "2.0", "id": 1, "method": "cartesi_getOutput",
                                                           "params": {"application": NAME, "output_index": "0x4"}})
        if answer["result"]["data"]["execution_transaction_hash"] == tx:
            break
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)


def test_npm_clients_straight_at_the_node(live: Live, driver: Path) -> None:
    out = run_clients(driver, config(live, live.node.api_url + "/rpc", live.chain.url, l1=False))
    check_raw(live, out["raw"])
    check_viem(live, out["viem"])
