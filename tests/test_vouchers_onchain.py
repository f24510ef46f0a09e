"""Outputs we build ourselves, claimed with the Authority owner's key and executed on the real
Application: money moves exactly as the vouchers say, and every refusal is the right typed error.
(The node-driven version of this lives with the node's tests.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from web3 import Web3

from tests.chain_fixtures import (ALICE, BOB, OWNER, anvil_chain, app, core, deposit_erc20, deposit_ether,  # noqa: F401
                            fresh_account, mint, submit_claim, test_token, token_balance, w3)
from rollup.deploy import Deployment
from rollup.merkle import OutputsTree
from rollup.outputs import encode_notice, encode_voucher, erc20_transfer_payload
from rollup.vouchers import (InsufficientFunds, InvalidOutputHashesSiblingsArrayLength, InvalidOutputsMerkleRoot,
                             OutputNotExecutable, OutputNotReexecutable, OutputRejected, ProofNotReady,
                             ProvableOutput, execute_output, validate_output, was_output_executed)

pytestmark = pytest.mark.chain

ETH = 10**18
REPO = Path(__file__).resolve().parent.parent


class Claimed:
    """A tree of outputs, claimed on chain, with ProvableOutputs for each."""

    def __init__(self, w3: Web3, dep: Deployment, outputs: list[bytes]) -> None:
        self.tree = OutputsTree()
        for o in outputs:
            self.tree.append_output(o)
        self.outputs = outputs
        self.claimed_block = submit_claim(w3, dep, self.tree.root())

    def provable(self, i: int) -> ProvableOutput:
        return ProvableOutput(i, self.outputs[i], self.tree.proof(i))


@pytest.fixture
def funded_tree(w3: Web3, app: Deployment, test_token: str, fresh_account: Any) -> Iterator[dict[str, Any]]:
    recipient = fresh_account(0)
    token_recipient = fresh_account(0)
    outputs = [
        encode_notice(b"round 1 closed"),
        encode_voucher(recipient.address, 1 * ETH, b""),
        encode_voucher(test_token, 0, erc20_transfer_payload(token_recipient.address, 500)),
        encode_voucher(recipient.address, 3 * ETH // 10, b""),
    ]
    claimed = Claimed(w3, app, outputs)
    deposit_ether(w3, app, ALICE.private_key, 2 * ETH)
    mint(w3, test_token, ALICE.private_key, ALICE.address, 1000)
    deposit_erc20(w3, app, ALICE.private_key, test_token, 1000)
    yield {"claimed": claimed, "recipient": recipient.address, "token_recipient": token_recipient.address,
           "token": test_token}


def test_eth_voucher_moves_exactly_its_value_once(w3: Web3, app: Deployment, funded_tree: dict[str, Any]) -> None:
    c, recipient = funded_tree["claimed"], funded_tree["recipient"]
    assert w3.eth.get_balance(app.application) == 2 * ETH
    assert not was_output_executed(w3, app.application, 1)
    # BOB executes on the recipient's behalf: anyone may execute a voucher.
    rcpt = execute_output(w3, app.application, c.provable(1), BOB.private_key)
    assert rcpt["status"] == 1
    assert w3.eth.get_balance(recipient) == 1 * ETH
    assert w3.eth.get_balance(app.application) == 1 * ETH
    assert was_output_executed(w3, app.application, 1)
    with pytest.raises(OutputNotReexecutable) as err:
        execute_output(w3, app.application, c.provable(1), BOB.private_key)
    assert err.value.error == "OutputNotReexecutable"
    assert w3.eth.get_balance(recipient) == 1 * ETH
    # A later voucher of the same tree still executes.
    execute_output(w3, app.application, c.provable(3), BOB.private_key)
    assert w3.eth.get_balance(recipient) == 13 * ETH // 10


def test_erc20_voucher_moves_exactly_its_tokens(w3: Web3, app: Deployment, funded_tree: dict[str, Any]) -> None:
    c, token = funded_tree["claimed"], funded_tree["token"]
    assert token_balance(w3, token, app.application) == 1000
    execute_output(w3, app.application, c.provable(2), BOB.private_key)
    assert token_balance(w3, token, funded_tree["token_recipient"]) == 500
    assert token_balance(w3, token, app.application) == 500
    with pytest.raises(OutputNotReexecutable):
        execute_output(w3, app.application, c.provable(2), BOB.private_key)


def test_notice_validates_but_cannot_be_executed(w3: Web3, app: Deployment, funded_tree: dict[str, Any]) -> None:
    c = funded_tree["claimed"]
    validate_output(w3, app.application, c.provable(0))
    validate_output(w3, app.application, c.provable(1))  # vouchers validate too
    with pytest.raises(OutputNotExecutable):
        execute_output(w3, app.application, c.provable(0), BOB.private_key)


def test_wrong_proofs_are_refused(w3: Web3, app: Deployment, funded_tree: dict[str, Any]) -> None:
    c, recipient = funded_tree["claimed"], funded_tree["recipient"]
    good = c.provable(1)
    for level in (0, 5, 62):
        sibs = list(good.siblings)
        sibs[level] = bytes(31) + b"\x01"
        with pytest.raises(InvalidOutputsMerkleRoot):
            execute_output(w3, app.application, ProvableOutput(1, good.raw, sibs), BOB.private_key)
    with pytest.raises(InvalidOutputsMerkleRoot):  # right siblings, wrong index
        validate_output(w3, app.application, ProvableOutput(3, good.raw, good.siblings))
    with pytest.raises(InvalidOutputsMerkleRoot):  # altered output
        validate_output(w3, app.application, ProvableOutput(1, encode_voucher(recipient, 2 * ETH, b""), good.siblings))
    with pytest.raises(InvalidOutputHashesSiblingsArrayLength):
        execute_output(w3, app.application, ProvableOutput(1, good.raw, good.siblings[:-1]), BOB.private_key)
    assert w3.eth.get_balance(recipient) == 0
    assert not was_output_executed(w3, app.application, 1)


def test_unclaimed_root_and_insufficient_funds(w3: Web3, app: Deployment, fresh_account: Any) -> None:
    recipient = fresh_account(0)
    outputs = [encode_voucher(recipient.address, 5 * ETH, b""), encode_notice(b"x")]
    tree = OutputsTree()
    for o in outputs:
        tree.append_output(o)
    # Not claimed yet: no accepted root matches.
    with pytest.raises(InvalidOutputsMerkleRoot):
        validate_output(w3, app.application, ProvableOutput(0, outputs[0], tree.proof(0)))
    submit_claim(w3, app, tree.root())
    deposit_ether(w3, app, ALICE.private_key, 1 * ETH)
    with pytest.raises(InsufficientFunds) as err:
        execute_output(w3, app.application, ProvableOutput(0, outputs[0], tree.proof(0)), BOB.private_key)
    assert err.value.error_args == (5 * ETH, 1 * ETH)
    deposit_ether(w3, app, ALICE.private_key, 4 * ETH)
    execute_output(w3, app.application, ProvableOutput(0, outputs[0], tree.proof(0)), BOB.private_key)
    assert w3.eth.get_balance(recipient.address) == 5 * ETH


def test_earlier_claim_stays_valid_after_tree_grows(w3: Web3, app: Deployment) -> None:
    """A proof against any accepted root works, so a proof made for an older (smaller) tree
    executes after later epochs were claimed."""
    tree = OutputsTree()
    tree.append_output(encode_notice(b"epoch 0"))
    submit_claim(w3, app, tree.root())
    old_size = len(tree)
    for i in range(5):
        tree.append_output(encode_notice(b"epoch 1 #%d" % i))
    submit_claim(w3, app, tree.root())
    validate_output(w3, app.application, ProvableOutput(0, encode_notice(b"epoch 0"), tree.proof(0, size=old_size)))
    validate_output(w3, app.application, ProvableOutput(0, encode_notice(b"epoch 0"), tree.proof(0)))
    validate_output(w3, app.application, ProvableOutput(4, encode_notice(b"epoch 1 #3"), tree.proof(4)))


def test_from_rpc_shapes() -> None:
    sib = "0x" + "11" * 32
    obj = {"index": "0x2", "raw_data": "0x" + encode_notice(b"a").hex(), "output_hashes_siblings": [sib] * 63}
    out = ProvableOutput.from_rpc({"data": obj})
    assert out.index == 2 and out.raw == encode_notice(b"a") and out.siblings[0] == bytes.fromhex("11" * 32)
    with pytest.raises(ProofNotReady):
        ProvableOutput.from_rpc(dict(obj, output_hashes_siblings=None))


# ---------------------------------------------------------------- CLI against a stand-in node RPC

class _FakeNodeRpc(BaseHTTPRequestHandler):
    outputs: dict[int, dict[str, Any]] = {}

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        idx = int(body["params"]["output_index"], 16)
        if body["method"] == "cartesi_getOutput" and idx in self.outputs:
            answer = {"jsonrpc": "2.0", "id": body["id"], "result": {"data": self.outputs[idx]}}
        else:
            answer = {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32003, "message": "Output not found"}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _run_cli(args: list[str], key: str | None) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "TRIBUTARY_PRIVATE_KEY"}
    if key:
        env["TRIBUTARY_PRIVATE_KEY"] = key
    proc = subprocess.run([sys.executable, "-m", "rollup", "execute", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_execute_cli(w3: Web3, app: Deployment, anvil_chain: Any, fresh_account: Any) -> None:
    recipient = fresh_account(0)
    outputs = [encode_notice(b"hello"), encode_voucher(recipient.address, 7, b"")]
    tree = OutputsTree()
    for o in outputs:
        tree.append_output(o)
    submit_claim(w3, app, tree.root())
    deposit_ether(w3, app, ALICE.private_key, 100)
    _FakeNodeRpc.outputs = {
        i: {"index": hex(i), "raw_data": "0x" + o.hex(),
            "output_hashes_siblings": ["0x" + s.hex() for s in tree.proof(i)]}
        for i, o in enumerate(outputs)
    }
    server = HTTPServer(("127.0.0.1", 0), _FakeNodeRpc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = ["--rpc-url", anvil_chain.url, "--node-url", f"http://127.0.0.1:{server.server_port}",
                "--app", app.application]
        rc, out = _run_cli(base + ["--index", "0", "--validate-only"], None)
        assert rc == 0 and out["valid"] and out["type"] == "Notice"
        rc, out = _run_cli(base + ["--index", "1"], None)  # no key in the environment
        assert rc == 2 and "TRIBUTARY_PRIVATE_KEY" in out["detail"]
        rc, out = _run_cli(base + ["--index", "1"], BOB.private_key)
        assert rc == 0 and out["executed"] and out["was_output_executed"]
        assert w3.eth.get_balance(recipient.address) == 7
        rc, out = _run_cli(base + ["--index", "1"], BOB.private_key)
        assert rc == 1 and out["error"] == "OutputNotReexecutable"
        rc, out = _run_cli(base + ["--index", "0"], BOB.private_key)
        assert rc == 1 and out["error"] == "OutputNotExecutable"
        rc, out = _run_cli(base + ["--index", "9"], BOB.private_key)
        assert rc == 2 and out["error"] == "NodeRpcError"
    finally:
        server.shutdown()
        server.server_close()


def test_application_error_subclasses_are_output_rejected() -> None:
    for cls in (InsufficientFunds, InvalidOutputHashesSiblingsArrayLength, InvalidOutputsMerkleRoot,
                OutputNotExecutable, OutputNotReexecutable):
        assert issubclass(cls, OutputRejected)
