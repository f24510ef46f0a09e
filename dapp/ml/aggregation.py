"""Robust aggregation rules behind one interface, all in exact integer arithmetic.

A ``Strategy`` (in the spirit of Flower's) has two entry points:

* ``aggregate(global_model, updates) -> AggregateResult``: the round's decision. It merges
  identical updates (see below), sorts by key, filters (which updates are accepted, and why the
  others are rejected), then combines the accepted ones into the new global model;
* ``combine(global_model, updates) -> Model``: the aggregate the rule would build if ``updates``
  were the whole accepted set (no filtering again). Shapley values use it for every coalition;
  for the empty set it returns the global model.

Declared arithmetic (models are int32 fixed point; everything runs on int64 vectors whose
bounds are checked, and distances are exact Python integers):

* FedAvg: ``floor((2 * sum_i w_i u_i + W) / (2 W))`` per coordinate, i.e. the weighted mean
  rounded half up, with ``W = sum_i w_i < 2**31``;
* median: coordinate-wise, unweighted; for an even count the mean of the two middle values
  rounded half up;
* trimmed mean: unweighted; per coordinate drop ``t = floor(k * p / q)`` lowest and highest
  values (``t`` is lowered so that at least one remains), mean of the rest rounded half up;
* Multi-Krum(f, m): score_i = sum of the ``k - f - 2`` smallest squared L2 distances from u_i to
  the other updates (clamped to [1, k - 1] neighbours when k is small); the ``m`` best scores are
  kept, ties broken by key; then the inner rule combines them;
* norm clipping: on deltas ``d_i = u_i - g``. Threshold: an absolute L2 norm in fixed-point units
  (``max_norm``) or a rational multiple of the median delta norm (``max_norm_ratio`` = [p, q];
  median = lower median of the squared norms). ``mode="reject"`` rejects updates above it
  (exact comparison of squares); ``mode="clip"`` rescales their deltas by ``T / ceil(sqrt(|d|^2))``
  with ``T = floor(threshold)``, rounded half up, then the inner rule combines. In clip mode the
  threshold is part of ``combine`` (recomputed from the set it is given);
* distance filter: rejects updates whose squared distance to the coordinate-wise median exceeds
  ``(p/q)**2`` times the lower median of those squared distances.

Zero updates: an update equal to the global model carries no information and is rejected by
every rule ("free rider") before the rule's own filter runs.

Duplicates and sybils: updates with the same model hash are merged into one player before
anything else. The player's key is the smallest key of the copies, its weight the *largest* of
their weights (never the sum: splitting one update over many addresses adds no data weight).
``AggregateResult.groups`` maps each player to all of its copies; they are accepted or rejected
together. Inputs are sorted by key first, so permuting them never changes any output.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import AggregationError, StrategyConfigError
from .model_format import INT32_MAX, Model, model_hash

MAX_WEIGHT_TOTAL = (1 << 31) - 1


@dataclass(frozen=True)
class ClientUpdate:
    """One trainer's submitted model; key = trainer address (lowercase hex), weight = capped samples."""

    key: str
    model: Model
    weight: int


@dataclass(frozen=True)
class AggregateResult:
    model: Model
    accepted: tuple[str, ...]
    rejected: dict[str, str]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------- flat helpers

def flatten(model: Mapping[str, np.ndarray]) -> np.ndarray:
    """int64 vector of all tensors in sorted-name order."""
    return np.concatenate([np.asarray(model[k], dtype=np.int64).reshape(-1) for k in sorted(model)])


def unflatten_like(flat: np.ndarray, like: Mapping[str, np.ndarray]) -> Model:
    if flat.size and (int(flat.min()) < -INT32_MAX or int(flat.max()) > INT32_MAX):
        raise AggregationError("aggregate left the int32 range (this is a bug: means stay in range)")
    out: dict[str, np.ndarray] = {}
    pos = 0
    for k in sorted(like):
        shape = like[k].shape
        n = int(np.prod(shape, dtype=np.int64))
        out[k] = flat[pos:pos + n].astype(np.int32).reshape(shape)
        pos += n
    return Model(out)


