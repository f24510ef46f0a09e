"""Issue 15 end to end on a devnet: anvil, the Cartesi v2.2.0 contracts, our BatchPayout library
and our node running `python -m dapp`.

Four trainers who never hold ether join, commit and reveal by EIP-712 signatures that a relayer
(`client.relay.Relay`, over HTTP) and a third party post as `batch` inputs; a forged message and
a replayed one ride along and are refused alone. After two rounds anyone sends `payout(ETH)`:
one DelegateCallVoucher pays the owner's refund and every trainer. One trainer's address is a
contract that reverts: it gets nothing, its amount comes back into the Application as a portal
deposit, the backend credits it again with a notice, and a second payout (once the address
accepts ether) pays it. Every account's on-chain balance change equals what the notices say,
to the wei, the Application ends empty, and `rollup verify` agrees with every claim.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from client.relay import Relay, sign
from client.storage import EmbeddedStore
from dapp.market import batch as b
from dapp.market import payout
from dapp.market import protocol as p
from dapp.ml.model_format import decode_model, encode_model
from rollup.anvil import DEV_ACCOUNTS
from rollup.content import block_getter
from rollup.gio import BlockStoreResolver
from rollup.node import Node
from rollup.verify import verify
from rollup.vouchers import ProvableOutput, execute_output
from tests import chain_fixtures
from tests.market_harness import WINDOWS, digits_job
from tests.node_fixtures import chain, result, rpc, wait_claims  # noqa: F401
from tests.test_market_e2e import global_model, notices, settle, warp

pytestmark = [pytest.mark.chain, pytest.mark.slow]

OWNER_ACCT = DEV_ACCOUNTS[1]
RELAYER = DEV_ACCOUNTS[4]
EXECUTOR = DEV_ACCOUNTS[2]
BACKEND = [sys.executable, "-m", "dapp"]
KEYS = [keccak(f"issue 15 trainer {i}".encode()) for i in range(4)]
ADDRS = [keys.PrivateKey(k).public_key.to_checksum_address().lower() for k in KEYS]
REVERTER = "0x60006000fd"


class _RelayChain:
    """What Relay needs of client.chain.Chain, on the test's web3 (the relayer pays the gas)."""

    def __init__(self, chain, dep) -> None:
        self.w3, self.dep, self.app = chain.w3, dep, dep.application

    def add_input(self, signer, payload: bytes):
        rcpt = chain_fixtures.add_input(self.w3, self.dep, signer.private_key, payload)
        return SimpleNamespace(index=-1, gas_used=int(rcpt["gasUsed"]))


def _outputs(node, kind: str) -> list[dict]:
    out = result(rpc(node.api_url, "cartesi_listOutputs", {"limit": 1000}))["data"]
    return [o for o in out if o["decoded_data"]["type"] == kind]


def _batch_reports(node) -> list[dict]:
    reps = result(rpc(node.api_url, "cartesi_listReports", {"limit": 1000}))["data"]
    out = []
    for r in reps:
        raw = bytes.fromhex(r["raw_data"][2:])
        if raw.startswith(b'{') and b'"type":"batch"' in raw:
            out.append(json.loads(raw))
    return out


def _execute_all(chain, dep, outs: list[dict]) -> None:
    for o in outs:
        execute_output(chain.w3, to_checksum_address(dep.application), ProvableOutput.from_rpc(o),
                       EXECUTOR.private_key)


