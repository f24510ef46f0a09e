"""The market's rules, one input at a time: what a user sends, what they read back, and that a
refused input changes nothing (the state digest is byte-identical)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dapp.hashing import keccak
from dapp.market import protocol as p
from tests.market_harness import OWNER, TOKEN, TRAINERS, WINDOWS, MarketSim, Result, digits_job

T0, T1, T2, T3 = TRAINERS[:4]


def refused(sim: MarketSim, res_fn, *words: str) -> Result:
    """Send an input that must be refused; check the report's words and the unchanged state."""
    before = sim.market.digest()
    res = res_fn()
    assert not res.accepted, res.reports
    text = " ".join(res.reports)
    for w in words:
        assert w in text, f"{w!r} not in {text!r}"
    assert sim.market.digest() == before
    assert not res.outputs.emitted
    return res


@pytest.fixture()
def job():
    j = digits_job()
    for t in (T0, T1, T2):
        assert j.sim.call(t, p.Join(j.job_id)).accepted
    return j


def test_plain_deposit_credits_balance_and_withdraw_pays_by_voucher():
    sim = MarketSim()
    res = sim.deposit_eth(T0, 5000)
    assert res.accepted and "credited" not in " ".join(res.reports)
    assert sim.inspect(f"balance/{T0}")["balances"] == {p.ETH: "5000"}
    refused(sim, lambda: sim.call(T0, p.Withdraw(p.ETH, 5001)), "withdraw beyond balance")
    res = sim.call(T0, p.Withdraw(p.ETH, 2000))
    assert res.accepted
    [v] = res.vouchers
    assert (v.destination, v.value, v.payload) == (T0, 2000, b"")
    assert sim.inspect(f"balance/{T0}")["balances"] == {p.ETH: "3000"}
    assert sim.market.state.conserved()


def test_erc20_withdraw_is_a_token_transfer_voucher():
    sim = MarketSim()
    assert sim.deposit_erc20(T0, TOKEN, 77).accepted
    [v] = sim.call(T0, p.Withdraw(TOKEN, 77)).vouchers
    assert v.destination == TOKEN and v.value == 0
    assert v.payload == p.erc20_transfer_payload(T0, 77)


def test_deposit_with_bad_spec_is_credited_with_a_report():
    sim = MarketSim()
    bad = sim.content.put(b'{"version": 1, "rounds": 0.5}')
    res = sim.deposit_eth(OWNER, 10**6, p.CreateJob(bad).encode())
    assert res.accepted
    assert "job not created" in res.reports[0] and "floats are not allowed" in res.reports[0]
    assert sim.inspect(f"balance/{OWNER}")["balances"] == {p.ETH: str(10**6)}
    missing = sim.deposit_eth(OWNER, 5, p.CreateJob("bafkreiaaaa").encode())
    assert missing.accepted and "not a valid CID" in missing.reports[0]
    garbage = sim.deposit_eth(OWNER, 5, b"\x01\x02")
    assert garbage.accepted and "credited" in garbage.reports[0]
    assert sim.inspect(f"balance/{OWNER}")["balances"] == {p.ETH: str(10**6 + 10)}
    assert sim.inspect("jobs") == []


def test_job_opens_with_escrow_and_notice():
    j = digits_job(budget=1000)
    job = j.sim.inspect(f"job/{j.job_id}")
    assert job["escrow"] == "1000" and job["owner"] == OWNER and job["status"] == "open"
    assert j.sim.inspect(f"balance/{OWNER}")["balances"] == {}


def test_malformed_and_unknown_inputs(job):
    sim = job.sim
    refused(sim, lambda: sim.send(T0, b"\x00\x01"), "too short")
    refused(sim, lambda: sim.send(T0, b"\xde\xad\xbe\xef" + b"\x00" * 32), "unknown selector")
    join = p.Join(job.job_id).encode()
    refused(sim, lambda: sim.send(T0, join[:-1]), "malformed arguments")
    refused(sim, lambda: sim.send(T0, join + b"\x00"), "join(uint256)")


