"""Contribution of each accepted update: Shapley values (exact or sampled) and leave-one-out.

Utility U(S) = number of correct predictions, on the round's validation shard, of
``strategy.combine(global, S)``; U(empty) is the global model's score. Values are exact
``Fraction``s: no rounding anywhere, so every machine agrees.

* ``shapley_exact``: all 2**n coalitions, each utility computed once (cached by bitmask);
  phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (U(S+i) - U(S)).
* ``shapley_sampled``: ``permutations`` random orders of the sorted keys, drawn with
  ``KeccakStream.shuffle``; marginals are averaged. Declared truncation: while walking a
  permutation, once ``|U(all) - U(prefix)| <= truncation_tolerance`` the remaining players of that
  permutation get marginal 0 (``None`` disables truncation). Without truncation the values sum
  to U(all) - U(empty) exactly; with it, each permutation leaves at most the tolerance out.
* ``leave_one_out``: phi_i = U(all) - U(all without i).

Duplicates/sybils: callers pass one key per distinct update (see
``aggregation.merge_duplicates``) and the ``groups`` mapping; a player's value is divided equally
among its copies (exact fractions), so splitting one update over many addresses earns nothing more
in total, and the merged player's weight is the largest of the copies', never their sum.
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .aggregation import AggregateResult, ClientUpdate, Strategy, _stack, flatten, merge_duplicates
from .arch import ArchSpec
from .errors import ContributionError
from .inference import PreparedShard
from .model_format import Model
from .randomness import KeccakStream

Utility = Callable[[tuple[str, ...]], int]

MAX_EXACT_PLAYERS = 20
MAX_PERMUTATIONS = 100_000


class _Cached:
    """Utility by bitmask over the sorted keys (bit i = keys[i]); each coalition is evaluated once."""

    def __init__(self, keys: Sequence[str], utility: Utility) -> None:
        self.keys = list(keys)
        self.utility = utility
        self.cache: dict[int, int] = {}

    def __call__(self, mask: int) -> int:
        v = self.cache.get(mask)
        if v is None:
            coalition = tuple(self.keys[i] for i in range(len(self.keys)) if mask >> i & 1)
            v = self.utility(coalition)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ContributionError(f"utility must return an int, got {type(v).__name__}")
            self.cache[mask] = v
        return v


def _sorted_keys(keys: Sequence[str]) -> list[str]:
    ks = sorted(keys)
    if len(set(ks)) != len(ks):
        raise ContributionError("player keys must be unique")
    return ks


def shapley_exact(keys: Sequence[str], utility: Utility) -> dict[str, Fraction]:
    ks = _sorted_keys(keys)
    n = len(ks)
    if n > MAX_EXACT_PLAYERS:
        raise ContributionError(f"exact Shapley over {n} players exceeds the cap of {MAX_EXACT_PLAYERS}")
    if n == 0:
        return {}
    u = _Cached(ks, utility)
    vals = [u(m) for m in range(1 << n)]
    coef = [factorial(s) * factorial(n - s - 1) for s in range(n)]
    sizes = [bin(m).count("1") for m in range(1 << n)]
    num = [0] * n
    for m in range((1 << n) - 1):
        c = coef[sizes[m]]
        for i in range(n):
            if not m >> i & 1:
                num[i] += c * (vals[m | (1 << i)] - vals[m])
    nf = factorial(n)
    return {ks[i]: Fraction(num[i], nf) for i in range(n)}


def shapley_sampled(keys: Sequence[str], utility: Utility, stream: KeccakStream, permutations: int,
                    truncation_tolerance: int | None) -> dict[str, Fraction]:
    ks = _sorted_keys(keys)
    n = len(ks)
    if isinstance(permutations, bool) or not isinstance(permutations, int) or not 1 <= permutations <= MAX_PERMUTATIONS:
        raise ContributionError(f"permutations must be an integer in [1, {MAX_PERMUTATIONS}]")
    if truncation_tolerance is not None and (isinstance(truncation_tolerance, bool)
                                             or not isinstance(truncation_tolerance, int)
                                             or truncation_tolerance < 0):
        raise ContributionError("truncation tolerance must be a non-negative integer or None")
    if n == 0:
        return {}
    u = _Cached(ks, utility)
    full = u((1 << n) - 1)
    empty = u(0)
    total = [0] * n
    for _ in range(permutations):
        order = stream.shuffle(list(range(n)))
        mask, prev = 0, empty
        for i in order:
            if truncation_tolerance is not None and abs(full - prev) <= truncation_tolerance:
                break
            mask |= 1 << i
            cur = u(mask)
            total[i] += cur - prev
            prev = cur
    return {ks[i]: Fraction(total[i], permutations) for i in range(n)}


def leave_one_out(keys: Sequence[str], utility: Utility) -> dict[str, Fraction]:
    ks = _sorted_keys(keys)
    n = len(ks)
    if n == 0:
        return {}
    u = _Cached(ks, utility)
    full = u((1 << n) - 1)
    return {ks[i]: Fraction(full - u(((1 << n) - 1) & ~(1 << i))) for i in range(n)}


def _expand(values: Mapping[str, Fraction],
            groups: Mapping[str, Sequence[str]] | None) -> dict[str, Fraction]:
    if groups is None:
        return dict(sorted(values.items()))
    out: dict[str, Fraction] = {}
    for rep in sorted(values):
        members = sorted(groups.get(rep, (rep,)))
        if rep not in members:
            raise ContributionError(f"group of {rep!r} does not contain it")
        for k in members:
            out[k] = values[rep] / len(members)
    return dict(sorted(out.items()))


def parse_method(config: Any) -> dict[str, Any]:
    """Validate the job spec's contribution section and fill defaults.

    ``{"method": "shapley", "exact_max_players": 10, "permutations": 64, "truncation": 0}``
    (exact when the player count <= exact_max_players, sampled otherwise; ``truncation`` is an
    integer tolerance in correct predictions or null for none), or ``{"method": "loo"}``.
    """
    if not isinstance(config, Mapping):
        raise ContributionError("contribution config must be an object")
    method = config.get("method")
    if method == "loo":
        if set(config) != {"method"}:
            raise ContributionError(f"loo: unknown fields {sorted(set(config) - {'method'})}")
        return {"method": "loo"}
    if method != "shapley":
        raise ContributionError(f"unknown contribution method {method!r} (known: loo, shapley)")
    extra = sorted(set(config) - {"method", "exact_max_players", "permutations", "truncation"})
    if extra:
        raise ContributionError(f"shapley: unknown fields {extra}")
    out = {"method": "shapley", "exact_max_players": config.get("exact_max_players", 10),
           "permutations": config.get("permutations", 64), "truncation": config.get("truncation", 0)}
    e = out["exact_max_players"]
    if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= MAX_EXACT_PLAYERS:
        raise ContributionError(f"exact_max_players must be an integer in [0, {MAX_EXACT_PLAYERS}]")
    p = out["permutations"]
    if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= MAX_PERMUTATIONS:
        raise ContributionError(f"permutations must be an integer in [1, {MAX_PERMUTATIONS}]")
    t = out["truncation"]
    if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
        raise ContributionError("truncation must be a non-negative integer or null")
    return out


def contributions(method_config: Any, keys: Sequence[str], utility: Utility, stream: KeccakStream,
                  groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, Fraction]:
    """Dispatch on the spec; ``keys`` are players (one per distinct update), ``groups`` their copies."""
    cfg = parse_method(method_config)
    if cfg["method"] == "loo":
        vals = leave_one_out(keys, utility)
    elif len(keys) <= cfg["exact_max_players"]:
        vals = shapley_exact(keys, utility)
    else:
        vals = shapley_sampled(keys, utility, stream, cfg["permutations"], cfg["truncation"])
    return _expand(vals, groups)


class RoundUtility:
    """U(S) for a round: combine(global, S) with the strategy's own rule, scored on a prepared shard.

    Works on flat int64 vectors (no Model objects per coalition), and caches the shard's first-layer
    im2col, so one evaluation is one combine plus one batched inference.
    """

    def __init__(self, strategy: Strategy, arch: ArchSpec, global_model: Model,
                 players: Sequence[ClientUpdate], x: np.ndarray, y: np.ndarray) -> None:
        ps = sorted(players, key=lambda p: p.key)
        self.strategy = strategy
        self.arch = arch
        self.index = {p.key: i for i, p in enumerate(ps)}
        if len(self.index) != len(ps):
            raise ContributionError("player keys must be unique")
        self.g = flatten(global_model)
        self.u, self.w = _stack(ps, self.g.size)
        self.shard = PreparedShard(arch, x, y)
        self.layout = [(name, shape, int(np.prod(shape, dtype=np.int64))) for name, shape in arch.param_shapes()]
        self.evaluations = 0

    def params(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        pos = 0
        for name, shape, n in self.layout:
            out[name] = flat[pos:pos + n].reshape(shape)
            pos += n
        return out

    def __call__(self, coalition: tuple[str, ...]) -> int:
        try:
            idx = sorted(self.index[k] for k in coalition)
        except KeyError as e:
            raise ContributionError(f"unknown player {e.args[0]!r}") from None
        flat = self.strategy.combine_flat(self.g, self.u[idx], self.w[idx])
        self.evaluations += 1
        return self.shard.count_correct(self.params(flat))


def score_round(strategy: Strategy, arch: ArchSpec, global_model: Model, updates: Sequence[ClientUpdate],
                result: AggregateResult, x: np.ndarray, y: np.ndarray, method_config: Any,
                stream: KeccakStream) -> dict[str, Fraction]:
    """Scores of every submitted key: accepted players by the configured method (copies share
    their player's value), rejected keys 0."""
    players, groups = merge_duplicates(updates)
    accepted = set(result.accepted)
    acc_players = [p for p in players if p.key in accepted]
    util = RoundUtility(strategy, arch, global_model, acc_players, x, y)
    vals = contributions(method_config, [p.key for p in acc_players], util, stream,
                         {p.key: groups[p.key] for p in acc_players})
    out = {up.key: Fraction(0) for up in updates}
    out.update(vals)
    return dict(sorted(out.items()))
