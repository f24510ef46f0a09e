"""Contribution of each accepted update: Shapley values (exact or sampled) and leave-one-out.

Utility U(S), on the round's validation shard, of ``strategy.combine(global, S)``: the number of
correct predictions (``"correct"``, the default) or the clipped margin sum (``"margin"``: per
sample ``z[y] - max_{c != y} z[c]`` clipped to ``+-margin_clip`` logit units, summed in int64;
it moves with every sample's confidence, not only when a prediction flips). U(empty) is the global model's score. Values
are exact ``Fraction``s: no rounding anywhere, so every machine agrees.

* ``shapley_exact``: all 2**n coalitions, each utility computed once (cached by bitmask);
  phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (U(S+i) - U(S)).
* ``shapley_sampled``: ``permutations`` random orders of the sorted keys, drawn with
  ``KeccakStream.shuffle``; marginals are averaged. Declared truncation: while walking a
  permutation, once ``|U(all) - U(prefix)| <= truncation_tolerance`` the remaining players of that
  permutation get marginal 0 (``None`` disables truncation). Without truncation the values sum
  to U(all) - U(empty) exactly; with it, each permutation leaves at most the tolerance out.
  ``sampling`` picks plain, antithetic or stratified (Latin-square) orders: ``permutation_orders``
  declares exactly how each is drawn from the stream. Truncation
  may also be relative (``[p, q]`` of ``|U(all) - U(empty)|``). For FedAvg-combining rules the walk
  keeps a running weighted sum (``Walk``), so a step costs O(params) plus one inference.
* ``leave_one_out``: phi_i = U(all) - U(all without i).
* near-zero rule (``zero_band``, optional): ``|phi_i| <= band * sum_j |phi_j|`` -> exactly 0.

Duplicates/sybils: callers pass one key per distinct update (see
``aggregation.merge_duplicates``) and the ``groups`` mapping; a player's value is divided equally
among its copies (exact fractions), so splitting one update over many addresses earns nothing more
in total, and the merged player's weight is the largest of the copies', never their sum.
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .aggregation import (MAX_WEIGHT_TOTAL, AggregateResult, ClientUpdate, FedAvg, NormClip, Strategy, _Filter,
                          _stack, flatten, merge_duplicates)
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


def _tolerance(truncation: int | Fraction | None, full: int, empty: int) -> int | None:
    """Absolute tolerance (utility units) from the declared truncation: an int is absolute, a
    Fraction r means ``floor(r * |U(all) - U(empty)|)``; None disables truncation."""
    if truncation is None or isinstance(truncation, int):
        return truncation
    q = truncation * abs(full - empty)
    return q.numerator // q.denominator


def permutation_orders(n: int, permutations: int, stream: KeccakStream, *, antithetic: bool = False,
                       stratified: bool = False) -> Iterator[list[int]]:
    """The orders a sampled Shapley walks, over positions 0..n-1 of the sorted keys.

    Random stream, declared (nothing else reads it):

    * plain: order j is ``stream.shuffle(list(range(n)))`` (Fisher-Yates, ``KeccakStream.shuffle``);
    * antithetic: as plain for even j; odd j is the reverse of order j - 1 and draws nothing. A
      player early in one order is late in its twin, which cancels much of the position noise;
    * stratified: orders come in blocks of n (2n with antithetic). At the start of a block draw
      ``alpha = stream.shuffle(list(range(n)))`` then ``beta = stream.shuffle(list(range(n)))``;
      order r of the block (0 <= r < n) is ``[alpha[(beta[t] + r) % n] for t in range(n)]``, and
      with antithetic order n + r is the reverse of order r. Each order is uniformly random (alpha
      and beta are), and within a full block every player stands once at every position, so the
      large first-position marginals no longer dominate the noise (a Latin square).
    """
    order: list[int] = []
    alpha: list[int] = []
    beta: list[int] = []
    for j in range(permutations):
        if stratified:
            block = 2 * n if antithetic else n
            r = j % block
            if r == 0:
                alpha = stream.shuffle(list(range(n)))
                beta = stream.shuffle(list(range(n)))
            order = [alpha[(beta[t] + r) % n] for t in range(n)]
            if r >= n:
                order.reverse()
        else:
            order = order[::-1] if antithetic and j % 2 else stream.shuffle(list(range(n)))
        yield order


def shapley_sampled(keys: Sequence[str], utility: Utility, stream: KeccakStream, permutations: int,
                    truncation_tolerance: int | Fraction | None, *, antithetic: bool = False,
                    stratified: bool = False, walk: Callable[[], "Walk"] | None = None) -> dict[str, Fraction]:
    """Monte-Carlo Shapley over ``permutations`` orders of the sorted keys (see
    ``permutation_orders`` for the declared use of the random stream). Marginals are summed over
    all orders and divided by ``permutations``; truncation (declared in the module docstring)
    gives the rest of an order marginal 0.

    ``walk`` (optional) gives a fresh incremental evaluator per permutation: ``add(key)`` then
    ``value()`` must equal ``utility`` of the keys added so far (``RoundUtility.walk`` does this for
    FedAvg-combining rules, O(params) per step instead of re-aggregating the prefix). Values
    already computed are reused (cache by coalition), so the result never depends on ``walk``.
    """
    ks = _sorted_keys(keys)
    n = len(ks)
    if isinstance(permutations, bool) or not isinstance(permutations, int) or not 1 <= permutations <= MAX_PERMUTATIONS:
        raise ContributionError(f"permutations must be an integer in [1, {MAX_PERMUTATIONS}]")
    if truncation_tolerance is not None and (isinstance(truncation_tolerance, bool)
                                             or not isinstance(truncation_tolerance, (int, Fraction))
                                             or truncation_tolerance < 0):
        raise ContributionError("truncation tolerance must be a non-negative integer, a non-negative "
                                "Fraction (relative) or None")
    if n == 0:
        return {}
    u = _Cached(ks, utility)
    full = u((1 << n) - 1)
    empty = u(0)
    tol = _tolerance(truncation_tolerance, full, empty)
    total = [0] * n
    for order in permutation_orders(n, permutations, stream, antithetic=antithetic, stratified=stratified):
        w = walk() if walk is not None else None
        mask, prev = 0, empty
        for i in order:
            if tol is not None and abs(full - prev) <= tol:
                break
            mask |= 1 << i
            if w is None:
                cur = u(mask)
            else:
                w.add(ks[i])
                cur = u.cache.get(mask)
                if cur is None:
                    cur = u.cache[mask] = int(w.value())
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


UTILITIES = ("correct", "margin")
SAMPLINGS = ("plain", "antithetic", "stratified", "stratified_antithetic")
MAX_MARGIN_CLIP = 1 << 16
_FRACTION_DEN_CAP = 1_000_000


def _ratio(v: Any, what: str, *, below_one: bool) -> Fraction:
    if (not isinstance(v, list) or len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in v)
            or not 1 <= v[1] <= _FRACTION_DEN_CAP or v[0] < 0 or (below_one and v[0] >= v[1])):
        bound = "0 <= num < den" if below_one else "num >= 0, 1 <= den"
        raise ContributionError(f"{what} must be [num, den] with {bound} <= {_FRACTION_DEN_CAP}, got {v!r}")
    return Fraction(v[0], v[1])


def _utility_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    utility = config.get("utility", "correct")
    if utility not in UTILITIES:
        raise ContributionError(f"unknown utility {utility!r} (known: {', '.join(UTILITIES)}; the "
                                f"validated rule's other utilities are set by aggregation.score_utility)")
    clip = config.get("margin_clip", 4)
    if "margin_clip" in config and utility != "margin":
        raise ContributionError("margin_clip applies to the margin utility only")
    if isinstance(clip, bool) or not isinstance(clip, int) or not 1 <= clip <= MAX_MARGIN_CLIP:
        raise ContributionError(f"margin_clip must be an integer in [1, {MAX_MARGIN_CLIP}], got {clip!r}")
    band = config.get("zero_band")
    out: dict[str, Any] = {"utility": utility}
    if utility == "margin":
        out["margin_clip"] = clip
    out["zero_band"] = None if band is None else _ratio(band, "zero_band", below_one=True)
    return out


def parse_method(config: Any) -> dict[str, Any]:
    """Validate the job spec's contribution section and fill defaults.

    ``{"method": "shapley", "exact_max_players": 10, "permutations": 64, "truncation": 0}``
    (exact when the player count <= exact_max_players, sampled otherwise), or ``{"method": "loo"}``.
    Optional fields (defaults keep the original behaviour):

    * ``utility``: ``"correct"`` (default; correct predictions) or ``"margin"``: the sum over the
      shard of ``z[y] - max_{c != y} z[c]`` clipped to ``[-margin_clip, margin_clip]`` logit units
      (``margin_clip`` default 4; integer, see ``dapp.ml.inference.margin_sum``). The margin moves
      with every sample's confidence, not only when a whole prediction flips;
    * ``truncation``: an integer tolerance in utility units, ``[p, q]`` meaning
      ``floor(p/q * |U(all) - U(empty)|)`` (so it follows the utility's scale), or null for none;
    * ``sampling``: ``"plain"`` (default), ``"antithetic"``, ``"stratified"`` or
      ``"stratified_antithetic"`` (see ``permutation_orders``); ``permutations`` counts every
      order walked, reverses included, so the cost is the same for all four;
    * ``zero_band``: ``[p, q]`` with p < q, or null (default): after scoring, a player whose
      ``|phi| * q <= p * sum_j |phi_j|`` gets exactly 0 (neither paid nor counted negative), so a
      value that sampling noise could push either side of zero is declared zero.
    """
    if not isinstance(config, Mapping):
        raise ContributionError("contribution config must be an object")
    method = config.get("method")
    common = {"method", "utility", "margin_clip", "zero_band"}
    if method == "loo":
        extra = sorted(set(config) - common)
        if extra:
            raise ContributionError(f"loo: unknown fields {extra}")
        return {"method": "loo", **_utility_fields(config)}
    if method != "shapley":
        raise ContributionError(f"unknown contribution method {method!r} (known: loo, shapley)")
    extra = sorted(set(config) - common - {"exact_max_players", "permutations", "truncation", "sampling"})
    if extra:
        raise ContributionError(f"shapley: unknown fields {extra}")
    out = {"method": "shapley", "exact_max_players": config.get("exact_max_players", 10),
           "permutations": config.get("permutations", 64), "truncation": config.get("truncation", 0),
           "sampling": config.get("sampling", "plain"), **_utility_fields(config)}
    e = out["exact_max_players"]
    if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= MAX_EXACT_PLAYERS:
        raise ContributionError(f"exact_max_players must be an integer in [0, {MAX_EXACT_PLAYERS}]")
    p = out["permutations"]
    if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= MAX_PERMUTATIONS:
        raise ContributionError(f"permutations must be an integer in [1, {MAX_PERMUTATIONS}]")
    t = out["truncation"]
    if isinstance(t, list):
        out["truncation"] = _ratio(t, "truncation", below_one=False)
    elif t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
        raise ContributionError("truncation must be a non-negative integer, [num, den] or null")
    if out["sampling"] not in SAMPLINGS:
        raise ContributionError(f"unknown sampling {out['sampling']!r} (known: {', '.join(SAMPLINGS)})")
    return out


def apply_zero_band(values: Mapping[str, Fraction], band: Fraction | None) -> dict[str, Fraction]:
    """The declared near-zero rule: ``|phi_i| <= band * sum_j |phi_j|`` -> exactly 0."""
    if band is None:
        return dict(values)
    base = sum((abs(v) for v in values.values()), Fraction(0))
    return {k: (Fraction(0) if abs(v) <= band * base else v) for k, v in values.items()}


def evaluations_bound(method_config: Any, players: int) -> int:
    """Most utility evaluations one round's scoring can need (for cost models): exact 2**n,
    sampled 2 + permutations * n (fewer with truncation and repeated coalitions), loo n + 1.
    Each evaluation is one aggregate (O(params), incremental for FedAvg-combining rules) plus one
    inference over the shard, whichever the utility."""
    cfg = parse_method(method_config)
    if players == 0:
        return 0
    if cfg["method"] == "loo":
        return players + 1
    if players <= cfg["exact_max_players"]:
        return 1 << players
    return 2 + cfg["permutations"] * players


def contributions(method_config: Any, keys: Sequence[str], utility: Utility, stream: KeccakStream,
                  groups: Mapping[str, Sequence[str]] | None = None,
                  walk: Callable[[], "Walk"] | None = None) -> dict[str, Fraction]:
    """Dispatch on the spec; ``keys`` are players (one per distinct update), ``groups`` their copies."""
    cfg = parse_method(method_config)
    if cfg["method"] == "loo":
        vals = leave_one_out(keys, utility)
    elif len(keys) <= cfg["exact_max_players"]:
        vals = shapley_exact(keys, utility)
    else:
        vals = shapley_sampled(keys, utility, stream, cfg["permutations"], cfg["truncation"],
                               antithetic=cfg["sampling"] in ("antithetic", "stratified_antithetic"),
                               stratified=cfg["sampling"].startswith("stratified"), walk=walk)
    return _expand(apply_zero_band(vals, cfg["zero_band"]), groups)


def _fedavg_combiner(strategy: Strategy) -> bool:
    """True when ``strategy.combine_flat`` is FedAvg's (filters that only pass combining on).

    Only then may a permutation walk keep a running weighted sum: the result is the same integer
    formula, so incremental and from-scratch aggregates are equal bit for bit."""
    s = strategy
    while True:
        if type(s) is FedAvg:
            return True
        if isinstance(s, NormClip) and type(s) is NormClip and s.mode == "reject":
            s = s.then
        elif isinstance(s, _Filter) and type(s).combine_flat is _Filter.combine_flat:
            s = s.then
        else:
            return False


class Walk:
    """Running FedAvg over a permutation prefix: ``S = sum w_i u_i`` and ``W = sum w_i`` in int64
    (|S| < 2**62 since W < 2**31 and |u| < 2**31), aggregate ``floor((2 S + W) / (2 W))``, which is
    ``FedAvg.combine_flat`` of the prefix exactly."""

    def __init__(self, owner: "RoundUtility") -> None:
        self.owner = owner
        self.s = np.zeros_like(owner.g)
        self.wsum = 0

    def add(self, key: str) -> None:
        i = self.owner.index[key]
        wi = int(self.owner.w[i])
        self.s += np.int64(wi) * self.owner.u[i]
        self.wsum += wi

    def value(self) -> int:
        if self.wsum == 0:
            flat = self.owner.g
        else:
            if self.wsum > MAX_WEIGHT_TOTAL:
                raise ContributionError(f"total weight {self.wsum} exceeds 2**31-1")
            flat = (2 * self.s + self.wsum) // (2 * self.wsum)
        self.owner.evaluations += 1
        return self.owner.score(flat)


class RoundUtility:
    """U(S) for a round: combine(global, S) with the strategy's own rule, scored on a prepared shard.

    Works on flat int64 vectors (no Model objects per coalition), and caches the shard's first-layer
    im2col, so one evaluation is one combine plus one batched inference. ``utility`` is
    ``"correct"`` (correct predictions) or ``"margin"`` (clipped margin sum, ``margin_clip`` logit
    units; see ``dapp.ml.inference``).
    """

    def __init__(self, strategy: Strategy, arch: ArchSpec, global_model: Model,
                 players: Sequence[ClientUpdate], x: np.ndarray, y: np.ndarray,
                 utility: str = "correct", margin_clip: int = 4) -> None:
        ps = sorted(players, key=lambda p: p.key)
        if utility not in UTILITIES:
            raise ContributionError(f"unknown utility {utility!r}")
        self.strategy = strategy
        self.arch = arch
        self.utility = utility
        self.margin_clip = margin_clip
        self.index = {p.key: i for i, p in enumerate(ps)}
        if len(self.index) != len(ps):
            raise ContributionError("player keys must be unique")
        self.g = flatten(global_model)
        self.u, self.w = _stack(ps, self.g.size)
        self.shard = PreparedShard(arch, x, y)
        self.layout = [(name, shape, int(np.prod(shape, dtype=np.int64))) for name, shape in arch.param_shapes()]
        self.evaluations = 0
        self.walk: Callable[[], Walk] | None = (lambda: Walk(self)) if _fedavg_combiner(strategy) else None

    def params(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        pos = 0
        for name, shape, n in self.layout:
            out[name] = flat[pos:pos + n].reshape(shape)
            pos += n
        return out

    def score(self, flat: np.ndarray) -> int:
        if self.utility == "margin":
            return self.shard.margin_sum(self.params(flat), self.margin_clip)
        return self.shard.count_correct(self.params(flat))

    def __call__(self, coalition: tuple[str, ...]) -> int:
        try:
            idx = sorted(self.index[k] for k in coalition)
        except KeyError as e:
            raise ContributionError(f"unknown player {e.args[0]!r}") from None
        flat = self.strategy.combine_flat(self.g, self.u[idx], self.w[idx])
        self.evaluations += 1
        return self.score(flat)


def score_round(strategy: Strategy, arch: ArchSpec, global_model: Model, updates: Sequence[ClientUpdate],
                result: AggregateResult, x: np.ndarray, y: np.ndarray, method_config: Any,
                stream: KeccakStream) -> dict[str, Fraction]:
    """Scores of every submitted key: accepted players by the configured method (copies share
    their player's value), rejected keys 0."""
    cfg = parse_method(method_config)
    players, groups = merge_duplicates(updates)
    accepted = set(result.accepted)
    acc_players = [p for p in players if p.key in accepted]
    util = RoundUtility(strategy, arch, global_model, acc_players, x, y, cfg["utility"],
                        cfg.get("margin_clip", 4))
    vals = contributions(method_config, [p.key for p in acc_players], util, stream,
                         {p.key: groups[p.key] for p in acc_players}, util.walk)
    out = {up.key: Fraction(0) for up in updates}
    out.update(vals)
    return dict(sorted(out.items()))
