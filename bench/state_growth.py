"""What one input costs the backend as the market's history grows.

Every input works on a trial of the market state, committed only when it succeeds (so a refused
input changes nothing). The jobs grow with history: a finished job keeps its rounds, reveals and
round notices. Before, the trial was a deep copy of the whole state, so every input, refused or
not, paid for every job that ever ran, and anyone can add jobs (a deposit of a few wei with a
spec). Now a job is copied only when the input reads it (`dapp.market.state.TrialJobs`).

Setup: N finished jobs of 6 rounds x 50 trainers (commits, reveals, round notices: the shapes
the market stores), then, through `dapp.loop.handle_advance` as the node calls it:
- an ETH deposit (credits a balance, reads no job);
- a refused `join` of one of the finished jobs (refused on the committed job: nothing copied,
  nothing changed);
- the free `state` inspect query, after one input (its digest re-hashes only the jobs that
  inputs changed since the last ask, `dapp.market.state.JobDigests`).
Baselines in the same run: the old per-input copy, `copy.deepcopy` of the same state, and the
old `state` answer, the full digest re-hashing every job.

Then the same deposit, and the `state` query after it, against N accounts that hold a balance
(each one a deposit away for anyone): the input changes one balance in a `TrialLedger` and
checks money conservation on running totals; the query reads a multiset hash of the balances
kept up to date as they move (`dapp.hashing.MultisetHash`). Baselines: what every input did
before, a deep copy of the ledger and a sum over every balance, and what every query did, the
ledger serialised and hashed whole. With them, a `payout` input (anyone may send one; it pays
the 200 lowest addresses), and its pick of payees (the 200 smallest, `heapq.nsmallest`) against
the sort of every account it did before.

Last, the same deposit at 1,000 finished jobs against N tokens that were ever deposited (anyone
adds one with an ERC-20 deposit of a token it deployed): the money-conservation check every
input runs weighs only the tokens the input moved, from escrow totals kept per token
(`JobIndex`). Baselines: every token checked against those totals (what each input did before),
and, up to 1,000 tokens, the check as it was first, every job's escrow summed once per token.
With them, the `state` query (it counts the tokens; their totals come from `token/<address>`
and `tokens/page/<k>`, and its digest reads them from the multiset hash) and the last tokens
page. Baselines: the old `state` answer, every token's deposited and withdrawn totals (its
size against the output limit), and the old digest's dump of those totals.

And against N small jobs (opened by a deposit and cancelled: the cheapest history anyone can
add). Escrow totals and the open jobs are kept as commits write jobs (`JobIndex`), and the
`state` query reads a multiset hash of the jobs kept the same way. Baselines: the scans every
input ran over every job, and every job's hash (already known) assembled per query. With them,
the last page of the free `jobs` listing (the ids sorted, then sliced).

Run: `.venv/bin/python -m bench.state_growth`; writes bench/results/state_growth.json.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import asdict
from typing import Any

from bench import write_results
from dapp import canonical
from dapp.hashing import keccak
from dapp.market import payout
from dapp.market import protocol as p
from dapp.market.state import (CANCELLED, FINISHED, OPEN, Job, MarketState, Round, Submission,
                               job_digest)
from dapp.outputs import MAX_OUTPUT_BYTES
from tests.market_harness import MarketSim

SIZES = (0, 100, 1000)
ACCOUNTS = (0, 10_000, 100_000)
TOKENS, TOKEN_JOBS = (1, 1000, 100_000), 1000
SUMMED_UP_TO = 1000   # the first baseline is O(tokens x jobs): 0.4 s per input at 1,000 tokens
SMALL_JOBS = (10_000, 100_000)
TRAINERS, ROUNDS, REPEATS = 50, 6, 5


def finished_job(job_id: int) -> Job:
    """A finished job as the market keeps it: every round's commits, reveals and notice."""
    addrs = [f"0x{job_id:020x}{k:020x}" for k in range(TRAINERS)]
    job = Job(id=job_id, owner="0x" + "11" * 20, token=p.ETH, budget=10**18, escrow=0,
              spec_cid="bafkrei" + "a" * 52, opened_at=0, status=FINISHED,
              global_model_cid="bafkrei" + "b" * 52, global_model_hash="0x" + "ab" * 32,
              hparams={"learning_rate": [1, 2], "local_epochs": 2, "batch_size": 32},
              trainers=list(addrs), paid={a: 10**16 for a in addrs})
    for r in range(ROUNDS):
        rnd = Round(index=r, start=0, budget=10**17)
        rnd.commits = {a: "0x" + "cd" * 32 for a in addrs}
        rnd.reveals = {a: Submission("bafkrei" + "m" * 52, "bafkrei" + "d" * 52, "0x" + "ef" * 32,
                                     100, 100) for a in addrs}
        rnd.summary = {"type": "round_closed", "job": job_id, "round": r, "trainers": [
            {"address": a, "verdict": "accepted", "reward": "123456789012345",
             "contribution": "12345/6789", "model_cid": "bafkrei" + "m" * 52,
             "data_cid": "bafkrei" + "d" * 52, "model_hash": "0x" + "ef" * 32, "weight": 100,
             "gain": 12345} for a in addrs]}
        job.rounds.append(rnd)
    return job