def test_wrong_job_round_and_double_join(job):
    sim = job.sim
    refused(sim, lambda: sim.call(T0, p.Join(99)), "no job 99")
    refused(sim, lambda: sim.call(T0, p.Join(job.job_id)), "already joined")
    sim.advance(WINDOWS["start_delay"])
    refused(sim, lambda: sim.call(T0, p.Commit(job.job_id, 1, b"\x00" * 32)),
            "round 1 of job 1 is not open")
    refused(sim, lambda: sim.call(T3, p.Commit(job.job_id, 0, b"\x00" * 32)), "has not joined")


def test_commit_windows_and_replay(job):
    sim = job.sim
    c = p.Commit(job.job_id, 0, b"\x11" * 32)
    refused(sim, lambda: sim.call(T0, c), "too early", "commit window opens")
    sim.advance(WINDOWS["start_delay"])
    assert sim.call(T0, c).accepted
    refused(sim, lambda: sim.call(T0, c), "already committed")
    sim.advance(WINDOWS["commit"])
    refused(sim, lambda: sim.call(T1, c), "too late", "commit window closed")


def test_reveal_rules(job):
    sim = job.sim
    g = sim.market._models[job.sim.market.state.jobs[1].global_model_hash]
    idx = np.arange(200)
    sub = job.submit(T0, 0, job.train(g, idx), idx)
    sim.advance(WINDOWS["start_delay"])
    assert job.commit(T0, 0, sub).accepted
    refused(sim, lambda: job.reveal(T0, 0, sub), "too early", "reveal window")
    sim.advance(WINDOWS["commit"])
    refused(sim, lambda: job.reveal(T1, 0, sub), "did not commit")
    wrong = (sub[0], sub[1], b"\x08" * 32)
    refused(sim, lambda: job.reveal(T0, 0, wrong), "does not match your commitment")
    assert job.reveal(T0, 0, sub).accepted
    refused(sim, lambda: job.reveal(T0, 0, sub), "already revealed")
    sim.advance(WINDOWS["reveal"])
    refused(sim, lambda: job.reveal(T0, 0, sub), "too late")


def _commit_then_reveal_window(job, trainer, sub):
    job.sim.advance(WINDOWS["start_delay"])
    assert job.commit(trainer, 0, sub).accepted
    job.sim.advance(WINDOWS["commit"])


def test_reveal_refuses_missing_or_mismatched_content(job):
    sim = job.sim
    g = sim.market._models[sim.market.state.jobs[1].global_model_hash]
    idx = np.arange(100)
    sub = job.submit(T0, 0, job.train(g, idx), idx)
    good = sim.content.blocks.pop(sub[0])
    _commit_then_reveal_window(job, T0, sub)
    refused(sim, lambda: job.reveal(T0, 0, sub), "model", "could not be used", "not found")
    sim.content.blocks[sub[0]] = good[:-1] + bytes([good[-1] ^ 1])   # the node serves lies
    refused(sim, lambda: job.reveal(T0, 0, sub), "model", "could not be used")
    sim.content.blocks[sub[0]] = good
    assert job.reveal(T0, 0, sub).accepted


