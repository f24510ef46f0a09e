"""Shapley / LOO, the keccak stream, rewards and hyper-parameters."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from dapp.ml.contribution import contributions, leave_one_out, shapley_exact, shapley_sampled
from dapp.ml.errors import ContributionError, HParamsError, RewardError
from dapp.ml.hparams import initial_hparams, next_hparams
from dapp.hashing import keccak
from dapp.ml.randomness import KeccakStream, seed_from
from dapp.ml.rewards import pay_at_price, settle_to_value, split_reward, split_whole


def table_utility(keys: list[str], table: list[int]):
    idx = {k: i for i, k in enumerate(sorted(keys))}
    return lambda coalition: table[sum(1 << idx[k] for k in coalition)]


tables = st.integers(1, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.integers(-50, 300), min_size=1 << n, max_size=1 << n)))


@settings(max_examples=60, deadline=None)
@given(tables)
def test_shapley_efficiency(t: tuple[int, list[int]]) -> None:
    n, table = t
    keys = [f"k{i}" for i in range(n)]
    phi = shapley_exact(keys, table_utility(keys, table))
    assert sum(phi.values()) == table[-1] - table[0]
    assert all(isinstance(v, Fraction) for v in phi.values())


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 6), st.data())
def test_shapley_symmetry_and_null_player(n: int, data: st.DataObject) -> None:
    # U depends on players 0 and 1 only through how many of them are present (symmetry) and never
    # on player 2 (null player); players 3+ interact with the pair arbitrarily.
    pair = data.draw(st.lists(st.integers(-50, 50), min_size=3, max_size=3))
    rest = data.draw(st.lists(st.integers(-30, 30), min_size=1 << n, max_size=1 << n))
    keys = [f"k{i}" for i in range(n)]
    table = []
    for m in range(1 << n):
        c01 = (m & 1) + (m >> 1 & 1)
        hi = m >> 3
        table.append(pair[c01] * (1 + hi.bit_count()) + rest[hi])
    phi = shapley_exact(keys, table_utility(keys, table))
    assert phi["k0"] == phi["k1"]
    assert phi["k2"] == 0


def test_shapley_known_values_and_loo() -> None:
    # Glove game: k0 has a left glove, k1 and k2 right gloves; a pair is worth 6.
    keys = ["k0", "k1", "k2"]
    table = [0, 0, 0, 6, 0, 6, 0, 6]
    phi = shapley_exact(keys, table_utility(keys, table))
    assert phi == {"k0": Fraction(4), "k1": Fraction(1), "k2": Fraction(1)}
    assert leave_one_out(keys, table_utility(keys, table)) == {"k0": 6, "k1": 0, "k2": 0}


@settings(max_examples=30, deadline=None)
@given(tables, st.binary(min_size=1, max_size=8))
def test_sampled_without_truncation_is_efficient_and_deterministic(t: tuple[int, list[int]], seed: bytes) -> None:
    n, table = t
    keys = [f"k{i}" for i in range(n)]
    u = table_utility(keys, table)
    a = shapley_sampled(keys, u, KeccakStream(seed), 20, None)
    assert sum(a.values()) == table[-1] - table[0]
    assert a == shapley_sampled(list(reversed(keys)), u, KeccakStream(seed), 20, None)


def test_sampled_converges_to_exact() -> None:
    keys = [f"k{i}" for i in range(5)]
    table = [m.bit_count() ** 2 + 3 * (m & 1) for m in range(32)]
    u = table_utility(keys, table)
    ex = shapley_exact(keys, u)
    sa = shapley_sampled(keys, u, KeccakStream(b"s"), 2000, None)
    assert max(abs(float(ex[k] - sa[k])) for k in keys) < 0.3


def test_truncation_declared() -> None:
    keys = ["a", "b", "c"]
    # Full utility reached by any single player: after the first, the rest are truncated.
    table = [0, 9, 9, 9, 9, 9, 9, 9]
    calls: list[tuple[str, ...]] = []

    def u(c: tuple[str, ...]) -> int:
        calls.append(c)
        return table_utility(keys, table)(c)

    phi = shapley_sampled(keys, u, KeccakStream(b"t"), 30, 0)
    assert sum(phi.values()) == 9
    assert len(set(calls)) == 5  # full, empty, and the three singletons only


def test_contributions_dispatch_and_sybil_sharing() -> None:
    keys = ["k0", "k1"]
    u = table_utility(keys, [0, 10, 2, 12])
    out = contributions({"method": "shapley"}, keys, u, KeccakStream(b"x"), {"k0": ("k0", "k9"), "k1": ("k1",)})
    assert out == {"k0": 5, "k1": 2, "k9": 5}
    assert contributions({"method": "loo"}, keys, u, KeccakStream(b"x")) == {"k0": 10, "k1": 2}
    sampled = contributions({"method": "shapley", "exact_max_players": 1, "permutations": 8, "truncation": None},
                            keys, u, KeccakStream(b"x"))
    assert sampled == {"k0": 10, "k1": 2}  # additive game: every permutation gives the same marginals
    for bad in ({"method": "x"}, {"method": "loo", "k": 1}, {"method": "shapley", "permutations": 0},
                {"method": "shapley", "truncation": -1}, {"method": "shapley", "exact_max_players": 99}):
        with pytest.raises(ContributionError):
            contributions(bad, keys, u, KeccakStream(b"x"))


# ------------------------------------------------------------------ randomness

@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), st.integers(1, 2**70))
def test_randbelow_in_range_and_deterministic(seed: bytes, n: int) -> None:
    a, b = KeccakStream(seed), KeccakStream(seed)
    xs = [a.randbelow(n) for _ in range(5)]
    assert xs == [b.randbelow(n) for _ in range(5)]
    assert all(0 <= x < n for x in xs)


def test_stream_vectors_and_shuffle() -> None:
    s = KeccakStream(b"")
    assert s.read(32) == keccak(bytes(8))
    assert s.read(1) == keccak((1).to_bytes(8, "big"))[:1]
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    items = list(range(20))
    KeccakStream(b"x").shuffle(items)
    assert sorted(items) == list(range(20)) and items != list(range(20))
    assert seed_from(b"a", b"bc") != seed_from(b"ab", b"c")
    counts = [0] * 3
    st_ = KeccakStream(b"u")
    for _ in range(3000):
        counts[st_.randbelow(3)] += 1
    assert all(900 < c < 1100 for c in counts)


# ------------------------------------------------------------------ rewards

scores = st.dictionaries(st.text("abcdef0123456789", min_size=1, max_size=6),
                         st.fractions(min_value=-100, max_value=100, max_denominator=1000), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**24), scores)
def test_reward_conservation(budget: int, sc: dict[str, Fraction]) -> None:
    r = split_reward(budget, sc)
    assert sum(r.payouts.values()) + r.remainder == budget
    assert r.remainder >= 0 and all(v >= 0 for v in r.payouts.values())
    assert all(r.payouts[k] == 0 for k, v in sc.items() if v <= 0)
    assert sorted(r.payouts) == sorted(sc)
    paid = sum(1 for v in sc.values() if v > 0)
    assert r.remainder < paid if paid else r.remainder == budget


def test_reward_pro_rata_and_errors() -> None:
    r = split_reward(100, {"a": Fraction(1), "b": Fraction(2), "c": Fraction(-5), "d": Fraction(0)})
    assert r.payouts == {"a": 33, "b": 66, "c": 0, "d": 0} and r.remainder == 1
    assert split_reward(7, {"a": Fraction(-1)}).remainder == 7
    # Sybil copies sharing one value are paid no more in total than the single update.
    single = split_reward(10**18, {"x": Fraction(6), "y": Fraction(3)})
    split = split_reward(10**18, {"x1": Fraction(2), "x2": Fraction(2), "x3": Fraction(2), "y": Fraction(3)})
    assert split.payouts["x1"] + split.payouts["x2"] + split.payouts["x3"] <= single.payouts["x"]
    for bad in (-1, 1.5, True):
        with pytest.raises(RewardError):
            split_reward(bad, {})  # type: ignore[arg-type]
    with pytest.raises(RewardError):
        split_reward(1, {"a": 0.5})  # type: ignore[dict-item]


prices = st.fractions(min_value=Fraction(1, 10**6), max_value=Fraction(10**20))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**24), scores, prices)
def test_paying_at_a_price_conserves_the_budget_and_never_pays_more(
        budget: int, sc: dict[str, Fraction], price: Fraction) -> None:
    r = pay_at_price(budget, sc, price)
    assert sum(r.payouts.values()) + r.remainder == budget and r.remainder >= 0
    assert sorted(r.payouts) == sorted(sc)
    assert all(r.payouts[k] == 0 for k, v in sc.items() if v <= 0)
    wanted = {k: (price * v).__floor__() if v > 0 else 0 for k, v in sc.items()}
    # what the value is worth at the price, or, when the round cannot afford it, its budget by
    # shares (never more than the price)
    assert r.payouts == wanted if sum(wanted.values()) <= budget else \
        r.payouts == split_reward(budget, sc).payouts
    assert all(r.payouts[k] <= wanted[k] for k in sc)


def test_a_round_at_the_price_pays_what_its_value_is_worth_and_carries_the_rest() -> None:
    # round 0 paid 600 wei for 6 units of value: price 100 wei per unit
    later = pay_at_price(600, {"a": Fraction(2), "b": Fraction(1, 2), "c": Fraction(-1)},
                         Fraction(100))
    assert later.payouts == {"a": 200, "b": 50, "c": 0} and later.remainder == 350
    # a round worth more than it has pays its budget by shares
    rich = pay_at_price(600, {"a": Fraction(8), "b": Fraction(4)}, Fraction(100))
    assert rich.payouts == {"a": 400, "b": 200} and rich.remainder == 0
    for bad in (Fraction(0), Fraction(-1), 3):
        with pytest.raises(RewardError):
            pay_at_price(1, {"a": Fraction(1)}, bad)  # type: ignore[arg-type]


ledgers = st.dictionaries(st.sampled_from([f"k{i}" for i in range(6)]),
                          st.tuples(st.integers(0, 10**15), st.integers(0, 10**21)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**24), ledgers)
def test_settling_pays_exactly_what_is_left_and_nobody_beyond_its_share_of_value(
        amount: int, ledger: dict[str, tuple[int, int]]) -> None:
    """``pay: "settle"``'s end of a job: every wei left is paid (money is conserved), nobody
    is paid past its target (its share of the whole job's pay by value) but for rounding dust,
    and when nobody was overpaid before, each earner ends at its target within a wei."""
    value = {k: v for k, (v, _) in ledger.items()}
    paid = {k: w for k, (_, w) in ledger.items()}
    out = settle_to_value(amount, value, paid)
    total = sum(value.values())
    if amount == 0 or total == 0:
        assert out == {}
        return
    assert sum(out.values()) == amount and all(v > 0 for v in out.values())
    assert set(out) <= {k for k, v in value.items() if v > 0}
    pot = amount + sum(paid.values())
    target = {k: Fraction(pot * v, total) for k, v in value.items()}
    for k, v in out.items():
        assert paid.get(k, 0) + v <= target[k] + len(value)
    if all(paid.get(k, 0) <= target[k] for k in value) and not set(paid) - set(value):
        for k in value:
            assert abs(paid.get(k, 0) + out.get(k, 0) - target[k]) <= len(value)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**24), st.dictionaries(st.sampled_from([f"k{i}" for i in range(6)]),
                                               st.integers(0, 10**21), max_size=6))
def test_a_job_s_end_pays_every_wei_pro_rata_with_the_dust_to_the_largest_share(
        amount: int, earned: dict[str, int]) -> None:
    out = split_whole(amount, earned)
    total = sum(earned.values())
    if amount == 0 or total == 0:
        assert out == {}
        return
    assert sum(out.values()) == amount and all(v > 0 for v in out.values())
    top = min((k for k in earned if earned[k] > 0), key=lambda k: (-earned[k], k))
    for k, v in earned.items():
        floor = amount * v // total
        assert out.get(k, 0) == floor + (amount - sum(amount * w // total for w in earned.values())
                                         if k == top else 0)


def test_settling_makes_a_job_pay_in_proportion_to_value_and_claws_nothing_back() -> None:
    # a and b created 3 : 1 of the value but were advanced 10 : 30 wei; 60 wei are left. The
    # pot is 100: a's target 75, b's 25; b was paid past its target and keeps it, a gets
    # everything left (60, short of its 65 deficit)
    assert settle_to_value(60, {"a": 3, "b": 1}, {"a": 10, "b": 30}) == {"a": 60}
    # advances in proportion: the rest follows the same proportion
    assert settle_to_value(40, {"a": 3, "b": 1}, {"a": 45, "b": 15}) == {"a": 30, "b": 10}
    # someone paid in a round valued by a fallback (no value) is in the pot, not in the targets
    assert settle_to_value(40, {"a": 1}, {"c": 60}) == {"a": 40}
    assert settle_to_value(0, {"a": 1}, {}) == {} and settle_to_value(5, {"a": 0}, {}) == {}
    for bad in ((-1, {}, {}), (1, {"a": -1}, {}), (1, {"a": 1}, {"a": Fraction(1)})):
        with pytest.raises(RewardError):
            settle_to_value(*bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ hparams

PLATEAU = {"learning_rate": [1, 20], "local_epochs": 2, "batch_size": 32,
           "schedule": {"type": "plateau", "patience": 2, "min_delta": 3, "factor": [1, 2], "min_lr": [1, 100]}}


def test_reduce_on_plateau() -> None:
    h = initial_hparams(PLATEAU)
    assert h == {"learning_rate": [1, 20], "local_epochs": 2, "batch_size": 32, "plateau_rounds": 0}
    hist: list[int] = []
    lrs = []
    for acc in [100, 110, 112, 111, 130, 131, 131, 131, 131, 131, 131, 131, 131]:
        hist.append(acc)
        h = next_hparams(PLATEAU, h, hist)
        lrs.append(Fraction(*h["learning_rate"]))
    assert lrs[:4] == [Fraction(1, 20)] * 3 + [Fraction(1, 40)]
    assert lrs[4] == Fraction(1, 40) and lrs[6] == Fraction(1, 80)
    assert lrs[-1] == Fraction(1, 100)  # floored at min_lr
    const = {"learning_rate": [1, 10], "local_epochs": 1, "batch_size": 8}
    assert next_hparams(const, initial_hparams(const), [1, 1, 1])["learning_rate"] == [1, 10]
    for bad in ({**PLATEAU, "learning_rate": [0, 1]}, {**PLATEAU, "x": 1},
                {**PLATEAU, "schedule": {"type": "plateau", "factor": [3, 2]}}, {**PLATEAU, "local_epochs": 0}):
        with pytest.raises(HParamsError):
            initial_hparams(bad)
