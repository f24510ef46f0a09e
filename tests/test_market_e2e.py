"""The market end to end on a real chain: anvil, the Cartesi v2.2.0 contracts, our node running
`python -m dapp` with the embedded content store behind GIO.

An owner funds a digits job through the EtherPortal; four honest trainers and one attacker
(label flipping) run three rounds with commit and reveal; the attacker is flagged and unpaid;
everyone withdraws; the vouchers, executed on the Application with proofs from the node, move
exactly the wei the notices announced; `rollup verify` agrees with every claim.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from eth_utils import to_checksum_address

from client.storage import EmbeddedStore
from dapp.hashing import keccak
from dapp.market import protocol as p
from dapp.ml.model_format import Model, decode_model, encode_model
from rollup.anvil import DEV_ACCOUNTS
from rollup.chain import contract
from rollup.content import block_getter
from rollup.gio import BlockStoreResolver
from rollup.node import Node
from rollup.verify import verify
from rollup.vouchers import ProvableOutput, execute_output
from tests.market_harness import WINDOWS, digits_job
from tests.node_fixtures import Chain, chain, result, rpc, wait_claims  # noqa: F401

pytestmark = [pytest.mark.chain, pytest.mark.slow]

OWNER_ACCT = DEV_ACCOUNTS[1]
TRAINER_ACCTS = DEV_ACCOUNTS[3:8]       # the last one attacks
EXECUTOR = DEV_ACCOUNTS[2]             # executes vouchers, so trainers' balances move by wei paid
BACKEND = [sys.executable, "-m", "dapp"]


def warp(chain: Chain, seconds: int) -> None:
    chain.anvil.rpc("evm_increaseTime", [seconds])
    chain.mine(1)


def settle(node: Node, chain: Chain, dep) -> None:
    """Wait until the node has processed every input the InputBox holds for the app (reading
    the count from the chain, so an input the node has not polled yet is waited for too)."""
    box = contract(chain.w3, "InputBox", dep.contracts["InputBox"])
    count = box.functions.getNumberOfInputs(to_checksum_address(dep.application)).call()
    node.wait_processed(int(count), 120)


def notices(node: Node) -> list[dict]:
    out = result(rpc(node.api_url, "cartesi_listOutputs", {"output_type": "0xc258d6e5", "limit": 1000}))
    return [json.loads(bytes.fromhex(o["decoded_data"]["payload"][2:])) for o in out["data"]]


def global_model(node: Node, job, notice: dict) -> Model:
    """Reassemble the round's model from the close input's reports; check the notice's hash."""
    reps = result(rpc(node.api_url, "cartesi_listReports", {"limit": 1000}))["data"]
    chunks = [p.ModelChunk.decode(bytes.fromhex(r["raw_data"][2:])) for r in reps
              if r["raw_data"].startswith("0x" + p.MODEL_CHUNK.hex())]
    data = p.ModelChunk.join(chunks, bytes.fromhex(notice["model_hash"][2:]))
    assert "0x" + keccak(data).hex() == notice["model_hash"]
    return decode_model(data, job.arch, max_bytes=1 << 20)


