"""A bounded soak: thousands of cheap hostile inputs and queries against a real node.

Anvil with the real Cartesi contracts, our node running `python -m dapp` with the embedded
content store behind GIO. Several senders fire random hostile inputs (garbage bytes, valid
selectors with garbage arguments, oversize strings in every call kind, deposits whose job cannot
open, specs too expensive to close, models with megabyte tensor names, uploads) while a thread
sends hostile inspects (2 MB of 0x7f, non-ASCII digits, deep paths). Afterwards:

* the backend was never restarted and the node reports no error;
* refused inputs left the market digest unchanged (a phase of account inputs that are all
  refused leaves `state.digest` byte-identical);
* money is conserved and every deposit is recoverable: each depositor's balance equals what it
  deposited, and a withdrawal turns it into a voucher.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import threading
import time
import urllib.request

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from client.storage import EmbeddedStore
from dapp.market import protocol as p
from rollup.anvil import DEV_ACCOUNTS
from rollup.chain import contract
from rollup.content import block_getter
from rollup.gio import BlockStoreResolver
from rollup.node import Node
from tests.market_harness import digits_job
from tests.node_fixtures import Chain, chain  # noqa: F401

pytestmark = [pytest.mark.chain]

BACKEND = [sys.executable, "-m", "dapp"]
INPUTS_PER_SENDER = 400
SENDERS = DEV_ACCOUNTS[4:9]          # five senders: 2,000 account inputs
DEPOSITOR = DEV_ACCOUNTS[3]


def _huge_name_model(size: int) -> bytes:
    name = "w" * size
    header = json.dumps({name: {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00" * 4


def _garbage(rng: random.Random) -> bytes:
    """One hostile account input."""
    n = rng.randrange(1 << 64)
    big = rng.choice(["\x7f", "\u0661", "'", "b", "0"]) * rng.choice([0, 10, 1000, 12_000])
    salt = rng.randbytes(32)
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 2000))
    if kind == 1:
        return rng.choice([p.Join(n), p.CloseRound(n, n), p.CancelJob(n)]).encode()
    if kind == 2:
        return p.Commit(n, n, salt).encode()
    if kind == 3:
        return p.Reveal(n % 5, 0, big, big, salt).encode()
    if kind == 4:
        return p.RevealValidation(n % 5, 0, big, salt).encode()
    if kind == 5:
        return p.Withdraw("0x" + "00" * 20, n or 1).encode()
    if kind == 6:
        sel = rng.choice([b"\x04\x98\x78\xf3", b"\xe2\x54\x3d\x7c", b"\xe9\x0e\x25\x31",
                          b"\xf3\xfe\xf3\xa3", b"\xea\x8c\x33\xaf"])
        return sel + rng.randbytes(rng.randrange(0, 400))
    if kind == 7:
        return b"\xe9\x0e\x25\x31" + (b"\xff" * 32) * rng.randrange(1, 12)   # absurd offsets
    if kind == 8:
        return p.Join(rng.randrange(1, 4)).encode()
    return rng.randbytes(32) * rng.randrange(1, 300)


def _signed_inputs(w3, dep, key: str, payloads: list[bytes]) -> list[bytes]:
    box = contract(w3, "InputBox", dep.contracts["InputBox"])
    acct = Account.from_key(key)
    nonce = w3.eth.get_transaction_count(acct.address)
    chain_id = w3.eth.chain_id
    out = []
    for i, payload in enumerate(payloads):
        tx = box.functions.addInput(dep.application, payload).build_transaction({
            "from": acct.address, "nonce": nonce + i, "gas": 6_000_000, "chainId": chain_id,
            "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1})
        out.append(bytes(acct.sign_transaction(tx).raw_transaction))
    return out


def _inspect(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _state(node: Node) -> dict:
    return _ask(node, "state")


def _token(node: Node) -> dict:
    return _ask(node, f"token/{p.ETH}")


def _ask(node: Node, path: str):
    res = node.inspect(path.encode())
    return json.loads(bytes.fromhex(res.to_json()["reports"][0]["payload"][2:]))


def test_thousands_of_hostile_inputs_and_queries_never_restart_the_backend(chain, tmp_path):
    dep = chain.deploy(epoch_length=1000)
    store = EmbeddedStore(tmp_path / "content")
    job = digits_job(open_job=False, rounds=1)
    for data in job.sim.content.objects.values():
        store.put(data)
    # Specs that must not open, with the content to fetch stored so the backend gets that far.
    costly = dict(job.spec, max_trainers=12,
                  contribution={"method": "shapley", "exact_max_players": 12, "permutations": 64},
                  limits={"max_model_bytes": 1 << 20, "max_shard_samples": 100_000})
    huge = dict(job.spec, initial_model=store.put(_huge_name_model(1_000_000)))
    hostile_specs = [store.put(json.dumps(s).encode()) for s in (costly, huge)]
    node = Node(dep.to_json(), BACKEND, tmp_path / "node", poll_interval=0.05,
                resolver=BlockStoreResolver(block_getter(store))).start()
    inspect_url = f"{node.api_url}/inspect/{node.app_name}"
    stop = threading.Event()
    statuses: list[int] = []

    def hostile_queries() -> None:
        rng = random.Random(5)
        bodies = [b"\x7f" * ((2 << 20) - 16),
                  "job/\u0661".encode(), b"job/" + b"9" * 5000, b"/" * 100_000,
                  b"balance/" + b"a" * 500_000, b"content/" + b"b" * 100_000, b"jobs/page/99"]
        while not stop.is_set():
            statuses.append(_inspect(inspect_url, rng.choice(bodies)))

    try:
        # Phase 1: deposits that cannot open a job, each credited to its depositor.
        deposited = 0
        for i, data in enumerate([b"", p.CreateJob(hostile_specs[0]).encode(),
                                  p.CreateJob(hostile_specs[1]).encode(),
                                  p.CreateJob("b" + "a" * 58).encode(), b"\xaa\xfa\x94\x4e",
                                  p.CreateJob(job.spec_cid).encode()[:-1]]):
            value = 10**15 * (i + 1)
            chain.deposit_ether(dep, value, data, key=DEPOSITOR.private_key)
            deposited += value
        box = contract(chain.w3, "InputBox", dep.contracts["InputBox"])
        app = to_checksum_address(dep.application)
        node.wait_processed(int(box.functions.getNumberOfInputs(app).call()), 120)
        before = _state(node)
        assert before["jobs"] == 0

        # Phase 2: thousands of hostile account inputs (all refused) and queries, concurrently.
        queries = threading.Thread(target=hostile_queries, daemon=True)
        queries.start()
        rng = random.Random(9)
        raws = []
        for acct in SENDERS:
            raws += _signed_inputs(chain.w3, dep, acct.private_key,
                                   [_garbage(rng) for _ in range(INPUTS_PER_SENDER)])
        started = time.monotonic()
        hashes = [chain.w3.eth.send_raw_transaction(raw) for raw in raws]
        for h in hashes[INPUTS_PER_SENDER - 1::INPUTS_PER_SENDER]:   # each sender's last
            chain.w3.eth.wait_for_transaction_receipt(h, timeout=300)
        total = int(box.functions.getNumberOfInputs(app).call())
        node.wait_processed(total, 300)
        stop.set()
        queries.join(60)
        elapsed = time.monotonic() - started

        assert node.error is None
        assert node.backend_restarts == 0, f"{node.backend_restarts} backend restarts"
        after = _state(node)
        assert after["digest"] == before["digest"], "a refused input changed the market"
        assert after["tokens"] == 1
        assert _token(node) == {"token": p.ETH, "deposited": str(deposited), "withdrawn": "0",
                                "balances": str(deposited), "escrow": "0"}
        assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
        assert total >= len(SENDERS) * INPUTS_PER_SENDER
        print(f"{total} inputs and {len(statuses)} hostile queries in {elapsed:.1f} s, "
              f"0 restarts")

        # Every deposit is recoverable.
        bal = _ask(node, f"balance/{DEPOSITOR.address.lower()}")
        assert bal["balances"] == {p.ETH: str(deposited)}
        chain.add_input(dep, p.Withdraw(p.ETH, deposited).encode(), key=DEPOSITOR.private_key)
        node.wait_processed(total + 1, 60)
        assert _token(node)["withdrawn"] == str(deposited)
        assert node.backend_restarts == 0
    finally:
        stop.set()
        node.stop()