@pytest.mark.parametrize("case,words", [
    ("oversize", ["could not be used", "over the cap"]),
    ("wrong_shape", ["invalid model"]),
    ("float_tensor", ["invalid model"]),
    ("bad_card", ["invalid data card", "label_histogram"]),
    ("global_copy", ["current global model unchanged"]),
])
def test_reveal_refuses_bad_models_and_cards(job, case, words):
    from dapp.ml.model_format import encode_model
    from safetensors.numpy import save

    sim = job.sim
    g = sim.market._models[sim.market.state.jobs[1].global_model_hash]
    idx = np.arange(100)
    trained = job.train(g, idx)
    card = None
    if case == "oversize":
        model_cid = sim.content.put(b"\x00" * ((1 << 20) + 1))
    elif case == "wrong_shape":
        model_cid = sim.content.put(save({"fc.weight": np.zeros((10, 63), np.int32),
                                          "fc.bias": np.zeros(10, np.int32)}))
    elif case == "float_tensor":
        model_cid = sim.content.put(save({"fc.weight": np.zeros((10, 64), np.float32),
                                          "fc.bias": np.zeros(10, np.int32)}))
    elif case == "global_copy":
        model_cid = sim.content.put(encode_model(g, job.arch))
    else:
        model_cid = sim.content.put(encode_model(trained, job.arch))
        card = json.dumps({"version": 1, "num_samples": 5, "label_histogram": [1] * 10,
                           "feature_shape": [1, 8, 8], "data_commitment": "0x" + "00" * 32,
                           "dp": None}).encode()
    data_cid = sim.content.put(card if card is not None else job.data_card(idx))
    sub = (model_cid, data_cid, b"\x05" * 32)
    _commit_then_reveal_window(job, T0, sub)
    refused(sim, lambda: job.reveal(T0, 0, sub), *words)


def test_validation_reveal_rules(job):
    sim = job.sim
    refused(sim, lambda: sim.call(T0, p.RevealValidation(job.job_id, 0, *job.shards[0])),
            "only the job owner")
    refused(sim, lambda: job.reveal_validation(0), "too early")
    sim.advance(WINDOWS["start_delay"] + WINDOWS["commit"])
    cid, salt = job.shards[1]
    refused(sim, lambda: sim.call(OWNER, p.RevealValidation(job.job_id, 0, cid, salt)),
            "do not match the spec's commitment")
    assert job.reveal_validation(0).accepted
    refused(sim, lambda: job.reveal_validation(0), "already revealed")


def test_cancel_only_by_owner_before_first_round():
    j = digits_job(budget=999)
    sim = j.sim
    refused(sim, lambda: sim.call(T0, p.CancelJob(j.job_id)), "only the job owner")
    res = sim.call(OWNER, p.CancelJob(j.job_id))
    assert res.accepted and res.notices[0]["type"] == "job_cancelled"
    assert sim.inspect(f"balance/{OWNER}")["balances"] == {p.ETH: "999"}
    refused(sim, lambda: sim.call(OWNER, p.CancelJob(j.job_id)), "is cancelled")
    j2 = digits_job(sim, budget=5)
    sim.advance(WINDOWS["start_delay"])
    refused(sim, lambda: sim.call(OWNER, p.CancelJob(j2.job_id)), "cannot be cancelled")


def test_close_round_too_early(job):
    refused(job.sim, lambda: job.close(0), "cannot close before its reveal window ends")
    job.sim.advance(WINDOWS["start_delay"] + WINDOWS["commit"] + WINDOWS["reveal"])
    refused(job.sim, lambda: job.close(0), "waits for the owner's validation shard")