def test_market_end_to_end_on_devnet(chain, tmp_path):
    dep = chain.deploy(epoch_length=4)
    store = EmbeddedStore(tmp_path / "content")
    job = digits_job(open_job=False, rounds=3,
                     aggregation={"rule": "multi_krum", "f": 1, "m": 4, "then": "fedavg"})
    for cid, data in job.sim.content.objects.items():     # spec, initial model, shards
        assert store.put(data) == cid
    node = Node(dep.to_json(), BACKEND, tmp_path / "node", poll_interval=0.1,
                resolver=BlockStoreResolver(block_getter(store))).start()
    try:
        budget = 3 * 10**17
        chain.deposit_ether(dep, budget, p.CreateJob(job.spec_cid).encode(),
                            key=OWNER_ACCT.private_key)
        settle(node, chain, dep)
        [opened] = notices(node)
        assert opened["type"] == "job_opened", opened
        job_id = opened["job"]
        addrs = [a.address.lower() for a in TRAINER_ACCTS]
        for a in TRAINER_ACCTS:
            chain.add_input(dep, p.Join(job_id).encode(), key=a.private_key)
        warp(chain, WINDOWS["start_delay"])
        g = decode_model(store.get(job.spec["initial_model"]), job.arch, max_bytes=1 << 20)
        rng = np.random.default_rng(3)
        parts = np.array_split(rng.permutation(1400), 5)
        promised: dict[str, int] = {}
        for r in range(3):
            subs = {}
            for i, a in enumerate(TRAINER_ACCTS):
                model = job.train(g, parts[i], flip=(i == 4), seed=10 * r + i, steps=25)
                model_cid = store.put(encode_model(model, job.arch))
                data_cid = store.put(job.data_card(parts[i], salt=i))
                subs[a.address] = (model_cid, data_cid, bytes([r, i]) * 16)
                c = p.commitment(a.address.lower(), job_id, r, *subs[a.address])
                chain.add_input(dep, p.Commit(job_id, r, c).encode(), key=a.private_key)
            warp(chain, WINDOWS["commit"])
            for a in TRAINER_ACCTS:
                chain.add_input(dep, p.Reveal(job_id, r, *subs[a.address]).encode(),
                                key=a.private_key)
            cid, salt = job.shards[r]
            chain.add_input(dep, p.RevealValidation(job_id, r, cid, salt).encode(),
                            key=OWNER_ACCT.private_key)
            warp(chain, WINDOWS["reveal"])
            chain.add_input(dep, p.CloseRound(job_id, r).encode(), key=EXECUTOR.private_key)
            settle(node, chain, dep)
            closed = [n for n in notices(node) if n["type"] == "round_closed"]
            assert len(closed) == r + 1, closed
            n = closed[-1]
            verdicts = {e["address"]: e for e in n["trainers"]}
            assert verdicts[addrs[4]]["verdict"] == "rejected"
            assert verdicts[addrs[4]]["reward"] == "0"
            assert all(verdicts[t]["verdict"] == "accepted" for t in addrs[:4])
            for t in addrs:
                promised[t] = promised.get(t, 0) + int(verdicts[t]["reward"])
            g = global_model(node, job, n)
        assert sum(promised[t] > 0 for t in addrs[:4]) >= 3
        refund = int(n["job_finished"]["refund"])
        promised[OWNER_ACCT.address.lower()] = refund
        assert sum(promised.values()) == budget

        # Everyone with a balance withdraws; the vouchers are executed by a third party.
        payees = [a for a in [*TRAINER_ACCTS, OWNER_ACCT] if promised[a.address.lower()] > 0]
        for a in payees:
            chain.add_input(dep, p.Withdraw(p.ETH, promised[a.address.lower()]).encode(),
                            key=a.private_key)
        settle(node, chain, dep)
        wait_claims(node, chain, dep)
        before = {a.address: chain.w3.eth.get_balance(a.address) for a in payees}
        vouchers = result(rpc(node.api_url, "cartesi_listOutputs",
                              {"output_type": "0x237a816f", "limit": 100}))["data"]
        assert len(vouchers) == len(payees)
        for v in vouchers:
            out = ProvableOutput.from_rpc(v)
            execute_output(chain.w3, to_checksum_address(dep.application), out,
                           EXECUTOR.private_key)
        for a in payees:
            gained = chain.w3.eth.get_balance(a.address) - before[a.address]
            assert gained == promised[a.address.lower()], a.address
        assert chain.w3.eth.get_balance(to_checksum_address(dep.application)) == 0
    finally:
        node.stop()

    report = verify(chain.url, dep.application, BACKEND, timeout=300,
                    resolver=BlockStoreResolver(block_getter(store)))
    assert report.ok and report.epochs and not report.mismatches(), [e.line() for e in report.epochs]
    assert all(e.verdict in ("OK", "OPEN") for e in report.epochs)


