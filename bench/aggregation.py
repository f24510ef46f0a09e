"""Aggregation time against parameter count (10k, 100k, 1M) for each rule, 10 updates.

Baseline in the same run: a float64 NumPy mean of the same stacked updates (what a float
implementation would cost, without exactness). ``--full`` adds 4M parameters.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench import write_results
from dapp.ml.aggregation import ClientUpdate, build_strategy
from dapp.ml.model_format import Model

RULES = {
    "fedavg": {"rule": "fedavg"},
    "median": {"rule": "median"},
    "trimmed_mean": {"rule": "trimmed_mean", "trim": [1, 10]},
    "multi_krum": {"rule": "multi_krum", "f": 3, "m": 7, "then": "fedavg"},
    "norm_clip_reject": {"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [3, 2]},
    "norm_clip_clip": {"rule": "norm_clip", "mode": "clip", "max_norm_ratio": [1, 1]},
    "distance_filter": {"rule": "distance_filter", "max_ratio": [2, 1]},
}


def make(p: int, n: int = 10) -> tuple[Model, list[ClientUpdate]]:
    rng = np.random.default_rng(p)
    g = rng.integers(-50_000, 50_000, p).astype(np.int32)
    gm = Model({"w.weight": g})
    ups = [ClientUpdate(f"0x{i:040x}", Model({"w.weight": (g + rng.integers(-3000, 3000, p)).astype(np.int32)}),
                        50 + i) for i in range(n)]
    return gm, ups


def best_of(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args(argv)
    sizes = [10_000, 100_000, 1_000_000] + ([4_000_000] if args.full else [])
    out: dict[str, dict[str, float]] = {}
    print(f"{'params':>9} " + " ".join(f"{k:>16}" for k in ["float_mean(base)", *RULES]))
    for p in sizes:
        g, ups = make(p)
        reps = 3 if p <= 100_000 else 1
        stack = np.stack([u.model["w.weight"] for u in ups]).astype(np.float64)
        row = {"float_mean_baseline": best_of(lambda: stack.mean(axis=0), reps)}
        for name, cfg in RULES.items():
            s = build_strategy(cfg)
            row[name] = best_of(lambda: s.aggregate(g, ups), reps)
        out[str(p)] = row
        print(f"{p:>9} " + " ".join(f"{v * 1000:>14.1f}ms" for v in row.values()))
    res = {"updates": 10, "seconds": out, "note": "aggregate() incl. duplicate detection (keccak of each model)"}
    write_results("aggregation", res)


if __name__ == "__main__":
    main()
