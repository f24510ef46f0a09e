"""Hostile content (issue 9 items 3, 7, 8, 10; issue 13 item 4): each attack as it was
reproduced, then the families around it.

- a UnixFS DAG of tiny leaves (4 distinct blocks describing 1 MB of 1-byte leaves) must cost a
  few GIO requests, not a million: block budget, de-duplication, depth bound;
- a 0-wei createJob naming someone's content must not evict it from the inputs inbox;
- a wrong chunk posted by someone else must not complete (and get discarded) a victim's upload;
- one account must not be able to fill the inbox (per-uploader quotas);
- a GIO answer meaning "the node could not reach its store" must never become a refused input.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dapp.content import inbox as inbox_mod
from dapp.content.cid import DAG_PB, RAW, Cid
from dapp.content.errors import (ContentMalformed, ContentMissing, ContentOverBudget,
                                 ContentTooLarge, ContentUnavailable)
from dapp.content.inbox import UPLOAD_CHUNK, ContentInbox
from dapp.content.source import (GIO_DOMAIN_BLOCK, GIO_ERROR, GIO_FOUND, GIO_NOT_FOUND,
                                 GIO_UNAVAILABLE, GIO_UNSUPPORTED_DOMAIN, GioSource)
from dapp.content.unixfs import (CHUNK_SIZE, MAX_DEPTH, MAX_NODE_BYTES, MIN_LEAF_BYTES,
                                 _encode_node, chunk, inner_budget, leaf_budget)
from dapp.market import protocol as p
from dapp.market.app import Market
from dapp.rollup_api import Metadata
from tests.market_harness import APP, OWNER, TRAINERS, WINDOWS, MarketSim, digits_job
from tests.test_market_rules import refused

T0, T1, T2 = TRAINERS[:3]


# ---- a GIO node that serves any blocks, counts requests, and gives up long before an hour ------
class CountingNode:
    """Domain 0x10 from a dict of blocks. Stops the test (instead of running for an hour) if a
    fetch asks for more than `limit` blocks: the unbounded code fails here, quickly."""

    def __init__(self, blocks: dict[Cid, bytes], limit: int = 10_000) -> None:
        self.blocks = {c.to_bytes(): b for c, b in blocks.items()}
        self.requests = 0
        self.limit = limit

    def __call__(self, domain: int, ident: bytes) -> tuple[int, bytes]:
        self.requests += 1
        if self.requests > self.limit:
            raise AssertionError(f"more than {self.limit} GIO requests for one object")
        block = self.blocks.get(ident) if domain == GIO_DOMAIN_BLOCK else None
        return (GIO_NOT_FOUND, b"") if block is None else (GIO_FOUND, block)


def regular_dag(fanouts: list[int], leaf: bytes) -> tuple[Cid, dict[Cid, bytes], int]:
    """A tree whose level i nodes all have fanouts[i] links to the same child: len(fanouts)+1
    distinct blocks describe prod(fanouts) leaves. Returns (root, blocks, filesize)."""
    child = Cid.for_block(RAW, leaf)
    blocks = {child: leaf}
    size = len(leaf)
    for fan in reversed(fanouts):
        node = _encode_node([(child, size)] * fan, [size] * fan)
        child = Cid.for_block(DAG_PB, node)
        blocks[child] = node
        size *= fan
    return child, blocks, size


def million_one_byte_leaves() -> tuple[Cid, dict[Cid, bytes], int]:
    """The reproduced attack: 4 distinct blocks (the largest about 5 KB) for a 1,000,000-byte
    file of 1-byte leaves, under the default model cap."""
    return regular_dag([100, 100, 100], b"x")


# ---- item 3: the block budget ---------------------------------------------------------------
def test_tiny_leaf_dag_costs_one_request_not_a_million() -> None:
    root, blocks, size = million_one_byte_leaves()
    assert size == 1_000_000 and len(blocks) == 4 and max(map(len, blocks.values())) < 8192
    node = CountingNode(blocks)
    with pytest.raises(ContentOverBudget, match=f"limit is one per {MIN_LEAF_BYTES} bytes") as info:
        GioSource(node).get(str(root), max_size=8 << 20)
    assert info.value.cid == str(root)
    assert f"more than {inner_budget(size)} inner nodes" in str(info.value)
    assert node.requests == 1          # refused from the root's declared links


def test_wide_node_of_tiny_leaves_is_refused_before_its_leaves_are_fetched() -> None:
    root, blocks, size = regular_dag([1000], b"y")
    node = CountingNode(blocks)
    with pytest.raises(ContentOverBudget, match="more than 1 leaves .* file of 1000 bytes"):
        GioSource(node).get(str(root), max_size=1 << 20)
    assert node.requests == 1


def test_budget_is_generous_for_the_layout_everyone_uses() -> None:
    # A 16 MiB file in 256 KiB leaves is 64 leaves; the budget allows 16 times more.
    assert leaf_budget(16 << 20) == 1024 and leaf_budget(0) == 1 and leaf_budget(5) == 1
    data = np.random.default_rng(3).bytes(3 * CHUNK_SIZE + 11)
    root, blocks = chunk(data)
    node = CountingNode({Cid.parse(c): b for c, b in blocks.items()})
    assert GioSource(node).get(str(root), max_size=len(data)) == data
    assert node.requests == len(blocks)


def test_a_repeated_block_is_fetched_once() -> None:
    data = bytes(5 * CHUNK_SIZE)         # five identical leaves: one leaf block, one root
    root, blocks = chunk(data)
    assert len(blocks) == 2
    node = CountingNode({Cid.parse(c): b for c, b in blocks.items()})
    source = GioSource(node)
    assert source.get(str(root), max_size=len(data)) == data
    assert node.requests == source.requests == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=4), st.integers(1, 40_000))
def test_wide_and_deep_families_cost_at_most_their_distinct_blocks(fanouts: list[int],
                                                                   leaf_size: int) -> None:
    """Any shape: either the right bytes or a refusal naming the budget, and never more GIO
    requests than distinct blocks (each fetched once), whatever the declared leaf count."""
    root, blocks, size = regular_dag(fanouts, b"z" * leaf_size)
    leaves = int(np.prod(fanouts))
    inner = sum(int(np.prod(fanouts[:i])) for i in range(1, len(fanouts)))
    node = CountingNode(blocks)
    cap = 8 << 20
    try:
        data = GioSource(node).get(str(root), max_size=cap)
    except ContentTooLarge:
        assert size > cap and node.requests == 1
    except ContentOverBudget as exc:
        assert size <= cap
        assert leaves > leaf_budget(size) or inner > inner_budget(size), exc
        assert "the limit is" in str(exc)
    else:
        assert data == b"z" * size
        assert leaves <= leaf_budget(size) and inner <= inner_budget(size)
    assert node.requests <= len(blocks)


@pytest.mark.parametrize("chain", range(1, 13))
def test_chains_of_one_link_nodes_are_bounded_by_depth(chain: int) -> None:
    root, blocks, size = regular_dag([1] * chain, b"leaf")
    node = CountingNode(blocks)
    if chain <= MAX_DEPTH:
        assert GioSource(node).get(str(root), max_size=10) == b"leaf"
    else:
        with pytest.raises(ContentMalformed, match=f"deeper than {MAX_DEPTH}"):
            GioSource(node).get(str(root), max_size=10)
    assert node.requests <= min(chain, MAX_DEPTH) + 1


def test_declared_sizes_must_agree_down_the_tree() -> None:
    # A node that claims its 1-byte leaves are 16 KiB each (to pass the budget) is caught at
    # the first leaf: every declared size is checked against the block it describes.
    leaf = Cid.for_block(RAW, b"x")
    block = _encode_node([(leaf, MIN_LEAF_BYTES)] * 4, [MIN_LEAF_BYTES] * 4)
    root = Cid.for_block(DAG_PB, block)
    node = CountingNode({root: block, leaf: b"x"})
    with pytest.raises(ContentMalformed, match="has 1 bytes, its parent says 16384"):
        GioSource(node).get(str(root), max_size=1 << 20)
    assert node.requests == 2


def test_a_huge_node_block_is_refused_before_it_is_decoded() -> None:
    leaf = Cid.for_block(RAW, b"x" * MIN_LEAF_BYTES)
    fan = MAX_NODE_BYTES // 40
    block = _encode_node([(leaf, MIN_LEAF_BYTES)] * fan, [MIN_LEAF_BYTES] * fan)
    assert len(block) > MAX_NODE_BYTES
    root = Cid.for_block(DAG_PB, block)
    with pytest.raises(ContentMalformed, match=f"over the limit of {MAX_NODE_BYTES}"):
        GioSource(CountingNode({root: block})).get(str(root), max_size=64 << 20)


def test_the_reveal_of_a_tiny_leaf_model_is_refused_cheaply() -> None:
    j = digits_job()
    sim = j.sim
    assert sim.call(T0, p.Join(j.job_id)).accepted
    root, blocks, _ = million_one_byte_leaves()
    idx = np.arange(100)
    sub = (str(root), sim.content.put(j.data_card(idx)), b"\x05" * 32)
    node = CountingNode({Cid.parse(c): b for c, b in sim.content.blocks.items()} | blocks)
    sim.market.content = GioSource(node)
    sim.advance(WINDOWS["start_delay"])
    assert j.commit(T0, 0, sub).accepted
    sim.advance(WINDOWS["commit"])
    res = refused(sim, lambda: j.reveal(T0, 0, sub), "could not be used", "inner nodes",
                  f"one per {MIN_LEAF_BYTES} bytes")
    assert node.requests == 1, res.reports


# ---- item 7: a failed job-open releases nothing ----------------------------------------------
def inputs_job(sim: MarketSim):
    """A job spec for the inputs content source, its spec and initial model posted by OWNER."""
    sim.market = Market(None)
    j = digits_job(sim, rounds=1, open_job=False)
    j.spec["content_source"] = "inputs"
    j.spec_cid = sim.content.put(json.dumps(j.spec).encode())
    for cid in (j.spec_cid, j.spec["initial_model"]):
        for call in p.PutContent.chunks(cid, sim.content.objects[cid]):
            assert sim.call(OWNER, call).accepted
        assert sim.inspect(f"content/{cid}")["held"] is True
    return j


def test_a_zero_wei_create_job_does_not_evict_the_owners_content() -> None:
    sim = MarketSim()
    j = inputs_job(sim)
    res = sim.deposit_eth(T1, 0, p.CreateJob(j.spec_cid).encode())
    assert res.accepted and "job not created" in res.reports[0] and not res.notices
    for cid in (j.spec_cid, j.spec["initial_model"]):
        assert sim.inspect(f"content/{cid}")["held"] is True, cid
    res = sim.deposit_eth(OWNER, 10**15, p.CreateJob(j.spec_cid).encode())
    assert res.notices and res.notices[0]["type"] == "job_opened", res.reports
    # Used by an input that succeeded: released now.
    assert sim.inspect(f"content/{j.spec_cid}")["held"] is False
    assert sim.market.inbox.held_bytes() == 0


# ---- item 8: uploads belong to their uploader ------------------------------------------------
def post(sim: MarketSim, sender: str, cid: str, data: bytes, indices=None):
    calls = p.PutContent.chunks(cid, data)
    return [sim.call(sender, calls[i]) for i in (indices if indices is not None
                                                 else range(len(calls)))]


def test_a_wrong_last_chunk_from_someone_else_does_not_touch_the_victims_upload() -> None:
    sim = MarketSim()
    data = bytes(range(256)) * 600                      # 153,600 bytes: 3 chunks
    cid = sim.content.put(data)
    assert all(r.accepted for r in post(sim, T0, cid, data, [0, 1]))
    wrong = data[:2 * UPLOAD_CHUNK] + b"\xee" * (len(data) - 2 * UPLOAD_CHUNK)
    res = post(sim, T1, cid, wrong, [2])[0]
    assert res.accepted and "(1/3)" in res.reports[0]   # the attacker's own upload, not T0's
    status = sim.market.inbox.status(cid)
    assert status["uploads"] == {T0: {"received": [0, 1], "count": 3, "total": len(data)},
                                 T1: {"received": [2], "count": 3, "total": len(data)}}
    assert sim.market.inbox.status(cid, uploader=T0)["received"] == [0, 1]
    # The attacker completes a whole wrong upload: only theirs is discarded.
    res = post(sim, T1, cid, wrong, [0, 1])
    assert "discarded" in res[-1].reports[0]
    assert sim.market.inbox.status(cid, uploader=T0)["received"] == [0, 1]
    res = post(sim, T0, cid, data, [2])[0]
    assert "stored" in res.reports[0]
    assert sim.inspect(f"content/{cid}") == {"cid": cid, "held": True, "bytes": len(data)}


def test_a_stored_object_is_shared_and_moot_uploads_are_dropped() -> None:
    sim = MarketSim()
    data = b"\x42" * 130_000
    cid = sim.content.put(data)
    post(sim, T1, cid, data, [0])
    res = post(sim, T0, cid, data)
    assert "stored" in res[-1].reports[0] and "1 other pending upload(s) of it dropped" in \
        res[-1].reports[0]
    assert sim.market.inbox.pending == {}
    refused(sim, lambda: post(sim, T1, cid, data, [1])[0], "already held")


def test_release_by_another_account_keeps_the_uploaders_content() -> None:
    inbox = ContentInbox()
    data = b"\x09" * 1000
    cid = str(chunk(data)[0])
    inbox.plan_put(cid, len(data), 0, data, 5, uploader=T0)()
    inbox.release([cid], by=T1)
    assert inbox.holds(cid)
    inbox.release([cid], by=T0)
    assert not inbox.holds(cid)
    assert inbox.status(cid) == {"cid": cid, "held": False, "uploads": {}}


# ---- item 10: per-uploader quotas ------------------------------------------------------------
def fake_cid(i: int) -> str:
    return str(Cid.for_block(RAW, b"object %d" % i))


def test_one_account_cannot_fill_the_inbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox_mod, "MAX_HELD_BYTES", 10 * UPLOAD_CHUNK)
    monkeypatch.setattr(inbox_mod, "UPLOADER_QUOTA_BYTES", 5 * UPLOAD_CHUNK)
    sim = MarketSim()
    chunk_ = b"\x01" * UPLOAD_CHUNK
    total = 4 * UPLOAD_CHUNK
    for i in range(3):                     # never completed; the first one fits the quota
        res = sim.call(T1, p.PutContent(fake_cid(i), total, 0, chunk_)) if i == 0 else None
        if i == 0:
            assert res.accepted
        else:
            refused(sim, lambda i=i: sim.call(T1, p.PutContent(fake_cid(i), total, 0, chunk_)),
                    "limit per account is", str(5 * UPLOAD_CHUNK))
    for k in (1, 2, 3):                    # the attacker's own upload can still grow
        assert sim.call(T1, p.PutContent(fake_cid(0), total, k, chunk_)).accepted
    # Someone else still finds room.
    data = b"\x07" * (3 * UPLOAD_CHUNK - 5)
    cid = sim.content.put(data)
    assert "stored" in post(sim, T2, cid, data)[-1].reports[0]


def test_quota_with_the_real_limits() -> None:
    sim = MarketSim()
    big = inbox_mod.MAX_OBJECT_BYTES
    assert inbox_mod.UPLOADER_QUOTA_BYTES == 2 * big
    first = b"\x02" * UPLOAD_CHUNK
    for i in range(2):
        assert sim.call(T1, p.PutContent(fake_cid(i), big, 0, first)).accepted
    res = refused(sim, lambda: sim.call(T1, p.PutContent(fake_cid(2), 70_000, 0, first)),
                  f"limit per account is {inbox_mod.UPLOADER_QUOTA_BYTES} bytes")
    assert f"already has {2 * big} bytes" in res.reports[0]
    # ...until the reservations expire.
    sim.advance(inbox_mod.EXPIRY_SECONDS)
    assert sim.call(T1, p.PutContent(fake_cid(2), 70_000, 0, first)).accepted
    assert sim.market.inbox.usage(T1) == (70_000, 1)


def test_expired_entries_do_not_count_nor_block() -> None:
    inbox = ContentInbox()
    data = b"\x0e" * 1000
    cid = str(chunk(data)[0])
    first = b"\x05" * UPLOAD_CHUNK
    inbox.plan_put(cid, len(data), 0, data, 10, uploader=T0)()
    inbox.plan_put(fake_cid(1), UPLOAD_CHUNK + 1, 0, first, 10, uploader=T1)()
    later = 10 + inbox_mod.EXPIRY_SECONDS
    # The expired object may be posted again at once, and the expired upload starts afresh.
    assert inbox.plan_put(cid, len(data), 0, data, later, uploader=T2)().status == "stored"
    out = inbox.plan_put(fake_cid(1), UPLOAD_CHUNK + 1, 1, b"\x05", later, uploader=T1)()
    assert out.status == "pending" and inbox.status(fake_cid(1), uploader=T1)["received"] == [1]
    assert inbox.usage(T0) == (0, 0) and inbox.usage(T2) == (1000, 0)


def test_pending_uploads_per_account_are_bounded() -> None:
    sim = MarketSim()
    first = b"\x03" * UPLOAD_CHUNK
    for i in range(inbox_mod.MAX_PENDING_UPLOADS):
        assert sim.call(T1, p.PutContent(fake_cid(i), UPLOAD_CHUNK + 1, 0, first)).accepted
    n = inbox_mod.MAX_PENDING_UPLOADS
    refused(sim, lambda: sim.call(T1, p.PutContent(fake_cid(n), UPLOAD_CHUNK + 1, 0, first)),
            f"already has {n} pending uploads", f"limit per account is {n}")
    assert sim.call(T2, p.PutContent(fake_cid(n), UPLOAD_CHUNK + 1, 0, first)).accepted


def test_inbox_digest_does_not_depend_on_arrival_order_within_a_block() -> None:
    a, b = ContentInbox(), ContentInbox()
    puts = [(T0, fake_cid(1)), (T1, fake_cid(1)), (T2, fake_cid(2))]
    for inbox, order in ((a, puts), (b, puts[::-1])):
        for who, cid in order:
            inbox.plan_put(cid, UPLOAD_CHUNK + 1, 0, b"\x04" * UPLOAD_CHUNK, 5, uploader=who)()
    assert list(a.pending) != list(b.pending) and a.digest() == b.digest()
    a.plan_put(fake_cid(3), UPLOAD_CHUNK + 1, 0, b"\x04" * UPLOAD_CHUNK, 5, uploader=T0)()
    assert a.digest() != b.digest()


# ---- issue 13 item 4: "unavailable" is never a verdict ---------------------------------------
ROOT, BLOCKS = chunk(b"some content")


@pytest.mark.parametrize(("code", "error"), [
    (GIO_NOT_FOUND, ContentMissing), (GIO_UNSUPPORTED_DOMAIN, ContentMissing),
    (GIO_ERROR, ContentUnavailable), (GIO_UNAVAILABLE, ContentUnavailable),
    (99, ContentUnavailable),
])
def test_gio_codes(code: int, error: type) -> None:
    with pytest.raises(error, match=f"code {code}") as info:
        GioSource(lambda d, i: (code, b"")).get(str(ROOT), max_size=100)
    assert type(info.value) is error and info.value.cid == str(ROOT)


def advance_raw(sim: MarketSim, sender: str, payload: bytes) -> None:
    """Market.advance itself, without the loop's guard: an exception reaches the test."""
    meta = Metadata(chain_id=31337, app_contract=APP, msg_sender=sender.lower(),
                    block_number=100 + sim.index, block_timestamp=sim.now,
                    prev_randao="0x" + "00" * 32, input_index=sim.index)
    sim.market.advance(meta, payload)