def sq_norm(d: np.ndarray) -> int:
    """Exact squared L2 norm of an int64 vector with |d| < 2**33 and fewer than 2**24 entries.

    d = hi * 2**16 + lo with 0 <= lo < 2**16, so d**2 = hi**2 * 2**32 + hi*lo * 2**17 + lo**2; each
    partial sum fits int64 (|hi| <= 2**17), and the parts are combined as Python integers.
    """
    d = np.asarray(d, dtype=np.int64)
    hi = d >> 16
    lo = d & 0xFFFF
    return (int((hi * hi).sum()) << 32) + (int((hi * lo).sum()) << 17) + int((lo * lo).sum())


def _half_up_div(num: np.ndarray, den: int) -> np.ndarray:
    """floor((2 num + den) / (2 den)): division rounded half up; caller ensures 2|num| + den < 2**63."""
    return (2 * num + den) // (2 * den)


# ------------------------------------------------------------------------- the interface

class Strategy(ABC):
    """An aggregation rule. Subclasses implement ``select`` (filtering) and ``combine_flat``."""

    rule: str = ""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The canonical config (``build_strategy(s.to_dict())`` rebuilds an equal strategy)."""

    @abstractmethod
    def combine_flat(self, g: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """g [P], u [k, P], w [k] (int64, rows sorted by key) -> aggregate [P]; k = 0 gives g."""

    def select(self, g: np.ndarray, u: np.ndarray, w: np.ndarray,
               keys: Sequence[str]) -> tuple[list[int], dict[int, str], dict[int, str]]:
        """-> (accepted row indices ascending, rejected {row: reason}, notes {row: note})."""
        return list(range(len(keys))), {}, {}

    def aggregate(self, global_model: Model, updates: Sequence[ClientUpdate]) -> AggregateResult:
        players, groups = merge_duplicates(updates)
        _check_updates(global_model, players)
        keys = [p.key for p in players]
        g = flatten(global_model)
        u, w = _stack(players, g.size)
        zero = [i for i in range(len(keys)) if np.array_equal(u[i], g)]
        live = [i for i in range(len(keys)) if i not in zero]
        acc_l, rej_l, notes_l = self.select(g, u[live], w[live], [keys[i] for i in live])
        acc = [live[i] for i in acc_l]
        rej = {live[i]: r for i, r in rej_l.items()}
        rej.update({i: "zero update: identical to the global model (free rider)" for i in zero})
        notes = {live[i]: r for i, r in notes_l.items()}
        agg = self.combine_flat(g, u[acc], w[acc])
        accepted = sorted(k for i in acc for k in groups[keys[i]])
        rejected = {k: rej[i] for i in sorted(rej) for k in groups[keys[i]]}
        note_out = {k: notes[i] for i in sorted(notes) for k in groups[keys[i]]}
        return AggregateResult(unflatten_like(agg, global_model), tuple(accepted),
                               dict(sorted(rejected.items())), groups, dict(sorted(note_out.items())))

    def combine(self, global_model: Model, updates: Sequence[ClientUpdate]) -> Model:
        ups = sorted(updates, key=lambda x: x.key)
        _check_updates(global_model, ups)
        g = flatten(global_model)
        u, w = _stack(ups, g.size)
        return unflatten_like(self.combine_flat(g, u, w), global_model)


def _stack(updates: Sequence[ClientUpdate], p: int) -> tuple[np.ndarray, np.ndarray]:
    if not updates:
        return np.zeros((0, p), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return (np.stack([flatten(x.model) for x in updates]),
            np.array([x.weight for x in updates], dtype=np.int64))


def _check_updates(global_model: Model, updates: Sequence[ClientUpdate]) -> None:
    seen: set[str] = set()
    names = list(global_model)
    for up in updates:
        if not isinstance(up, ClientUpdate):
            raise AggregationError(f"expected ClientUpdate, got {type(up).__name__}")
        if not isinstance(up.key, str) or not up.key:
            raise AggregationError(f"update key must be a non-empty string, got {up.key!r}")
        if up.key in seen:
            raise AggregationError(f"duplicate update key {up.key!r}")
        seen.add(up.key)
        if isinstance(up.weight, bool) or not isinstance(up.weight, int) or not 1 <= up.weight <= MAX_WEIGHT_TOTAL:
            raise AggregationError(f"update {up.key!r}: weight {up.weight!r} must be an integer in [1, 2**31-1]")
        if list(up.model) != names or any(up.model[n].shape != global_model[n].shape for n in names):
            raise AggregationError(f"update {up.key!r}: tensors or shapes differ from the global model")


def merge_duplicates(updates: Sequence[ClientUpdate]) -> tuple[list[ClientUpdate], dict[str, tuple[str, ...]]]:
    """Merge identical models: key = smallest copy key, weight = largest copy weight (declared)."""
    by_hash: dict[bytes, list[ClientUpdate]] = {}
    for up in sorted(updates, key=lambda x: x.key):
        by_hash.setdefault(model_hash(up.model), []).append(up)
    players: list[ClientUpdate] = []
    groups: dict[str, tuple[str, ...]] = {}
    for h in sorted(by_hash):
        copies = by_hash[h]
        rep = copies[0]
        players.append(ClientUpdate(rep.key, rep.model, max(c.weight for c in copies)))
        groups[rep.key] = tuple(c.key for c in copies)
    players.sort(key=lambda x: x.key)
    return players, dict(sorted(groups.items()))


# ------------------------------------------------------------------------- combiners

class FedAvg(Strategy):
    rule = "fedavg"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "fedavg"}

    def combine_flat(self, g: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        if u.shape[0] == 0:
            return g.copy()
        total = int(w.sum())
        if total > MAX_WEIGHT_TOTAL:
            raise AggregationError(f"total weight {total} exceeds 2**31-1 (cap the weights)")
        return _half_up_div(w @ u, total)


class Median(Strategy):
    rule = "median"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "median"}

    def combine_flat(self, g: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        k = u.shape[0]
        if k == 0:
            return g.copy()
        if k == 1:
            return u[0].copy()
        s = np.sort(u, axis=0)
        if k % 2:
            return s[k // 2].copy()
        return (s[k // 2 - 1] + s[k // 2] + 1) >> 1


class TrimmedMean(Strategy):
    rule = "trimmed_mean"

    def __init__(self, trim: Fraction) -> None:
        if not 0 <= trim < Fraction(1, 2):
            raise StrategyConfigError(f"trim fraction {trim} must lie in [0, 1/2)")
        self.trim = trim

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "trimmed_mean", "trim": [self.trim.numerator, self.trim.denominator]}

    def combine_flat(self, g: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        k = u.shape[0]
        if k == 0:
            return g.copy()
        t = min(k * self.trim.numerator // self.trim.denominator, (k - 1) // 2)
        s = np.sort(u, axis=0)[t:k - t]
        return _half_up_div(s.sum(axis=0), k - 2 * t)


# ------------------------------------------------------------------------- filters

class _Filter(Strategy):
    """A filter decides acceptance, then delegates combining to ``then``."""

    def __init__(self, then: Strategy) -> None:
        self.then = then

    def combine_flat(self, g: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self.then.combine_flat(g, u, w)

    def _chain(self, g: np.ndarray, u: np.ndarray, w: np.ndarray, keys: Sequence[str],
               acc: list[int], rej: dict[int, str],
               notes: dict[int, str]) -> tuple[list[int], dict[int, str], dict[int, str]]:
        """Run the inner strategy's own filter on the survivors (filters compose)."""
        if not acc:
            return acc, rej, notes
        a2, r2, n2 = self.then.select(g, u[acc], w[acc], [keys[i] for i in acc])
        rej = dict(rej)
        rej.update({acc[i]: r for i, r in r2.items()})
        notes = dict(notes)
        notes.update({acc[i]: r for i, r in n2.items()})
        return [acc[i] for i in a2], rej, notes


