"""The ledger an input works on (`TrialLedger`): what it changes is kept aside and written back
only on commit, so a refused input moves no wei and no input pays for every account that ever
held money. Property-tested against a deep copy, the way every input used to work."""

from __future__ import annotations

import copy
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from dapp.market.ledger import InsufficientBalance, Ledger, TrialLedger

TOKENS = ["0x" + "00" * 20, "0x" + "ab" * 20]
ACCOUNTS = ["0x" + f"{i:02x}" * 20 for i in range(1, 5)]

ops = st.lists(st.tuples(st.sampled_from(["credit", "debit", "deposit", "withdraw"]),
                         st.sampled_from(TOKENS), st.sampled_from(ACCOUNTS),
                         st.integers(0, 50)), max_size=25)


def apply(led: Ledger | TrialLedger, steps: list[tuple[str, str, str, int]]) -> list[str]:
    """Run the steps, a refused debit leaving the ledger as it was; what each step did."""
    seen = []
    for kind, token, acct, amount in steps:
        if kind == "credit":
            led.credit(token, acct, amount)
        elif kind == "debit":
            try:
                led.debit(token, acct, amount + 1)
            except InsufficientBalance:
                seen.append("refused")
                continue
        elif kind == "deposit":
            led.record_deposit(token, amount)
        else:
            led.record_withdrawal(token, amount)
        seen.append("ok")
    return seen


@settings(max_examples=150, deadline=None)
@given(before=ops, during=ops)
def test_a_trial_commits_exactly_what_a_copy_would_and_changes_nothing_until_then(before, during):
    base = Ledger()
    apply(base, before[:len(before) // 2])
    base.digest(cached=True)                            # a cached digest taken midway
    apply(base, before[len(before) // 2:])
    snapshot = asdict(base)
    reference = copy.deepcopy(base)
    trial = TrialLedger(base)
    assert apply(trial, during) == apply(reference, during)
    assert asdict(base) == snapshot                     # nothing reached the ledger yet
    for token in TOKENS:
        assert trial.total_balances(token) == reference.total_balances(token)
        assert trial.accounts(token) == reference.accounts(token)
        for acct in ACCOUNTS:
            assert trial.balance(token, acct) == reference.balance(token, acct)
    assert trial.deposited == reference.deposited and trial.withdrawn == reference.withdrawn
    assert trial.commit() is base
    assert asdict(base) == asdict(reference) and base.audit()
    # the free `state` query's digest (the multiset hash kept as balances moved): the same bytes
    assert base.digest(cached=True) == base.digest() == reference.digest()


def test_a_trial_over_a_trial_commits_into_it():
    base = Ledger()
    base.credit(TOKENS[0], ACCOUNTS[0], 10)
    outer = TrialLedger(base)
    inner = TrialLedger(outer)
    inner.debit(TOKENS[0], ACCOUNTS[0], 10)
    inner.credit(TOKENS[0], ACCOUNTS[1], 10)
    assert inner.commit() is outer and base.balance(TOKENS[0], ACCOUNTS[0]) == 10
    assert outer.accounts(TOKENS[0]) == {ACCOUNTS[1]: 10}
    outer.commit()
    assert base.balances == {TOKENS[0]: {ACCOUNTS[1]: 10}} and base.audit()


@settings(max_examples=100, deadline=None)
@given(items=st.lists(st.binary(max_size=8), max_size=12), extra=st.lists(st.binary(max_size=8),
                                                                          max_size=6),
       seed=st.randoms())
def test_the_multiset_hash_depends_on_contents_not_order(items, extra, seed):
    from dapp.hashing import MultisetHash

    a, b = MultisetHash(), MultisetHash()
    for x in items:
        a.add(x)
    shuffled = list(items) + list(extra)
    seed.shuffle(shuffled)
    for x in shuffled:
        b.add(x)
    for x in extra:          # removing what was added gives the same multiset back
        b.remove(x)
    assert a.digest() == b.digest()
    if extra:
        c = MultisetHash()
        for x in items + extra:
            c.add(x)
        assert c.digest() != a.digest()


def test_the_digest_covers_each_token_s_deposited_and_withdrawn_totals():
    """The `state` answer no longer lists them, so its digest must commit to them."""
    seen = set()
    led = Ledger()
    for step in (lambda: None, lambda: led.record_deposit(TOKENS[0], 5),
                 lambda: led.record_withdrawal(TOKENS[0], 2),
                 lambda: led.record_deposit(TOKENS[1], 5),
                 lambda: led.record_withdrawal(TOKENS[1], 2)):
        step()
        assert led.digest(cached=True) == led.digest() not in seen
        seen.add(led.digest())
