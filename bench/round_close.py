"""Round closing time against the number of trainers and the model size, on this machine.

Each case runs a real round through the market backend in-process (the same handlers the node
drives): N trainers commit and reveal updates of the given model, the owner reveals a 300-sample
validation shard, and `closeRound` is timed: fetching nothing (the updates were validated at
reveal), Multi-Krum + FedAvg, contribution (exact Shapley up to 10 trainers, 64 sampled
permutations above), reward split, the notice and the model reports. The baseline in the same
run is the same round with leave-one-out contribution, the cheapest scoring the spec offers.

Updates are made in integers (as in tests/golden/market_round.py): honest trainers move part of
the way toward a hidden teacher model that labels the shard, one in five moves away from it.

Run: `.venv/bin/python -m bench.round_close [--full]`; writes bench/results/round_close.json.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from bench import write_results
from dapp.market import protocol as p
from dapp.ml.arch import ArchSpec
from dapp.ml.inference import predict
from dapp.ml.model_format import encode_dataset, encode_model, initial_model
from dapp.ml.randomness import KeccakStream
from tests.golden.market_round import ints, toward
from tests.market_harness import OWNER, MarketSim

CNN = {"input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 10,
       "layers": [{"type": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 8,
                   "kernel_size": 3, "stride": 1, "padding": 1},
                  {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                  {"type": "linear", "name": "fc1", "in_features": 128, "out_features": 10}]}
MLP = {"input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 10,
       "layers": [{"type": "flatten"},
                  {"type": "linear", "name": "fc1", "in_features": 64, "out_features": 256},
                  {"type": "relu"},
                  {"type": "linear", "name": "fc2", "in_features": 256, "out_features": 10}]}
WINDOWS = {"start_delay": 1, "commit": 10_000, "reveal": 10_000, "validation": 10_000}


def one_round(arch_dict: dict[str, Any], n: int, contribution: dict[str, Any],
              samples: int = 300) -> dict[str, Any]:
    sim = MarketSim()
    arch = ArchSpec.from_dict(arch_dict)
    stream = KeccakStream(b"bench/round_close")
    g0 = initial_model(arch, b"bench-initial")
    teacher = initial_model(arch, b"bench-teacher")
    x = ints(stream, (samples, 1, 8, 8), 1 << arch.scale_bits).astype(np.int32)
    y = predict(arch, teacher, x).astype(np.int32)
    shard = sim.content.put(encode_dataset(x, y))
    salt = b"\x01" * 32
    spec = {"version": 1, "arch": arch_dict, "initial_model": sim.content.put(
                encode_model(g0, arch)), "rounds": 1, "windows": WINDOWS,
            "hparams": {"learning_rate": [1, 10], "local_epochs": 1, "batch_size": 16},
            "aggregation": {"rule": "multi_krum", "f": max(1, n // 5), "m": n - max(1, n // 5),
                            "then": "fedavg"},
            "contribution": contribution,
            "data_schema": {"feature_shape": [1, 8, 8], "num_classes": 10,
                            "max_samples": 10000, "weight_cap": 1000},
            "validation": ["0x" + p.validation_commitment(shard, salt).hex()],
            "max_trainers": n, "limits": {"max_shard_samples": samples}}
    spec_cid = sim.content.put(json.dumps(spec).encode())
    assert sim.deposit_eth(OWNER, 10**18, p.CreateJob(spec_cid).encode()).notices
    trainers = ["0x" + (i + 1).to_bytes(20, "big").hex() for i in range(n)]
    for t in trainers:
        assert sim.call(t, p.Join(1)).accepted
    sim.advance(WINDOWS["start_delay"])
    card = json.dumps({"version": 1, "num_samples": 100, "label_histogram": [10] * 10,
                       "feature_shape": [1, 8, 8], "data_commitment": "0x" + "22" * 32,
                       "dp": None}).encode()
    card_cid = sim.content.put(card)
    subs = {}
    for i, t in enumerate(trainers):
        noise = ints(stream, (arch.param_count(),), 2)
        m = toward(g0, teacher, -3, 1, noise) if i % 5 == 4 else toward(
            g0, teacher, 1 + i % 4, 8, noise)
        subs[t] = (sim.content.put(encode_model(m, arch)), card_cid, bytes([i % 256]) * 32)
        assert sim.call(t, p.Commit(1, 0, p.commitment(t, 1, 0, *subs[t]))).accepted
    sim.advance(WINDOWS["commit"])
    for t, sub in subs.items():
        assert sim.call(t, p.Reveal(1, 0, *sub)).accepted
    assert sim.call(OWNER, p.RevealValidation(1, 0, shard, salt)).accepted
    sim.advance(WINDOWS["reveal"])
    start = time.perf_counter()
    res = sim.call(OWNER, p.CloseRound(1, 0))
    seconds = time.perf_counter() - start
    assert res.accepted, res.reports
    notice = res.notices[0]
    return {"trainers": n, "params": arch.param_count(), "seconds": round(seconds, 3),
            "accepted": sum(e["verdict"] == "accepted" for e in notice["trainers"]),
            "accuracy": notice["accuracy"]}


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="also 50 trainers on the larger model")
    args = ap.parse_args()
    shapley = {"method": "shapley", "exact_max_players": 10, "permutations": 64}
    loo = {"method": "loo"}
    rows = []
    models = [("digits CNN", CNN), ("MLP 64-256-10", MLP)]
    for label, arch in models:
        for n in (5, 10, 20, 50):
            if n == 50 and label != "digits CNN" and not args.full:
                continue
            row = {"model": label, **one_round(arch, n, shapley)}
            row["baseline_loo_seconds"] = one_round(arch, n, loo)["seconds"]
            rows.append(row)
            print(f"  {label:<16} {row['params']:>7,} params  {n:>3} trainers  close "
                  f"{row['seconds']:>7.2f} s  (leave-one-out baseline "
                  f"{row['baseline_loo_seconds']:.2f} s)  accepted {row['accepted']}")
    write_results("round_close", {"rows": rows, "validation_samples": 300})
    return {"rows": rows}


if __name__ == "__main__":
    main()