def unavailable(domain: int, ident: bytes) -> tuple[int, bytes]:
    return GIO_UNAVAILABLE, b""


def test_an_unreachable_store_never_refuses_a_reveal() -> None:
    j = digits_job()
    sim = j.sim
    assert sim.call(T0, p.Join(j.job_id)).accepted
    g = sim.market._models[sim.market.state.jobs[j.job_id].global_model_hash]
    idx = np.arange(200)
    sub = j.submit(T0, 0, j.train(g, idx, steps=3), idx)
    sim.advance(WINDOWS["start_delay"])
    assert j.commit(T0, 0, sub).accepted
    sim.advance(WINDOWS["commit"])
    working = sim.market.content
    sim.market.content = GioSource(unavailable)
    before = sim.market.digest()
    with pytest.raises(ContentUnavailable, match="temporarily unavailable"):
        advance_raw(sim, T0, p.Reveal(j.job_id, 0, *sub).encode())
    assert sim.market.digest() == before
    sim.market.content = working                   # the store is back: the same input decides
    res = j.reveal(T0, 0, sub)
    assert res.accepted, res.reports


def test_an_unreachable_store_never_decides_a_deposit() -> None:
    sim = MarketSim()
    j = digits_job(sim, open_job=False)
    sim.market.content = GioSource(unavailable)
    before = sim.market.digest()
    with pytest.raises(ContentUnavailable):
        advance_raw(sim, "0xa632c5c05812c6a6149b7af5c56117d1d2603828",
                    bytes.fromhex(OWNER[2:]) + (10**15).to_bytes(32, "big")
                    + p.CreateJob(j.spec_cid).encode())
    assert sim.market.digest() == before           # neither a job nor a credited balance
    assert sim.inspect(f"balance/{OWNER}")["balances"] == {}