def small_job(job_id: int) -> Job:
    """The cheapest job anyone can add: opened by a deposit and cancelled, one empty round."""
    return Job(id=job_id, owner="0x" + "11" * 20, token=p.ETH, budget=1, escrow=0,
               spec_cid="bafkrei" + "a" * 52, opened_at=0, status=CANCELLED,
               global_model_cid="bafkrei" + "b" * 52, global_model_hash="0x" + "ab" * 32,
               hparams={}, rounds=[Round(index=0, start=0, budget=1)])


def timed(fn: Any) -> float:
    """Median seconds of REPEATS calls."""
    out = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def with_history(jobs: int) -> MarketSim:
    """A market holding `jobs` finished jobs (put straight into its state)."""
    sim = MarketSim()
    for i in range(1, jobs + 1):
        sim.market.state.jobs[i] = finished_job(i)
    sim.market.state.next_job_id = jobs + 1
    return sim


def deposit(sim: MarketSim) -> None:
    sim.deposit_eth("0x" + "33" * 20, 1)


def state_query_after_a_deposit(sim: MarketSim, deposit_s: float) -> float:
    """Seconds of a `state` query that follows an input (the input's own time taken off),
    after a first ask (which hashes every job once after a start)."""
    sim.inspect("state")
    query = timed(lambda: (deposit(sim), sim.inspect("state"))) - deposit_s
    assert sim.inspect("state")["digest"] == "0x" + sim.market.digest().hex()
    return query


def old_conserved(st: MarketState) -> bool:
    """The check every input ran before, on its trial: each token's escrows summed over every
    job."""
    led = st.ledger
    return all(led.deposited[t] == led.total_balances(t) + led.withdrawn.get(t, 0)
               + sum(j.escrow for j in st.jobs.values() if j.token == t) for t in led.deposited)


