"""Job specs for owners: the demo's digits CNN job, validation shards and their commitments.

The spec format is the market's (`dapp.market.spec.parse_spec`): this module builds one and
checks it with that very parser before anything is stored or deposited, so an owner learns
about a bad field from the CLI, not from a refund report.

Validation shards: one per round, safetensors with `x` (int32 fixed point at the arch's scale)
and `y` (int32 labels) (`dapp.ml.model_format.encode_dataset`). Each is stored, and the spec
carries `validation_commitment(shard_cid, salt)`; the shard ids and salts stay with the owner
(local state) until `reveal-validation` opens them round by round.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dapp.market import protocol as p
from dapp.market.spec import parse_spec
from dapp.ml.arch import ArchSpec
from dapp.ml.fixedpoint import quantize
from dapp.ml.model_format import encode_dataset, encode_model, initial_model

DIGITS_CNN: dict[str, Any] = {
    "input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 16,
    "layers": [
        {"type": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 8,
         "kernel_size": 3, "stride": 1, "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "name": "fc1", "in_features": 128, "out_features": 10}]}

# The market's default rule (issue 10): every update is gated on the job's public validation
# shard, near-duplicates are one player, deltas are combined in full by validation gain and
# valued (Shapley) clipped to the gain-weighted median norm, so a longer step is not paid as
# data; a step over 4x that norm is a boost, one of 2x-4x is clipped to 2x and kept only if its
# collateral on the classes its card lacks holds (dapp/ml/aggregation.py, step 2); pay is
# valued in class-balanced correct predictions plus margin ("balanced"), which ranks honest
# trainers closer to the value of their data than the margin alone (bench/robustness.py). No majority
# of cheap identities can capture it (Multi-Krum keeps the largest cluster, so an owner with
# many identities could reject every honest update).
DEMO_AGGREGATION: dict[str, Any] = {"rule": "validated", "utility": "margin",
                                    "min_gain": [1, 1000], "step": [1, 2], "max_norm_ratio": [2, 1], "cluster_cos": [23, 25],
                                    "clip": "score", "or_correct": True,
                                    "second_chance": True, "collusion_cos": [99, 100],
                                    "weighting": "root4_gain_norm", "evidence": "card_classes",
                                    "reject_norm_ratio": [4, 1], "collateral": [2, 1],
                                    "score_utility": "balanced", "pay": "settle"}
LEGACY_AGGREGATION: dict[str, Any] = {
    "rule": "norm_clip", "mode": "reject", "max_norm_ratio": [3, 1],
    "then": {"rule": "multi_krum", "f": 1, "m": 8, "then": "fedavg"}}
PUBLIC_SHARE = (1, 4)
"""Without an explicit public shard, create-job publishes this share (floor, at least one
sample, never the whole) of every round's shard as the job's public validation shard."""
DEMO_CONTRIBUTION: dict[str, Any] = {"method": "shapley", "exact_max_players": 10,
                                     "permutations": 48, "sampling": "stratified",
                                     "truncation": [1, 100]}
"""Exact Shapley up to 10 distinct players (no sampling noise at all), Latin-square orders with
1 % truncation above: within the close-round budget at the template's 50 trainers (0.94 of it
on the digits CNN with 300-sample shards), and stratified orders rank far closer to exact than
plain ones at the same count (bench/shapley.py)."""
DEMO_HPARAMS: dict[str, Any] = {"learning_rate": [1, 5], "local_epochs": 3, "batch_size": 16}
DEMO_WINDOWS: dict[str, int] = {"start_delay": 0, "commit": 3600, "reveal": 3600,
                                "validation": 3600}


class Store(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, cid: str, *, max_size: int) -> bytes: ...


@dataclass(frozen=True)
class ShardSecret:
    cid: str
    salt: bytes

    def to_json(self) -> dict[str, str]:
        return {"cid": self.cid, "salt": "0x" + self.salt.hex()}

    @classmethod
    def from_json(cls, d: dict[str, str]) -> "ShardSecret":
        return cls(d["cid"], bytes.fromhex(d["salt"][2:]))


def store_shards(store: Store, shards: list[tuple[np.ndarray, np.ndarray]], arch: ArchSpec
                 ) -> list[ShardSecret]:
    """Quantize, encode and store each round's shard; a fresh random salt each."""
    out = []
    for x, y in shards:
        data = encode_dataset(quantize(np.asarray(x).reshape(len(y), *arch.input_shape),
                                       arch.scale_bits), np.asarray(y, dtype=np.int32))
        out.append(ShardSecret(store.put(data), secrets.token_bytes(32)))
    return out