def pairwise_sq_distances(u: np.ndarray) -> list[list[int]]:
    k = u.shape[0]
    d = [[0] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1, k):
            d[i][j] = d[j][i] = sq_norm(u[i] - u[j])
    return d


class MultiKrum(_Filter):
    rule = "multi_krum"

    def __init__(self, f: int, m: int, then: Strategy) -> None:
        super().__init__(then)
        if f < 0 or m < 1:
            raise StrategyConfigError(f"multi_krum needs f >= 0 and m >= 1, got f={f}, m={m}")
        self.f, self.m = f, m

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "multi_krum", "f": self.f, "m": self.m, "then": self.then.to_dict()}

    def scores(self, u: np.ndarray) -> list[int]:
        k = u.shape[0]
        if k <= 1:
            return [0] * k
        nb = min(max(k - self.f - 2, 1), k - 1)
        d = pairwise_sq_distances(u)
        return [sum(sorted(d[i][j] for j in range(k) if j != i)[:nb]) for i in range(k)]

    def select(self, g: np.ndarray, u: np.ndarray, w: np.ndarray,
               keys: Sequence[str]) -> tuple[list[int], dict[int, str], dict[int, str]]:
        k = len(keys)
        sc = self.scores(u)
        order = sorted(range(k), key=lambda i: (sc[i], keys[i]))
        keep = sorted(order[:self.m])
        rej = {i: f"multi-krum: score rank {r + 1} of {k}, only the best {self.m} are kept"
               for r, i in enumerate(order) if r >= self.m}
        return self._chain(g, u, w, keys, keep, rej, {})


