"""Contribution that sampling noise cannot flip: the margin utility, the declared orders
(antithetic, stratified), relative truncation, the near-zero band, the incremental walk, and the
sampler's agreement with exact Shapley on real 10-trainer rounds."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dapp.ml.aggregation import build_strategy
from dapp.ml.contribution import (RoundUtility, apply_zero_band, contributions, evaluations_bound, parse_method,
                                  permutation_orders, shapley_exact, shapley_sampled)
from dapp.ml.errors import ContributionError, InferenceOverflowError
from dapp.ml.inference import margin_sum
from dapp.ml.randomness import KeccakStream
from tests.ml_scenarios import attacked_round, exact_table, quality_round
from tests.test_ml_contribution import table_utility
from tests.test_ml_scenarios import spearman


# ------------------------------------------------------------------ the margin utility

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(2, 6), st.integers(0, 2**32 - 1), st.integers(0, 50))
def test_margin_sum_matches_a_python_reference(n: int, c: int, seed: int, bound: int) -> None:
    rng = np.random.default_rng(seed)
    z = rng.integers(-100, 101, (n, c))
    y = rng.integers(0, c, n)
    want = 0
    for row, label in zip(z.tolist(), y.tolist()):
        m = row[label] - max(v for k, v in enumerate(row) if k != label)
        want += min(max(m, -bound), bound)
    assert margin_sum(z, y, bound) == want


def test_margin_sum_extremes_do_not_wrap() -> None:
    big = (1 << 62) - 1
    z = np.array([[big, -big], [-big, big]], dtype=np.int64)
    assert margin_sum(z, np.array([0, 0]), 1 << 40) == 0  # +B and -B
    with pytest.raises(InferenceOverflowError):
        margin_sum(np.zeros((4, 2), dtype=np.int64), np.zeros(4, dtype=np.int64), 1 << 61)


# ------------------------------------------------------------------ spec fields

def test_spec_fields_defaults_and_refusals() -> None:
    assert parse_method({"method": "shapley"}) == {
        "method": "shapley", "exact_max_players": 10, "permutations": 64, "truncation": 0,
        "sampling": "plain", "utility": "correct", "zero_band": None}
    m = parse_method({"method": "shapley", "utility": "margin", "margin_clip": 2, "truncation": [1, 100],
                      "sampling": "stratified", "zero_band": [1, 100]})
    assert (m["utility"], m["margin_clip"], m["truncation"], m["zero_band"]) == (
        "margin", 2, Fraction(1, 100), Fraction(1, 100))
    assert parse_method({"method": "loo", "utility": "margin"})["utility"] == "margin"
    for bad, msg in (({"method": "shapley", "utility": "loss"}, "unknown utility"),
                     ({"method": "shapley", "margin_clip": 3}, "margin utility only"),
                     ({"method": "shapley", "utility": "margin", "margin_clip": 0}, "margin_clip"),
                     ({"method": "shapley", "sampling": "sobol"}, "unknown sampling"),
                     ({"method": "shapley", "zero_band": [1, 1]}, "zero_band"),
                     ({"method": "shapley", "zero_band": 0.01}, "zero_band"),
                     ({"method": "shapley", "truncation": [1, 0]}, "truncation"),
                     ({"method": "loo", "permutations": 3}, "unknown fields")):
        with pytest.raises(ContributionError, match=msg):
            parse_method(bad)
    assert evaluations_bound({"method": "shapley", "exact_max_players": 8, "permutations": 50}, 100) == 5002
    assert evaluations_bound({"method": "shapley"}, 10) == 1024
    assert evaluations_bound({"method": "loo"}, 7) == 8


# ------------------------------------------------------------------ declared orders

def test_orders_follow_the_declared_stream_use() -> None:
    n = 7
    s = KeccakStream(b"o")
    plain = list(permutation_orders(n, 3, KeccakStream(b"o")))
    assert plain == [s.shuffle(list(range(n))) for _ in range(3)]
    anti = list(permutation_orders(n, 4, KeccakStream(b"o"), antithetic=True))
    s = KeccakStream(b"o")
    a0, a2 = s.shuffle(list(range(n))), s.shuffle(list(range(n)))
    assert anti == [a0, a0[::-1], a2, a2[::-1]]
    strat = list(permutation_orders(n, 2 * n, KeccakStream(b"o"), stratified=True))
    s = KeccakStream(b"o")
    alpha, beta = s.shuffle(list(range(n))), s.shuffle(list(range(n)))
    assert strat[3] == [alpha[(beta[t] + 3) % n] for t in range(n)]
    for block in (strat[:n], strat[n:]):
        assert all(sorted(o) == list(range(n)) for o in block)
        # a Latin square: every player once at every position within a block
        assert all(sorted(o[t] for o in block) == list(range(n)) for t in range(n))
    sa = list(permutation_orders(n, 2 * n, KeccakStream(b"o"), antithetic=True, stratified=True))
    assert sa[n + 2] == sa[2][::-1] and sa[:n] == strat[:n]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.integers(-50, 300), min_size=1 << n, max_size=1 << n))), st.sampled_from(
    [(False, False), (True, False), (False, True), (True, True)]))
def test_every_sampling_is_efficient_without_truncation(t: tuple[int, list[int]], mode: tuple[bool, bool]) -> None:
    n, table = t
    keys = [f"k{i}" for i in range(n)]
    v = shapley_sampled(keys, table_utility(keys, table), KeccakStream(b"e"), 2 * n + 1, None,
                        antithetic=mode[0], stratified=mode[1])
    assert sum(v.values()) == table[-1] - table[0]


def test_relative_truncation_and_zero_band() -> None:
    keys = ["a", "b", "c"]
    # U reaches 95 % of the full gain with any one player: a tolerance of 1/10 of |U(all)-U(empty)|
    # stops every walk after its first player.
    table = [0, 95, 95, 98, 95, 98, 98, 100]
    calls: list[tuple[str, ...]] = []

    def u(c: tuple[str, ...]) -> int:
        calls.append(c)
        return table_utility(keys, table)(c)

    v = shapley_sampled(keys, u, KeccakStream(b"t"), 12, Fraction(1, 10))
    assert sum(v.values()) == 95 and len(set(calls)) == 5
    band = apply_zero_band({"a": Fraction(50), "b": Fraction(-2), "c": Fraction(1), "d": Fraction(47)},
                           Fraction(1, 100))
    assert band == {"a": 50, "b": -2, "c": 0, "d": 47}  # |c| = 1 <= 100/100; |b| = 2 is not
    out = contributions({"method": "shapley", "zero_band": [1, 10]}, ["x", "y"],
                        table_utility(["x", "y"], [0, 100, 5, 105]), KeccakStream(b"z"))
    assert out == {"x": 100, "y": 0}


# ------------------------------------------------------------------ real rounds

def test_incremental_walk_equals_reaggregating_every_prefix() -> None:
    r = attacked_round("sign_flip")
    keys = [p.key for p in r.updates]
    filtered = {"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [3, 1],
                "then": {"rule": "multi_krum", "f": 1, "m": 8, "then": "fedavg"}}
    for agg, utilities in (("fedavg", ("correct", "margin")), (filtered, ("correct",))):
        strategy = build_strategy(agg)
        for utility in utilities:
            ru = RoundUtility(strategy, r.arch, r.global_model, r.updates, r.x_val, r.y_val, utility)
            assert ru.walk is not None
            a = shapley_sampled(keys, ru, KeccakStream(b"w"), 2, None, walk=ru.walk)
            b = shapley_sampled(keys, RoundUtility(strategy, r.arch, r.global_model, r.updates, r.x_val,
                                                   r.y_val, utility), KeccakStream(b"w"), 2, None)
            assert a == b
    # a rule whose combine is not FedAvg's never walks incrementally
    assert RoundUtility(build_strategy("median"), r.arch, r.global_model, r.updates, r.x_val, r.y_val).walk is None


@pytest.mark.parametrize("utility", ["correct", "margin"])
def test_stratified_sampling_ranks_like_exact_and_never_flips_a_real_contributor(utility: str) -> None:
    """10 real trainers (digits CNN), three rounds: the quality ladder, a non-IID honest round and
    a label-flip round. Stratified sampling, 200 orders, 6 seeds: Spearman >= 0.95 against exact
    Shapley, and no player worth more than 1 % of sum |phi| ever gets the wrong sign."""
    for r in (quality_round(), attacked_round(None), attacked_round("label_flip")):
        keys, u = exact_table(r, utility)
        ex = shapley_exact(keys, u)
        total = sum(abs(v) for v in ex.values())
        big = [k for k in keys if abs(ex[k]) * 100 > total]
        for seed in range(6):
            sa = shapley_sampled(keys, u, KeccakStream(b"seed%d" % seed), 200, None, stratified=True)
            assert spearman([float(ex[k]) for k in keys], [float(sa[k]) for k in keys]) >= 0.95
            assert all((sa[k] > 0) == (ex[k] > 0) for k in big), (r.info, seed)
