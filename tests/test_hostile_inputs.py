"""Cheap hostile inputs and queries, in-process: none may crash the backend, emit an output the
rollup server cannot take, change state when refused, or lose a deposit.

Each case is one an attacker can send for the price of an input (or for free, as an inspect).
After each we check the invariants a user relies on: every report fits the rollup API by
construction, a refused input leaves the market digest byte-identical, money is conserved, and
the backend still answers.
"""

from __future__ import annotations

import functools
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from dapp.loop import handle_inspect
from dapp.market import protocol as p
from dapp.market.cost import MAX_CLOSE_OPS, close_cost
from dapp.market.spec import SpecError, parse_spec
from dapp.ml.arch import ArchSpec
from dapp.ml.model_format import encode_model, initial_model
from dapp.outputs import MAX_OUTPUT_BYTES, MAX_TEXT_REPORT, Outputs, OutputTooLarge, quote
from tests.market_harness import ARCH, OWNER, TRAINERS, MarketSim, digits_job

ATTACKER = "0x" + "66" * 20


def assert_bounded(out: Outputs) -> None:
    for r in out.reports:
        assert len(r) <= MAX_OUTPUT_BYTES
    for item in out.emitted:
        assert len(item.payload) <= MAX_OUTPUT_BYTES


def refused_unchanged(sim: MarketSim, send) -> list[str]:
    """Send, expect a refusal that changed nothing, return its reports (each bounded)."""
    before = sim.market.digest()
    res = send()
    assert not res.accepted, res.reports
    assert sim.market.digest() == before
    assert sim.market.state.conserved()
    assert_bounded(res.outputs)
    for r in res.outputs.reports:
        assert len(r) <= MAX_TEXT_REPORT
    return res.reports


