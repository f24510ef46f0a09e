"""Random sequences of inputs from several accounts, garbage included, against the market.

Whatever arrives: money is conserved (every wei deposited is in exactly one balance or escrow,
or was paid out by a voucher), the backend never dies, and every refused input leaves the
state byte-identical.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dapp.market import protocol as p
from dapp.ml.model_format import initial_model
from tests.market_harness import OWNER, TOKEN, TRAINERS, MarketSim, Result, digits_job

ACCOUNTS = [OWNER, *TRAINERS[:3]]
accounts = st.sampled_from(ACCOUNTS)
tokens = st.sampled_from([p.ETH, TOKEN])
amounts = st.integers(min_value=0, max_value=10**20)

_BASE: dict = {}


def base_job():
    """One prepared job template (training a model once), reused by every example."""
    if not _BASE:
        j = digits_job(open_job=False)
        g = initial_model(j.arch, b"tributary-test")
        idx = np.arange(300)
        _BASE["job"] = j
        _BASE["model"] = j.train(g, idx, steps=5)
        _BASE["idx"] = idx
    return _BASE


class MarketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        base = base_job()
        self.tpl = base["job"]
        self.sim = MarketSim(content=self.tpl.sim.content)
        self.tpl.sim = self.sim
        self.sub = self.tpl.submit(TRAINERS[0], 0, base["model"], base["idx"])
        self.paid_out: dict[str, int] = {}

    def _send(self, fn) -> Result:
        before = self.sim.market.digest()
        res = fn()
        if not res.accepted:
            assert self.sim.market.digest() == before, res.reports
            assert not res.outputs.emitted
        for v in res.vouchers:
            token = p.ETH if not v.payload else v.destination
            amount = v.value if not v.payload else int.from_bytes(v.payload[-32:], "big")
            self.paid_out[token] = self.paid_out.get(token, 0) + amount
        return res

    @rule(who=accounts, value=amounts, token=tokens, with_job=st.booleans())
    def deposit(self, who, value, token, with_job):
        data = p.CreateJob(self.tpl.spec_cid).encode() if with_job else b""
        if token == p.ETH:
            res = self._send(lambda: self.sim.deposit_eth(who, value, data))
        else:
            res = self._send(lambda: self.sim.deposit_erc20(who, token, value, data))
        assert res.accepted, "a deposit is never refused: the portal already moved the money"

    @rule(who=accounts, index=st.integers(0, 2), cut=st.integers(0, 3))
    def put_content(self, who, index, cut):
        """Chunks of a real object, some truncated (refused) or out of range."""
        cid = self.sub[0]
        data = self.sim.content.objects[cid]
        part = data[index * 60_000:(index + 1) * 60_000]
        self._send(lambda: self.sim.call(who, p.PutContent(cid, len(data), index,
                                                           part[:len(part) - cut])))

    @rule(who=accounts, junk=st.binary(max_size=80))
    def garbage(self, who, junk):
        self._send(lambda: self.sim.send(who, junk))

    @rule(who=accounts, job=st.integers(0, 3))
    def join(self, who, job):
        self._send(lambda: self.sim.call(who, p.Join(job)))

    @rule(who=accounts, job=st.integers(0, 3), rnd=st.integers(0, 2))
    def commit(self, who, job, rnd):
        c = p.commitment(who, job, rnd, *self.sub)
        self._send(lambda: self.sim.call(who, p.Commit(job, rnd, c)))

    @rule(who=accounts, job=st.integers(0, 3), rnd=st.integers(0, 2))
    def reveal(self, who, job, rnd):
        self._send(lambda: self.sim.call(who, p.Reveal(job, rnd, *self.sub)))

    @rule(who=accounts, job=st.integers(0, 3), rnd=st.integers(0, 2), which=st.integers(0, 1))
    def reveal_validation(self, who, job, rnd, which):
        cid, salt = self.tpl.shards[which]
        self._send(lambda: self.sim.call(who, p.RevealValidation(job, rnd, cid, salt)))

    @rule(who=accounts, job=st.integers(0, 3), rnd=st.integers(0, 2))
    def close(self, who, job, rnd):
        self._send(lambda: self.sim.call(who, p.CloseRound(job, rnd)))

    @rule(who=accounts, token=tokens, amount=st.integers(0, 10**20))
    def withdraw(self, who, token, amount):
        self._send(lambda: self.sim.call(who, p.Withdraw(token, amount)))

    @rule(who=accounts, job=st.integers(0, 3))
    def cancel(self, who, job):
        self._send(lambda: self.sim.call(who, p.CancelJob(job)))

    @rule(seconds=st.sampled_from([1, 10, 50, 100, 300]))
    def wait(self, seconds):
        self.sim.advance(seconds)

    @invariant()
    def the_state_query_digest_is_the_full_digest(self):
        assert self.sim.market.digest(cached=True) == self.sim.market.digest()

    @invariant()
    def money_is_conserved(self):
        state = self.sim.market.state
        assert state.conserved() and state.ledger.audit()  # running totals = the balances
        assert state.audit()                    # escrow totals and open jobs = a scan of all jobs
        led = state.ledger
        for token in led.deposited:
            assert led.withdrawn.get(token, 0) == self.paid_out.get(token, 0)
            assert all(v > 0 for v in led.balances.get(token, {}).values())


TestMarketMachine = MarketMachine.TestCase
TestMarketMachine.settings = settings(max_examples=25, stateful_step_count=40, deadline=None,
                                      suppress_health_check=list(HealthCheck))
