"""The host-mode node against a real anvil and the real Cartesi v2.2.0 contracts, driven by the
echo backend: what a user of the node sees on chain and through its JSON-RPC/inspect API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from eth_account import Account

from rollup.claimer import ClaimConflictError
from rollup.deploy import Deployment
from rollup.gio import BlockStoreResolver
from rollup.node import NODE_DIED_REPORT_PREFIX, BackendStartError, Node, NonDeterministicBackendError
from rollup.vouchers import (InvalidOutputsMerkleRoot, OutputNotExecutable, OutputNotReexecutable,
                             OutputRejected, ProvableOutput, execute_output, validate_output)
from tests.node_fixtures import ECHO, OTHER, USER, Chain, chain, post_json, result, rpc, wait_claims  # noqa: F401

pytestmark = pytest.mark.chain


@pytest.fixture
def start_node(chain: Chain, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def start(dep: Deployment, state: str = "node", **kw: Any) -> Node:
        kw.setdefault("poll_interval", 0.05)
        node = Node(dep, kw.pop("backend", ECHO), tmp_path / state, **kw).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def outputs(node: Node, **params: Any) -> list[dict[str, Any]]:
    return result(rpc(node.api_url, "cartesi_listOutputs", dict(params, limit=1000)))["data"]


def provable(node: Node, index: int) -> ProvableOutput:
    out = result(rpc(node.api_url, "cartesi_getOutput", {"application": node.app, "output_index": hex(index)}))
    return ProvableOutput.from_rpc(out)


def payloads(outs: list[dict[str, Any]]) -> list[bytes]:
    return [bytes.fromhex(o["decoded_data"]["payload"][2:]) for o in outs]


def test_notice_and_ether_voucher_round_trip(chain: Chain, start_node: Callable[..., Node]) -> None:
    dep = chain.deploy()
    node = start_node(dep)
    w3 = chain.w3
    payee = Account.create().address
    chain.add_input(dep, b"hello")
    chain.deposit_ether(dep, 3 * 10**18, b"for the market")
    chain.add_input(dep, b"voucher:" + bytes.fromhex(payee[2:]) + (10**18 + 7).to_bytes(32, "big"))
    chain.deposit_ether(dep, 2 * 10**18, key=OTHER.private_key)  # the app needs funds for both vouchers
    node.wait_processed(4, 30)

    outs = outputs(node)
    kinds = [o["decoded_data"]["type"] for o in outs]
    assert kinds == ["Notice", "Notice", "Voucher", "Notice", "Voucher", "Notice", "Voucher"]
    assert [o["index"] for o in outs] == [hex(i) for i in range(7)]
    assert [o["input_index"] for o in outs] == ["0x0", "0x1", "0x1", "0x2", "0x2", "0x3", "0x3"]
    assert outs[2]["decoded_data"]["destination"] == USER.address  # checksummed, as the official node
    assert int(outs[2]["decoded_data"]["value"], 16) == 3 * 10**18
    assert int(outs[4]["decoded_data"]["value"], 16) == 10**18 + 7
    # proofs appear only once the output's epoch is claimed
    # The claimer runs concurrently: compare with the claimed epochs just before and just after
    # reading the outputs, so a claim landing in between cannot make the check flaky.
    def claimed() -> set[str]:
        return {e["index"] for e in result(rpc(node.api_url, "cartesi_listEpochs", {}))["data"]
                if e["status"] == "CLAIM_ACCEPTED"}

    before = claimed()
    outs = outputs(node)
    after = claimed()
    for o in outs:
        if o["epoch_index"] in before:
            assert o["output_hashes_siblings"] is not None, o
        if o["epoch_index"] not in after:
            assert o["output_hashes_siblings"] is None, o

    wait_claims(node, chain, dep)
    claims = chain.claims(dep)
    assert claims
    epochs = result(rpc(node.api_url, "cartesi_listEpochs", {}))["data"]
    assert {int(e["index"], 16): bytes.fromhex(e["outputs_merkle_root"][2:]) for e in epochs} == claims

    notice = provable(node, 0)
    assert len(notice.siblings) == 63
    validate_output(w3, dep.application, notice)  # the notice is proven on chain
    with pytest.raises(OutputNotExecutable):
        execute_output(w3, dep.application, notice, OTHER.private_key)

    voucher = provable(node, 4)
    app_before, payee_before = w3.eth.get_balance(dep.application), w3.eth.get_balance(payee)
    rcpt = execute_output(w3, dep.application, voucher, OTHER.private_key)
    assert w3.eth.get_balance(payee) - payee_before == 10**18 + 7
    assert app_before - w3.eth.get_balance(dep.application) == 10**18 + 7
    with pytest.raises(OutputNotReexecutable):
        execute_output(w3, dep.application, voucher, OTHER.private_key)

    refund = provable(node, 2)
    user_before = w3.eth.get_balance(USER.address)
    execute_output(w3, dep.application, refund, OTHER.private_key)
    assert w3.eth.get_balance(USER.address) - user_before == 3 * 10**18

    # a wrong proof is refused on chain
    bad = list(refund.siblings)
    bad[0] = b"\x11" * 32
    with pytest.raises(InvalidOutputsMerkleRoot):
        validate_output(w3, dep.application, ProvableOutput(refund.index, refund.raw, bad))
    with pytest.raises(OutputRejected):
        validate_output(w3, dep.application, ProvableOutput(3, notice.raw, notice.siblings))

    # the node notices the execution
    node.wait_caught_up()
    out4 = result(rpc(node.api_url, "cartesi_getOutput", {"output_index": "0x4"}))["data"]
    assert out4["execution_transaction_hash"] == "0x" + bytes(rcpt["transactionHash"]).hex()
    vouchers = outputs(node, output_type="0x237a816f", voucher_address=payee)  # the Voucher selector
    assert [o["index"] for o in vouchers] == ["0x4"]


def test_rejected_exception_and_dead_backend_inputs(chain: Chain, start_node: Callable[..., Node]) -> None:
    dep = chain.deploy()
    node = start_node(dep)
    sent = [b"a", b"reject:report", b"b report", b"exception:report", b"die:", b"count", b"c"]
    for p in sent:
        chain.add_input(dep, p)
    node.wait_processed(len(sent), 60)

    inputs = result(rpc(node.api_url, "cartesi_listInputs", {}))["data"]
    assert [i["status"] for i in inputs] == ["ACCEPTED", "REJECTED", "ACCEPTED", "EXCEPTION", "REJECTED",
                                            "ACCEPTED", "ACCEPTED"]
    assert inputs[3]["exception_payload"] == "0x" + b"report".hex()
    outs = outputs(node)
    # dropped outputs' indices are reused: indices stay dense, only accepted inputs' outputs remain
    assert [int(o["index"], 16) for o in outs] == list(range(5))
    assert payloads(outs) == [b"a", b"b report", b"count", b"count=2", b"c"]
    assert [int(o["input_index"], 16) for o in outs] == [0, 2, 5, 5, 6]
    reports = result(rpc(node.api_url, "cartesi_listReports", {}))["data"]
    by_input = [(int(r["input_index"], 16), bytes.fromhex(r["raw_data"][2:])) for r in reports]
    assert by_input[:3] == [(1, b"reject:report"), (2, b"b report"), (3, b"exception:report")]
    assert by_input[3][0] == 4 and by_input[3][1].startswith(NODE_DIED_REPORT_PREFIX)
    assert node.supervisor is not None and node.supervisor.starts == 3  # after the exception and the death

    wait_claims(node, chain, dep)
    for i in range(5):  # later outputs are still provable on chain
        validate_output(chain.w3, dep.application, provable(node, i))


def test_inspect_health_and_api_errors(chain: Chain, start_node: Callable[..., Node]) -> None:
    dep = chain.deploy()
    node = start_node(dep, app_name="echo")
    chain.add_input(dep, b"one")
    node.wait_processed(1, 30)
    for target in ("echo", dep.application, dep.application.lower()):
        status, body = post_json(node.api_url + "/inspect/" + target, b"ping")
        assert status == 200
        assert body == {"status": "Accepted", "reports": [{"payload": "0x" + b"ping".hex()}],
                        "processed_input_count": 1}
    status, body = post_json(node.api_url + "/inspect/echo", b"count")
    assert body["reports"] == [{"payload": "0x" + b"count=1".hex()}]
    assert post_json(node.api_url + "/inspect/other", b"x")[0] == 404
    assert post_json(node.api_url + "/inspect/echo", b"x" * (2 * 1024 * 1024 + 1))[0] == 413
    import urllib.request

    with urllib.request.urlopen(node.api_url + "/health", timeout=5) as resp:
        import json

        health = json.loads(resp.read())
    assert health["status"] == "ok" and health["processed_input_count"] == 1 and health["backend_alive"]

    def err(method: str, params: Any) -> int:
        answer = rpc(node.api_url, method, params)
        assert "result" not in answer, answer
        return answer["error"]["code"]

    assert err("cartesi_listOutputs", {"epoch_index": "zz"}) == -32602
    assert err("cartesi_listOutputs", {"limit": -1}) == -32602
    assert err("cartesi_listOutputs", {"limit": "10"}) == -32602
    assert err("cartesi_listOutputs", {"output_type": "Bogus"}) == -32602
    assert err("cartesi_listOutputs", {"voucher_address": "0x12"}) == -32602
    assert err("cartesi_listOutputs", {"limit": 1.5}) == -32602
    assert err("cartesi_listOutputs", {"epoch_index": "9"}) == -32602  # indices are hex, as the official node
    # unknown keys are ignored, as the official node does (Go's encoding/json)
    assert result(rpc(node.api_url, "cartesi_listOutputs", {"colour": "red"}))["pagination"]["limit"] == 50
    assert err("cartesi_listOutputs", [1, 2]) == -32602
    assert err("cartesi_getOutput", {}) == -32602
    assert err("cartesi_getInput", {"input_index": True}) == -32602
    assert err("cartesi_getOutput", {"output_index": "0x99"}) == -32001
    assert err("cartesi_getInput", {"application": "0x" + "00" * 20, "input_index": "0x0"}) == -32001
    assert err("cartesi_nope", {}) == -32601
    status, body = post_json(node.api_url + "/rpc", b"{not json")
    assert status == 200 and body["error"]["code"] == -32700
    status, body = post_json(node.api_url + "/rpc", {"method": "cartesi_listOutputs"})
    assert body["error"]["code"] == -32600
    assert result(rpc(node.api_url, "cartesi_getProcessedInputCount", {"application": "echo"})) == {"data": "0x1"}
    page = result(rpc(node.api_url, "cartesi_listInputs", {"limit": 1, "offset": 0}))
    assert page["pagination"] == {"total_count": 1, "limit": 1, "offset": 0}
    assert page["data"][0]["decoded_data"]["payload"] == "0x" + b"one".hex()
    by_sender = result(rpc(node.api_url, "cartesi_listInputs", {"sender": USER.address}))
    assert by_sender["pagination"]["total_count"] == 1
    nobody = result(rpc(node.api_url, "cartesi_listInputs", {"sender": "0x" + "00" * 20}))
    assert nobody["data"] == [] and nobody["pagination"]["total_count"] == 0


def test_restart_replays_state_and_catches_a_nondeterministic_backend(
        chain: Chain, start_node: Callable[..., Node]) -> None:
    dep = chain.deploy()
    node = start_node(dep, "state")
    chain.add_input(dep, b"x")
    chain.add_input(dep, b"count")
    node.wait_processed(2, 30)
    node.stop()
    chain.add_input(dep, b"count")
    again = start_node(dep, "state")  # same state dir: replays 2 inputs, then goes on
    again.wait_processed(3, 30)
    assert again.replayed_inputs == 2
    outs = outputs(again)
    assert payloads(outs) == [b"x", b"count", b"count=1", b"count", b"count=2"]

    shaky = start_node(dep, "shaky", backend_env={"ECHO_NONDETERMINISTIC": "1"})
    shaky.wait_processed(1, 30)
    shaky.stop()
    broken = start_node(dep, "shaky", backend_env={"ECHO_NONDETERMINISTIC": "1"})
    with pytest.raises(NonDeterministicBackendError):
        broken.wait_processed(4, 30)


def test_gio_requests_reach_the_resolver(chain: Chain, start_node: Callable[..., Node]) -> None:
    dep = chain.deploy()
    blocks = {b"\x01\x55cid-bytes": b"the block"}
    node = start_node(dep, resolver=BlockStoreResolver(blocks.get))
    chain.add_input(dep, b"gio:\x00\x10" + b"\x01\x55cid-bytes")
    chain.add_input(dep, b"gio:\x00\x10" + b"\x01\x55missing")
    node.wait_processed(2, 30)
    got = payloads(outputs(node))
    assert got[1] == b"gio=\x00\x00the block"
    assert got[3] == b"gio=\x00\x01"


def test_a_backend_that_cannot_start_stops_the_node_without_judging_inputs(
        chain: Chain, start_node: Callable[..., Node]) -> None:
    dep = chain.deploy()
    chain.add_input(dep, b"x")
    node = start_node(dep, backend=[sys.executable, "-c", "import sys; sys.exit(2)"])
    with pytest.raises(BackendStartError):
        node.wait_processed(1, 30)
    assert node.processed_count == 0  # the input was not marked rejected


def test_claims_already_on_chain_are_recorded_and_conflicts_are_loud(
        chain: Chain, start_node: Callable[..., Node]) -> None:
    dep = chain.deploy()
    first = start_node(dep, "first")
    chain.add_input(dep, b"one")
    first.wait_processed(1, 30)
    wait_claims(first, chain, dep)
    first.stop()
    # a second node for the same app (fresh state) meets NotFirstClaim and records the claim
    second = start_node(dep, "second")
    wait_claims(second, chain, dep)
    a = {e.index: (e.root, e.claim_tx) for e in first_epochs(first)}
    b = {e.index: (e.root, e.claim_tx) for e in second.store.list_epochs()[0]}  # type: ignore[union-attr]
    assert a == b and a

    # an epoch claimed with another root than the node computes stops the node loudly
    from tests.chain_fixtures import submit_claim

    forged_dep = chain.deploy()
    chain.add_input(forged_dep, b"two")
    submit_claim(chain.w3, forged_dep, b"\x01" * 32)
    chain.mine(1)
    third = start_node(forged_dep, "third")
    with pytest.raises(ClaimConflictError):
        third.wait_caught_up(30)


def first_epochs(node: Node) -> list[Any]:
    from rollup.store import Store

    store = Store(node.state_dir / "node.sqlite")  # type: ignore[operator]
    try:
        return store.list_epochs()[0]
    finally:
        store.close()
