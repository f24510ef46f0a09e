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

Validated (``rule: "validated"``, the market's default; in the spirit of FLTrust / Zeno): the
trusted root is validation data that the job fixed before anyone trained (the public shard),
passed explicitly as a ``ValidationContext``. Declared steps, on players after exact-duplicate
merging, in key order:

0. colluders (``collusion_cos`` = [p, q], default [99, 100]; null turns it off): live players
   whose deltas are near-identical (the integer cosine test below with p/q, transitive closure;
   exact copies count too) are one training run; when the addresses in such a group declare
   different data (their data cards' sample counts, ``claims``), at least one card is false and
   every update of the group is rejected as colluding. Independent training on different data
   lands far below this threshold (MNIST, 10 trainers, Dirichlet 0.1-0.5: at most 0.74
   measured); ALIE, Min-Max and IPM colluders, who must all send the update their attack
   computes, land above 0.999. A group with one card is one trainer's work split over
   identities and goes on as one player;
1. gate: an update is judged by its *probe* ``g + step * (u - g)`` (``step`` = [1, 4] by
   default, rounded half up): its evidence is the probe's gain in the rule's ``utility`` (the
   clipped logit margin sum by default) over the global model's, and with ``or_correct`` its
   gain in correct predictions; it passes when either is positive and at least ``min_gain`` per
   public sample (logits, or predictions). With ``evidence = "card_classes"`` (the template's)
   both gains are summed over the public samples of the trainer's own classes only: the labels
   that hold at least the uniform share of its data card's histogram (``h_c * classes >=
   total``; a balanced card is judged on every sample), the threshold staying ``min_gain`` x
   the whole shard's size. Why: training on a few classes must improve those classes, and under
   label skew it also pushes every other class towards them, so a balanced shard as a whole
   rejects honest skewed work (MNIST, Dirichlet 0.1-0.5: 25 % of honest updates lowered the
   whole shard's margin at step 1/4, 2 % lowered their own classes'), while flipped labels
   lower the margin of the classes they hold (at the template's step 1/2, truthful card: none
   passed, 2-20 % at step 1/4; a card that claims the flipped labels: 2-52 % passed, and are
   then paid by their Shapley value: 0). No verdict depends on the other updates, so a
   majority of cheap identities (near-copies of the global model) changes nothing;
2. boosted updates: a delta whose norm exceeds ``max_norm_ratio`` times the evidence-weighted
   lower median norm of the passing updates is rejected (a boosted update passes the damped
   probe like the update it scales); with ``reject_norm_ratio`` (the template's [4, 1]) only
   above that ratio, and a delta between the two is a *long step*: clipped to
   ``max_norm_ratio`` times the median norm, it goes on. Why: a large or skewed dataset takes
   longer steps too (MNIST, 50 trainers, Dirichlet 0.1: the largest honest trainer, 3,466
   images, was over 2x the median and rejected as boosted in 4-5 of 6 rounds), while the
   boosts of the literature scale by far more (sign flip x4, scaling x10). With ``collateral``
   (the template's [2, 1]) a long step goes on only if what its probe costs the public samples
   of the classes its card does *not* declare, per sample, is at most ``collateral`` x what it
   adds per sample of the classes it declares (exact integers; a card that declares every
   class has nothing to weigh). Why: labels flipped under a card that claims the flipped
   classes gain a little there (a push of the biases) while they destroy the classes really
   held, and flipped labels take long steps once the model has learnt (MNIST, 50 trainers,
   Dirichlet 0.1, rounds 0-4, bench/long_steps.py: cost-to-gain median 2.9-4.6 per round for
   flipped labels, 0.5-1.1 for honest updates; of the long steps, 11 of 13 honest ones kept and
   5 of 29 flipped ones). Without it, clipping instead of rejecting let half of those label
   flippers in at 10 trainers (-8.1 points against -6.2, bench/results/robustness_reject4.json);
   with it, -6.2 and every figure of robustness_30 as before. Applied to every update, not
   only long ones (an exploration run, not kept), it kept more of them out but rejected honest
   skewed work too (at Dirichlet 0.5 an honest trainer was accepted in 4 of 6 rounds), so it
   judges long steps only;
3. second chance (``second_chance``): an update that failed the gate is admitted when its own
   delta, added on top of the aggregate of the passing ones at the share a median-weight update
   would have there, improves that aggregate by ``min_gain`` (skewed, non-IID updates that help
   only together); the passing set is fixed before any candidate is tried;
4. near-duplicates: accepted updates whose deltas point the same way (integer cosine test:
   ``dot > 0`` and ``dot**2 * q**2 >= p**2 * |d_i|**2 * |d_j|**2`` for ``cluster_cos = [p, q]``,
   transitive closure) are one *cluster*: its model is the evidence-weighted FedAvg of its
   members, its weight the *largest* member evidence (never the sum), and its value is shared by
   its members pro rata to their evidence;
5. each cluster's delta is clipped to the evidence-weighted lower median of the clusters' delta
   norms (``T^2``; NormClip's rescaling): ``clip = "median"`` aggregates and values the clipped
   deltas; ``"score"`` (the template's) aggregates every delta in full and values the players
   (``ValidatedResult.players``, what Shapley scores) clipped; ``"none"`` clips neither. Why
   ``"score"``: under label skew the trainers with the most to add to their classes take the
   largest steps, and clipping them in the model cost accuracy (MNIST, 10 trainers, Dirichlet
   0.1, no attack: 3.8 points below FedAvg clipped, 0.9 above it unclipped; bench/results/
   robustness_clip_modes.json); but a step is not data: valued unclipped, a trainer who
   stretches its delta 1.9x (under the boosted-update threshold) earned 1.31x
   (``bench/mechanism.py``; 1.42x with margin pay), valued clipped 0.99x, and honest rewards
   ranked further from the federated Shapley value of their data (margin pay, one-run truth:
   Spearman 0.27 / 0.44 against 0.42 / 0.61). The
   clusters are combined by FedAvg weighted by ``weighting`` (rescaled so the largest is
   2**20, floor, at least 1), with ``e`` a cluster's evidence and
   ``n = min(isqrt(|d|^2), isqrt(T^2))`` its delta norm capped at ``T^2``, the
   evidence-weighted lower median squared norm of the clusters' (unclipped) deltas: ``"gain"``: e; ``"sqrt_gain"``: isqrt(e); ``"sqrt_gain_norm"``: isqrt(e) * n;
   ``"root4_gain_norm"`` (the default): isqrt(isqrt(e)) * n; ``"norm"``: n; ``"equal"``: 1.
   A self-reported sample count weighs nothing in this rule. Why the default: a gain measured
   on ~100 public samples is noisy, and weighing by it linearly put most of a round on the two
   or three luckiest updates (MNIST, 10 trainers, Dirichlet 0.5, round 0: 36 % test accuracy
   against 51 % for the plain mean of the same accepted updates); a root keeps the ordering
   while averaging every accepted trainer's data (the more trainers, the more it matters: at
   50 trainers, 0.747 with the square root, 0.775 with the fourth, 0.796 by norm alone,
   FedAvg 0.798), and some weight on evidence keeps updates that barely passed (flipped
   labels admitted by the second chance) from counting fully (10 trainers, 30 % label
   flippers, Dirichlet 0.1: -7.2 points against no-attack FedAvg with the square root, -1.1
   with the fourth). The norm factor gives an update the weight of the step it carries, so a
   near-zero update that passed the gate by luck (noise on the global model) cannot dilute
   the others' step and be paid for the damping (30 % free riders, Dirichlet 0.1: 9.1 % of
   the wei with ``sqrt_gain``, 0.2 % with the norm factor). Figures: bench/robustness.py.

Scoring (``dapp.market.closing``): accepted clusters are valued in ``score_utility``, by default
(``"rule"``) the gate's own utility; ``"correct"``, ``"margin"``, ``"soft"`` or ``"balanced"``
name another (``ValidationContext`` defines them). The template values in ``"balanced"``.
Measured (bench/robustness.py, 10 trainers, 30 % attackers, 3 seeds, truth = federated Shapley
averaged over 5 training runs; bench/mechanism.py): paid per round, honest rewards rank at
Spearman 0.71 / 0.66 (Dirichlet 0.5 / 0.1) against 0.57 / 0.64 valued in the margin (0.75 /
0.67 paid at a price, below); plain correct predictions also rank closer than the margin
(0.67-0.69 against 0.52-0.56, one-run truth, bench/results/robustness_score.json) but on a
100-sample secret shard let an owner's nine identities that train a little take 13 % of a job
(2.2 % with ``balanced``), which breaks issue 10's guarantee.

Paying (``pay``): ``"round"`` (the default) splits each round's budget by that round's
contributions; ``"value"`` pays every round at one price per unit of value, set by the first
round valued in ``score_utility`` (its budget over its total positive value), what a round does
not spend carrying, and after the last round the rest goes to the job's earners pro rata to what
they earned; ``"settle"`` (the template's) pays at the same price but at most half of each
round's budget, counts the value each address created, and at the job's end tops every earner up
towards its share of the job's pay by that value (``dapp.market.closing``,
``dapp.ml.rewards.settle_to_value``). Why value: later rounds usually create little value and
their shares are mostly noise; split per round, that noise weighs as much as the first rounds'
signal (bench/robustness.py, same runs: Spearman 0.75 / 0.67 at a price against 0.71 / 0.66 paid
per round). Why settle: when later rounds create more value than the first (a weak initial
model, late joiners), they cannot afford it at the price, and paid money cannot be taken back
(bench/mechanism.py, late joiners: the trainer alone in round 0 ends with 0.377 of the budget
for 0.294 of the value at a price, 0.294 settled). The owner's nine identities that train a
little take 2.2 % of a job either way, against 1.4 % paid per round (what they add, they add in
the first round, which now weighs what it created).

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

from .arch import ArchSpec
from .errors import AggregationError, InferenceOverflowError, StrategyConfigError
from .inference import PreparedShard, margins
from .model_format import INT32_MAX, Model, model_hash

MAX_WEIGHT_TOTAL = (1 << 31) - 1
DEFAULT_CLUSTER_COS = (23, 25)
DEFAULT_COLLUSION_COS = Fraction(99, 100)
WEIGHTINGS = ("gain", "sqrt_gain", "sqrt_gain_norm", "root4_gain_norm", "norm", "equal")
DEFAULT_WEIGHTING = "root4_gain_norm"
CLIPS = ("median", "score", "none")
EVIDENCE = ("all", "card_classes")
DEFAULT_EVIDENCE = "all"
SCORE_UTILITIES = ("rule", "soft", "margin", "correct", "balanced")
DEFAULT_SCORE_UTILITY = "rule"
PAYS = ("round", "value", "settle")
DEFAULT_PAY = "round"


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


MARGIN_CLIP_LOGITS = 4
UTILITIES = ("soft", "margin", "correct")
BALANCED_UNIT = 1 << 16
"""What one class is worth in the ``balanced`` utility: a sample of class c is weighted
``floor(BALANCED_UNIT / n_c)``, n_c the samples of class c in the shard."""


class ValidationContext:
    """Trusted validation data handed to a rule that needs it (``Validated``): explicit, so the
    rule stays a pure function of (global model, updates, this data). x is int fixed point at
    the arch's scale, y int labels; the first-layer im2col is prepared once.

    Utilities (integers, so every machine agrees; the same as ``dapp.ml.contribution``'s):
    * ``correct``: correct predictions (argmax, lowest index on ties);
    * ``margin``: sum over samples of ``z_y - max_{j != y} z_j`` clipped to
      ``+-MARGIN_CLIP_LOGITS`` logit units (``PreparedShard.margin_sum``). It moves with every
      real improvement (0/1 accuracy on a small shard often does not), while a nudge of one
      fixed-point unit moves it by at most about one unit per sample; the clip bounds what any
      one sample can weigh;
    * ``soft``: the same margin clipped to ``[0, MARGIN_CLIP_LOGITS]``: correct predictions
      weighted by their confidence, a wrong prediction 0 however wrong. A trainer with skewed
      (non-IID) data whose model is confidently wrong on classes it never saw loses those
      samples, no more, so its real progress on its own classes still shows;
    * ``balanced`` (a score utility, not a gate): per sample, its ``margin`` plus twice the
      margin clipped to ``[0, 1]`` logit (a correct prediction with a logit to spare earns two
      logits more, a wrong one nothing more), weighted ``floor(BALANCED_UNIT / n_c)`` with n_c
      the shard's samples of the sample's class, so every class weighs the same. Why: a random
      shard of a few hundred samples holds some classes at half their share and others at
      double, and unweighted a trainer who holds the rare ones is valued at half what its
      classes are worth to a model judged on every class; the correct-prediction term counts
      what the owner wants (the margin alone values a specialist's push on every other class
      more than the predictions it adds), and it ramps over one logit instead of jumping, so a
      tiny step that moves samples across the decision boundary earns a tiny value (valued in
      0/1 correct predictions, an owner's nine identities that trained a little took 13 % of a
      job, 2.2 % in ``balanced``: bench/mechanism.py; with a 0/1 term on top of the margin, 300
      samples earned less than 250 and tests/test_mechanism_trainer.py's
      ``test_more_data_earns_more`` failed).
    """

    def __init__(self, arch: ArchSpec, x: np.ndarray, y: np.ndarray) -> None:
        self.arch = arch
        self.shard = PreparedShard(arch, x, y)
        self.size = int(len(self.shard.y))
        counts = np.bincount(self.shard.y.astype(np.int64), minlength=arch.num_classes)
        # int64 on every platform; a class absent from the shard is never read
        self.class_weights = (BALANCED_UNIT // np.maximum(counts, 1)).astype(np.int64)

    def utility(self, name: str, model: Mapping[str, np.ndarray],
                mask: np.ndarray | None = None) -> int:
        """``model``'s utility ``name`` on this data, or on the samples ``mask`` selects
        (raises InferenceOverflowError)."""
        (per,) = self.per_sample((name,), model)
        return int(per.sum() if mask is None else per[mask].sum())

    def per_sample(self, names: Sequence[str], model: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Each utility's per-sample values (int64), from one inference pass."""
        z = self.shard.logits(model)
        y = self.shard.y
        out = []
        for name in names:
            if name == "correct":
                per = (np.argmax(z, axis=1) == y).astype(np.int64)
            elif name == "balanced":
                m = margins(z, y, MARGIN_CLIP_LOGITS << self.arch.scale_bits)
                hit = np.clip(m, 0, 1 << self.arch.scale_bits)
                # fits int64, and so does any sum: sum_c n_c * floor(2**16 / n_c) <= classes * 2**16
                # <= 2**32, times (4 + 2) << 24 at most
                per = (2 * hit + m) * self.class_weights[y]
            else:
                per = margins(z, y, MARGIN_CLIP_LOGITS << self.arch.scale_bits)
                if name == "soft":
                    per = np.maximum(per, 0)
            out.append(per)
        return out

    def class_mask(self, histogram: Sequence[int]) -> np.ndarray | None:
        """The samples of a trainer's own classes: labels holding at least the uniform share
        (``h_c * classes >= total``) of the data its card declares; None (every sample) for
        an empty or absent histogram."""
        total = sum(histogram)
        k = len(histogram)
        if total <= 0 or k == 0:
            return None
        own = [c for c, h in enumerate(histogram) if h * k >= total]
        return np.isin(self.shard.y, np.array(own, dtype=np.int64))

    def unit(self, name: str) -> int:
        """What one sample's worth of ``name`` is: 2**scale_bits (one logit), or 1 prediction."""
        return (1 << self.arch.scale_bits) if name in ("margin", "soft") else 1


@dataclass(frozen=True)
class ValidatedResult(AggregateResult):
    """``Validated``'s decision with what scoring needs: ``players`` are the clusters (key = the
    cluster's smallest key, model = its combined model, clipped unless ``clip = "none"``,
    weight = its largest gain);
    ``members`` maps each cluster to every accepted address in it; ``shares`` is each accepted
    address's exact share of its cluster's value; ``gains`` every live player's validation gain
    (correct predictions over the global model's) by address."""

    players: tuple[ClientUpdate, ...] = ()
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shares: dict[str, Fraction] = field(default_factory=dict)
    gains: dict[str, int] = field(default_factory=dict)


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

    def aggregate(self, global_model: Model, updates: Sequence[ClientUpdate],
                  validation: "ValidationContext | None" = None) -> AggregateResult:
        """``validation`` is ignored by the rules that do not score on data."""
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
            if over[i]:
                out[i] = _clip_row(g, d[i], sq[i], t)
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


def dot_exact(a: np.ndarray, b: np.ndarray) -> int:
    """Exact dot product of two int64 vectors with entries below 2**33 in absolute value and
    fewer than 2**24 entries: the same 16-bit split as ``sq_norm`` keeps every partial sum in
    int64, and the parts are combined as Python integers."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ah, al = a >> 16, a & 0xFFFF
    bh, bl = b >> 16, b & 0xFFFF
    return ((int((ah * bh).sum()) << 32) + ((int((ah * bl).sum()) + int((al * bh).sum())) << 16)
            + int((al * bl).sum()))


def cos_at_least(di: np.ndarray, dj: np.ndarray, ni: int, nj: int, ratio: Fraction) -> bool:
    """cos(di, dj) >= p/q, decided exactly: dot > 0 and dot^2 q^2 >= p^2 |di|^2 |dj|^2 (ni, nj
    the squared norms)."""
    dot = dot_exact(di, dj)
    p, q = ratio.numerator, ratio.denominator
    return dot > 0 and dot * dot * q * q >= p * p * ni * nj


def cosine_groups(deltas: Sequence[np.ndarray], ratio: Fraction) -> dict[int, list[int]]:
    """Transitive groups of deltas whose pairwise cosine is at least ``ratio`` = p/q, decided
    exactly (``dot > 0`` and ``dot^2 q^2 >= p^2 |d_i|^2 |d_j|^2``), as {smallest index:
    indices in order}. Union-find with path halving; a pair already in one group is not
    tested again."""
    k = len(deltas)
    norms = [sq_norm(x) for x in deltas]
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(k):
        for j in range(i + 1, k):
            if root(i) != root(j) and cos_at_least(deltas[i], deltas[j], norms[i], norms[j], ratio):
                a, b = sorted((root(i), root(j)))
                parent[b] = a
    groups: dict[int, list[int]] = {}
    for i in range(k):
        groups.setdefault(root(i), []).append(i)
    return groups


def weighted_lower_median(values: Sequence[int], weights: Sequence[int]) -> int:
    """The smallest value v (in ascending order, ties kept in input order) at which the weights
    of the values up to v reach half the total: cheap identities with small weights cannot move
    it, however many they are."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    total = sum(weights)
    acc = 0
    for i in order:
        acc += weights[i]
        if 2 * acc >= total:
            return values[i]
    raise AggregationError("weighted median of an empty set")


def clip_rows(g: np.ndarray, u: np.ndarray, t2: int) -> tuple[np.ndarray, list[bool]]:
    """Rescale each row's delta whose squared norm exceeds ``t2`` to norm ``isqrt(t2)``:
    ``d * T / ceil(sqrt(|d|^2))`` rounded half up (NormClip's declared rescaling)."""
    d = u - g
    t = math.isqrt(t2)
    out = u.copy()
    over = []
    for i in range(u.shape[0]):
        sq = sq_norm(d[i])
        over.append(sq > t2)
        if sq > t2:
            out[i] = _clip_row(g, d[i], sq, t)
    return out, over


def _clip_row(g: np.ndarray, d: np.ndarray, sq: int, t: int) -> np.ndarray:
    """``g + d * t / ceil(sqrt(sq))`` rounded half up, where ``sq = |d|^2``: one delta rescaled
    to norm ``t`` (the fraction is shrunk until every product fits int64)."""
    n = math.isqrt(sq)
    if n * n < sq:
        n += 1  # ceil(sqrt)
    num, den = t, n
    maxd = int(np.abs(d).max())
    while 2 * maxd * num + den >= (1 << 62):
        num >>= 1
        den = max(den >> 1, 1)
    return g + _half_up_div(d * num, den)


class Validated(Strategy):
    """Accept on evidence measured on trusted data, merge near-duplicates, clip, weigh by gain.

    See the module docstring for the declared rule. Why each step:
    * the gate is per update, on data fixed before training, so a majority of cheap identities
      changes no verdict (Multi-Krum keeps the largest cluster; this rule keeps what helps);
    * near-duplicate merging makes "one update plus noise under k addresses" one player whose
      weight is the largest of the copies', so splitting adds no weight and no Shapley players;
    * clipping to the median accepted delta norm bounds what any one accepted player can move;
    * weights come from validation gains (by default their fourth root times the delta norm
      capped at the median), evidence the trainer cannot inflate by over-reporting its
      sample count;
    * colluders (near-identical updates under cards that claim different data) are rejected:
      their update contradicts their cards, and faking one card only makes them one player.
    """

    rule = "validated"

    def __init__(self, utility: str = "margin", min_gain: Fraction = Fraction(1, 1000),
                 cluster_cos: Fraction = Fraction(*DEFAULT_CLUSTER_COS),
                 clip: str = "median", or_correct: bool = True,
                 second_chance: bool = True, step: Fraction = Fraction(1, 4),
                 max_norm_ratio: Fraction | None = Fraction(3),
                 collusion_cos: Fraction | None = DEFAULT_COLLUSION_COS,
                 weighting: str = DEFAULT_WEIGHTING, evidence: str = DEFAULT_EVIDENCE,
                 score_utility: str = DEFAULT_SCORE_UTILITY,
                 reject_norm_ratio: Fraction | None = None,
                 collateral: Fraction | None = None, pay: str = DEFAULT_PAY) -> None:
        if utility not in UTILITIES:
            raise StrategyConfigError(f"validated: utility must be one of {UTILITIES}, "
                                      f"got {utility!r}")
        if min_gain <= 0:
            raise StrategyConfigError(f"validated: min_gain {min_gain} must be > 0")
        if not 0 < cluster_cos <= 1:
            raise StrategyConfigError(f"validated: cluster_cos {cluster_cos} must lie in (0, 1]")
        if clip not in CLIPS:
            raise StrategyConfigError(f"validated: clip must be one of {CLIPS}, got {clip!r}")
        if not isinstance(or_correct, bool):
            raise StrategyConfigError(f"validated: or_correct must be true or false, got "
                                      f"{or_correct!r}")
        self.utility, self.min_gain, self.cluster_cos, self.clip = utility, min_gain, cluster_cos, clip
        if not isinstance(second_chance, bool):
            raise StrategyConfigError(f"validated: second_chance must be true or false, got "
                                      f"{second_chance!r}")
        if not 0 < step <= 1 or step.denominator > 1 << 20:
            raise StrategyConfigError(f"validated: step {step} must lie in (0, 1] with a "
                                      f"denominator of at most 2**20")
        if max_norm_ratio is not None and max_norm_ratio < 1:
            raise StrategyConfigError(f"validated: max_norm_ratio {max_norm_ratio} must be >= 1")
        self.or_correct, self.second_chance, self.step = or_correct, second_chance, step
        self.max_norm_ratio = max_norm_ratio
        if reject_norm_ratio is not None and (max_norm_ratio is None
                                              or reject_norm_ratio < max_norm_ratio):
            raise StrategyConfigError(f"validated: reject_norm_ratio {reject_norm_ratio} needs a "
                                      f"max_norm_ratio, and at most it")
        self.reject_norm_ratio = reject_norm_ratio
        if collateral is not None and (reject_norm_ratio is None or collateral <= 0):
            raise StrategyConfigError(f"validated: collateral {collateral} must be > 0 and needs "
                                      f"a reject_norm_ratio (it judges the steps between the two "
                                      f"norm ratios)")
        self.collateral = collateral
        if collusion_cos is not None and not 0 < collusion_cos <= 1:
            raise StrategyConfigError(f"validated: collusion_cos {collusion_cos} must lie in "
                                      f"(0, 1] or be null")
        self.collusion_cos = collusion_cos
        self.weighting = _one_of("weighting", weighting, WEIGHTINGS)
        self.evidence_on = _one_of("evidence", evidence, EVIDENCE)
        self.score_utility_name = _one_of("score_utility", score_utility, SCORE_UTILITIES)
        self.pay = _one_of("pay", pay, PAYS)

    @property
    def score_utility(self) -> str:
        """The utility accepted players' contributions are valued in: the gate's own
        (``"rule"``, the default) or another one."""
        return self.utility if self.score_utility_name == "rule" else self.score_utility_name

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": "validated", "utility": self.utility,
                "min_gain": [self.min_gain.numerator, self.min_gain.denominator],
                "cluster_cos": [self.cluster_cos.numerator, self.cluster_cos.denominator],
                "clip": self.clip, "or_correct": self.or_correct,
                "second_chance": self.second_chance,
                "step": [self.step.numerator, self.step.denominator],
                "max_norm_ratio": (None if self.max_norm_ratio is None else
                                   [self.max_norm_ratio.numerator,
                                    self.max_norm_ratio.denominator])}
        # Fields added after the rule shipped appear only when not at their default, so the
        # canonical form of every earlier spec is unchanged.
        if self.collusion_cos != DEFAULT_COLLUSION_COS:
            d["collusion_cos"] = (None if self.collusion_cos is None else
                                  [self.collusion_cos.numerator, self.collusion_cos.denominator])
        if self.weighting != DEFAULT_WEIGHTING:
            d["weighting"] = self.weighting
        if self.evidence_on != DEFAULT_EVIDENCE:
            d["evidence"] = self.evidence_on
        if self.score_utility_name != DEFAULT_SCORE_UTILITY:
            d["score_utility"] = self.score_utility_name
        if self.reject_norm_ratio is not None:
            d["reject_norm_ratio"] = [self.reject_norm_ratio.numerator,
                                      self.reject_norm_ratio.denominator]
        if self.collateral is not None:
            d["collateral"] = [self.collateral.numerator, self.collateral.denominator]
        if self.pay != DEFAULT_PAY:
            d["pay"] = self.pay
        return d

    def passes(self, gain: int, validation: ValidationContext, utility: str) -> bool:
        """gain > 0 and gain >= min_gain x samples x unit, exactly."""
        p, q = self.min_gain.numerator, self.min_gain.denominator
        return gain > 0 and gain * q >= p * validation.size * validation.unit(utility)

    def combine_flat(self, g: np.ndarray, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Gain-weighted FedAvg of players that ``aggregate`` already clustered and clipped."""
        return FedAvg().combine_flat(g, u, w)

    def similar(self, di: np.ndarray, dj: np.ndarray, ni: int, nj: int) -> bool:
        """Near-duplicates: cos(di, dj) >= ``cluster_cos``, exactly."""
        return cos_at_least(di, dj, ni, nj, self.cluster_cos)

    def colluders(self, g: np.ndarray, players: Sequence[ClientUpdate],
                  groups: Mapping[str, tuple[str, ...]],
                  claims: Mapping[str, int]) -> dict[str, str]:
        """Players (by key) that are caught colluding, with the reason.

        Near-identical updates (``collusion_cos``, far above what independent training on
        different data produces) can only come from one training run; when their addresses'
        data cards claim different data (``claims``: each address's declared sample count),
        at least one card is false, so the whole group is rejected. Exact copies are one player
        already (``merge_duplicates``); their copies are checked the same way. What colluders
        can fake: identical cards, which only makes them one player paid once (step 4); or
        enough noise to break the test, which leaves each copy to be judged on its own.
        Framing an honest trainer would need its update before committing, which commit-reveal
        prevents."""
        out: dict[str, str] = {}
        if self.collusion_cos is None:
            return out
        live = [pl for pl in players if not np.array_equal(flatten(pl.model), g)]
        for idx in cosine_groups([flatten(pl.model) - g for pl in live],
                                 self.collusion_cos).values():
            addrs = [a for i in idx for a in groups[live[i].key]]
            told = sorted({claims[a] for a in addrs})
            if len(addrs) > 1 and len(told) > 1:
                reason = (f"validated: colluding: {len(addrs)} identical or near-identical "
                          f"updates (cosine >= {self.collusion_cos}) from addresses whose data "
                          f"cards claim different data (sample counts {told})")
                for i in idx:
                    out[live[i].key] = reason
        return out

    def aggregate(self, global_model: Model, updates: Sequence[ClientUpdate],
                  validation: ValidationContext | None = None,
                  claims: Mapping[str, int] | None = None,
                  histograms: Mapping[str, Sequence[int]] | None = None) -> ValidatedResult:
        """``claims``: each address's declared sample count (its data card); by default the
        update's weight. ``histograms``: each address's declared label histogram (its data
        card), which ``evidence = "card_classes"`` judges it on; absent, every sample counts."""
        if validation is None:
            raise AggregationError("the validated rule needs validation data (the job's public "
                                   "shard)")
        players, groups = merge_duplicates(updates)
        _check_updates(global_model, players)
        g = flatten(global_model)
        told = {up.key: up.weight for up in updates}
        if claims is not None:
            missing = sorted(set(told) - set(claims))
            if missing:
                raise AggregationError(f"claims lack addresses {missing[:3]}")
            told = {a: claims[a] for a in told}
        caught = self.colluders(g, players, groups, told)
        gate_names = ((self.utility, "correct") if self.or_correct and self.utility != "correct"
                      else (self.utility,))
        gate_base = validation.per_sample(gate_names, global_model)
        rejected: dict[str, str] = {}
        notes: dict[str, str] = {}
        gains: dict[str, int] = {}
        spent: dict[str, tuple[int, int, int, int]] = {}
        live: list[ClientUpdate] = []
        for pl in players:
            u = flatten(pl.model)
            if np.array_equal(u, g):
                rejected[pl.key] = "zero update: identical to the global model (free rider)"
                continue
            if pl.key in caught:
                rejected[pl.key] = caught[pl.key]
                continue
            probe = self.probe(g, u, global_model)
            mask = (validation.class_mask(histograms.get(pl.key, ()))
                    if self.evidence_on == "card_classes" and histograms is not None else None)
            try:
                now = validation.per_sample(gate_names, probe)
                diffs = [a - b for a, b in zip(now, gate_base)]
                spent[pl.key] = collateral_terms(diffs[0], mask)
                gain = spent[pl.key][0]
                extra = (int(diffs[1].sum() if mask is None else diffs[1][mask].sum())
                         if len(diffs) > 1 else None)
            except InferenceOverflowError as exc:
                rejected[pl.key] = f"inference overflows on the validation data: {exc}"
                continue
            gains[pl.key] = self.evidence(gain, extra, validation)
            if self.admits(gain, extra, validation):
                live.append(pl)
            else:
                also = (f" and {extra} correct predictions" if extra is not None else "")
                where = ("on the public validation samples of the classes its data card "
                         "declares" if mask is not None else "on the public validation data")
                rejected[pl.key] = (f"validated: improves the {self.utility} utility {where} "
                                    f"by {gain}{also}, below min_gain {self.min_gain} per "
                                    f"public sample (no measurable training)")
        if self.max_norm_ratio is not None and live:
            # Boosted updates (a delta scaled up to dominate) pass the damped probe like the
            # update they scale; their norm gives them away. The threshold is the
            # evidence-weighted median, so identities without evidence cannot move it.
            sq = {p.key: sq_norm(flatten(p.model) - g) for p in live}
            med = weighted_lower_median([sq[p.key] for p in live],
                                        [max(gains[p.key], 1) for p in live])
            too_big = self._too_big(med)
            hard = self.reject_norm_ratio or self.max_norm_ratio
            boosted = _above(hard, med)
            kept: list[ClientUpdate] = []
            for p in live:
                if boosted(sq[p.key]):
                    rejected[p.key] = (f"validated: delta norm above {hard} x the "
                                       f"evidence-weighted median norm (boosted update)")
                elif not too_big(sq[p.key]):
                    kept.append(p)
                elif not self._collateral_ok(*spent[p.key]):
                    rejected[p.key] = (f"validated: a longer step than most (delta norm above "
                                       f"{self.max_norm_ratio} x the evidence-weighted median) "
                                       f"that costs the classes its data card does not declare "
                                       f"more than {self.collateral} x what it adds to the ones "
                                       f"it declares, per public sample (flipped labels?)")
                else:
                    # A longer step than most (a large or skewed dataset, or a boost short of
                    # the rejection threshold): it counts at max_norm_ratio x the median norm.
                    r = self.max_norm_ratio
                    t2 = (r.numerator ** 2 * med) // (r.denominator ** 2)
                    cu, _ = clip_rows(g, flatten(p.model)[None, :], t2)
                    kept.append(ClientUpdate(p.key, unflatten_like(cu[0], global_model),
                                             p.weight))
                    for a in groups[p.key]:
                        notes[a] = (f"validated: delta clipped to {r} x the evidence-weighted "
                                    f"median norm (a longer step than most)")
            live = kept
        if self.second_chance and live:
            # An update that does not help on its own (typical of skewed, non-IID data) is
            # admitted if adding it to the updates accepted on their own (the core) helps: its
            # delta clipped to the core's threshold, weighted as the core's lower-median weight.
            # The core is fixed before any candidate is tried, so verdicts do not depend on
            # each other, and cheap identities (no measurable training) are never in the core.
            core = self._build(g, global_model, live, gains, groups)
            core_model = unflatten_like(core.flat, global_model)
            c_base = validation.utility(self.utility, core_model)
            w_med = _lower_median([int(x) for x in core.rw])
            admitted: list[ClientUpdate] = []
            too_big = self._too_big(core.median_sq)
            cands = [pl for pl in players
                     if pl.key in gains and not any(pl.key == q.key for q in live)
                     and not too_big(sq_norm(flatten(pl.model) - g))]
            for pl in cands:
                # the candidate's own step, as submitted (unclipped: a boosted or noisy update
                # must not pass thanks to the clipping), on top of the core's aggregate at the
                # share it would have there: w / (W + w) of its delta, rounded half up.
                # Averaging it in would also shrink the core's step, which can help by itself:
                # a near-copy would pass. Evidence here is the rule's utility only.
                total_w = int(core.rw.sum()) + w_med
                flat = core.flat + _half_up_div((flatten(pl.model) - g) * w_med, total_w)
                model = unflatten_like(np.clip(flat, -INT32_MAX, INT32_MAX), global_model)
                try:
                    marginal = validation.utility(self.utility, model) - c_base
                except InferenceOverflowError:
                    continue
                if self.passes(marginal, validation, self.utility):
                    admitted.append(pl)
                    gains[pl.key] = marginal
                    rejected.pop(pl.key)
                    for a in groups[pl.key]:
                        notes[a] = ("validated: admitted on its gain when added to the updates "
                                    "accepted on their own")
            live = sorted(live + admitted, key=lambda x: x.key)
        built = self._build(g, global_model, live, gains, groups)
        for a, note in built.notes.items():
            notes[a] = (notes[a] + "; " + note) if a in notes else note
        accepted = sorted(a for m in built.members.values() for a in m)
        rej = {a: rejected[k_] for k_ in sorted(rejected) for a in groups[k_]}
        gain_out = {a: gains[k_] for k_ in sorted(gains) for a in groups[k_]}
        return ValidatedResult(unflatten_like(built.flat, global_model), tuple(accepted),
                               dict(sorted(rej.items())), dict(sorted(built.members.items())),
                               dict(sorted(notes.items())), tuple(built.reps),
                               dict(sorted(built.members.items())),
                               dict(sorted(built.shares.items())),
                               dict(sorted(gain_out.items())))

    def _collateral_ok(self, own_gain: int, own: int, elsewhere: int, others: int) -> bool:
        """A long step's cost to the public samples of classes its card does not declare, per
        sample, is at most ``collateral`` x its gain per sample of the classes it declares
        (rule utility, exactly). Without ``collateral``, or where the card declares every
        class, there is nothing to weigh."""
        if self.collateral is None or others == 0:
            return True
        if own_gain <= 0 or own == 0:
            return False
        p, q = self.collateral.numerator, self.collateral.denominator
        return elsewhere * own * q >= -p * own_gain * others

    def _too_big(self, median_sq: int) -> Any:
        """sq -> True when sqrt(sq) > max_norm_ratio x sqrt(median_sq), exactly."""
        return _above(self.max_norm_ratio, median_sq)

    def probe(self, g: np.ndarray, u: np.ndarray, global_model: Model) -> Model:
        """The model an update is judged by: ``g + step * (u - g)``, rounded half up. A step
        below 1 (like FedAvg's share of any one update, or Zeno's step size) asks whether the
        update's direction helps, which skewed (non-IID) updates that overshoot on their own
        still pass; a near-copy of the global model is no direction at all."""
        p, q = self.step.numerator, self.step.denominator
        if p == q:
            return unflatten_like(u, global_model)
        return unflatten_like(g + _half_up_div((u - g) * p, q), global_model)

    def evidence(self, gain: int, correct_gain: int | None, validation: ValidationContext) -> int:
        """An update's weight of evidence: its utility gain, or its gain in correct predictions
        counted at one unit of the utility per prediction, whichever is larger."""
        if correct_gain is None:
            return gain
        return max(gain, correct_gain * validation.unit(self.utility))

    def admits(self, gain: int, correct_gain: int | None, validation: ValidationContext) -> bool:
        """Enough evidence of training: the utility gain passes, or (``or_correct``) the gain in
        correct predictions does."""
        if self.passes(gain, validation, self.utility):
            return True
        return correct_gain is not None and self.passes(correct_gain, validation, "correct")

    def _build(self, g: np.ndarray, global_model: Model, live: list[ClientUpdate],
               gains: dict[str, int], groups: dict[str, tuple[str, ...]]) -> "_Built":
        """Cluster, weigh, clip and combine the accepted players (see the module docstring)."""
        u = (np.stack([flatten(p.model) for p in live]) if live
             else np.zeros((0, g.size), np.int64))
        clusters = cosine_groups(list(u - g), self.cluster_cos)
        reps: list[ClientUpdate] = []
        members: dict[str, tuple[str, ...]] = {}
        shares: dict[str, Fraction] = {}
        notes: dict[str, str] = {}
        for r in sorted(clusters):
            idx = clusters[r]
            # evidence weights (``evidence``), at least 1
            cg = [max(gains[live[i].key], 1) for i in idx]
            ctop = max(cg)
            cw = np.array([max(1, (c << 20) // ctop) for c in cg], dtype=np.int64)
            flat = FedAvg().combine_flat(g, u[idx], cw)
            key = live[idx[0]].key
            reps.append(ClientUpdate(key, unflatten_like(flat, global_model), max(cg)))
            members[key] = tuple(sorted(a for i in idx for a in groups[live[i].key]))
            total = sum(cg)
            for i in idx:
                copies = groups[live[i].key]
                for a in copies:
                    shares[a] = Fraction(max(gains[live[i].key], 1), total * len(copies))
                    if len(idx) > 1:
                        notes[a] = (f"validated: near-duplicate updates (cosine >= "
                                    f"{self.cluster_cos}) are one player with {key}")
        gain_of = {p.key: p.weight for p in reps}
        # Weights: gains rescaled so that the largest is 2**20 (floor, at least 1): the total
        # stays far below FedAvg's 2**31 bound whatever the utility's units.
        top = max((p.weight for p in reps), default=1)
        if self.weighting == "equal":
            reps = [ClientUpdate(p.key, p.model, 1) for p in reps]
        elif self.weighting == "sqrt_gain":
            top = max((math.isqrt(p.weight) for p in reps), default=1)
            reps = [ClientUpdate(p.key, p.model, max(1, (math.isqrt(p.weight) << 20) // top))
                    for p in reps]
        elif self.weighting in ("sqrt_gain_norm", "norm", "root4_gain_norm"):
            sqs = [sq_norm(flatten(p.model) - g) for p in reps]
            msq = (weighted_lower_median(sqs, [gain_of[p.key] for p in reps]) if reps else 0)
            tn = max(math.isqrt(msq), 1)
            raw = [(math.isqrt(p.weight) if self.weighting == "sqrt_gain_norm" else
                    math.isqrt(math.isqrt(p.weight)) if self.weighting == "root4_gain_norm" else 1)
                   * min(math.isqrt(sq), tn) for p, sq in zip(reps, sqs)]
            top = max(max(raw, default=1), 1)
            reps = [ClientUpdate(p.key, p.model, max(1, (r << 20) // top))
                    for p, r in zip(reps, raw)]
        else:
            reps = [ClientUpdate(p.key, p.model, max(1, (p.weight << 20) // top)) for p in reps]
        ru = (np.stack([flatten(p.model) for p in reps]) if reps
              else np.zeros((0, g.size), np.int64))
        rw = np.array([p.weight for p in reps], dtype=np.int64)
        t2 = None
        median_sq = (weighted_lower_median([sq_norm(ru[i] - g) for i in range(len(reps))],
                                           [gain_of[p.key] for p in reps]) if reps else 0)
        model_rows = ru
        if self.clip in ("median", "score") and reps:
            t2 = median_sq
            ru, over = clip_rows(g, ru, t2)
            what = (" delta clipped to the median accepted norm" if self.clip == "median" else
                    " valued at the median accepted norm (its delta is aggregated in full)")
            for i, rep in enumerate(reps):
                if over[i]:
                    for a in members[rep.key]:
                        notes[a] = notes.get(a, "validated:") + what
            reps = [ClientUpdate(p.key, unflatten_like(ru[i], global_model), p.weight)
                    for i, p in enumerate(reps)]
            if self.clip == "median":
                model_rows = ru
        return _Built(reps, members, shares, notes, rw, t2,
                      self.combine_flat(g, model_rows, rw), median_sq)


def collateral_terms(diff: np.ndarray, mask: np.ndarray | None) -> tuple[int, int, int, int]:
    """What ``collateral`` weighs, from one update's per-sample utility change: (change summed
    over the samples of the classes its card declares, their count, change summed over the
    other samples, their count); a card that declares every class (``mask`` None) has no
    other samples."""
    if mask is None:
        return int(diff.sum()), len(diff), 0, 0
    return int(diff[mask].sum()), int(mask.sum()), int(diff[~mask].sum()), int((~mask).sum())


def _above(ratio: Fraction | None, median_sq: int) -> Any:
    """sq -> True when sqrt(sq) > ratio x sqrt(median_sq), exactly (never when ratio is None)."""
    if ratio is None:
        return lambda sq: False
    p, q = ratio.numerator, ratio.denominator
    return lambda sq: sq * q * q > p * p * median_sq


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise StrategyConfigError(f"validated: {field} must be one of {allowed}, got {value!r}")
    return value


@dataclass(frozen=True)
class _Built:
    reps: list[ClientUpdate]
    members: dict[str, tuple[str, ...]]
    shares: dict[str, Fraction]
    notes: dict[str, str]
    rw: np.ndarray
    t2: int | None
    flat: np.ndarray
    median_sq: int


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
    "validated": {"rule", "utility", "min_gain", "cluster_cos", "clip", "or_correct",
                  "second_chance", "step", "max_norm_ratio", "collusion_cos", "weighting",
                  "evidence", "score_utility", "reject_norm_ratio", "collateral", "pay"},
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
        {"rule": "validated", "utility": "margin", "min_gain": [1, 1000], "step": [1, 4],
         "max_norm_ratio": [3, 1], "cluster_cos": [23, 25], "clip": "median",
         "or_correct": true, "second_chance": true,
         "evidence": "all" | "card_classes", "score_utility": "rule",
         "pay": "round" | "value" | "settle"}  # defaults; see Validated
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
    if rule == "validated":
        return Validated(config.get("utility", "margin"),
                         _rational(config.get("min_gain", [1, 1000]), "validated.min_gain"),
                         _rational(config.get("cluster_cos", list(DEFAULT_CLUSTER_COS)),
                                   "validated.cluster_cos"),
                         config.get("clip", "median"), config.get("or_correct", True),
                         config.get("second_chance", True),
                         _rational(config.get("step", [1, 4]), "validated.step"),
                         None if config.get("max_norm_ratio", [3, 1]) is None else
                         _rational(config.get("max_norm_ratio", [3, 1]),
                                   "validated.max_norm_ratio"),
                         None if "collusion_cos" in config and config["collusion_cos"] is None
                         else _rational(config["collusion_cos"], "validated.collusion_cos")
                         if "collusion_cos" in config else DEFAULT_COLLUSION_COS,
                         config.get("weighting", DEFAULT_WEIGHTING),
                         config.get("evidence", DEFAULT_EVIDENCE),
                         config.get("score_utility", DEFAULT_SCORE_UTILITY),
                         None if config.get("reject_norm_ratio") is None else
                         _rational(config["reject_norm_ratio"], "validated.reject_norm_ratio"),
                         None if config.get("collateral") is None else
                         _rational(config["collateral"], "validated.collateral"),
                         config.get("pay", DEFAULT_PAY))
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
