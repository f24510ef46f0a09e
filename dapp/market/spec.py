"""The job spec: what an owner promises when locking a reward.

The spec is a JSON document stored by content id and named by the deposit. Everything that
decides how a job runs and pays is in it, fixed before any trainer works: the model, the
rounds and their windows, the aggregation and contribution rules, the reward schedule, the
data schema, a commitment to each round's secret validation shard (so the owner cannot choose a
shard after seeing the updates), and the public validation shard (`public_validation`, a CID):
fetched and checked when the job opens (no job opens without it), inspectable by every trainer
before joining, and part of every round's scoring data, so withholding a secret shard or
committing a useless one leaves trainers scored on data the owner can no longer change. The
``validated`` aggregation rule requires it (it gates every update on that shard).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dapp.market.cost import close_cost
from dapp.ml.aggregation import MARGIN_CLIP_LOGITS, MAX_WEIGHT_TOTAL, Validated, build_strategy
from dapp.ml.arch import ArchSpec
from dapp.ml.contribution import parse_method
from dapp.ml.hparams import parse_config as parse_hparams

MAX_SPEC_BYTES = 64 * 1024
MAX_ROUNDS = 100
MAX_TRAINERS = 200
MAX_EXACT_PLAYERS = 12
MAX_PERMUTATIONS = 512
CONTENT_SOURCES = ("gio", "inputs")
FALLBACKS = ("equal",)


class SpecError(ValueError):
    """The job spec is not acceptable; the message says which field and why."""


@dataclass(frozen=True)
class Windows:
    """Seconds, measured with input block timestamps. Round r's commit window opens when round
    r-1 closes (round 0: `start_delay` after the deposit); reveals follow commits; the owner's
    validation shard follows reveals."""

    start_delay: int
    commit: int
    reveal: int
    validation: int


@dataclass(frozen=True)
class Limits:
    max_model_bytes: int
    max_abs_weight: int
    max_card_bytes: int
    max_shard_bytes: int
    max_shard_samples: int


@dataclass(frozen=True)
class DataSchema:
    feature_shape: tuple[int, ...]
    num_classes: int
    max_samples: int
    weight_cap: int


@dataclass(frozen=True)
class JobSpec:
    name: str
    arch: ArchSpec
    initial_model: str
    rounds: int
    windows: Windows
    max_trainers: int
    hparams: dict[str, Any]
    aggregation: dict[str, Any]
    contribution: dict[str, Any]
    fallback: str
    data_schema: DataSchema
    validation_commitments: tuple[bytes, ...]
    limits: Limits
    content_source: str
    public_validation: str | None = None
    """CID of the public validation shard (None only in legacy specs without one)."""

    def round_budget(self, budget: int, round_: int) -> int:
        """Equal shares per round, floor; the last round also takes the division remainder, so
        the rounds' budgets add up to the deposit exactly."""
        share = budget // self.rounds
        return share + (budget - share * self.rounds if round_ == self.rounds - 1 else 0)


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str) -> Any:
    if key not in obj:
        raise SpecError(f"{path}{key}: missing")
    value = obj[key]
    if isinstance(value, bool) and kind is not bool:
        raise SpecError(f"{path}{key}: expected {getattr(kind, '__name__', kind)}, got a boolean")
    if not isinstance(value, kind):
        raise SpecError(f"{path}{key}: expected {getattr(kind, '__name__', kind)}, "
                        f"got {type(value).__name__}")
    return value


def _int(obj: dict[str, Any], key: str, path: str, lo: int, hi: int,
         default: int | None = None) -> int:
    if default is not None and key not in obj:
        return default
    value = _get(obj, key, int, path)
    if not lo <= value <= hi:
        raise SpecError(f"{path}{key}: {value} is outside [{lo}, {hi}]")
    return value