def _lower_median(vals: Sequence[int]) -> int:
    s = sorted(vals)
    return s[(len(s) - 1) // 2]


class NormClip(_Filter):
    rule = "norm_clip"

    def __init__(self, mode: str, then: Strategy, max_norm: int | None = None,
                 ratio: Fraction | None = None) -> None:
        super().__init__(then)
        if mode not in ("clip", "reject"):
            raise StrategyConfigError(f"norm_clip mode must be 'clip' or 'reject', got {mode!r}")
        if (max_norm is None) == (ratio is None):
            raise StrategyConfigError("norm_clip needs exactly one of max_norm and max_norm_ratio")
        if max_norm is not None and max_norm < 0:
            raise StrategyConfigError("max_norm must be >= 0")
        if ratio is not None and ratio <= 0:
            raise StrategyConfigError("max_norm_ratio must be > 0")
        self.mode, self.max_norm, self.ratio = mode, max_norm, ratio

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": "norm_clip", "mode": self.mode}
        if self.max_norm is not None:
            d["max_norm"] = self.max_norm
        else:
            assert self.ratio is not None
            d["max_norm_ratio"] = [self.ratio.numerator, self.ratio.denominator]
        d["then"] = self.then.to_dict()
        return d

    def _exceeds(self, sq: list[int]) -> tuple[list[bool], Fraction]:
        """Which squared norms exceed the threshold, and the squared threshold."""
        if self.max_norm is not None:
            t2 = Fraction(self.max_norm * self.max_norm)
        else:
            assert self.ratio is not None
            t2 = self.ratio * self.ratio * _lower_median(sq) if sq else Fraction(0)
        return [s > t2 for s in sq], t2

    def _clip(self, g: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, list[bool]]:
        d = u - g
        sq = [sq_norm(d[i]) for i in range(u.shape[0])]
        over, t2 = self._exceeds(sq)
        t = math.isqrt(t2.numerator // t2.denominator)
        out = u.copy()
        for i in range(u.shape[0]):
            if not over[i]:
                continue
            n = math.isqrt(sq[i])
            if n * n < sq[i]:
                n += 1  # ceil(sqrt)
            num, den = t, n
            maxd = int(np.abs(d[i]).max())
            while 2 * maxd * num + den >= (1 << 62):
                num >>= 1
                den = max(den >> 1, 1)
            out[i] = g + _half_up_div(d[i] * num, den)
        return out, over

    def select(self, g: np.ndarray, u: np.ndarray, w: np.ndarray,
               keys: Sequence[str]) -> tuple[list[int], dict[int, str], dict[int, str]]:
        k = len(keys)
        if self.mode == "clip":
            uc, over = self._clip(g, u)
            notes = {i: "norm_clip: delta norm above the threshold, clipped" for i in range(k) if over[i]}
            return self._chain(g, uc, w, keys, list(range(k)), {}, notes)
        sq = [sq_norm(u[i] - g) for i in range(k)]
        over, _ = self._exceeds(sq)
        acc = [i for i in range(k) if not over[i]]
        rej = {i: "norm_clip: delta norm above the threshold, rejected" for i in range(k) if over[i]}
        return self._chain(g, u, w, keys, acc, rej, {})

    def combine_flat(self, g: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        if self.mode == "clip" and u.shape[0]:
            u, _ = self._clip(g, u)
        return self.then.combine_flat(g, u, w)


class DistanceFilter(_Filter):
    rule = "distance_filter"

    def __init__(self, ratio: Fraction, then: Strategy) -> None:
        super().__init__(then)
        if ratio < 1:
            raise StrategyConfigError(f"distance_filter max_ratio {ratio} must be >= 1")
        self.ratio = ratio

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "distance_filter", "max_ratio": [self.ratio.numerator, self.ratio.denominator],
                "then": self.then.to_dict()}

    def select(self, g: np.ndarray, u: np.ndarray, w: np.ndarray,
               keys: Sequence[str]) -> tuple[list[int], dict[int, str], dict[int, str]]:
        k = len(keys)
        if k <= 2:
            return self._chain(g, u, w, keys, list(range(k)), {}, {})
        med = Median().combine_flat(g, u, w)
        sq = [sq_norm(u[i] - med) for i in range(k)]
        t2 = self.ratio * self.ratio * _lower_median(sq)
        acc = [i for i in range(k) if sq[i] <= t2]
        rej = {i: f"distance_filter: distance to the coordinate-wise median above {self.ratio} x its median"
               for i in range(k) if sq[i] > t2}
        return self._chain(g, u, w, keys, acc, rej, {})


# ------------------------------------------------------------------------- config

def _rational(v: Any, where: str) -> Fraction:
    if (not isinstance(v, list) or len(v) != 2
            or any(isinstance(x, bool) or not isinstance(x, int) for x in v) or v[1] <= 0 or v[0] < 0):
        raise StrategyConfigError(f"{where} must be [numerator, denominator] of non-negative integers, got {v!r}")
    return Fraction(v[0], v[1])


def _pos_int(c: Mapping[str, Any], key: str, lo: int) -> int:
    v = c.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise StrategyConfigError(f"{c.get('rule')}: {key} must be an integer >= {lo}, got {v!r}")
    return v


_KEYS = {
    "fedavg": {"rule"}, "median": {"rule"}, "trimmed_mean": {"rule", "trim"},
    "multi_krum": {"rule", "f", "m", "then"},
    "norm_clip": {"rule", "mode", "max_norm", "max_norm_ratio", "then"},
    "distance_filter": {"rule", "max_ratio", "then"},
}


def build_strategy(config: Any, _depth: int = 0) -> Strategy:
    """Build a strategy from the job spec's ``aggregation`` section.

    JSON forms (``then`` is a nested config or a bare rule name; it defaults to ``"fedavg"``)::

        {"rule": "fedavg"}
        {"rule": "median"}
        {"rule": "trimmed_mean", "trim": [1, 10]}                 # 0 <= trim < 1/2
        {"rule": "multi_krum", "f": 3, "m": 5, "then": "fedavg"}
        {"rule": "norm_clip", "mode": "reject" | "clip", "max_norm": 300000, "then": "fedavg"}
        {"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [2, 1], "then": "median"}
        {"rule": "distance_filter", "max_ratio": [2, 1], "then": {"rule": "multi_krum", ...}}
    """
    if _depth > 4:
        raise StrategyConfigError("aggregation config nests more than 4 levels")
    if isinstance(config, str):
        config = {"rule": config}
    if not isinstance(config, Mapping):
        raise StrategyConfigError(f"aggregation config must be an object or a rule name, got {config!r}")
    rule = config.get("rule")
    if rule not in _KEYS:
        raise StrategyConfigError(f"unknown aggregation rule {rule!r} (known: {sorted(_KEYS)})")
    extra = sorted(set(config) - _KEYS[rule])
    if extra:
        raise StrategyConfigError(f"{rule}: unknown fields {extra}")
    if rule == "fedavg":
        return FedAvg()
    if rule == "median":
        return Median()
    if rule == "trimmed_mean":
        return TrimmedMean(_rational(config.get("trim"), "trimmed_mean.trim"))
    then = build_strategy(config.get("then", "fedavg"), _depth + 1)
    if rule == "multi_krum":
        return MultiKrum(_pos_int(config, "f", 0), _pos_int(config, "m", 1), then)
    if rule == "norm_clip":
        mn = config.get("max_norm")
        if mn is not None and (isinstance(mn, bool) or not isinstance(mn, int) or mn < 0):
            raise StrategyConfigError(f"norm_clip: max_norm must be a non-negative integer, got {mn!r}")
        ratio = (_rational(config["max_norm_ratio"], "norm_clip.max_norm_ratio")
                 if "max_norm_ratio" in config else None)
        return NormClip(config.get("mode", "reject"), then, mn, ratio)
    return DistanceFilter(_rational(config.get("max_ratio"), "distance_filter.max_ratio"), then)
