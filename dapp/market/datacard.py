"""The data card: what a trainer publishes about its data instead of the data.

A small JSON document (stored by content id, named in the reveal):
    {"version": 1, "num_samples": 180, "label_histogram": [18, 20, ...],
     "feature_shape": [1, 8, 8], "data_commitment": "0x<32 bytes>",
     "dp": null | {"epsilon": "p/q", "delta": "p/q", "clip": "p/q", "noise_multiplier": "p/q"}}

`data_commitment` is a Merkle root of salted sample hashes: it binds the trainer to the data it
trained on, so a later audit can ask for openings, without revealing anything now. The card's
sample count weighs the trainer's update in aggregation, capped by the job so that claiming a
huge dataset buys nothing beyond the cap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dapp.canonical import parse_fraction
from dapp.market.spec import DataSchema


class DataCardError(ValueError):
    """The data card does not fit the job's data schema; the message says which field."""


@dataclass(frozen=True)
class DataCard:
    num_samples: int
    label_histogram: tuple[int, ...]
    feature_shape: tuple[int, ...]
    data_commitment: bytes
    dp_epsilon: str | None

    def weight(self, schema: DataSchema) -> int:
        return min(self.num_samples, schema.weight_cap)


def _reject_float(text: str) -> Any:
    raise DataCardError(f"floats are not allowed in a data card ({text})")


def parse_data_card(data: bytes, schema: DataSchema) -> DataCard:
    try:
        raw = json.loads(data.decode("utf-8"), parse_float=_reject_float,
                         parse_constant=_reject_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataCardError(f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise DataCardError("must be a JSON object")
    if raw.get("version") != 1:
        raise DataCardError(f"version: expected 1, got {raw.get('version')!r}")
    n = raw.get("num_samples")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= schema.max_samples:
        raise DataCardError(f"num_samples: expected an integer in [1, {schema.max_samples}], "
                            f"got {n!r}")
    hist = raw.get("label_histogram")
    if (not isinstance(hist, list) or len(hist) != schema.num_classes
            or any(not isinstance(h, int) or isinstance(h, bool) or h < 0 for h in hist)):
        raise DataCardError(f"label_histogram: expected {schema.num_classes} non-negative "
                            f"integers")
    if sum(hist) != n:
        raise DataCardError(f"label_histogram sums to {sum(hist)}, not num_samples {n}")
    shape = raw.get("feature_shape")
    if not isinstance(shape, list) or tuple(shape) != schema.feature_shape:
        raise DataCardError(f"feature_shape: expected {list(schema.feature_shape)}, "
                            f"got {shape!r}")
    commit = raw.get("data_commitment")
    if not (isinstance(commit, str) and commit.startswith("0x") and len(commit) == 66):
        raise DataCardError("data_commitment: expected a 0x-prefixed 32-byte hex string")
    try:
        commitment = bytes.fromhex(commit[2:])
    except ValueError as exc:
        raise DataCardError("data_commitment: bad hex") from exc
    dp = raw.get("dp")
    epsilon = None
    if dp is not None:
        if not isinstance(dp, dict):
            raise DataCardError("dp: expected null or an object")
        for key in ("epsilon", "delta", "clip", "noise_multiplier"):
            value = dp.get(key)
            try:
                if not isinstance(value, str) or parse_fraction(value) < 0:
                    raise ValueError
            except ValueError:
                raise DataCardError(f"dp.{key}: expected a non-negative 'p/q' string, "
                                    f"got {value!r}") from None
        epsilon = dp["epsilon"]
    return DataCard(n, tuple(hist), tuple(shape), commitment, epsilon)