def run_small_job(chain, tmp_path, source: str) -> list[dict]:
    """Two rounds, three trainers (one attacker), through the node. With source "inputs" the
    node serves no GIO (every request answers an error) and every object is posted as
    putContent inputs."""
    dep = chain.deploy(epoch_length=4)
    store = EmbeddedStore(tmp_path / f"content-{source}")
    job = digits_job(open_job=False, rounds=2)
    job.spec["content_source"] = source
    job.spec_cid = job.sim.content.put(json.dumps(job.spec).encode())
    for cid, data in job.sim.content.objects.items():
        assert store.put(data) == cid
    resolver = BlockStoreResolver(block_getter(store)) if source == "gio" else None
    node = Node(dep.to_json(), BACKEND, tmp_path / f"node-{source}", poll_interval=0.1,
                resolver=resolver).start()

    def post(cid: str, key: str) -> None:
        if source != "inputs":
            return
        for call in p.PutContent.chunks(cid, store.get(cid)):
            chain.add_input(dep, call.encode(), key=key)

    try:
        post(job.spec_cid, OWNER_ACCT.private_key)
        post(job.spec["initial_model"], OWNER_ACCT.private_key)
        chain.deposit_ether(dep, 10**17, p.CreateJob(job.spec_cid).encode(),
                            key=OWNER_ACCT.private_key)
        settle(node, chain, dep)
        job_id = notices(node)[0]["job"]
        accts = TRAINER_ACCTS[:3]
        for a in accts:
            chain.add_input(dep, p.Join(job_id).encode(), key=a.private_key)
        warp(chain, WINDOWS["start_delay"])
        g = decode_model(store.get(job.spec["initial_model"]), job.arch, max_bytes=1 << 20)
        for r in range(2):
            subs = {}
            for i, a in enumerate(accts):
                idx = np.arange(i * 400, i * 400 + 400)
                model = job.train(g, idx, flip=(i == 2), seed=10 * r + i, steps=20)
                subs[a.address] = (store.put(encode_model(model, job.arch)),
                                   store.put(job.data_card(idx, salt=i)), bytes([r, i]) * 16)
                c = p.commitment(a.address.lower(), job_id, r, *subs[a.address])
                chain.add_input(dep, p.Commit(job_id, r, c).encode(), key=a.private_key)
            warp(chain, WINDOWS["commit"])
            for a in accts:
                post(subs[a.address][0], a.private_key)
                post(subs[a.address][1], a.private_key)
                chain.add_input(dep, p.Reveal(job_id, r, *subs[a.address]).encode(),
                                key=a.private_key)
            post(job.shards[r][0], OWNER_ACCT.private_key)
            chain.add_input(dep, p.RevealValidation(job_id, r, *job.shards[r]).encode(),
                            key=OWNER_ACCT.private_key)
            warp(chain, WINDOWS["reveal"])
            chain.add_input(dep, p.CloseRound(job_id, r).encode(), key=EXECUTOR.private_key)
            settle(node, chain, dep)
            closed = [n for n in notices(node) if n["type"] == "round_closed"]
            assert len(closed) == r + 1, closed
            g = global_model(node, job, closed[-1])
        state = json.loads(node.inspect(b"state").reports[0])
        assert state["inbox_bytes"] == 0      # posted content is released once used
        return closed
    finally:
        node.stop()


def test_content_through_inputs_with_gio_off_gives_the_same_notices(chain, tmp_path):
    over_gio = run_small_job(chain, tmp_path, "gio")
    over_inputs = run_small_job(chain, tmp_path, "inputs")
    for n in over_gio + over_inputs:      # block times differ (uploads are extra inputs)
        n.get("next_round", {}).pop("start", None)
    assert over_inputs == over_gio
    assert over_gio[-1]["job_finished"]