def test_full_job_pays_by_contribution_and_refunds_the_rest():
    j = digits_job(rounds=2, budget=10**18)
    sim = j.sim
    for t in (T0, T1, T2, T3):
        assert sim.call(t, p.Join(j.job_id)).accepted
    rng = np.random.default_rng(1)
    parts = np.array_split(rng.permutation(1400), 4)
    paid: dict[str, int] = {}
    for r in range(2):
        state_job = sim.market.state.jobs[j.job_id]
        g = sim.market._models[state_job.global_model_hash]
        subs = {}
        sim.advance(WINDOWS["start_delay"] if r == 0 else 0)
        for i, t in enumerate((T0, T1, T2, T3)):
            model = j.train(g, parts[i], flip=(t == T3), seed=r * 10 + i)
            subs[t] = j.submit(t, r, model, parts[i], salt=bytes([i + 1]) * 32)
            assert j.commit(t, r, subs[t]).accepted
        sim.advance(WINDOWS["commit"])
        for t, sub in subs.items():
            assert j.reveal(t, r, sub).accepted, j.reveal(t, r, sub).reports
        assert j.reveal_validation(r).accepted
        sim.advance(WINDOWS["reveal"])
        res = j.close(r)
        assert res.accepted, res.reports
        [notice] = res.notices
        assert notice["type"] == "round_closed" and notice["round"] == r
        verdicts = {e["address"]: e for e in notice["trainers"]}
        assert verdicts[T3]["verdict"] == "rejected" and verdicts[T3]["reward"] == "0"
        for t in (T0, T1, T2):
            assert verdicts[t]["verdict"] == "accepted"
            paid[t] = paid.get(t, 0) + int(verdicts[t]["reward"])
        assert int(notice["paid"]) + int(notice["carried"]) == int(notice["budget"])
        assert notice["accuracy"]["total"] == 100
        chunks = [p.ModelChunk.decode(r_) for r_ in res.outputs.reports
                  if r_[:4] == p.MODEL_CHUNK]
        model_bytes = p.ModelChunk.join(chunks, bytes.fromhex(notice["model_hash"][2:]))
        assert "0x" + keccak(model_bytes).hex() == notice["model_hash"]
    assert notice["job_finished"]["owner"] == OWNER
    balances = {t: int(sim.inspect(f"balance/{t}")["balances"].get(p.ETH, 0))
                for t in (T0, T1, T2, T3, OWNER)}
    for t in (T0, T1, T2):
        assert balances[t] == paid[t] > 0
    assert balances[T3] == 0
    assert sum(balances.values()) == 10**18
    assert sim.market.state.conserved()


def test_withheld_validation_still_pays_in_full():
    j = digits_job(rounds=1, budget=9000)
    sim = j.sim
    g = sim.market._models[sim.market.state.jobs[j.job_id].global_model_hash]
    for t in (T0, T1):
        sim.call(t, p.Join(j.job_id))
    sim.advance(WINDOWS["start_delay"])
    subs = {}
    for i, t in enumerate((T0, T1)):
        idx = np.arange(i * 300, i * 300 + 300)
        subs[t] = j.submit(t, 0, j.train(g, idx, seed=i), idx, salt=bytes([9 + i]) * 32)
        j.commit(t, 0, subs[t])
    sim.advance(WINDOWS["commit"])
    for t in subs:
        assert j.reveal(t, 0, subs[t]).accepted
    sim.advance(WINDOWS["reveal"] + WINDOWS["validation"])
    res = j.close(0)
    [n] = res.notices
    assert n["fallback"] is True and n["accuracy"] is None
    assert n["paid"] == "9000"
    assert {e["reward"] for e in n["trainers"]} == {"4500"}


def test_copied_and_sybil_updates_gain_nothing():
    """A copy of an earlier round's update is refused; the same update from two addresses is
    one player whose reward is shared."""
    def run(sybil: bool) -> tuple[dict[str, int], object]:
        j = digits_job(rounds=2, budget=10**12, aggregation={"rule": "fedavg"})
        sim = j.sim
        trainers = (T0, T1, T2) if sybil else (T0, T1)
        for t in trainers:
            sim.call(t, p.Join(j.job_id))
        g = sim.market._models[sim.market.state.jobs[j.job_id].global_model_hash]
        sim.advance(WINDOWS["start_delay"])
        m0 = j.train(g, np.arange(0, 400), seed=1)
        m1 = j.train(g, np.arange(400, 800), seed=2)
        subs = {T0: j.submit(T0, 0, m0, np.arange(0, 400), salt=b"\x01" * 32),
                T1: j.submit(T1, 0, m1, np.arange(400, 800), salt=b"\x02" * 32)}
        if sybil:
            subs[T2] = j.submit(T2, 0, m1, np.arange(400, 800), salt=b"\x03" * 32)
        for t, s in subs.items():
            assert j.commit(t, 0, s).accepted
        sim.advance(WINDOWS["commit"])
        for t, s in subs.items():
            assert j.reveal(t, 0, s).accepted
        j.reveal_validation(0)
        sim.advance(WINDOWS["reveal"])
        n = j.close(0).notices[0]
        return {e["address"]: int(e["reward"]) for e in n["trainers"]}, (j, subs)

    alone, _ = run(False)
    split, (j, subs) = run(True)
    assert split[T1] + split[T2] <= alone[T1]
    # round 1: re-revealing round 0's update is copying
    sim = j.sim
    assert sim.call(T0, p.Commit(j.job_id, 1, p.commitment(T0, j.job_id, 1, *subs[T1]))).accepted
    sim.advance(WINDOWS["commit"])
    refused(sim, lambda: j.reveal(T0, 1, subs[T1]), "copies an update revealed in an earlier")


