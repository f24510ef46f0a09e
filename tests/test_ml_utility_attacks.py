"""The robustness bench's attack definitions follow their papers (bench/robustness.py)."""

from __future__ import annotations

import statistics

import numpy as np

from bench.datasets import dirichlet_split
from bench.robustness import alie_z, minmax_delta


def test_alie_z_max_from_n_and_f() -> None:
    # Baruch et al. 2019: s = floor(n/2 + 1) - f supporters needed, z_max = Phi^-1((n - s) / n)
    assert alie_z(10, 2) == statistics.NormalDist().inv_cdf(0.6)
    assert alie_z(50, 15) == statistics.NormalDist().inv_cdf((50 - 11) / 50)
    assert 0 < alie_z(10, 2) < alie_z(50, 15) < 1


def test_minmax_stays_within_the_benign_spread_and_is_maximal() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (6, 40))
    mal = minmax_delta(ref)
    limit = max(np.linalg.norm(a - b) for a in ref for b in ref)
    worst = max(np.linalg.norm(mal - b) for b in ref)
    assert worst <= limit + 1e-9 and worst > 0.99 * limit  # pushed to the edge, not beyond
    assert np.dot(mal - ref.mean(0), -ref.std(0)) > 0       # along the inverse-std direction


def test_dirichlet_split_partitions_with_a_floor() -> None:
    y = np.repeat(np.arange(10), 100)
    parts = dirichlet_split(y, 10, 0.1, np.random.default_rng(1), min_size=10)
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(1000)) and min(len(p) for p in parts) >= 10


def test_the_bench_runs_a_tiny_setting_through_the_market(monkeypatch, tmp_path) -> None:
    """One Dirichlet split, 4 trainers (one label flipper), one round: real MNIST, real training,
    the market's close_round, both FedAvg baselines and the federated-Shapley truth (cached)."""
    import json

    import bench.robustness as rb
    from client.jobs import DEMO_AGGREGATION

    monkeypatch.setattr(rb, "POOL_PER_TRAINER", 150)
    monkeypatch.setattr(rb, "TRUTH_CACHE", tmp_path / "truth.json")
    setting = rb.Setting(0.5, 4, 0.25, 0, 1, False)
    rows = rb.run_setting((setting, json.dumps([DEMO_AGGREGATION]), ("label_flip",)))
    (row,) = rows
    assert row["attack"] == "label_flip" and row["rule"] == "validated"
    assert row["paid"] + 4 >= rb.BUDGET  # one round pays its whole budget (floor dust aside)
    assert 0 <= row["attackers_wei_share"] <= 1 and sum(row["wei"]) == row["paid"]
    assert 0 <= row["fedavg_without_attackers"] <= 1 and 0 <= row["fedavg_no_attack"] <= 1
    assert set(row["truth_fl_shapley"]) == {"0", "1", "2"}
    runs = row["truth_fl_shapley_runs"]  # the truth is the mean of several training runs
    assert len(runs) == rb.TRUTH_RUNS and all(set(r) == {"0", "1", "2"} for r in runs)
    for k, v in row["truth_fl_shapley"].items():
        assert abs(v - sum(r[k] for r in runs) / len(runs)) < 1e-12
    assert json.loads((tmp_path / "truth.json").read_text())  # the truth was cached