def huge_name_model(size: int) -> bytes:
    """A safetensors file whose one tensor's name is `size` bytes: valid framing, hostile header."""
    name = "w" * size
    header = json.dumps({name: {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00" * 4


# ---- free queries ----------------------------------------------------------------------------

def test_inspect_of_megabytes_is_refused_with_a_short_report():
    sim = MarketSim()
    ok, out = handle_inspect(sim.market, b"\x7f" * (2 << 20))
    assert not ok
    assert len(out.reports) == 1 and len(out.reports[0]) <= MAX_TEXT_REPORT
    assert b"unknown query" in out.reports[0]
    assert sim.inspect("state")["jobs"] == 0          # still answering


@pytest.mark.parametrize("path", ["job/\u0661", "job/" + "9" * 5000, "job/-1", "job/1e3",
                                  "balance/" + "a" * (1 << 20), "balance/0xzz",
                                  "content/" + "b" * 100_000, "jobs/page/\u0662",
                                  "token/0x" + "1" * 39, "tokens/page/-1", "tokens/page",
                                  "job/1/round/" + "1" * 30])
def test_hostile_query_paths_are_refused_briefly(path):
    sim = MarketSim()
    digits_job(sim, rounds=1)
    ok, out = handle_inspect(sim.market, path.encode())
    assert not ok, out.reports
    assert len(out.reports[0]) <= MAX_TEXT_REPORT


@functools.cache
def _query_sim() -> MarketSim:
    """One market with a job, for many queries (a query changes nothing)."""
    sim = MarketSim()
    digits_job(sim, rounds=1)
    return sim


_NUMBERS = hs.one_of(hs.integers(0, 10**20 - 1),
                     hs.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64, 10**20 - 1])).map(str)
_PATHS = hs.one_of(
    hs.tuples(hs.sampled_from(["jobs/page/{}", "jobs/open/page/{}", "tokens/page/{}",
                               "jobs/after/{}", "jobs/open/after/{}", "tokens/after/{}", "job/{}",
                               "job/1/round/{}", "job/{}/round/0", "balance/{}", "token/{}",
                               "content/{}"]), _NUMBERS).map(lambda t: t[0].format(t[1])),
    hs.lists(hs.one_of(hs.sampled_from(["jobs", "job", "open", "page", "after", "round", "balance",
                                        "token", "tokens", "content", "state", "",
                                        "0x" + "ab" * 20]), _NUMBERS, hs.text(max_size=8)),
             min_size=1, max_size=5).map("/".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PATHS)
def test_no_query_path_reaches_an_internal_error(path):
    """Every path of the query grammar, with numbers up to 20 digits, and any other path gets an
    answer or a refusal that says why, never an internal error (tokens/page/<20 digits> was
    one: islice refuses indices over sys.maxsize)."""
    ok, out = handle_inspect(_query_sim().market, path.encode())
    assert ok or b"internal error" not in out.reports[0], out.reports
    assert_bounded(out)


def test_non_ascii_digits_do_not_name_a_job():
    sim = MarketSim()
    digits_job(sim, rounds=1)
    assert sim.inspect("job/1")["id"] == 1
    ok, out = handle_inspect(sim.market, "job/\u0661".encode())   # ARABIC-INDIC DIGIT ONE
    assert not ok and b"not a number" in out.reports[0]


def test_jobs_are_listed_a_page_at_a_time():
    sim = MarketSim()
    job = digits_job(sim, rounds=1)
    for _ in range(3):
        assert sim.deposit_eth(OWNER, 10**6, p.CreateJob(job.spec_cid).encode()).notices
    assert [j["job"] for j in sim.inspect("jobs")] == [1, 2, 3, 4]
    assert sim.inspect("jobs/page/1") == []
    assert sim.call(OWNER, p.CancelJob(2)).accepted
    assert [j["job"] for j in sim.inspect("jobs/open")] == [1, 3, 4]
    assert sim.inspect("jobs/open/page/0") == sim.inspect("jobs/open")
    assert sim.inspect("jobs/open/page/1") == []
    assert [j["job"] for j in sim.inspect("jobs/open/after/1")] == [3, 4]
    assert [j["job"] for j in sim.inspect("jobs/after/2")] == [3, 4]
    assert sim.inspect("jobs/open/after/0") == sim.inspect("jobs/open")
    assert sim.inspect("jobs/after/4") == [] == sim.inspect("jobs/after/" + "9" * 20)
    ok, out = handle_inspect(sim.market, b"jobs/after/-1")
    assert not ok and b"not a number" in out.reports[0]
    for bad in ("jobs/page", "jobs/open/page", "jobs/closed", "jobs/open/1", "jobs/after",
                "tokens/after/1"):
        ok, out = handle_inspect(sim.market, bad.encode())
        assert not ok and b"jobs/open/page/<k>" in out.reports[0], (bad, out.reports)


def test_a_trainer_lists_every_open_job_however_many_jobs_came_before():
    """`trainer jobs` read one page: after 100 jobs of any kind (anyone opens one with a
    deposit), every newer job was missing from it."""
    from types import SimpleNamespace

    from client.trainer import list_jobs
    sim = MarketSim()
    job = digits_job(sim, rounds=1)
    # job 2 starts late, so its owner can still cancel it while a trainer lists the jobs
    late = json.loads(sim.content.objects[job.spec_cid])
    late["windows"] = dict(late["windows"], start_delay=3600)
    assert sim.deposit_eth(ATTACKER, 1, p.CreateJob(sim.content.put(
        json.dumps(late).encode())).encode()).notices
    for _ in range(p.PAGE + 19):
        assert sim.deposit_eth(ATTACKER, 1, p.CreateJob(job.spec_cid).encode()).notices
    assert sim.deposit_eth(OWNER, 10**6, p.CreateJob(job.spec_cid).encode()).notices
    newest = p.PAGE + 22
    ctx = SimpleNamespace(node=SimpleNamespace(inspect=sim.inspect))
    assert newest not in [j["job"] for j in sim.inspect("jobs")]   # one page: not there
    assert [j["job"] for j in list_jobs(ctx)] == list(range(1, newest + 1))
    assert len(list_jobs(ctx, everything=True)) == newest

    # a job closing between two pages: read by offset, the next page shifted by one and the
    # first job of the second page went missing; read after a cursor, every other job is there
    def inspect_while_a_job_closes(path: str) -> object:
        answer = sim.inspect(path)
        if sim.inspect("job/2")["status"] == "open":   # after the first page, whatever its path
            assert sim.call(ATTACKER, p.CancelJob(2)).accepted
        return answer

    ctx = SimpleNamespace(node=SimpleNamespace(inspect=inspect_while_a_job_closes))
    assert [j["job"] for j in list_jobs(ctx)] == list(range(1, newest + 1))
    offset = [j["job"] for j in sim.inspect("jobs/open") + sim.inspect("jobs/open/page/1")]
    assert offset == [i for i in range(1, newest + 1) if i != 2]   # what a rerun lists


def test_the_state_answer_stays_small_however_many_tokens_anyone_deposits():
    """Anyone adds a token with one ERC-20 deposit of a token it deployed. The `state` answer
    listed every token's totals and outgrew an output at about 10,000 tokens, so nobody could
    read the market's digest; now it counts them, and the totals come a page at a time."""
    sim = MarketSim()
    real = ["0x" + c * 40 for c in "abc"]
    for i, token in enumerate(real):
        assert sim.deposit_erc20(ATTACKER, token, i + 1).accepted
    led = sim.market.state.ledger
    for t in range(12_000):      # as the deposits would leave it, without 12,000 inputs
        token = f"0x{t + 1:040x}"
        led.credit(token, ATTACKER, 5)
        led.record_deposit(token, 5)
    ok, out = handle_inspect(sim.market, b"state")
    assert ok and len(out.reports[0]) < 300, out.reports
    state = json.loads(out.reports[0])
    assert state["tokens"] == 12_003 and state["digest"] == "0x" + sim.market.digest().hex()
    first = sim.inspect("tokens")
    assert [t["token"] for t in first[:3]] == real     # in first-deposit order
    assert first[1] == {"token": real[1], "deposited": "2", "withdrawn": "0", "balances": "2",
                        "escrow": "0"}
    ok, out = handle_inspect(sim.market, b"tokens/page/120")
    assert ok and len(out.reports[0]) <= MAX_OUTPUT_BYTES
    assert [t["token"] for t in json.loads(out.reports[0])] == [
        f"0x{t + 1:040x}" for t in range(11_997, 12_000)]
    assert sim.inspect("tokens/page/121") == []
    assert sim.inspect("tokens/page/" + "9" * 20) == [] == sim.inspect("jobs/open/page/" + "9" * 20)
    assert sim.inspect(f"token/{real[2]}")["deposited"] == "3"
    assert sim.inspect("token/0x" + "d" * 40)["deposited"] == "0"   # never deposited


# ---- inputs whose refusal would echo megabytes -----------------------------------------------

def _joined_job():
    """A one-round digits job that TRAINERS[0] joined, at its commit window."""
    job = digits_job(rounds=1)
    assert job.sim.call(TRAINERS[0], p.Join(job.job_id)).accepted
    job.sim.advance(10)
    return job, job.sim, TRAINERS[0]


def test_reveal_of_a_model_with_a_megabyte_tensor_name_is_refused_briefly():
    job, sim, trainer = _joined_job()
    model_cid = sim.content.put(huge_name_model(1_000_000))
    card_cid = sim.content.put(job.data_card(job.y[:50].nonzero()[0]))
    sub = (model_cid, card_cid, b"\x05" * 32)
    assert job.commit(trainer, 0, sub).accepted
    sim.advance(100)
    for _ in range(3):   # the commitment stays valid: resending must stay harmless
        reports = refused_unchanged(sim, lambda: job.reveal(trainer, 0, sub))
        assert "invalid model" in reports[0]


def test_reveal_of_a_data_card_with_a_megabyte_field_is_refused_briefly():
    job, sim, trainer = _joined_job()
    m = initial_model(job.arch, b"hostile-card")
    card = json.dumps({"version": 1, "num_samples": 10, "label_histogram": [1] * 10,
                       "feature_shape": [1, 8, 8], "data_commitment": "0x" + "00" * 32,
                       "dp": None, "x" * 1_000_000: 1}).encode()
    sub = (sim.content.put(encode_model(m, job.arch)), sim.content.put(card), b"\x06" * 32)
    assert job.commit(trainer, 0, sub).accepted
    sim.advance(100)
    reports = refused_unchanged(sim, lambda: job.reveal(trainer, 0, sub))
    assert "data card" in reports[0]


def test_deposit_whose_job_fails_with_a_huge_reason_is_credited_with_a_short_report():
    sim = MarketSim()
    job = digits_job(sim, rounds=1, open_job=False)
    spec = dict(job.spec, initial_model=sim.content.put(huge_name_model(1_000_000)))
    spec_cid = sim.content.put(json.dumps(spec).encode())
    res = sim.deposit_eth(OWNER, 5 * 10**17, p.CreateJob(spec_cid).encode())
    assert res.accepted
    assert_bounded(res.outputs)
    assert all(len(r) <= MAX_TEXT_REPORT for r in res.outputs.reports)
    assert "credited" in res.reports[0]
    assert sim.inspect(f"balance/{OWNER}")["balances"] == {p.ETH: str(5 * 10**17)}


# ---- specs that would stall every job ---------------------------------------------------------

def test_a_spec_whose_round_close_costs_hours_is_refused_saying_by_how_much():
    sim = MarketSim()
    job = digits_job(sim, rounds=1, open_job=False)
    conv = {"input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 12, "layers": [
        {"type": "conv2d", "name": "c", "in_channels": 1, "out_channels": 64, "kernel_size": 3,
         "padding": 1}, {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "name": "fc", "in_features": 4096, "out_features": 10}]}
    spec = dict(job.spec, arch=conv, max_trainers=12,
                contribution={"method": "shapley", "exact_max_players": 12, "permutations": 64,
                              "truncation": None},
                limits={"max_model_bytes": 1 << 20, "max_shard_samples": 100_000})
    with pytest.raises(SpecError, match=r"too expensive.*x the budget"):
        parse_spec(json.dumps(spec).encode())
    spec_cid = sim.content.put(json.dumps(spec).encode())
    res = sim.deposit_eth(OWNER, 10**18, p.CreateJob(spec_cid).encode())
    assert res.accepted and not res.notices               # no job, and the money is safe
    assert "too expensive" in res.reports[0]
    assert sim.inspect(f"balance/{OWNER}")["balances"] == {p.ETH: str(10**18)}


def test_the_budget_admits_the_template_and_the_harness_jobs():
    from client.jobs import DIGITS_CNN, build_spec
    from dapp.content.unixfs import chunk
    spec = build_spec(name="t", arch=DIGITS_CNN, initial_model_cid="bafk", shards=[],
                      public_validation=str(chunk(b"public shard")[0]))
    spec.update(rounds=1, validation=["0x" + "00" * 32])
    parsed = parse_spec(json.dumps(spec).encode())
    cost = close_cost(parsed.arch, {"method": "shapley", **parsed.contribution},
                      parsed.max_trainers, parsed.limits.max_shard_samples)
    assert cost.ops <= MAX_CLOSE_OPS
    digits_job(rounds=1)   # opens (asserted inside)


def test_cost_counts_what_closing_does():
    arch = ArchSpec.from_dict(ARCH)
    shapley = {"method": "shapley", "exact_max_players": 10, "permutations": 64}
    exact = close_cost(arch, shapley, 10, 100)
    assert exact.evaluations == 2 ** 10 + 10 + 2           # coalitions, overflow checks, accuracy
    assert exact.ops_per_sample == 64 + 640                # flatten reads 64 values, fc 640 MACs
    assert close_cost(arch, shapley, 50, 100).evaluations == 64 * 50 + 2 + 50 + 2
    assert close_cost(arch, {"method": "loo"}, 50, 100).evaluations == 51 + 52
    # The validated rule: public + secret shard, its gate, three leave-one-out fallbacks.
    v = close_cost(arch, shapley, 10, 100, public_shard=True, validated=True, utility="margin")
    assert v.evaluations == 2 ** 10 + 3 * 11 + (3 * 10 + 4) + 10 + 2
    sample_evals = 2 ** 10 * 200 + 11 * (100 + 200 + 100) + 34 * 100 + 12 * 200
    assert v.ops == sample_evals * 704 + (2 ** 10 + 33) * 10 * 650 + 100 * 650


# ---- every input kind, random oversize fields -------------------------------------------------

def _calls(big: str, raw: bytes, n: int):
    return [p.Join(n), p.Commit(n, n, raw[:32].ljust(32, b"\0")),
            p.Reveal(n, n, big, big, raw[:32].ljust(32, b"\0")),
            p.RevealValidation(n, n, big, raw[:32].ljust(32, b"\0")),
            p.CloseRound(n, n), p.Withdraw("0x" + "00" * 20, n), p.CancelJob(n),
            p.PutContent(big, n % (1 << 64), n % (1 << 32), raw)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=hs.integers(0, 30_000), fill=hs.sampled_from(["\x7f", "\u0661", "'", "b", "\x00"]),
       raw=hs.binary(max_size=2000), n=hs.integers(0, 2**64 - 1))
def test_oversize_fields_in_every_input_kind_are_refused_briefly(size, fill, raw, n):
    sim = MarketSim()
    digits_job(sim, rounds=1)
    big = fill * size
    for call in _calls(big, raw, n):
        before = sim.market.digest()
        res = sim.call(ATTACKER, call)
        assert_bounded(res.outputs)
        if not res.accepted:
            assert sim.market.digest() == before
            assert all(len(r) <= MAX_TEXT_REPORT for r in res.outputs.reports)
        assert sim.market.state.conserved()
    # garbage that is not even a call, and deposits with garbage execLayerData
    for payload in (raw, bytes.fromhex("aafa944e") + raw, big.encode()[:60_000]):
        assert_bounded(sim.send(ATTACKER, payload).outputs)
        res = sim.deposit_eth(ATTACKER, 7, payload)
        assert res.accepted and sim.market.state.conserved()


def test_an_oversize_output_refuses_the_input_not_the_backend():
    out = Outputs()
    out.report("x" * (10 * MAX_OUTPUT_BYTES))           # text is cut, never refused
    assert len(out.reports[0]) <= MAX_TEXT_REPORT
    with pytest.raises(OutputTooLarge):
        out.notice(b"n" * (MAX_OUTPUT_BYTES + 1))
    with pytest.raises(OutputTooLarge):
        out.report(b"r" * (MAX_OUTPUT_BYTES + 1))


def test_quote_is_bounded_and_ascii():
    q = quote("\x7f" * 1_000_000)
    assert q.isascii() and len(q) < 400
    assert quote("job") == "'job'"


# ---- unreachable content is never a verdict ---------------------------------------------------

def test_an_input_whose_content_is_unreachable_waits_instead_of_being_refused():
    from dapp.content.errors import ContentUnavailable
    from dapp.loop import RETRY_MAX_SLEEP, advance_when_available
    from dapp.rollup_api import Metadata

    class Flaky:
        calls = 0

        def advance(self, meta, payload):
            self.calls += 1
            if self.calls <= 6:
                raise ContentUnavailable("store down", "bafk")
            out = Outputs()
            out.notice(b"decided once the store answered")
            return out

    slept: list[float] = []
    app = Flaky()
    meta = Metadata(1, "0x" + "00" * 20, "0x" + "11" * 20, 1, 1, "0x" + "00" * 32, 0)
    accepted, out = advance_when_available(app, meta, b"", sleep=slept.append)
    assert accepted and out.emitted[0].payload == b"decided once the store answered"
    assert len(slept) == 6 and slept == sorted(slept) and max(slept) <= RETRY_MAX_SLEEP
    ok, rep = handle_inspect(type("Q", (), {"inspect": lambda self, p: (_ for _ in ()).throw(
        ContentUnavailable("store down", "bafk"))})(), b"content/x")
    assert not ok and b"unavailable" in rep.reports[0]
