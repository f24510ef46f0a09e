"""Golden scenario of the ML core, run on the host and under qemu-riscv64; outputs must match.

Standalone: imports only the standard library, numpy, safetensors, pycryptodome and dapp (no torch,
no sklearn). Inputs come from keccak streams seeded by constants in this file. Prints one line per
result, ``<name> <keccak hex>``, then ``ALL <keccak of every previous line>``.

    python3 tests/golden/ml_golden.py            # print
    python3 tests/golden/ml_golden.py --write    # also rewrite tests/golden/ml_golden.expected
"""

from __future__ import annotations

import json
import os
import sys
from fractions import Fraction

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import numpy as np  # noqa: E402

from dapp.hashing import keccak  # noqa: E402
from dapp.ml.aggregation import ClientUpdate, build_strategy  # noqa: E402
from dapp.ml.arch import ArchSpec  # noqa: E402
from dapp.ml.contribution import (RoundUtility, leave_one_out, score_round, shapley_exact,  # noqa: E402
                                  shapley_sampled)
from dapp.ml.fixedpoint import quantize  # noqa: E402
from dapp.ml.hparams import initial_hparams, next_hparams  # noqa: E402
from dapp.ml.inference import count_correct, forward, predict  # noqa: E402
from dapp.ml.model_format import (Model, decode_dataset, decode_model, encode_dataset,  # noqa: E402
                                  encode_model, initial_model, model_hash)
from dapp.ml.randomness import KeccakStream, seed_from  # noqa: E402
from dapp.ml.rewards import split_reward  # noqa: E402

ARCH = ArchSpec.from_dict({
    "input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 16,
    "layers": [
        {"type": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 4, "kernel_size": 3,
         "stride": 1, "padding": 1},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "name": "fc1", "in_features": 64, "out_features": 16},
        {"type": "relu"},
        {"type": "linear", "name": "fc2", "in_features": 16, "out_features": 10}]})

RULES = [
    {"rule": "fedavg"}, {"rule": "median"}, {"rule": "trimmed_mean", "trim": [1, 5]},
    {"rule": "multi_krum", "f": 1, "m": 4, "then": "fedavg"},
    {"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [3, 2], "then": "fedavg"},
    {"rule": "norm_clip", "mode": "clip", "max_norm_ratio": [1, 1], "then": "median"},
    {"rule": "distance_filter", "max_ratio": [2, 1], "then": {"rule": "trimmed_mean", "trim": [1, 4]}},
]

lines: list[str] = []


def emit(name: str, data: bytes, show: str = "") -> None:
    line = f"{name} {keccak(data).hex()}" + (f" {show}" if show else "")
    lines.append(line)
    print(line)


def ints(stream: KeccakStream, shape: tuple[int, ...], bound: int) -> np.ndarray:
    """Values in [-bound, bound] from the stream (test inputs only; the modulo bias is irrelevant)."""
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(stream.read(4 * n), dtype="<u4").astype(np.int64)
    return (raw % (2 * bound + 1) - bound).reshape(shape)


def perturb(g: Model, stream: KeccakStream, bound: int) -> Model:
    return Model({k: (g[k].astype(np.int64) + ints(stream, g[k].shape, bound)).astype(np.int32) for k in g})


def frac_json(d: dict[str, Fraction]) -> bytes:
    return json.dumps({k: f"{v.numerator}/{v.denominator}" for k, v in sorted(d.items())},
                      separators=(",", ":")).encode()


def main() -> None:
    s = KeccakStream(seed_from(b"golden", b"ml", (1).to_bytes(4, "big")))
    emit("stream", s.read(64))
    items = list(range(30))
    KeccakStream(b"shuffle").shuffle(items)
    emit("shuffle", json.dumps(items).encode())
    emit("randbelow", json.dumps([KeccakStream(b"rb").randbelow(10**30 + 7) for _ in range(3)]).encode())

    g = initial_model(ARCH, b"golden-initial")
    gb = encode_model(g, ARCH)
    emit("initial_model", gb)
    assert decode_model(gb, ARCH, max_bytes=1 << 20) == g
    q = quantize(np.array([0.5, -0.5, 1.25, -3.75, 0.1, 1e-5, 123.456]), 16)
    emit("quantize", q.astype("<i4").tobytes(), str(q.tolist()))

    x = (np.abs(ints(s, (48, 1, 8, 8), 16)) * 4096).astype(np.int32)  # digits-like: k/16 in [0, 1]
    y = (np.abs(ints(s, (48,), 9))).astype(np.int32)
    db = encode_dataset(x, y)
    emit("dataset", db)
    x, y = decode_dataset(db, ARCH, max_samples=48)
    emit("logits", forward(ARCH, g, x).astype("<i8").tobytes())
    emit("predict", predict(ARCH, g, x).astype("<i8").tobytes(), str(count_correct(ARCH, g, x, y)))

    updates = [ClientUpdate(f"0x{i + 1:040x}", perturb(g, s, 2000 * (i + 1)), 10 + 7 * i) for i in range(6)]
    updates.append(ClientUpdate("0x" + "aa" * 20, perturb(g, s, 400_000), 50))          # outlier
    updates.append(ClientUpdate("0x" + "bb" * 20, updates[1].model, 99))                # sybil copy
    updates.append(ClientUpdate("0x" + "cc" * 20, g, 20))                               # free rider
    for i, up in enumerate(updates):
        emit(f"update{i}", model_hash(up.model))

    for cfg in RULES:
        strat = build_strategy(cfg)
        res = strat.aggregate(g, updates)
        name = "agg:" + json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        emit(name + ":model", model_hash(res.model), str(count_correct(ARCH, res.model, x, y)))
        emit(name + ":decision", json.dumps({"accepted": list(res.accepted), "rejected": res.rejected,
                                             "groups": res.groups, "notes": res.notes},
                                            sort_keys=True).encode())
        scores = score_round(strat, ARCH, g, updates, res, x, y,
                             {"method": "shapley", "exact_max_players": 10}, KeccakStream(b"score"))
        emit(name + ":shapley", frac_json(scores))
        pay = split_reward(10**18 + 3, scores)
        emit(name + ":reward", json.dumps([pay.payouts, pay.remainder], sort_keys=True).encode())

    strat = build_strategy("fedavg")
    honest = updates[:6]
    util = RoundUtility(strat, ARCH, g, honest, x, y)
    keys = [u.key for u in honest]
    emit("shapley_exact", frac_json(shapley_exact(keys, util)))
    emit("shapley_sampled", frac_json(shapley_sampled(keys, util, KeccakStream(b"perm"), 12, 0)))
    emit("shapley_sampled_notrunc", frac_json(shapley_sampled(keys, util, KeccakStream(b"perm"), 12, None)))
    emit("loo", frac_json(leave_one_out(keys, util)))

    cfg = {"learning_rate": [1, 20], "local_epochs": 2, "batch_size": 32,
           "schedule": {"type": "plateau", "patience": 1, "min_delta": 2, "factor": [2, 3], "min_lr": [1, 200]}}
    h = initial_hparams(cfg)
    hist: list[int] = []
    states = []
    for acc in (10, 15, 16, 16, 30, 29, 29, 31):
        hist.append(acc)
        h = next_hparams(cfg, h, hist)
        states.append(h)
    emit("hparams", json.dumps(states, sort_keys=True).encode())

    emit("ALL", "\n".join(lines).encode())


if __name__ == "__main__":
    main()
    if "--write" in sys.argv:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ml_golden.expected"), "w") as f:
            f.write("\n".join(lines) + "\n")