def parse_spec(data: bytes) -> JobSpec:
    """Parse and validate a job spec; raises SpecError with the offending field."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"spec is {len(data)} bytes, more than {MAX_SPEC_BYTES}")
    try:
        raw = json.loads(data.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
    except (UnicodeDecodeError, json.JSONDecodeError, SpecError) as exc:
        raise SpecError(f"spec is not valid JSON without floats: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError("spec must be a JSON object")
    if raw.get("version") != 1:
        raise SpecError(f"version: expected 1, got {raw.get('version')!r}")
    try:
        arch = ArchSpec.from_dict(_get(raw, "arch", dict, ""))
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(f"arch: {exc}") from exc
    rounds = _int(raw, "rounds", "", 1, MAX_ROUNDS)

    w = _get(raw, "windows", dict, "")
    day = 7 * 24 * 3600
    windows = Windows(
        start_delay=_int(w, "start_delay", "windows.", 0, day, default=0),
        commit=_int(w, "commit", "windows.", 1, day),
        reveal=_int(w, "reveal", "windows.", 1, day),
        validation=_int(w, "validation", "windows.", 1, day))

    hp = _get(raw, "hparams", dict, "")
    try:
        parse_hparams(hp)
    except Exception as exc:
        raise SpecError(f"hparams: {exc}") from exc

    aggregation = _get(raw, "aggregation", dict, "")
    try:
        strategy = build_strategy(aggregation)
    except Exception as exc:
        raise SpecError(f"aggregation: {exc}") from exc
    contribution = _get(raw, "contribution", dict, "")
    try:
        method = parse_method(contribution)
    except Exception as exc:
        raise SpecError(f"contribution: {exc}") from exc
    # Closing a round must stay affordable for every replica: exact Shapley costs 2**n
    # evaluations, sampling permutations x n.
    if method["method"] == "shapley" and (method["exact_max_players"] > MAX_EXACT_PLAYERS
                                          or method["permutations"] > MAX_PERMUTATIONS):
        raise SpecError(f"contribution: exact_max_players must be at most {MAX_EXACT_PLAYERS} "
                        f"and permutations at most {MAX_PERMUTATIONS}")

    fallback = raw.get("fallback", "equal")
    if fallback not in FALLBACKS:
        raise SpecError(f"fallback: expected one of {FALLBACKS}, got {fallback!r}")

    ds = _get(raw, "data_schema", dict, "")
    feature_shape = tuple(_get(ds, "feature_shape", list, "data_schema."))
    if feature_shape != tuple(arch.input_shape):
        raise SpecError(f"data_schema.feature_shape {list(feature_shape)} does not match the "
                        f"model's input shape {list(arch.input_shape)}")
    num_classes = _int(ds, "num_classes", "data_schema.", 2, 1 << 16)
    if num_classes != arch.num_classes:
        raise SpecError(f"data_schema.num_classes {num_classes} does not match the model's "
                        f"{arch.num_classes}")
    schema = DataSchema(feature_shape, num_classes,
                        _int(ds, "max_samples", "data_schema.", 1, 10**9),
                        _int(ds, "weight_cap", "data_schema.", 1, 10**9))
    max_trainers = _int(raw, "max_trainers", "", 1, MAX_TRAINERS, default=50)
    if schema.weight_cap * max_trainers > MAX_WEIGHT_TOTAL:
        # Aggregation weighs updates in int64 with a declared total below 2**31: a round that
        # could exceed it would never close.
        raise SpecError(f"data_schema.weight_cap {schema.weight_cap} x max_trainers "
                        f"{max_trainers} exceeds {MAX_WEIGHT_TOTAL}")

    commitments = []
    for i, c in enumerate(_get(raw, "validation", list, "")):
        if not (isinstance(c, str) and c.startswith("0x") and len(c) == 66):
            raise SpecError(f"validation[{i}]: expected a 0x-prefixed 32-byte hex commitment")
        try:
            commitments.append(bytes.fromhex(c[2:]))
        except ValueError as exc:
            raise SpecError(f"validation[{i}]: bad hex") from exc
    if len(commitments) != rounds:
        raise SpecError(f"validation: {len(commitments)} commitments for {rounds} rounds")

    lim = raw.get("limits", {})
    if not isinstance(lim, dict):
        raise SpecError("limits: expected an object")
    limits = Limits(
        max_model_bytes=_int(lim, "max_model_bytes", "limits.", 1, 64 << 20, default=8 << 20),
        max_abs_weight=_int(lim, "max_abs_weight", "limits.", 1, (1 << 31) - 1,
                            default=(1 << 31) - 1),
        max_card_bytes=_int(lim, "max_card_bytes", "limits.", 64, 1 << 20, default=16 << 10),
        max_shard_bytes=_int(lim, "max_shard_bytes", "limits.", 1, 64 << 20, default=8 << 20),
        max_shard_samples=_int(lim, "max_shard_samples", "limits.", 1, 100_000, default=2000))

    source = raw.get("content_source", "gio")
    if source not in CONTENT_SOURCES:
        raise SpecError(f"content_source: expected one of {CONTENT_SOURCES}, got {source!r}")
    name = raw.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise SpecError("name: expected a string of at most 200 characters")
    initial_model = _get(raw, "initial_model", str, "")
    public = raw.get("public_validation")
    if public is not None:
        from dapp.content.cid import Cid

        try:
            public = str(Cid.parse(_get(raw, "public_validation", str, "")))
        except SpecError:
            raise
        except Exception as exc:
            raise SpecError(f"public_validation: not a valid CID: {exc}") from exc
    validated = isinstance(strategy, Validated)
    score_utility = strategy.score_utility if validated else "correct"
    if validated:
        if public is None:
            raise SpecError("public_validation: missing; the validated rule gates every update "
                            "on the job's public validation shard")
        # Under this rule the rule decides what pay is measured in (its score utility).
        if "utility" in contribution and contribution["utility"] != score_utility:
            raise SpecError(f"contribution.utility {contribution['utility']!r} differs from the "
                            f"validated rule's score utility {score_utility!r}: the rule scores "
                            f"contributions with its own (aggregation.score_utility)")
        if contribution.get("margin_clip", MARGIN_CLIP_LOGITS) != MARGIN_CLIP_LOGITS:
            raise SpecError(f"contribution.margin_clip: the validated rule clips margins at "
                            f"{MARGIN_CLIP_LOGITS} logits")
    # Every job shares one backend: the worst round this spec allows must close within the
    # declared budget (dapp/market/cost.py), checked now rather than discovered at close time.
    cost = close_cost(arch, contribution, max_trainers, limits.max_shard_samples,
                      public_shard=public is not None, validated=validated,
                      utility=score_utility)
    problems = cost.over_budget()
    if problems:
        raise SpecError("the spec's worst round is too expensive to close: " + "; ".join(problems)
                        + ". Lower limits.max_shard_samples, max_trainers, "
                        "contribution.permutations or exact_max_players, or the model's size")
    return JobSpec(
        name=name, arch=arch, initial_model=initial_model, rounds=rounds, windows=windows,
        max_trainers=max_trainers,
        hparams=hp, aggregation=aggregation, contribution=contribution, fallback=fallback,
        data_schema=schema, validation_commitments=tuple(commitments), limits=limits,
        content_source=source, public_validation=public)


def _no_float(text: str) -> Any:
    raise SpecError(f"floats are not allowed in a spec ({text}); use integers or 'p/q' strings")