def test_signed_batches_and_batched_payout_on_devnet(chain, tmp_path):
    dep = chain.deploy(epoch_length=4)
    chain_id = int(chain.w3.eth.chain_id)
    app = dep.application.lower()
    store = EmbeddedStore(tmp_path / "content")
    job = digits_job(open_job=False, rounds=2)
    for cid, data in job.sim.content.objects.items():
        assert store.put(data) == cid
    node = Node(dep.to_json(), BACKEND, tmp_path / "node", poll_interval=0.1,
                resolver=BlockStoreResolver(block_getter(store))).start()
    relay = Relay(_RelayChain(chain, dep), RELAYER, chain_id, every=3600)
    httpd = relay.server()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    relay_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        budget = 2 * 10**17
        chain.deposit_ether(dep, budget, p.CreateJob(job.spec_cid).encode(),
                            key=OWNER_ACCT.private_key)
        settle(node, chain, dep)
        job_id = notices(node)[0]["job"]

        # joins through the relayer's HTTP API; a garbage message is refused at the door
        for k in KEYS:
            req = urllib.request.Request(relay_url + "/submit",
                                         data=sign(p.Join(job_id), k, chain_id, app))
            assert json.loads(urllib.request.urlopen(req).read())["queued"] >= 1
        bad = urllib.request.Request(relay_url + "/submit", data=b"\x00\x02\x01\x02")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(bad)
        relay.flush()
        warp(chain, WINDOWS["start_delay"])
        settle(node, chain, dep)
        assert sorted(json.loads(node.inspect(f"job/{job_id}".encode()).reports[0])["trainers"]) \
            == sorted(ADDRS)

        g = decode_model(store.get(job.spec["initial_model"]), job.arch, max_bytes=1 << 20)
        parts = np.array_split(np.random.default_rng(5).permutation(1400), 4)
        promised: dict[str, int] = {}
        for r in range(2):
            subs = []
            for i in range(4):
                model = job.train(g, parts[i], seed=10 * r + i, steps=20)
                subs.append((store.put(encode_model(model, job.arch)),
                             store.put(job.data_card(parts[i], salt=i)), bytes([r, i]) * 16))
            commits = [sign(p.Commit(job_id, r, p.commitment(ADDRS[i], job_id, r, *subs[i])),
                            KEYS[i], chain_id, app) for i in range(4)]
            forged = bytearray(commits[2])
            forged[-1] ^= 0xFF                   # commitment altered after signing
            # trainer 0's commit twice (a replay) and a forgery: each refused alone
            chain.add_input(dep, b.batch_input(commits + [commits[0], bytes(forged)]),
                            key=EXECUTOR.private_key)
            warp(chain, WINDOWS["commit"])
            reveals = [sign(p.Reveal(job_id, r, *subs[i]), KEYS[i], chain_id, app)
                       for i in range(4)]
            chain.add_input(dep, b.batch_input(reveals), key=EXECUTOR.private_key)
            chain.add_input(dep, p.RevealValidation(job_id, r, *job.shards[r]).encode(),
                            key=OWNER_ACCT.private_key)
            warp(chain, WINDOWS["reveal"])
            chain.add_input(dep, p.CloseRound(job_id, r).encode(), key=EXECUTOR.private_key)
            settle(node, chain, dep)
            rep = [x for x in _batch_reports(node) if x["messages"] == 6][-1]
            assert [t["signer"] for t in rep["taken"]] == ADDRS
            assert [x["index"] for x in rep["refused"]] == [4, 5]
            assert "already committed" in rep["refused"][0]["reason"]
            assert rep["refused"][1]["signer"] not in ADDRS
            closed = [n for n in notices(node) if n["type"] == "round_closed"]
            assert len(closed) == r + 1, closed
            assert {t["address"] for t in closed[-1]["trainers"]} == set(ADDRS)
            assert sum(t["verdict"] == "accepted" for t in closed[-1]["trainers"]) >= 3
            for t in closed[-1]["trainers"]:
                promised[t["address"]] = promised.get(t["address"], 0) + int(t["reward"])
            g = global_model(node, job, closed[-1])
        promised[OWNER_ACCT.address.lower()] = int(closed[-1]["job_finished"]["refund"])
        for a, v in closed[-1]["job_finished"]["leftover"].items():
            promised[a] += int(v)
        assert sum(promised.values()) == budget

        # one payout for everyone; the best-paid trainer's address reverts on receipt
        victim = max(ADDRS, key=lambda a: (promised[a], a))
        chain.anvil.rpc("anvil_setCode", [to_checksum_address(victim), REVERTER])
        chain.add_input(dep, p.Payout(p.ETH).encode(), key=EXECUTOR.private_key)
        settle(node, chain, dep)
        [paid] = [n for n in notices(node) if n["type"] == "payout"]
        assert {e["account"]: int(e["amount"]) for e in paid["payees"]} == \
            {a: v for a, v in promised.items() if v > 0}
        wait_claims(node, chain, dep)
        watched = list(promised)
        before = {a: chain.w3.eth.get_balance(to_checksum_address(a)) for a in watched}
        [dcv] = _outputs(node, "DelegateCallVoucher")
        assert dcv["decoded_data"]["destination"].lower() == payout.BATCH_PAYOUT
        _execute_all(chain, dep, [dcv])
        gained = {a: chain.w3.eth.get_balance(to_checksum_address(a)) - before[a]
                  for a in watched}
        assert gained == {a: (0 if a == victim else v) for a, v in promised.items()}

        # the amount came back as an input: the backend credits the victim again, with a notice
        settle(node, chain, dep)
        [back] = [n for n in notices(node) if n["type"] == "payout_returned"]
        assert back == {"type": "payout_returned", "account": victim, "token": p.ETH,
                        "amount": str(promised[victim])}
        bal = json.loads(node.inspect(f"balance/{victim}".encode()).reports[0])
        assert bal["balances"] == {p.ETH: str(promised[victim])}

        # once the address accepts ether, a second payout pays it
        chain.anvil.rpc("anvil_setCode", [to_checksum_address(victim), "0x"])
        chain.add_input(dep, p.Payout(p.ETH).encode(), key=EXECUTOR.private_key)
        settle(node, chain, dep)
        wait_claims(node, chain, dep)
        second = [o for o in _outputs(node, "DelegateCallVoucher") if o["index"] != dcv["index"]]
        _execute_all(chain, dep, second)
        final = {a: chain.w3.eth.get_balance(to_checksum_address(a)) - before[a]
                 for a in watched}
        # on-chain changes == payout notices - returned notices, to the wei, for everyone
        from_notices: dict[str, int] = {}
        for n in notices(node):
            if n["type"] == "payout":
                for e in n["payees"]:
                    from_notices[e["account"]] = from_notices.get(e["account"], 0) + int(e["amount"])
            elif n["type"] == "payout_returned":
                from_notices[n["account"]] -= int(n["amount"])
        assert set(from_notices) <= set(watched)
        assert final == {a: from_notices.get(a, 0) for a in watched} == promised
        assert chain.w3.eth.get_balance(to_checksum_address(dep.application)) == 0
    finally:
        httpd.shutdown()
        node.stop()

    report = verify(chain.url, dep.application, BACKEND, timeout=300,
                    resolver=BlockStoreResolver(block_getter(store)))
    assert report.ok and report.epochs and not report.mismatches(), \
        [e.line() for e in report.epochs]
