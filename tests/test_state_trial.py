"""An input works on a trial of the market state: what it reads is copied, what it does not read
is shared, and nothing reaches the state before the input succeeds (bench/state_growth.py
measures why: copying every job for every input grew with the market's history)."""

from __future__ import annotations

from bench.state_growth import finished_job
from dapp.market import protocol as p
from dapp.market.state import MarketState
from tests.market_harness import OWNER, TRAINERS, MarketSim, digits_job


def history(n: int) -> MarketState:
    st = MarketState()
    for i in range(1, n + 1):
        st.jobs[i] = finished_job(i)
    st.next_job_id = n + 1
    return st


def test_a_trial_changes_nothing_until_committed():
    st = history(3)
    before = st.digest()
    trial = st.trial()
    trial.jobs[2].escrow += 7
    trial.jobs[4] = finished_job(4)
    trial.ledger.credit(p.ETH, OWNER, 7)
    assert st.digest() == before and 4 not in st.jobs and st.jobs[2].escrow == 0
    assert len(trial.jobs) == 4 and sorted(trial.jobs) == [1, 2, 3, 4] and 4 in trial.jobs
    assert [j.escrow for j in trial.jobs.values()] == [0, 7, 0, 0]
    kept = trial.commit()
    assert kept.jobs[2].escrow == 7 and kept.jobs[4].id == 4 and kept.digest() != before
    assert type(kept.jobs) is dict  # committed: a plain mapping again, digested as before


def test_a_trial_copies_only_the_jobs_it_reads():
    st = history(3)
    untouched = st.jobs[3]
    trial = st.trial()
    touched = trial.jobs.get(1)
    assert touched is not st.jobs[1]                       # read: a copy it may change
    assert dict(trial.jobs.items())[3] is untouched        # not read: shared, not copied
    trial.commit()
    assert st.jobs[1] is touched and st.jobs[3] is untouched


def test_a_batch_message_commits_into_its_input_not_the_state():
    st = history(2)
    outer = st.trial()
    inner = outer.trial(share_ledger=True)  # what a batch tries each signed message on
    assert inner.ledger is outer.ledger
    inner.jobs[1].status = "cancelled"
    inner.commit()
    assert outer.jobs[1].status == "cancelled" and st.jobs[1].status == "finished"
    outer.commit()
    assert st.jobs[1].status == "cancelled"


def market_with_history() -> tuple[MarketSim, int]:
    """A market with one open digits job and, after it, three finished ones."""
    sim = MarketSim()
    job_id = digits_job(sim).job_id
    for i in range(job_id + 1, job_id + 4):
        sim.market.state.jobs[i] = finished_job(i)
    sim.market.state.next_job_id = job_id + 4
    return sim, job_id


def test_the_market_leaves_unread_jobs_alone_and_refusals_change_nothing():
    sim, job_id = market_with_history()
    others = {i: sim.market.state.jobs[i] for i in range(job_id + 1, job_id + 4)}
    before = sim.market.digest()
    assert not sim.call(TRAINERS[0], p.Join(job_id + 1)).accepted  # finished: refused
    assert sim.market.digest() == before
    assert sim.call(TRAINERS[0], p.Join(job_id)).accepted
    assert all(sim.market.state.jobs[i] is job for i, job in others.items())
    assert TRAINERS[0] in sim.market.state.jobs[job_id].trainers


def test_the_free_state_query_rehashes_only_the_jobs_inputs_changed(monkeypatch):
    """`state` is free to ask; hashing every job that ever ran on each ask was 14 s at 1,000
    finished jobs (bench/state_growth.py). Its digest must still be the full digest's bytes."""
    import dapp.market.state as state_mod

    sim, job_id = market_with_history()
    assert sim.inspect("state")["digest"] == "0x" + sim.market.digest().hex()
    hashed: list[int] = []
    real = state_mod.job_digest
    monkeypatch.setattr(state_mod, "job_digest", lambda job: hashed.append(job.id) or real(job))
    sim.inspect("state")
    assert hashed == []                                       # nothing changed: nothing hashed
    assert not sim.call(TRAINERS[0], p.Join(job_id + 1)).accepted
    sim.inspect("state")
    assert hashed == []                                       # a refusal commits nothing
    assert sim.call(TRAINERS[0], p.Join(job_id)).accepted
    answer = sim.inspect("state")["digest"]
    assert hashed == [job_id]                                 # only the job the join changed
    assert answer == "0x" + sim.market.digest().hex()


def test_an_input_s_conservation_check_weighs_the_tokens_it_moved():
    """A trial is checked on the tokens it moved (escrow, balance, deposit or withdrawal); a
    break in any of them is caught, whatever the other tokens hold."""
    token = "0x" + "7e" * 20
    st = history(2)
    st.ledger.credit(token, OWNER, 5)
    st.ledger.record_deposit(token, 5)
    assert st.conserved()
    for breaks in (lambda t: t.ledger.credit(p.ETH, OWNER, 1),          # money from nowhere
                   lambda t: setattr(t.jobs[1], "escrow", t.jobs[1].escrow + 1),
                   lambda t: t.ledger.record_withdrawal(token, 1)):
        trial = st.trial()
        breaks(trial)
        assert not trial.conserved()
    trial = st.trial()      # a balanced move: 2 of the token from the owner into job 1's escrow
    trial.jobs[1].token, trial.jobs[1].escrow = token, 2
    trial.ledger.debit(token, OWNER, 2)
    assert trial.conserved() and trial.commit().conserved()
