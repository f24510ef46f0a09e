"""The node's JSON-RPC and inspect API against Cartesi's rollups-node v2 contract: every method of
the OpenRPC document answers, every answer validates against the document's schema, and parameters
are handled as the official node's code handles them (positional arrays, `params: []`, unknown keys
ignored, `limit` 0 and over-cap limits, hex-only indices, a required `application`). Also: inspect's
official shape, the `cartesi run`-style gateway on one port, and the CARTESI_* settings.

A real anvil, the real Cartesi 2.2.0 contracts and the echo backend (tests/backends/echo.py)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
from eth_account import Account

from rollup import openrpc
from rollup.gateway import Gateway, GatewayError, app_name, app_name_from_toml, node_settings_from_env
from rollup.node import Node
from tests.node_fixtures import ECHO, OTHER, Chain, chain, post_json, wait_claims  # noqa: F401

pytestmark = pytest.mark.chain

NAME = "echo-app"
ZERO_ADDR = "0x" + "00" * 20
ZERO_HASH = "0x" + "00" * 32


class Live:
    """A node with a claimed history: notices, an ether voucher, reports, an exception."""

    def __init__(self, chain: Chain, tmp: Path) -> None:
        self.chain = chain
        self.dep = chain.deploy()
        self.node = Node(self.dep, ECHO, tmp / "node", poll_interval=0.05, app_name=NAME).start()
        self.payee = Account.create().address
        chain.add_input(self.dep, b"hello report")                                  # input 0: notice + report
        chain.deposit_ether(self.dep, 10**18, b"fund", key=OTHER.private_key)        # 1: notice + voucher back
        chain.add_input(self.dep, b"voucher:" + bytes.fromhex(self.payee[2:]) + (12345).to_bytes(32, "big"))
        chain.add_input(self.dep, b"exception:boom")                                 # 3: exception
        self.node.wait_processed(4, 60)
        wait_claims(self.node, chain, self.dep)
        chain.add_input(self.dep, b"later report")                                   # 4: an open epoch
        self.node.wait_processed(5, 60)
        self.app = self.dep.application

    def first_epoch(self) -> int:
        return int(self.ok("cartesi_listEpochs", {"application": self.app})["data"][0]["index"], 16)

    def call(self, method: str, params: Any = None, *, raw: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
        if params is not None or raw:
            body["params"] = params
        status, answer = post_json(self.node.api_url + "/rpc", body)
        assert status == 200
        return answer

    def ok(self, method: str, params: Any = None) -> Any:
        answer = self.call(method, params)
        assert "error" not in answer, (method, params, answer)
        return answer["result"]

    def code(self, method: str, params: Any = None, **kw: Any) -> int | None:
        answer = self.call(method, params, **kw)
        return answer["error"]["code"] if "error" in answer else None


@pytest.fixture(scope="module")
def live(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    state = Live(chain, tmp_path_factory.mktemp("cartesi-rpc"))
    yield state
    state.node.stop()


def valid(method: str, result: Any) -> None:
    jsonschema.validate(result, openrpc.result_schema(method), cls=jsonschema.Draft202012Validator)


def all_calls(live: Live) -> dict[str, dict[str, Any]]:
    """One call of every method of the document, by name (the PRT gets cannot succeed here)."""
    a = live.app
    return {
        "cartesi_listApplications": {},
        "cartesi_getApplication": {"application": a},
        "cartesi_listEpochs": {"application": a},
        "cartesi_getEpoch": {"application": a,
                             "epoch_index": live.ok("cartesi_listEpochs", {"application": a})["data"][0]["index"]},
        "cartesi_getLastAcceptedEpochIndex": {"application": a},
        "cartesi_listInputs": {"application": a},
        "cartesi_getInput": {"application": a, "input_index": "0x1"},
        "cartesi_getProcessedInputCount": {"application": a},
        "cartesi_listOutputs": {"application": a},
        "cartesi_getOutput": {"application": a, "output_index": "0x2"},
        "cartesi_listReports": {"application": a},
        "cartesi_getReport": {"application": a, "report_index": "0x0"},
        "cartesi_listTournaments": {"application": a},
        "cartesi_listCommitments": {"application": a},
        "cartesi_listMatches": {"application": a},
        "cartesi_listMatchAdvances": {"application": a, "epoch_index": "0x0", "tournament_address": ZERO_ADDR,
                                      "id_hash": ZERO_HASH},
        "cartesi_getChainId": {},
        "cartesi_getNodeVersion": {},
    }


# ------------------------------------------------------------------------ the document's methods

def test_every_method_of_the_document_answers_and_validates(live: Live) -> None:
    calls = all_calls(live)
    for method in openrpc.PARAM_NAMES:
        if method in calls:
            valid(method, live.ok(method, calls[method]))
    prt_gets = {
        "cartesi_getTournament": {"application": live.app, "address": ZERO_ADDR},
        "cartesi_getCommitment": {"application": live.app, "epoch_index": "0x0", "tournament_address": ZERO_ADDR,
                                  "commitment": ZERO_HASH},
        "cartesi_getMatch": {"application": live.app, "epoch_index": "0x0", "tournament_address": ZERO_ADDR,
                             "id_hash": ZERO_HASH},
        "cartesi_getMatchAdvanced": {"application": live.app, "epoch_index": "0x0",
                                     "tournament_address": ZERO_ADDR, "id_hash": ZERO_HASH, "parent": ZERO_HASH},
    }
    assert set(calls) | set(prt_gets) == set(openrpc.PARAM_NAMES)
    for method, params in prt_gets.items():  # an Authority app has no tournaments: as the official node
        answer = live.call(method, params)
        assert answer["error"]["code"] == -32001 and answer["error"]["message"].endswith("not found"), answer
    discovered = live.ok("rpc.discover")
    assert discovered["openrpc"] and {m["name"] for m in discovered["methods"]} == set(openrpc.PARAM_NAMES)
    jsonschema.Draft202012Validator.check_schema({"components": discovered["components"]})


def test_shapes_carry_the_official_fields_and_encodings(live: Live) -> None:
    a = live.app
    app = live.ok("cartesi_getApplication", {"application": NAME})["data"]
    assert app["iapplication_address"] == a.lower() and app["iconsensus_address"] == live.dep.authority.lower()
    assert app["name"] == NAME and app["consensus_type"] == "AUTHORITY" and app["state"] == "ENABLED"
    assert app["epoch_length"] == hex(live.dep.epoch_length) and app["processed_inputs"] == "0x5"
    assert app["data_availability"].startswith("0xb12c9ede") and app["enabled"] is True
    assert live.ok("cartesi_listApplications", {})["data"] == [app]

    inp = live.ok("cartesi_getInput", {"application": a, "input_index": "0x1"})["data"]
    d = inp["decoded_data"]
    assert d["application_contract"] == a and d["sender"] == "0xA632c5c05812c6a6149B7af5C56117d1D2603828"
    assert inp["status"] == "ACCEPTED" and inp["transaction_reference"] == inp["transaction_hash"]
    assert not d["prev_randao"].startswith("0x0") or d["prev_randao"] == "0x0"  # %x: no leading zeros
    assert live.ok("cartesi_getInput", {"application": a, "input_index": "0x3"})["data"]["status"] == "EXCEPTION"

    voucher = live.ok("cartesi_getOutput", {"application": a, "output_index": "0x4"})["data"]
    assert voucher["decoded_data"] == {"type": "Voucher", "destination": live.payee, "value": hex(12345),
                                       "payload": "0x"}
    assert len(voucher["output_hashes_siblings"]) == 63 and voucher["execution_transaction_hash"] is None

    epochs = live.ok("cartesi_listEpochs", {"application": a})["data"]
    first = epochs[0]
    assert first["status"] == "CLAIM_ACCEPTED" and first["input_index_lower_bound"] == "0x0"
    assert int(first["input_index_upper_bound"], 16) >= 1 and first["virtual_index"] == first["index"]
    assert first["claim_transaction_hash"] is not None and epochs[-1]["status"] in ("OPEN", "CLOSED")
    last = live.ok("cartesi_getLastAcceptedEpochIndex", {"application": a})["data"]
    assert last == max((e["index"] for e in epochs if e["status"] == "CLAIM_ACCEPTED"), key=lambda h: int(h, 16))

    rep = live.ok("cartesi_getReport", {"application": a, "report_index": "0x0"})["data"]
    assert bytes.fromhex(rep["raw_data"][2:]) == b"hello report" and rep["created_at"].endswith("Z")


# --------------------------------------------------------------------------- parameter handling

def test_params_by_position_empty_and_null(live: Live) -> None:
    a = live.app
    assert live.ok("cartesi_getChainId", []) == {"data": hex(live.node.chain_id)}  # what viem sends
    assert live.ok("cartesi_getNodeVersion", [])["data"]
    assert live.ok("cartesi_getChainId") == live.ok("cartesi_getChainId", {"whatever": 1})
    assert live.ok("cartesi_getInput", [a, "0x1"]) == live.ok("cartesi_getInput", {"application": a,
                                                                                    "input_index": "0x1"})
    page = live.ok("cartesi_listOutputs", [a, None, "0x1", None, None, 1, 1])  # by position, nulls skipped
    assert [o["index"] for o in page["data"]] == ["0x2"] and page["pagination"]["limit"] == 1
    assert live.ok("cartesi_listApplications", [])["pagination"]["limit"] == 50
    assert live.call("cartesi_listApplications", None, raw=True)["result"]["pagination"]["limit"] == 50
    assert live.code("cartesi_listApplications") == -32602  # no params at all: as Go's decoder
    assert live.code("cartesi_getInput", [a, "0x1", "extra"]) == -32602  # more than the method takes
    assert live.code("cartesi_getInput", "0x1") == -32602


def test_unknown_keys_are_ignored_and_keys_match_case_insensitively(live: Live) -> None:
    a = live.app
    base = live.ok("cartesi_listOutputs", {"application": a})
    # what @cartesi/viem spreads into listOutputs: its camelCase keys next to the API's
    assert live.ok("cartesi_listOutputs", {"application": a, "outputType": "Notice", "epochIndex": "1",
                                           "descending": False, "colour": "red"}) == base
    assert live.ok("cartesi_listOutputs", {"Application": a, "LIMIT": 2})["pagination"]["limit"] == 2


def test_limits_fall_back_to_the_default_and_the_cap(live: Live) -> None:
    a = live.app
    assert live.ok("cartesi_listOutputs", {"application": a, "limit": 0})["pagination"]["limit"] == 50
    assert live.ok("cartesi_listInputs", {"application": a, "limit": 10**6})["pagination"]["limit"] == 10_000
    assert live.code("cartesi_listInputs", {"application": a, "limit": -1}) == -32602
    assert live.code("cartesi_listInputs", {"application": a, "limit": 2**64}) == -32602
    assert live.code("cartesi_listInputs", {"application": a, "limit": "5"}) == -32602
    asc = live.ok("cartesi_listInputs", {"application": a})["data"]
    desc = live.ok("cartesi_listInputs", {"application": a, "descending": True})["data"]
    assert [i["index"] for i in desc] == [i["index"] for i in reversed(asc)]


def test_indices_must_be_hex_and_application_is_required(live: Live) -> None:
    a = live.app
    for bad in ("1", "01", "0x", "0xg", "0x" + "f" * 17, 1):
        assert live.code("cartesi_getInput", {"application": a, "input_index": bad}) == -32602, bad
    assert live.code("cartesi_getInput", {"application": a, "input_index": "0X1"}) is None
    for method in ("cartesi_listInputs", "cartesi_getProcessedInputCount", "cartesi_getApplication",
                   "cartesi_listEpochs", "cartesi_getLastAcceptedEpochIndex", "cartesi_listTournaments"):
        assert live.code(method, {}) == -32602, method
        assert live.code(method, {"application": "X!"}) == -32602, method
    other = "0x" + "11" * 20
    assert live.code("cartesi_getApplication", {"application": other}) == -32001
    assert live.code("cartesi_listOutputs", {"application": "nobody"}) == -32001
    assert live.code("cartesi_getInput", {"application": other, "input_index": "0x0"}) == -32001
    assert live.ok("cartesi_listTournaments", {"application": a}) == {
        "data": [], "pagination": {"total_count": 0, "limit": 50, "offset": 0}}
    assert live.code("cartesi_listOutputs", {"application": a, "output_type": "Notice"}) == -32602
    notices = live.ok("cartesi_listOutputs", {"application": a, "output_type": "0xc258d6e5"})["data"]
    assert notices and all(o["decoded_data"]["type"] == "Notice" for o in notices)
    assert live.code("cartesi_nope", {}) == -32601
    assert live.code("cartesi_listWithdrawals", {"application": a}) == -32601  # not in the 2.2.0-era API


# ----------------------------------------------------------------------------------- inspect

def test_inspect_answers_and_errors_have_the_official_shape(live: Live) -> None:
    url = live.node.api_url + "/inspect/"
    status, body = post_json(url + NAME, b"ping")
    assert status == 200 and body == {"status": "Accepted", "reports": [{"payload": "0x" + b"ping".hex()}],
                                      "processed_input_count": 5}
    assert "exception" not in body
    req = urllib.request.Request(url + "nobody", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 404 and err.value.read() == b"Application not found\n"
    assert err.value.headers["Content-Type"].startswith("text/plain")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + NAME, timeout=10)
    assert err.value.code == 405 and err.value.read() == b"Method not allowed\n"


def test_browsers_may_read_the_api_cross_origin(live: Live) -> None:
    req = urllib.request.Request(live.node.api_url + "/rpc", method="OPTIONS",
                                 headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204 and "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "cartesi_getChainId"}).encode()
    req = urllib.request.Request(live.node.api_url + "/rpc", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_inspect_json_without_reports_is_null() -> None:
    from rollup.node import InspectResult

    assert InspectResult("Accepted", [], 3).to_json() == {"status": "Accepted", "reports": None,
                                                          "processed_input_count": 3}
    exc = InspectResult("Exception", [], 3, b"bad query").to_json()
    assert exc["exception"] == "Error on the machine while inspecting: bad query" and exc["reports"] is None


# --------------------------------------------------------------------------- /finish long-polls

def test_an_idle_finish_waits_for_the_next_request() -> None:
    import threading

    from dapp.rollup_api import RollupClient
    from rollup.server import MachineRequest, RollupHttpServer, RollupMachine

    machine = RollupMachine(finish_wait=5.0)
    server = RollupHttpServer(machine).start()
    try:
        got: list[Any] = []
        started = time.monotonic()
        t = threading.Thread(target=lambda: got.append((RollupClient(server.url).finish("accept"),
                                                        time.monotonic() - started)))
        t.start()
        time.sleep(0.8)
        assert not got  # still waiting: no 202 storm
        req = MachineRequest("inspect", b"q")
        machine.submit(req)
        t.join(5)
        assert got and got[0][0] is not None and got[0][0].payload == b"q" and 0.8 <= got[0][1] < 5
        # a backend restart (reset) releases a waiting /finish at once, with 202
        machine2 = RollupMachine(finish_wait=30.0)
        waited: list[float] = []

        def finish() -> None:
            t0 = time.monotonic()
            assert machine2.finish(True) is None
            waited.append(time.monotonic() - t0)

        t2 = threading.Thread(target=finish)
        t2.start()
        time.sleep(0.3)
        machine2.reset()
        t2.join(5)
        assert waited and waited[0] < 2
    finally:
        server.stop()


# ----------------------------------------------------------------------- the one-port gateway

def test_gateway_serves_anvil_rpc_and_inspect_on_one_port(live: Live) -> None:
    gw = Gateway(live.node.api_url, live.chain.url, port=0).start()
    try:
        status, chain_id = post_json(gw.url + "/anvil", {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                                                         "params": []})
        assert status == 200 and int(chain_id["result"], 16) == live.node.chain_id
        status, count = post_json(gw.url + "/rpc", {"jsonrpc": "2.0", "id": 1, "method":
                                                    "cartesi_getProcessedInputCount",
                                                    "params": {"application": NAME}})
        assert status == 200 and count["result"] == {"data": "0x5"}
        status, body = post_json(gw.url + f"/inspect/{NAME}", b"ping")
        assert status == 200 and body["reports"] == [{"payload": "0x" + b"ping".hex()}]
        assert post_json(gw.url + "/elsewhere", b"")[0] == 404
        assert post_json(gw.url + "/rpc", b"x" * (3 * 1024 * 1024))[0] == 413  # refused before reading
    finally:
        gw.stop()


def test_gateway_refuses_upstream_answers_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upstream answer is buffered whole, so one past MAX_UPSTREAM_ANSWER is a 502 (no anvil)."""
    from http.server import BaseHTTPRequestHandler

    from rollup import gateway
    from rollup.server import LoopbackServer

    class Upstream(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'"' + b"x" * 1000 + b'"'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    up = LoopbackServer(("127.0.0.1", 0), Upstream).start()
    gw = Gateway(up.url, up.url, port=0).start()
    try:
        assert post_json(gw.url + "/anvil", {"id": 1})[0] == 200
        monkeypatch.setattr(gateway, "MAX_UPSTREAM_ANSWER", 100)
        assert post_json(gw.url + "/anvil", {"id": 1})[0] == 502
    finally:
        gw.stop()
        up.stop()


def test_app_names_and_cartesi_settings(tmp_path: Path) -> None:
    assert app_name("My App") == "my-app"
    with pytest.raises(GatewayError):
        app_name("x")
    proj = tmp_path / "Market_Dapp"
    proj.mkdir()
    (proj / "cartesi.toml").write_text('sdk = "cartesi/sdk:0.12.0"\n')
    assert app_name_from_toml(proj / "cartesi.toml") is None
    (proj / "cartesi.toml").write_text('name = "Data Market"\nsdk = "cartesi/sdk:0.12.0"\n')
    assert app_name_from_toml(proj / "cartesi.toml") == "data-market"
    assert app_name_from_toml(tmp_path / "missing.toml") is None

    dep = {"chain_id": 31337, "epoch_length": 720, "contracts": {"InputBox": "0x" + "ab" * 20}}
    env = {"CARTESI_BLOCKCHAIN_HTTP_ENDPOINT": "http://anvil:8545", "CARTESI_BLOCKCHAIN_ID": "31337",
           "CARTESI_CONTRACTS_INPUT_BOX_ADDRESS": "0x" + "AB" * 20, "CARTESI_EPOCH_LENGTH": "720",
           "CARTESI_BLOCKCHAIN_DEFAULT_BLOCK": "latest", "CARTESI_JSONRPC_API_ADDRESS": ":10011",
           "CARTESI_INSPECT_ADDRESS": "127.0.0.1:10011", "CARTESI_FEATURE_CLAIM_SUBMISSION_ENABLED": "false",
           "CARTESI_AUTH_PRIVATE_KEY": "0x01", "CARTESI_HTTP_PORT": "6751", "CARTESI_LOG_LEVEL": "info"}
    got = node_settings_from_env(dep, env)
    assert got["rpc_url"] == "http://anvil:8545" and got["api_port"] == 10011 and got["claim"] is False
    assert got["claimer_key"] == "0x01" and got["gateway_port"] == 6751
    for var, value in (("CARTESI_BLOCKCHAIN_ID", "1"), ("CARTESI_EPOCH_LENGTH", "10"),
                       ("CARTESI_CONTRACTS_INPUT_BOX_ADDRESS", "0x" + "00" * 20),
                       ("CARTESI_BLOCKCHAIN_DEFAULT_BLOCK", "finalized"), ("CARTESI_INSPECT_ADDRESS", ":10012"),
                       ("CARTESI_FEATURE_CLAIM_SUBMISSION_ENABLED", "maybe")):
        with pytest.raises(GatewayError, match=var):
            node_settings_from_env(dep, dict(env, **{var: value}))
    assert node_settings_from_env(dep, {}) == {}


def test_discover_document_is_json_and_stable() -> None:
    doc = openrpc.document()
    assert json.loads(json.dumps(doc)) == doc
    names = [m["name"] for m in doc["methods"]]
    assert len(names) == len(set(names)) == 22
    for method in doc["methods"]:
        assert method["result"]["schema"]["$ref"].split("/")[-1] in doc["components"]["schemas"]


def test_node_command_reads_cartesi_settings_and_serves_one_port(chain: Chain, tmp_path: Path) -> None:  # noqa: F811
    """`python -m rollup node` configured the way the official node is (CARTESI_* variables), with
    the `cartesi run`-style port: a front-end's three URLs on one port, claims off as asked."""
    import os
    import subprocess
    import sys

    from rollup.anvil import free_port

    dep = chain.deploy()
    dep_path = dep.save(tmp_path / "deployment.json")
    api_port, gw_port, http_port = free_port(), free_port(), free_port()
    env = dict(os.environ, CARTESI_BLOCKCHAIN_HTTP_ENDPOINT=chain.url, CARTESI_BLOCKCHAIN_ID=str(dep.chain_id),
               CARTESI_CONTRACTS_INPUT_BOX_ADDRESS=dep.contracts["InputBox"],
               CARTESI_JSONRPC_API_ADDRESS=f"127.0.0.1:{api_port}", CARTESI_HTTP_PORT=str(gw_port),
               CARTESI_FEATURE_CLAIM_SUBMISSION_ENABLED="false", CARTESI_BLOCKCHAIN_DEFAULT_BLOCK="latest")
    cmd = [sys.executable, "-m", "rollup", "node", "--deployment", str(dep_path), "--backend",
           " ".join(ECHO), "--state-dir", str(tmp_path / "state"), "--http-port", str(http_port),
           "--poll-interval", "0.05", "--app-name", "My Echo"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    gw = f"http://127.0.0.1:{gw_port}"
    try:
        chain.add_input(dep, b"through the gateway")
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = post_json(gw + "/rpc", {"jsonrpc": "2.0", "id": 1, "method":
                                                       "cartesi_getProcessedInputCount",
                                                       "params": {"application": "my-echo"}}, timeout=2)
                if status == 200 and body.get("result") == {"data": "0x1"}:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the node did not serve through the gateway"
            time.sleep(0.2)
        status, body = post_json(gw + "/inspect/my-echo", b"hi")
        assert status == 200 and body["reports"] == [{"payload": "0x" + b"hi".hex()}]
        status, block = post_json(gw + "/anvil", {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                                                  "params": []})
        assert status == 200 and int(block["result"], 16) == chain.block
        assert post_json(f"http://127.0.0.1:{api_port}/rpc", {"jsonrpc": "2.0", "id": 1,
                                                              "method": "cartesi_getChainId"})[0] == 200
        before = chain.block
        chain.pass_epoch(dep)
        time.sleep(1.0)
        assert chain.claims(dep) == {} and chain.block > before  # CLAIM_SUBMISSION_ENABLED=false
    finally:
        proc.terminate()
        proc.wait(20)
    bad = subprocess.run(cmd, env=dict(env, CARTESI_BLOCKCHAIN_ID="1"), capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert bad.returncode != 0 and "CARTESI_BLOCKCHAIN_ID=1" in bad.stderr
