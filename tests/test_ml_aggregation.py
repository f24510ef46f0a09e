"""Aggregation rules: declared arithmetic, permutation invariance, filters, sybil merging."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dapp.ml.aggregation import (ClientUpdate, MultiKrum, build_strategy, merge_duplicates, sq_norm)
from dapp.ml.errors import AggregationError, StrategyConfigError
from dapp.ml.model_format import Model

SHAPES = {"a.bias": (3,), "a.weight": (3, 4)}
RULES = [
    {"rule": "fedavg"}, {"rule": "median"}, {"rule": "trimmed_mean", "trim": [1, 5]},
    {"rule": "multi_krum", "f": 1, "m": 3, "then": "fedavg"},
    {"rule": "multi_krum", "f": 1, "m": 3, "then": {"rule": "median"}},
    {"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [3, 2], "then": "fedavg"},
    {"rule": "norm_clip", "mode": "clip", "max_norm": 50_000},
    {"rule": "norm_clip", "mode": "clip", "max_norm_ratio": [1, 1], "then": "median"},
    {"rule": "distance_filter", "max_ratio": [2, 1], "then": {"rule": "multi_krum", "f": 1, "m": 2}},
]


def model(rng: np.random.Generator, lo: int = -100_000, hi: int = 100_000) -> Model:
    return Model({k: rng.integers(lo, hi, s).astype(np.int32) for k, s in SHAPES.items()})


def updates(seed: int, n: int) -> tuple[Model, list[ClientUpdate]]:
    rng = np.random.default_rng(seed)
    g = model(rng)
    ups = [ClientUpdate(f"0x{i:02x}", model(rng), int(rng.integers(1, 1000))) for i in range(n)]
    return g, ups


@pytest.mark.parametrize("config", RULES, ids=lambda c: str(c))
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 8), perm_seed=st.integers(0, 2**32 - 1))
def test_permutation_invariance(config: dict, seed: int, n: int, perm_seed: int) -> None:
    s = build_strategy(config)
    g, ups = updates(seed, n)
    shuffled = [ups[i] for i in np.random.default_rng(perm_seed).permutation(n)]
    a, b = s.aggregate(g, ups), s.aggregate(g, shuffled)
    assert a == b
    assert s.combine(g, ups) == s.combine(g, shuffled)
    assert sorted(a.accepted + tuple(a.rejected)) == sorted(u.key for u in ups)
    assert build_strategy(s.to_dict()).to_dict() == s.to_dict()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6))
def test_fedavg_is_weighted_mean_rounded_half_up(seed: int, n: int) -> None:
    g, ups = updates(seed, n)
    out = build_strategy("fedavg").combine(g, ups)
    W = sum(u.weight for u in ups)
    for k in SHAPES:
        for idx in np.ndindex(SHAPES[k]):
            mean = Fraction(sum(u.weight * int(u.model[k][idx]) for u in ups), W)
            assert int(out[k][idx]) == (mean + Fraction(1, 2)).__floor__()


def test_median_and_trimmed_mean_values() -> None:
    g = Model({"a.bias": np.zeros(1, np.int32), "a.weight": np.zeros((1, 1), np.int32)})
    vals = [1, 2, 10, -7, 4, 1000]
    ups = [ClientUpdate(f"k{i}", Model({"a.bias": np.array([v], np.int32), "a.weight": np.array([[v]], np.int32)}), 1)
           for i, v in enumerate(vals)]
    assert int(build_strategy("median").combine(g, ups)["a.bias"][0]) == 3  # (2+4+1)>>1
    # trim 1/5 of 6 -> 1 each end: mean(1,2,4,10)=4.25 -> 4
    assert int(build_strategy({"rule": "trimmed_mean", "trim": [1, 5]}).combine(g, ups)["a.bias"][0]) == 4
    assert build_strategy("median").combine(g, []) == g


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**32) + 1, 2**32 - 1), min_size=0, max_size=50))
def test_sq_norm_exact(vals: list[int]) -> None:
    assert sq_norm(np.array(vals, dtype=np.int64)) == sum(v * v for v in vals)


def test_sq_norm_beyond_int64() -> None:
    d = np.full(1000, 2**32 - 1, dtype=np.int64)
    assert sq_norm(d) == 1000 * (2**32 - 1) ** 2 > 2**63


def test_multi_krum_rejects_far_updates_with_reasons() -> None:
    rng = np.random.default_rng(0)
    g = model(rng, -10, 10)
    honest = [ClientUpdate(f"h{i}", Model({k: (g[k] + rng.integers(-5, 5, g[k].shape)).astype(np.int32) for k in g}), 10)
              for i in range(7)]
    bad = [ClientUpdate(f"b{i}", Model({k: (g[k] + 10_000 * (i + 1)).astype(np.int32) for k in g}), 10) for i in range(3)]
    res = build_strategy({"rule": "multi_krum", "f": 3, "m": 7}).aggregate(g, honest + bad)
    assert set(res.rejected) == {"b0", "b1", "b2"}
    assert all("multi-krum" in r for r in res.rejected.values())
    res = build_strategy({"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [2, 1]}).aggregate(g, honest + bad)
    assert set(res.rejected) == {"b0", "b1", "b2"}
    res = build_strategy({"rule": "distance_filter", "max_ratio": [3, 1]}).aggregate(g, honest + bad)
    assert set(res.rejected) == {"b0", "b1", "b2"}


def test_norm_clip_clips_to_threshold() -> None:
    g = Model({"a.bias": np.zeros(2, np.int32), "a.weight": np.zeros((1, 2), np.int32)})
    u = ClientUpdate("x", Model({"a.bias": np.array([3000, 4000], np.int32), "a.weight": np.zeros((1, 2), np.int32)}), 1)
    s = build_strategy({"rule": "norm_clip", "mode": "clip", "max_norm": 500})
    res = s.aggregate(g, [u])
    assert res.model["a.bias"].tolist() == [300, 400] and res.accepted == ("x",) and "clipped" in res.notes["x"]


def test_zero_update_rejected_and_duplicates_merged() -> None:
    rng = np.random.default_rng(1)
    g = model(rng)
    m1, m2 = model(rng), model(rng)
    ups = [ClientUpdate("0xa", m1, 100), ClientUpdate("0xb", m1, 900), ClientUpdate("0xc", m2, 100),
           ClientUpdate("0xd", g, 50)]
    players, groups = merge_duplicates(ups)
    assert [(p.key, p.weight) for p in players if p.key != "0xd"] == [("0xa", 900), ("0xc", 100)]
    assert groups["0xa"] == ("0xa", "0xb")
    res = build_strategy("fedavg").aggregate(g, ups)
    assert res.accepted == ("0xa", "0xb", "0xc")
    assert "free rider" in res.rejected["0xd"]
    # Copies add no weight: same result as one 900-sample update of m1 with m2.
    assert res.model == build_strategy("fedavg").combine(g, [ClientUpdate("0xa", m1, 900), ClientUpdate("0xc", m2, 100)])


@pytest.mark.parametrize("bad", [
    {"rule": "nope"}, {"rule": "fedavg", "x": 1}, {"rule": "trimmed_mean", "trim": [1, 2]},
    {"rule": "trimmed_mean", "trim": [1, 0]}, {"rule": "multi_krum", "f": -1, "m": 2},
    {"rule": "multi_krum", "f": 1, "m": 0}, {"rule": "norm_clip", "mode": "reject"},
    {"rule": "norm_clip", "mode": "cut", "max_norm": 3}, {"rule": "distance_filter", "max_ratio": [1, 2]},
    {"rule": "multi_krum", "f": True, "m": 2}, 7])
def test_bad_configs(bad: object) -> None:
    with pytest.raises(StrategyConfigError):
        build_strategy(bad)


def test_bad_updates() -> None:
    g, ups = updates(3, 2)
    s = build_strategy("fedavg")
    with pytest.raises(AggregationError, match="weight"):
        s.aggregate(g, [ClientUpdate("k", ups[0].model, 0)])
    with pytest.raises(AggregationError, match="duplicate"):
        s.combine(g, [ups[0], ClientUpdate(ups[0].key, ups[1].model, 1)])
    other = Model({"a.bias": np.zeros(4, np.int32), "a.weight": np.zeros((3, 4), np.int32)})
    with pytest.raises(AggregationError, match="shapes"):
        s.aggregate(g, [ClientUpdate("k", other, 1)])


def test_multi_krum_small_rounds() -> None:
    g, ups = updates(5, 2)
    mk = MultiKrum(3, 5, build_strategy("fedavg"))
    assert len(mk.aggregate(g, ups).accepted) == 2
    assert mk.aggregate(g, []).model == g
