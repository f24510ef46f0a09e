"""The demo's accuracy curve per round, next to plain FedAvg without defences on the same split
and attacks, and next to training on all honest data pooled (the ceiling).

Runs in-process without the chain, calling the ML core directly (`dapp.ml.aggregation`'s
strategies and integer inference): the market's round closing uses exactly these functions, so
the defended curve is what the demo's notices report, minus the network. Every curve starts
from the demo's deterministic initial model and uses the demo's split (client.data.demo_split),
participants, hyper-parameters and attacks (label flipping; sign flipping scaled by 4; the free
rider's copies, which the market refuses at reveal and plain FedAvg averages in).

Accuracy is the integer model's correct predictions (dapp.ml.inference.count_correct) on the
297-sample test set held out from everything, and on each round's 80-sample validation shard.

Run: `.venv/bin/python -m bench.demo_accuracy`; writes bench/results/demo_accuracy.json.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench import write_results
from client.data import DEMO_PROFILES, demo_split
from client.jobs import (DEMO_AGGREGATION, DEMO_HPARAMS, DIGITS_CNN, carve_public_shard,
                         deterministic_initial_model)
from client.training import scaled_sign_flip, train_local
from dapp.ml.aggregation import ClientUpdate, ValidationContext, build_strategy
from dapp.ml.arch import ArchSpec
from dapp.ml.fixedpoint import quantize
from dapp.ml.inference import count_correct
from dapp.ml.model_format import Model, decode_model

ROUNDS = 5
WEIGHT_CAP = 250
FREE_RIDERS = {p.name for p in DEMO_PROFILES if p.role == "free_rider"}


def _updates(arch: ArchSpec, g: Model, split: Any, r: int, prev: dict[str, Model],
             with_free_rider: bool) -> list[ClientUpdate]:
    ups = []
    for i, prof in enumerate(DEMO_PROFILES):
        x, y = split.parts[prof.name]
        if prof.role == "free_rider":
            if with_free_rider:
                copy = next(iter(prev.values())) if prev else g
                ups.append(ClientUpdate(prof.name, copy, 200))
            continue
        lm = np.arange(10)[::-1].copy() if prof.role == "label_flip" else None
        m, _ = train_local(arch, g, x, y, DEMO_HPARAMS, seed=(i + 1) * 1000 + r, label_map=lm)
        if prof.role == "sign_flip":
            m = scaled_sign_flip(g, m, arch, 4.0)
        ups.append(ClientUpdate(prof.name, m, min(len(y), WEIGHT_CAP)))
    return ups


def _acc(arch: ArchSpec, m: Model, data: tuple[np.ndarray, np.ndarray]) -> float:
    x, y = data
    return count_correct(arch, m, quantize(x, arch.scale_bits), y.astype(np.int32)) / len(y)


def main() -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    arch = ArchSpec.from_dict(DIGITS_CNN)
    split = demo_split(ROUNDS)
    init = decode_model(deterministic_initial_model(arch), arch, max_bytes=1 << 20)
    # the validated rule gates on the job's public shard: the one create-job carves by default
    public, _ = carve_public_shard(split.shards)
    ctx = ValidationContext(arch, quantize(public[0], arch.scale_bits), public[1].astype(np.int32))
    curves: dict[str, list[dict[str, float]]] = {"market": [], "fedavg_no_defence": [], "pooled_honest": []}
    rejected: list[list[str]] = []
    strategies = {"market": build_strategy(DEMO_AGGREGATION), "fedavg_no_defence": build_strategy("fedavg")}
    models = {k: init for k in strategies}
    prev: dict[str, dict[str, Model]] = {k: {} for k in strategies}
    honest = [p.name for p in DEMO_PROFILES if p.role == "honest"]
    px = np.concatenate([split.parts[n][0] for n in honest])
    py = np.concatenate([split.parts[n][1] for n in honest])
    pooled = init
    for r in range(ROUNDS):
        for name, strat in strategies.items():
            ups = _updates(arch, models[name], split, r, prev[name], with_free_rider=(name != "market"))
            res = strat.aggregate(models[name], ups, validation=ctx)
            if name == "market":
                rejected.append(sorted(res.rejected))
            prev[name] = {u.key: u.model for u in ups if u.key not in FREE_RIDERS}
            models[name] = res.model
            curves[name].append({"round": r, "test": _acc(arch, res.model, split.test),
                                 "shard": _acc(arch, res.model, split.shards[r])})
        pooled, _ = train_local(arch, pooled, px, py, DEMO_HPARAMS, seed=r)
        curves["pooled_honest"].append({"round": r, "test": _acc(arch, pooled, split.test),
                                        "shard": _acc(arch, pooled, split.shards[r])})
    result = {
        "what": "test-set accuracy of the global model after each round (integer inference)",
        "in_process": True, "chain": False,
        "setup": {"rounds": ROUNDS, "participants": [p.__dict__ for p in DEMO_PROFILES],
                  "hparams": DEMO_HPARAMS, "aggregation": DEMO_AGGREGATION,
                  "test_samples": int(len(split.test[1])), "initial_test_accuracy": _acc(arch, init, split.test)},
        "curves": curves, "market_rejected_per_round": rejected,
        "elapsed_s": time.perf_counter() - t0,
    }
    write_results("demo_accuracy", result)
    for name, c in curves.items():
        print(f"{name:<18}" + "  ".join(f"{p['test']:.3f}" for p in c))
    return result


if __name__ == "__main__":
    main()
