"""Long steps: how the template's ``collateral`` test tells a large honest trainer from a label
flipper, on real MNIST (the figures `dapp/ml/aggregation.py` step 2 quotes).

Setting: 50 trainers, Dirichlet 0.1 label skew (bench/robustness.py's split, seed 0), rounds
0-4 along the FedAvg trajectory of their honest updates. In every round each trainer trains
twice from the same global model: honestly, and with every label c replaced by 9 - c under a
data card that declares the flipped labels (``label_flip_card``, the attack that passes the
card-classes gate with a push of the biases). For each update, as the validated rule sees it on
the job's 100 public samples at the template's probe step:
- its norm against the median honest norm of the round;
- its *collateral*: what the probe costs, per public sample, the classes its card does not
  declare, over what it adds per sample of the classes it declares (margin utility).

Rule compared (same updates, same run): the norm rule alone (every step over 2x the median is
refused as boosted: honest long steps lost) against the template's (a step between 2x and 4x
is kept, clipped, when its collateral is at most 2).

Run: `.venv/bin/python -m bench.long_steps` (about 3 min on 2 cores); writes
bench/results/long_steps.json.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

from bench import write_results
from bench.datasets import mnist
from bench.robustness import ARCH, HPARAMS, Data, Setting
from client.jobs import DEMO_AGGREGATION
from client.training import train_local
from dapp.ml.aggregation import (FedAvg, ValidationContext, build_strategy, collateral_terms,
                                 flatten, sq_norm, unflatten_like)
from dapp.ml.arch import ArchSpec

TRAINERS, ALPHA, ROUNDS, SEED = 50, 0.1, 5, 0


def collateral(rule: Any, ctx: ValidationContext, g: Any, u: np.ndarray,
               card: list[int]) -> tuple[int, int, int, int] | None:
    """What ``Validated.aggregate`` weighs for the update's probe (``collateral_terms``); None
    for a card that declares every class or an update whose margin on its own classes fails
    the gate."""
    base = ctx.per_sample(("margin",), g)[0]
    now = ctx.per_sample(("margin",), rule.probe(flatten(g), u, g))[0]
    mask = ctx.class_mask(card)
    if mask is None:
        return None
    terms = collateral_terms(now - base, mask)
    return terms if rule.passes(terms[0], ctx, "margin") else None


def main() -> dict[str, Any]:
    d = mnist()
    arch = ArchSpec.from_dict(ARCH)
    data = Data(d, Setting(ALPHA, TRAINERS, 0.3, SEED, ROUNDS, False), arch)
    ctx = ValidationContext(arch, *data.public)
    rule = build_strategy(DEMO_AGGREGATION)
    limit = rule.collateral
    flip = np.arange(10)[::-1].copy()
    g = data.init
    rows = []
    for r in range(ROUNDS):
        gf = flatten(g)
        honest_models, found = [], []
        for i, idx in enumerate(data.parts):
            y = d.y_train[idx]
            hist = np.bincount(y, minlength=10)
            for kind, labels, card in (("honest", None, hist), ("flipped", flip, hist[flip])):
                m, _ = train_local(arch, g, d.x_train[idx], y, HPARAMS, seed=1000 * r + i,
                                   label_map=labels)
                u = flatten(m)
                if kind == "honest":
                    honest_models.append(u)
                c = collateral(rule, ctx, g, u, [int(h) for h in card])
                found.append((kind, math.isqrt(sq_norm(u - gf)), c))
        median = statistics.median(n for k, n, _ in found if k == "honest")
        for kind in ("honest", "flipped"):
            passed = [(n / median, c) for k, n, c in found if k == kind and c is not None]
            ratios = [-c[2] * c[1] / (c[0] * c[3]) for _, c in passed]
            long = [(x, c) for x, c in passed if 2 <= x <= 4]
            kept = sum(rule._collateral_ok(*c) for _, c in long)
            rows.append({"round": r, "kind": kind, "updates": TRAINERS, "pass_gate": len(passed),
                         "collateral_median": statistics.median(ratios),
                         "collateral_p10": float(np.percentile(ratios, 10)),
                         "collateral_p90": float(np.percentile(ratios, 90)),
                         "long_steps": len(long), "long_kept_norm_rule": 0,
                         "long_kept_template": kept})
            print(f"round {r} {kind:>7}: {len(passed):2d}/{TRAINERS} pass the card-classes gate; "
                  f"collateral p10/median/p90 {rows[-1]['collateral_p10']:5.2f} / "
                  f"{rows[-1]['collateral_median']:5.2f} / {rows[-1]['collateral_p90']:5.2f}; "
                  f"long steps (2x-4x the median) {len(long):2d}: kept 0 by the norm rule, "
                  f"{kept} by the template (collateral <= {limit})")
        w = np.array([len(p) for p in data.parts], dtype=np.int64)
        g = unflatten_like(FedAvg().combine_flat(gf, np.stack(honest_models), w), g)
    total = {k: {"long_steps": sum(x["long_steps"] for x in rows if x["kind"] == k),
                 "kept_template": sum(x["long_kept_template"] for x in rows if x["kind"] == k)}
             for k in ("honest", "flipped")}
    print(f"all rounds: honest long steps kept {total['honest']['kept_template']} of "
          f"{total['honest']['long_steps']} (norm rule: 0); flipped-label long steps kept "
          f"{total['flipped']['kept_template']} of {total['flipped']['long_steps']} (norm rule: 0)")
    result = {"what": "collateral of honest and label-flipped updates (card of the flipped "
                      "labels), MNIST, 50 trainers, Dirichlet 0.1, seed 0, FedAvg trajectory",
              "collateral_limit": str(limit), "rows": rows, "total": total}
    write_results("long_steps", result)
    return result


if __name__ == "__main__":
    main()