def test_inspect_queries():
    j = digits_job()
    sim = j.sim
    assert [x["job"] for x in sim.inspect("jobs")] == [1]
    assert sim.inspect("job/1/round/0")["index"] == 0
    assert sim.inspect("state")["tokens"] == 1
    eth = {"token": p.ETH, "deposited": str(10**18), "withdrawn": "0",
           "balances": str(sim.market.state.ledger.total_balances(p.ETH)),
           "escrow": str(sim.market.state.jobs[1].escrow)}
    assert int(eth["balances"]) + int(eth["escrow"]) == 10**18
    assert sim.inspect(f"token/{p.ETH}") == eth and sim.inspect("tokens") == [eth]
    assert sim.inspect("tokens/page/1") == []
    from dapp.loop import handle_inspect
    ok, out = handle_inspect(sim.market, b"nonsense")
    assert not ok and b"unknown query" in out.reports[0]


def test_an_update_that_overflows_inference_is_rejected_and_the_round_still_pays(monkeypatch):
    """Weights within the spec's bounds can still overflow int64 in a deeper network; such an
    update is rejected with the reason, and it cannot block the round."""
    import tests.market_harness as h
    from dapp.ml.model_format import Model

    monkeypatch.setattr(h, "ARCH", {
        "input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 12,
        "layers": [{"type": "flatten"},
                   {"type": "linear", "name": "fc1", "in_features": 64, "out_features": 16},
                   {"type": "relu"},
                   {"type": "linear", "name": "fc2", "in_features": 16, "out_features": 10}]})
    j = digits_job(rounds=1, budget=10**6, aggregation={"rule": "fedavg"})
    sim = j.sim
    for t in (T0, T1):
        assert sim.call(t, p.Join(j.job_id)).accepted
    g = sim.market._models[sim.market.state.jobs[j.job_id].global_model_hash]
    idx = np.arange(400)
    huge = Model({k: np.full(v.shape, 2**31 - 1, np.int32) for k, v in g.items()})
    subs = {T0: j.submit(T0, 0, j.train(g, idx), idx, salt=b"\x01" * 32),
            T1: j.submit(T1, 0, huge, idx, salt=b"\x02" * 32)}
    sim.advance(WINDOWS["start_delay"])
    for t, s in subs.items():
        assert j.commit(t, 0, s).accepted
    sim.advance(WINDOWS["commit"])
    for t, s in subs.items():
        assert j.reveal(t, 0, s).accepted
    assert j.reveal_validation(0).accepted
    sim.advance(WINDOWS["reveal"])
    res = j.close(0)
    assert res.accepted, res.reports
    verdicts = {e["address"]: e for e in res.notices[0]["trainers"]}
    assert verdicts[T1]["verdict"] == "rejected"
    assert "inference overflows" in verdicts[T1]["reason"]
    assert verdicts[T0]["verdict"] == "accepted"
    assert res.notices[0]["accuracy"] is not None


def test_spec_refuses_weights_that_could_overflow_aggregation():
    from dapp.market.spec import SpecError, parse_spec

    j = digits_job(open_job=False)
    spec = dict(j.spec, max_trainers=50)
    spec["data_schema"] = dict(spec["data_schema"], weight_cap=10**9)
    with pytest.raises(SpecError, match="weight_cap"):
        parse_spec(json.dumps(spec).encode())
