"""Shapley timing on the digits CNN with a 300-sample validation shard, and sampled-vs-exact error.

* exact, n = 4, 8, 10: honest trainers of the quality round (real locally trained updates);
* sampled (64 permutations, truncation 0), n = 20, 50, 100: synthetic players (perturbed copies of a
  trained model), since the scenario has 10 trainers;
* approximation error of sampled against exact on real rounds (quality round, no-attack round; n = 10):
  max and mean absolute error in correct-prediction units and Spearman rank agreement, for 64 and
  256 permutations, truncation 0 and none.
Baseline in the same run: leave-one-out on the same players (n + 1 utility evaluations).
``--full`` adds n = 200 sampled.
"""

from __future__ import annotations

import argparse
import time

from bench import write_results
from dapp.ml.aggregation import build_strategy
from dapp.ml.contribution import RoundUtility, leave_one_out, shapley_exact, shapley_sampled
from dapp.ml.randomness import KeccakStream
from tests.ml_scenarios import attacked_round, quality_round, synthetic_updates
from tests.test_ml_scenarios import spearman


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args(argv)
    fed = build_strategy("fedavg")
    q = quality_round()
    out: dict = {"exact": {}, "sampled": {}, "loo_baseline": {}, "error": {}}
    for n in (4, 8, 10):
        ups = q.updates[-n:]
        u = RoundUtility(fed, q.arch, q.global_model, ups, q.x_val, q.y_val)
        t = time.perf_counter()
        shapley_exact([p.key for p in ups], u)
        dt = time.perf_counter() - t
        t = time.perf_counter()
        leave_one_out([p.key for p in ups], RoundUtility(fed, q.arch, q.global_model, ups, q.x_val, q.y_val))
        out["exact"][n] = {"seconds": dt, "evaluations": u.evaluations}
        out["loo_baseline"][n] = time.perf_counter() - t
        print(f"exact   n={n:>3}: {dt:7.2f} s  ({u.evaluations} utility evaluations; LOO {out['loo_baseline'][n]:.3f} s)")
    base = q.updates[-1].model
    for n in (20, 50, 100) + ((200,) if args.full else ()):
        ups = synthetic_updates(n, base, 0.05, seed=n)
        u = RoundUtility(fed, q.arch, q.global_model, ups, q.x_val, q.y_val)
        t = time.perf_counter()
        shapley_sampled([p.key for p in ups], u, KeccakStream(b"bench"), 64, 0)
        dt = time.perf_counter() - t
        out["sampled"][n] = {"seconds": dt, "evaluations": u.evaluations, "permutations": 64, "truncation": 0}
        print(f"sampled n={n:>3}: {dt:7.2f} s  ({u.evaluations} utility evaluations, 64 permutations, truncation 0)")
    for name, r in (("quality_round", q), ("no_attack_round", attacked_round(None))):
        keys = [p.key for p in r.updates]
        u = RoundUtility(fed, r.arch, r.global_model, r.updates, r.x_val, r.y_val)
        ex = shapley_exact(keys, u)
        for perms in (64, 256):
            for trunc in (0, None):
                sa = shapley_sampled(keys, u, KeccakStream(b"err"), perms, trunc)
                errs = [abs(float(ex[k] - sa[k])) for k in keys]
                rho = spearman([float(ex[k]) for k in keys], [float(sa[k]) for k in keys])
                key = f"{name}/perm{perms}/trunc{trunc}"
                out["error"][key] = {"max_abs": max(errs), "mean_abs": sum(errs) / len(errs), "spearman": rho,
                                     "exact_range": [float(min(ex.values())), float(max(ex.values()))]}
                print(f"error {key:<38} max {max(errs):6.2f}  mean {sum(errs) / len(errs):6.2f}  "
                      f"spearman {rho:.3f}  (exact values in [{float(min(ex.values())):.1f}, {float(max(ex.values())):.1f}])")
    write_results("shapley", out)


if __name__ == "__main__":
    main()