# ---- the same decisions on riscv64 -----------------------------------------------------------
RISCV_SCRIPT = r"""
import hashlib, platform, sys
from dapp.content.cid import DAG_PB, RAW, Cid
from dapp.content.errors import ContentError
from dapp.content.inbox import UPLOAD_CHUNK, ContentInbox, UploadRefused
from dapp.content.unixfs import _encode_node, assemble, chunk

def dag(fanouts, leaf):
    child = Cid.for_block(RAW, leaf)
    blocks, size = {child: leaf}, len(leaf)
    for fan in reversed(fanouts):
        node = _encode_node([(child, size)] * fan, [size] * fan)
        child = Cid.for_block(DAG_PB, node)
        blocks[child] = node
        size *= fan
    return child, blocks

for fanouts, leaf in (([100, 100, 100], b"x"), ([1000], b"y"), ([3, 70], b"z" * 20000),
                      ([1] * 9, b"w"), ([1] * 8, b"w"), ([2, 2], bytes(300000))):
    root, blocks = dag(fanouts, leaf)
    asked = []
    try:
        out = assemble(root, lambda c: asked.append(c) or blocks[c], max_size=8 << 20)
        print("ok", len(out), hashlib.sha256(out).hexdigest(), len(asked))
    except ContentError as exc:
        print(type(exc).__name__, exc, len(asked))

inbox = ContentInbox()
data = bytes(range(256)) * 600
cid = str(chunk(data)[0])
steps = [("0x" + "10" * 20, cid, data, [0, 1]), ("0x" + "11" * 20, cid, data[::-1], [2, 0, 1]),
         ("0x" + "10" * 20, cid, data, [2])]
steps += [("0x" + "12" * 20, str(Cid.for_block(RAW, bytes([i]))), b"\x01" * (16 << 20), [0])
          for i in range(3)]
now = 1_700_000_000
for who, c, body, idx in steps:
    for i in idx:
        now += 1
        part = body[i * UPLOAD_CHUNK:(i + 1) * UPLOAD_CHUNK]
        try:
            print(inbox.plan_put(c, len(body), i, part, now, uploader=who)().message)
        except UploadRefused as exc:
            print("refused", exc)
        print(" digest", inbox.digest().hex(), inbox.held_bytes())
print("machine", platform.machine(), file=sys.stderr)
"""


@pytest.mark.riscv
def test_hostile_content_decisions_are_identical_on_riscv64() -> None:
    import subprocess
    import sys

    from tests.riscv import REPO_ROOT, run_riscv_python

    host = subprocess.run([sys.executable, "-c", RISCV_SCRIPT], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(REPO_ROOT)})
    assert host.stdout.count("ContentOverBudget") == 2 and "deeper than" in host.stdout
    assert "stored" in host.stdout and "limit per account" in host.stdout
    riscv = run_riscv_python(["-c", RISCV_SCRIPT], cwd=str(REPO_ROOT), timeout=600)
    assert riscv.returncode == 0, riscv.stderr[-3000:]
    assert riscv.stderr.strip().endswith("machine riscv64")
    assert riscv.stdout == host.stdout
