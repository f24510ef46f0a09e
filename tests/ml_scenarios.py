"""Federated rounds on scikit-learn's digits, shared by the ML tests and benchmarks.

Everything here is deterministic: splits come from NumPy generators with fixed seeds (test-side
only, never the backend's randomness), local training runs PyTorch on one thread with a fixed
seed per trainer. Trained float models are quantized with ``dapp.ml.fixedpoint`` so the backend
only ever sees int32 fixed point.

Attacks (``ATTACKS``), applied by 3 of the 10 trainers (``ATTACKER_IDX``):
* ``label_flip``: trains honestly on labels ``9 - y``;
* ``sign_flip``: submits ``g - 4 * delta`` (its honest delta reversed and amplified);
* ``scaled``: submits ``g + 10 * delta`` (model-replacement style boosting);
* ``noise``: submits ``g + N(0, 1)`` in float units (huge next to real deltas);
* ``free_rider``: submits the global model unchanged (the zero update).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bench.datasets import dirichlet_split
from client.jobs import DIGITS_CNN
from dapp.ml.aggregation import ClientUpdate, build_strategy
from dapp.ml.arch import ArchSpec
from dapp.ml.contribution import RoundUtility
from dapp.ml.fixedpoint import dequantize, from_torch_state_dict, quantize, to_torch_state_dict, torch_module
from dapp.ml.model_format import Model

SCALE_BITS = 16

CNN_SPEC: dict[str, Any] = dict(DIGITS_CNN, scale_bits=SCALE_BITS)

MLP_SPEC: dict[str, Any] = {
    "input_shape": [64], "num_classes": 10, "scale_bits": SCALE_BITS,
    "layers": [
        {"type": "linear", "name": "fc1", "in_features": 64, "out_features": 32},
        {"type": "relu"},
        {"type": "linear", "name": "fc2", "in_features": 32, "out_features": 10}]}

N_TRAINERS = 10
ATTACKER_IDX = (2, 5, 8)
ATTACKS = ("label_flip", "sign_flip", "scaled", "noise", "free_rider")


def trainer_key(i: int) -> str:
    return "0x" + f"{0xa11ce000 + i:040x}"


@dataclass(frozen=True)
class Digits:
    """Float features in [0, 1] shaped [N, 1, 8, 8]; int labels."""

    x_public: np.ndarray
    y_public: np.ndarray
    x_pool: np.ndarray
    y_pool: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=None)
def digits(seed: int = 0) -> Digits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data.astype(np.float64) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    x, y = x[perm], y[perm]
    a, b, c = 150, 450, 850  # public 150 | validation 300 | test 400 | pool 947
    return Digits(x[:a], y[:a], x[c:], y[c:], x[a:b], y[a:b], x[b:c], y[b:c])


def to_fixed(x: np.ndarray, scale_bits: int = SCALE_BITS) -> np.ndarray:
    """Digits pixels are multiples of 1/16, so this is exact."""
    return quantize(x, scale_bits)


def arch_for(spec: dict[str, Any]) -> ArchSpec:
    return ArchSpec.from_dict(spec)


def reshape_for(arch: ArchSpec, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], *arch.input_shape)


def train_local(arch: ArchSpec, init: Model, x: np.ndarray, y: np.ndarray, *, epochs: int = 2,
                lr: float = 0.003, batch: int = 32, seed: int = 0) -> Model:
    """Local training in float PyTorch from ``init``, returned quantized."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    net = torch_module(arch)
    net.load_state_dict(to_torch_state_dict(init, arch))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt = torch.from_numpy(reshape_for(arch, x).astype(np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return from_torch_state_dict(net.state_dict(), arch)


def float_accuracy(arch: ArchSpec, model: Model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    net = torch_module(arch)
    net.load_state_dict(to_torch_state_dict(model, arch))
    with torch.no_grad():
        out = net(torch.from_numpy(reshape_for(arch, x).astype(np.float32)))
    return float((out.argmax(1).numpy() == y).mean())


def initial_float_model(arch: ArchSpec, seed: int = 0) -> Model:
    import torch

    torch.manual_seed(seed)
    return from_torch_state_dict(torch_module(arch).state_dict(), arch)


@functools.lru_cache(maxsize=None)
def global_model(spec_name: str = "cnn", epochs: int = 6, seed: int = 0) -> Model:
    """The round's starting model: trained on the 150 public samples (~87 % on the test set)."""
    arch = arch_for(CNN_SPEC if spec_name == "cnn" else MLP_SPEC)
    d = digits()
    return train_local(arch, initial_float_model(arch, seed), d.x_public, d.y_public,
                       epochs=epochs, lr=0.01, seed=seed)


def non_iid_split(y: np.ndarray, n: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Dirichlet(alpha) label skew; every trainer gets at least 20 samples."""
    return dirichlet_split(y, n, alpha, np.random.default_rng(seed), min_size=20)


@dataclass
class Round:
    arch: ArchSpec
    global_model: Model
    updates: list[ClientUpdate]
    attackers: tuple[str, ...]
    x_val: np.ndarray  # int32 fixed point
    y_val: np.ndarray  # int32
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def exact_table(r: Round, utility: str = "correct") -> tuple[list[str], Callable[[tuple[str, ...]], int]]:
    """The round's FedAvg utility of every coalition, computed once: (sorted keys, lookup)."""
    ru = RoundUtility(build_strategy("fedavg"), r.arch, r.global_model, r.updates, r.x_val, r.y_val, utility)
    keys = sorted(p.key for p in r.updates)
    n = len(keys)
    tab = {}
    for m in range(1 << n):
        c = tuple(keys[i] for i in range(n) if m >> i & 1)
        tab[c] = ru(c)
    return keys, lambda c: tab[tuple(sorted(c))]


def _fixed_eval_sets(arch: ArchSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = digits()
    return (to_fixed(reshape_for(arch, d.x_val)), d.y_val.astype(np.int32),
            to_fixed(reshape_for(arch, d.x_test)), d.y_test.astype(np.int32))


@functools.lru_cache(maxsize=None)
def _honest_models(alpha: float = 1.0, seed: int = 0) -> tuple[tuple[Model, int], ...]:
    arch = arch_for(CNN_SPEC)
    d = digits()
    g = global_model()
    out = []
    for i, idx in enumerate(non_iid_split(d.y_pool, N_TRAINERS, alpha, seed)):
        out.append((train_local(arch, g, d.x_pool[idx], d.y_pool[idx], seed=100 + i), len(idx)))
    return tuple(out)


def _delta_model(arch: ArchSpec, g: Model, m: Model, factor: float) -> Model:
    out = {}
    for k in g:
        v = g[k].astype(np.int64) + np.round(factor * (m[k].astype(np.int64) - g[k].astype(np.int64)))
        out[k] = v.astype(np.int64).clip(-(2**31 - 1), 2**31 - 1).astype(np.int32)
    return Model(out)


def attacked_round(attack: str | None, alpha: float = 1.0, seed: int = 0) -> Round:
    """10 trainers on a non-IID split; with ``attack``, trainers ATTACKER_IDX misbehave."""
    arch = arch_for(CNN_SPEC)
    d = digits()
    g = global_model()
    honest = _honest_models(alpha, seed)
    parts = non_iid_split(d.y_pool, N_TRAINERS, alpha, seed)
    updates = []
    attackers: list[str] = []
    for i, (m, n) in enumerate(honest):
        if attack is not None and i in ATTACKER_IDX:
            attackers.append(trainer_key(i))
            if attack == "label_flip":
                idx = parts[i]
                m = train_local(arch, g, d.x_pool[idx], 9 - d.y_pool[idx], seed=100 + i)
            elif attack == "sign_flip":
                m = _delta_model(arch, g, m, -4.0)
            elif attack == "scaled":
                m = _delta_model(arch, g, m, 10.0)
            elif attack == "noise":
                rng = np.random.default_rng(1000 + i)
                m = Model({k: (g[k].astype(np.int64) + quantize(rng.normal(0, 1.0, g[k].shape), SCALE_BITS)
                               ).clip(-(2**31 - 1), 2**31 - 1).astype(np.int32) for k in g})
            elif attack == "free_rider":
                m = g
            else:
                raise ValueError(f"unknown attack {attack!r}")
        updates.append(ClientUpdate(trainer_key(i), m, int(n)))
    xv, yv, xt, yt = _fixed_eval_sets(arch)
    return Round(arch, g, updates, tuple(attackers), xv, yv, xt, yt, {"attack": attack})


@functools.lru_cache(maxsize=None)
def quality_round(seed: int = 0) -> Round:
    """Trainer i (0..9) gets 20 + 12 i IID samples with (9 - i) * 9 % of labels randomised:
    quality rises with i. Used for the Shapley-vs-quality check."""
    arch = arch_for(CNN_SPEC)
    d = digits()
    g = initial_float_model(arch, seed)  # from scratch: each trainer's data quality shows clearly
    rng = np.random.default_rng(seed + 7)
    perm = rng.permutation(len(d.y_pool))
    updates = []
    pos = 0
    for i in range(N_TRAINERS):
        n = 20 + 12 * i
        idx = perm[pos:pos + n]
        pos += n
        y = d.y_pool[idx].copy()
        noisy = rng.random(n) < (9 - i) * 0.09
        y[noisy] = rng.integers(0, 10, int(noisy.sum()))
        updates.append(ClientUpdate(trainer_key(i), train_local(arch, g, d.x_pool[idx], y, epochs=8, lr=0.01,
                                                                  seed=200 + i), n))
    xv, yv, xt, yt = _fixed_eval_sets(arch)
    return Round(arch, g, updates, (), xv, yv, xt, yt, {"quality": list(range(N_TRAINERS))})


def synthetic_updates(n: int, base: Model, spread: float, seed: int) -> list[ClientUpdate]:
    """n perturbed copies of a model (for benchmarks with many players)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(ClientUpdate(trainer_key(i), Model({k: (base[k].astype(np.int64) + quantize(
            rng.normal(0, spread, base[k].shape), SCALE_BITS)).astype(np.int32) for k in base}),
            20 + int(rng.integers(0, 100))))
    return out


__all__ = ["CNN_SPEC", "MLP_SPEC", "ATTACKS", "ATTACKER_IDX", "Round", "attacked_round", "quality_round",
           "digits", "global_model", "train_local", "float_accuracy", "to_fixed", "arch_for", "trainer_key",
           "synthetic_updates", "dequantize"]
