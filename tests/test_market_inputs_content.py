"""Content posted through inputs (issue 6): framing rules, and a job that runs with no GIO at all
gives the same round notices as the same job over GIO."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dapp.content import inbox as inbox_mod
from dapp.content.inbox import UPLOAD_CHUNK
from dapp.market import protocol as p
from dapp.market.app import Market
from tests.market_harness import OWNER, TRAINERS, WINDOWS, MarketSim, digits_job
from tests.test_market_rules import refused

T0, T1, T2 = TRAINERS[:3]


def chunks(data: bytes) -> list[bytes]:
    return [c.data for c in p.PutContent.chunks("", data)]


def upload(sim: MarketSim, sender: str, cid: str, data: bytes, order=None) -> list:
    calls = p.PutContent.chunks(cid, data)
    return [sim.call(sender, calls[i]) for i in (order if order is not None else range(len(calls)))]


def test_put_content_input_fits_in_one_cartesi_input():
    call = p.PutContent("b" + "a" * 58, inbox_mod.MAX_OBJECT_BYTES, 1, b"\xff" * UPLOAD_CHUNK)
    # EvmAdvance wraps the payload with 8 head words + length: 65,536 bytes in all at most.
    assert len(call.encode()) + 32 * 9 <= 65_536


def test_upload_out_of_order_then_refusals():
    sim = MarketSim()
    data = bytes(range(256)) * 800                      # 204,800 bytes: 4 chunks
    cid = sim.content.put(data)
    sim.content.blocks.clear()                          # no GIO copy: inputs only
    res = upload(sim, T0, cid, data, order=[3, 1])
    assert all(r.accepted for r in res) and "(2/4)" in res[-1].reports[0]
    status = sim.inspect(f"content/{cid}")
    # Uploads belong to their uploader (content/<cid> lists them by account).
    assert status["uploads"][T0]["received"] == [1, 3] and status["held"] is False
    part1 = chunks(data)[1]
    refused(sim, lambda: sim.call(T0, p.PutContent(cid, len(data), 1, part1)),
            "already received")
    refused(sim, lambda: sim.call(T0, p.PutContent(cid, len(data), 1, part1[::-1])),
            "with different bytes")
    refused(sim, lambda: sim.call(T1, p.PutContent(cid, len(data), 0, part1[:-1])),
            "expected 60000")
    refused(sim, lambda: sim.call(T0, p.PutContent(cid, len(data) + 1, 0, part1)),
            "started with total size")
    refused(sim, lambda: sim.call(T1, p.PutContent(cid, len(data), 9, b"x")), "outside")
    refused(sim, lambda: sim.call(T1, p.PutContent(cid, inbox_mod.MAX_OBJECT_BYTES + 1, 0,
                                                    b"x")), "total size")
    refused(sim, lambda: sim.call(T1, p.PutContent("not-a-cid", 5, 0, b"x" * 5)),
            "not a valid CID")
    res = upload(sim, T0, cid, data, order=[2, 0])
    assert "stored" in res[-1].reports[0]
    assert sim.inspect(f"content/{cid}") == {"cid": cid, "held": True, "bytes": len(data)}
    refused(sim, lambda: sim.call(T1, p.PutContent(cid, len(data), 0, chunks(data)[0])),
            "already held")


def test_wrong_hash_upload_is_discarded_and_can_restart():
    sim = MarketSim()
    data = b"\x01" * 70_000
    cid = sim.content.put(data)
    bad = upload(sim, T0, cid, b"\x02" * 70_000)
    assert bad[-1].accepted and "discarded" in bad[-1].reports[0]
    assert sim.inspect(f"content/{cid}")["held"] is False
    good = upload(sim, T0, cid, data)
    assert "stored" in good[-1].reports[0]


def test_inbox_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(inbox_mod, "MAX_HELD_BYTES", 150_000)
    sim = MarketSim()
    a, b = b"\x0a" * 100_000, b"\x0b" * 100_000
    ca, cb = sim.content.put(a), sim.content.put(b)
    assert "stored" in upload(sim, T0, ca, a)[-1].reports[0]
    refused(sim, lambda: sim.call(T0, p.PutContent(cb, len(b), 0, chunks(b)[0])), "inbox is full")
    sim.advance(inbox_mod.EXPIRY_SECONDS)
    assert "stored" in upload(sim, T0, cb, b)[-1].reports[0]      # a expired, b fits
    assert sim.inspect(f"content/{ca}")["held"] is False
    assert sim.market.inbox.held_bytes() == 100_000


def run_job(source: str) -> list[dict]:
    """Two rounds, three trainers; with source "inputs" every object travels as inputs and
    the market has no GIO at all."""
    sim = MarketSim()
    if source == "inputs":
        sim.market = Market(None)
    j = digits_job(sim, rounds=2, open_job=False)
    j.spec["content_source"] = source
    j.spec_cid = sim.content.put(json.dumps(j.spec).encode())

    def post(cid: str, by: str = OWNER) -> None:
        # Each account posts what its own input uses: only the uploader's use releases content.
        if source == "inputs":
            for r in upload(sim, by, cid, sim.content.objects[cid]):
                assert r.accepted, r.reports

    for cid in (j.spec_cid, j.spec["initial_model"]):
        post(cid)
    res = sim.deposit_eth(OWNER, 10**15, p.CreateJob(j.spec_cid).encode())
    assert res.notices, res.reports
    j.job_id = res.notices[0]["job"]
    trainers = (T0, T1, T2)
    for t in trainers:
        assert sim.call(t, p.Join(j.job_id)).accepted
    notices = []
    for r in range(2):
        g = sim.market._models[sim.market.state.jobs[j.job_id].global_model_hash]
        sim.advance(WINDOWS["start_delay"] if r == 0 else 0)
        subs = {}
        for i, t in enumerate(trainers):
            idx = np.arange(i * 300, i * 300 + 300)
            subs[t] = j.submit(t, r, j.train(g, idx, seed=r * 7 + i, flip=(t == T2)), idx,
                               salt=bytes([i + 1]) * 32)
            assert j.commit(t, r, subs[t]).accepted
        sim.advance(WINDOWS["commit"])
        for t, sub in subs.items():
            post(sub[0], t)
            post(sub[1], t)
            res = j.reveal(t, r, sub)
            assert res.accepted, res.reports
        post(j.shards[r][0])
        assert j.reveal_validation(r).accepted
        sim.advance(WINDOWS["reveal"])
        res = j.close(r)
        assert res.accepted, res.reports
        notices += res.notices
    if source == "inputs":
        assert sim.market.inbox.held_bytes() == 0      # everything consumed was released
    return notices


@pytest.mark.slow
def test_inputs_source_gives_the_same_round_notices_as_gio():
    over_gio, over_inputs = run_job("gio"), run_job("inputs")
    # Uploads are extra inputs, so block times differ; everything the market decided is equal.
    for n in over_gio + over_inputs:
        n.get("next_round", {}).pop("start", None)
    assert over_inputs == over_gio
    assert [n["round"] for n in over_gio] == [0, 1]


def test_market_without_gio_explains_how_to_post_content():
    sim = MarketSim()
    sim.market = Market(None)
    j = digits_job(sim, open_job=False)
    res = sim.deposit_eth(OWNER, 1000, p.CreateJob(j.spec_cid).encode())
    assert res.accepted and "serves no GIO" in res.reports[0] and "putContent" in res.reports[0]