def main() -> dict[str, Any]:
    rows = []
    for n in SIZES:
        sim = with_history(n)
        before = sim.market.digest()
        refused = timed(lambda: sim.call("0x" + "22" * 20, p.Join(max(n, 1))))
        assert sim.market.digest() == before, "a refused input changed the state"
        dep = timed(lambda: deposit(sim))
        old_copy = timed(lambda: copy.deepcopy(sim.market.state))
        query = state_query_after_a_deposit(sim, dep)
        full = timed(sim.market.digest)
        rows.append({"finished_jobs": n, "deposit_s": dep, "refused_join_s": refused,
                     "state_query_s": query, "baseline_whole_state_copy_s": old_copy,
                     "baseline_full_digest_s": full})
        print(f"{n:>5} finished jobs: deposit {dep * 1e3:8.2f} ms, refused join "
              f"{refused * 1e3:8.2f} ms, state query {query * 1e3:8.2f} ms | baselines: "
              f"whole-state copy per input {old_copy * 1e3:9.2f} ms, full digest per state "
              f"query {full * 1e3:9.2f} ms")
    ledger_rows = []
    for n in ACCOUNTS:
        sim = MarketSim()
        led = sim.market.state.ledger
        for i in range(n):   # addresses in no order (an odd multiplier permutes mod 2**40)
            led.credit(p.ETH, f"0x{(i + 1) * 2654435761 % (1 << 40):040x}", 1)
        led.record_deposit(p.ETH, n)
        dep = timed(lambda: deposit(sim))
        assert sim.market.state.conserved() and led.audit()

        def old_way() -> None:
            copy.deepcopy(sim.market.state.ledger)
            sum(sim.market.state.ledger.balances.get(p.ETH, {}).values())

        old = timed(old_way)
        query = state_query_after_a_deposit(sim, dep)
        full = timed(lambda: keccak(canonical.dumps(asdict(led))))  # the old answer's ledger
        plan = timed(lambda: payout.plan(sim.market.state.ledger, p.ETH, set()))
        sorted_plan = timed(lambda: sorted(sim.market.state.ledger.accounts(p.ETH).items())
                            [:payout.MAX_PAYEES])
        pay = timed(lambda: sim.call("0x" + "55" * 20, p.Payout(p.ETH)))   # 200 paid each
        ledger_rows.append({"accounts": n, "deposit_s": dep, "state_query_s": query,
                            "payout_input_s": pay, "payout_plan_s": plan,
                            "baseline_ledger_copy_and_sum_s": old,
                            "baseline_ledger_rehashed_s": full,
                            "baseline_payout_plan_sorted_s": sorted_plan})
        print(f"{n:>7} accounts: deposit {dep * 1e3:8.2f} ms, state query {query * 1e3:8.2f} "
              f"ms, payout input {pay * 1e3:8.2f} ms (its payee pick {plan * 1e3:7.2f} ms) | "
              f"baselines: ledger copy and sum per input {old * 1e3:9.2f} ms, every "
              f"balance re-hashed per state query {full * 1e3:9.2f} ms, every account sorted "
              f"per payout {sorted_plan * 1e3:8.2f} ms")
    token_rows = []
    for n in TOKENS:
        sim = with_history(TOKEN_JOBS)
        led = sim.market.state.ledger
        for t in range(n):
            led.credit(f"0x{t + 1:040x}", "0x" + "44" * 20, 5)
            led.record_deposit(f"0x{t + 1:040x}", 5)
        dep = timed(lambda: deposit(sim))
        every = timed(sim.market.state.conserved)   # a committed state checks every token
        old = (timed(lambda: old_conserved(sim.market.state.trial()))  # as inputs ran it
               if n <= SUMMED_UP_TO else None)
        query = state_query_after_a_deposit(sim, dep)
        answer = len(json.dumps(sim.inspect("state")).encode())
        last = f"tokens/page/{(n - 1) // p.PAGE}"
        page = timed(lambda: sim.inspect(last))
        old_answer = len(json.dumps(     # the state answer listed every token's totals
            {k: {t: str(v) for t, v in sorted(getattr(led, k).items())}
             for k in ("deposited", "withdrawn")}).encode())
        old_flows = timed(lambda: keccak(canonical.dumps(      # and its digest dumped them
            {"deposited": led.deposited, "withdrawn": led.withdrawn})))
        token_rows.append({"tokens": n, "finished_jobs": TOKEN_JOBS, "deposit_s": dep,
                           "state_query_s": query, "state_answer_bytes": answer,
                           "last_tokens_page_s": page,
                           "baseline_every_token_checked_s": every,
                           "baseline_conservation_check_s": old,
                           "baseline_state_answer_bytes": old_answer,
                           "baseline_state_answer_fits": old_answer <= MAX_OUTPUT_BYTES,
                           "baseline_flows_dumped_per_query_s": old_flows})
        print(f"{n:>7} tokens, {TOKEN_JOBS} jobs: deposit {dep * 1e3:8.2f} ms, state query "
              f"{query * 1e3:6.2f} ms ({answer} B), last tokens page {page * 1e3:6.2f} ms | "
              f"baselines: every token checked per input {every * 1e3:8.2f} ms, escrows summed "
              "per token " + (f"{old * 1e3:9.2f} ms" if old is not None else "(not run)")
              + f", state answer {old_answer:,} B ("
              + ("fits" if old_answer <= MAX_OUTPUT_BYTES else "refused: over an output")
              + f"), flows dumped per query {old_flows * 1e3:7.2f} ms")
    small_rows = []
    for n in SMALL_JOBS:
        sim = with_history(0)
        for i in range(1, n + 1):
            sim.market.state.jobs[i] = small_job(i)
        sim.market.state.next_job_id = n + 1
        dep = timed(lambda: deposit(sim))
        query = state_query_after_a_deposit(sim, dep)
        digests = {k: job_digest(j) for k, j in sim.market.state.jobs.items()}

        def old_input() -> None:   # what every input scanned: escrows per token, open jobs
            old_conserved(sim.market.state.trial())
            [j for j in sim.market.state.jobs.values() if j.status == OPEN]

        old_in = timed(old_input)
        old_query = timed(lambda: keccak(canonical.dumps(
            {str(k): "0x" + d.hex() for k, d in digests.items()})))
        start = (n - 1) // p.PAGE * p.PAGE
        page = timed(lambda: sim.inspect(f"jobs/page/{start // p.PAGE}"))
        small_rows.append({"small_jobs": n, "deposit_s": dep, "state_query_s": query,
                           "last_jobs_page_s": page,
                           "baseline_per_input_scans_s": old_in,
                           "baseline_job_hashes_assembled_per_query_s": old_query})
        print(f"{n:>7} small jobs: deposit {dep * 1e3:8.2f} ms, state query {query * 1e3:8.2f} "
              f"ms, last jobs page {page * 1e3:6.2f} ms | baselines: every job scanned per "
              f"input {old_in * 1e3:9.2f} ms, every job's (cached) hash assembled per state "
              f"query {old_query * 1e3:9.2f} ms")
    result = {"what": "one input's cost against the market's history (finished 6-round "
                      "50-trainer jobs, or small cancelled ones), the accounts holding a "
                      "balance and the tokens deposited", "rows": rows,
              "ledger_rows": ledger_rows, "token_rows": token_rows, "small_rows": small_rows}
    write_results("state_growth", result)
    return result


if __name__ == "__main__":
    main()