def needs_public_shard(spec: dict[str, Any]) -> bool:
    """The spec's rule gates on a public shard and the spec does not name one yet."""
    agg = spec.get("aggregation")
    return (isinstance(agg, dict) and agg.get("rule") == "validated"
            and "public_validation" not in spec)


def carve_public_shard(shards: list[tuple[np.ndarray, np.ndarray]]
                       ) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Split a public validation shard off the round shards: the first PUBLIC_SHARE of each
    (floor, at least 1 sample, at least 1 left secret), concatenated in round order. Returns
    (public shard, the round shards that stay secret)."""
    p, q = PUBLIC_SHARE
    xs, ys, rest = [], [], []
    for x, y in shards:
        x, y = np.asarray(x), np.asarray(y)
        k = min(max(len(y) * p // q, 1), len(y) - 1)
        if k < 1:
            raise ValueError("a round shard needs at least 2 samples to share one publicly")
        xs.append(x[:k])
        ys.append(y[:k])
        rest.append((x[k:], y[k:]))
    return (np.concatenate(xs), np.concatenate(ys)), rest


def load_shard_files(paths: list[Path], arch: ArchSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shard files an owner supplies: .npz with float `x` [N, *input_shape] and int `y`."""
    from client.data import load_trainer_data

    return [load_trainer_data(path, arch) for path in paths]


def deterministic_initial_model(arch: ArchSpec, seed: bytes = b"tributary/initial") -> bytes:
    """A PyTorch-free initial model: the ML core's keccak-seeded uniform init, canonical bytes."""
    return encode_model(initial_model(arch, seed), arch)


def validation_commitments(shards: list[ShardSecret]) -> list[str]:
    """The spec's `validation` field: one commitment per round's shard, in round order."""
    return ["0x" + p.validation_commitment(s.cid, s.salt).hex() for s in shards]


def build_spec(*, name: str, arch: dict[str, Any], initial_model_cid: str,
               shards: list[ShardSecret], windows: dict[str, int] | None = None,
               hparams: dict[str, Any] | None = None, aggregation: dict[str, Any] | None = None,
               contribution: dict[str, Any] | None = None, max_samples: int = 100_000,
               weight_cap: int = 250, max_trainers: int = 50,
               extra: dict[str, Any] | None = None,
               public_validation: str | None = None) -> dict[str, Any]:
    """A job spec; ``public_validation`` is the CID of the public validation shard that the
    default (validated) rule requires (create-job stores one and fills it in)."""
    spec: dict[str, Any] = {
        "version": 1, "name": name, "arch": arch, "initial_model": initial_model_cid,
        "rounds": len(shards), "windows": windows or DEMO_WINDOWS,
        "hparams": hparams or DEMO_HPARAMS,
        "aggregation": aggregation or DEMO_AGGREGATION,
        "contribution": contribution or DEMO_CONTRIBUTION, "fallback": "equal",
        "max_trainers": max_trainers,
        "data_schema": {"feature_shape": arch["input_shape"], "num_classes": arch["num_classes"],
                        "max_samples": max_samples, "weight_cap": weight_cap},
        "validation": validation_commitments(shards),
        "limits": {"max_model_bytes": 1 << 20, "max_shard_samples": 300},
    }
    if public_validation is not None:
        spec["public_validation"] = public_validation
    spec.update(extra or {})
    return spec


def spec_bytes(spec: dict[str, Any]) -> bytes:
    """Serialize and validate with the market's own parser (raises SpecError)."""
    data = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    parse_spec(data)
    return data
