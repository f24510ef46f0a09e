"""Closing a round: the one place where the market decides who is paid what.

Data: the job's *public* shard (fixed in the spec, fetched when the job opened, inspectable by
every trainer before joining) and the round's *secret* shard when the owner revealed it. The
round is scored on their union ("scoring set"); a withheld secret shard only leaves the public
one, which the owner can no longer change.

1. The job's aggregation rule filters and aggregates. The ``validated`` rule (the template's)
   gates each update on the public shard alone (see ``dapp.ml.aggregation.Validated``), merges
   near-duplicates into one player and clips; other rules run as declared. It is handed each
   address's declared sample count (its data card) so that near-identical updates under cards
   that claim different data are rejected as colluding: one update cannot be the training
   result of several different datasets, so such a group is paid nothing, while one trainer's
   work split over identities under one card stays one player paid once.
2. Each accepted player's contribution is its Shapley value (or leave-one-out) for "correct
   predictions of the aggregate on the scoring set" (``validated``: its ``score_utility``, by
   default the gate's margin); copies share their player's value (``validated``: pro rata to
   their validation gains).
3. The round's budget is split pro rata over positive contributions in integer wei (floor).
   ``validated`` declares more steps so that accepted work is always paid: when no player
   scores positive on the scoring set, the public shard alone decides, then correct
   predictions on each; when none scores positive anywhere, each cluster counts its
   validation gain. The budget carries to the next round only when no update was accepted
   (plus the floor remainder). Under ``validated``'s ``pay: "value"`` the first round valued
   in the rule's score utility sets the job's price (its budget over its total positive value)
   and every later such round pays each contribution at that price, at most its budget
   (``pay_at_price``), carrying the rest: later rounds create less value, and split per round
   their noisy shares weighed as much as the first rounds' signal. ``pay: "settle"`` (the
   template's) pays at the same price at most ``ADVANCE`` (half) of each such round's budget,
   the price-setting round included, and reports the value each address created, which the
   job's end settles to (``dapp.ml.rewards.settle_to_value``, in ``dapp.market.app``).
4. Without any shard (legacy spec without a public shard, secret withheld) the spec's fallback
   pays the budget equally over the accepted distinct updates.
5. Hyper-parameters for the next round follow the spec's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from dapp.canonical import fraction_str, parse_fraction
from dapp.market.spec import JobSpec
from dapp.market.state import Job, Round
from dapp.ml.aggregation import (ClientUpdate, Validated, ValidatedResult, ValidationContext,
                                 build_strategy, flatten, unflatten_like)
from dapp.ml.contribution import contributions, score_round
from dapp.ml.errors import InferenceOverflowError
from dapp.ml.hparams import next_hparams
from dapp.ml.inference import count_correct
from dapp.ml.model_format import Model
from dapp.ml.randomness import KeccakStream, seed_from
from dapp.ml.rewards import pay_at_price, split_reward

PRICE_UNIT = 1 << 128
"""A job's price is rounded down to a multiple of 1 / PRICE_UNIT wei per unit of value."""
ADVANCE = Fraction(1, 2)
"""``pay: "settle"``: the most of its budget a round valued in the score utility pays before the
job ends (floor of that share of the round's budget, carry-overs included)."""


@dataclass(frozen=True)
class RoundResult:
    model: Model
    payouts: dict[str, int]
    carried: int
    accuracy: tuple[int, int] | None
    hparams: dict[str, Any]
    trainers: list[dict[str, Any]]
    fallback: bool
    scoring: str = "shapley"
    """How contributions were measured: "secret+public", "public" (the secret shard was withheld
    or nobody scored positive on the union), "gain" or "equal" (declared fallbacks), or
    "secret" (legacy spec without a public shard)."""
    price: Fraction | None = None
    """The job's price per unit of value after this round (``pay: "value"`` or ``"settle"``),
    else None."""
    advance: Fraction | None = None
    """``pay: "settle"`` jobs: the most of a priced round's budget it pays before the job ends
    (``ADVANCE``), else None."""
    value: dict[str, int] = field(default_factory=dict)
    """``pay: "settle"``: the value each address created in this round (whole units of the
    score utility, floor; rounds valued by a fallback create none), what the job's end settles
    to."""


def _equal_shares_by_update(accepted: list[str], hashes: dict[str, str]) -> dict[str, Fraction]:
    """Fallback scores: one share per distinct update, divided among the addresses that sent it."""
    by_hash: dict[str, list[str]] = {}
    for key in accepted:
        by_hash.setdefault(hashes[key], []).append(key)
    return {k: Fraction(1, len(ks)) for ks in by_hash.values() for k in ks}


Shard = tuple[np.ndarray, np.ndarray]


def scoring_set(public: Shard | None, secret: Shard | None) -> Shard | None:
    """The data a round is scored on: the public shard followed by the secret one."""
    parts = [s for s in (public, secret) if s is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([np.asarray(p[0]) for p in parts]),
            np.concatenate([np.asarray(p[1]) for p in parts]))


def _cluster_values(spec: JobSpec, strategy: Validated, utility_name: str, global_model: Model,
                    agg: ValidatedResult, data: Shard, seed: bytes,
                    method: dict[str, Any] | None = None) -> dict[str, Fraction]:
    """Each cluster's contribution (the spec's method: Shapley exact/sampled or leave-one-out)
    for U(S) = ``utility_name`` on ``data`` of the gain-weighted FedAvg of the clusters in S
    (their clipped models, as aggregated)."""
    ctx = ValidationContext(spec.arch, data[0], data[1])
    players = sorted(agg.players, key=lambda p: p.key)
    index = {p.key: i for i, p in enumerate(players)}
    g = flatten(global_model)
    u = np.stack([flatten(p.model) for p in players])
    w = np.array([p.weight for p in players], dtype=np.int64)

    def utility(coalition: tuple[str, ...]) -> int:
        idx = sorted(index[k] for k in coalition)
        return ctx.utility(utility_name,
                           unflatten_like(strategy.combine_flat(g, u[idx], w[idx]), global_model))

    return contributions(method or spec.contribution, list(index), utility, KeccakStream(seed))


def _score_validated(spec: JobSpec, strategy: Validated, global_model: Model,
                     agg: ValidatedResult, data: Shard, public: Shard, seed: bytes
                     ) -> tuple[dict[str, Fraction], str, bool]:
    """Cluster values times each member's share. Declared order, first one where some cluster
    scores positive: the rule's score utility (``score_utility``; by default the gate's) on the
    scoring set (the spec's contribution method),
    then, by leave-one-out, on the public shard alone, then correct predictions on the scoring
    set, then on the public shard; else each cluster's evidence weight (its largest member
    gain, at least 1). The flag: the values are the first pass's (the spec's method in the score
    utility), the only ones ``pay: "value"`` prices; the fallbacks are other measures."""
    if not agg.players:
        return {}, "none", False
    shards = [(data, "secret+public" if data is not public else "public")]
    if data is not public:
        shards.append((public, "public"))
    score = strategy.score_utility
    names = [score] + (["correct"] if score != "correct" else [])
    first = primary = True
    for name in names:
        for shard, where in shards:
            # The first pass uses the spec's method; the declared fallback passes use
            # leave-one-out, so their worst case stays a small part of the round's cost budget
            # (dapp/market/cost.py).
            vals = _cluster_values(spec, strategy, name, global_model, agg, shard, seed,
                                   None if first else {"method": "loo"})
            primary, first = first, False
            if any(v > 0 for v in vals.values()):
                how = where if name == score else f"{where} (correct)"
                break
        else:
            continue
        break
    else:
        vals = {rep: Fraction(max(max(agg.gains[a] for a in ms), 1))
                for rep, ms in agg.members.items()}
        how, primary = "gain", False
    scores = {a: vals.get(rep, Fraction(0)) * agg.shares[a]
              for rep, ms in agg.members.items() for a in ms}
    return dict(sorted(scores.items())), how, primary


def close_round(spec: JobSpec, job: Job, rnd: Round, global_model: Model,
                updates: dict[str, Model], shard: Shard | None,
                public: Shard | None = None) -> RoundResult:
    """Decide the round. ``shard`` is the revealed secret shard (None when withheld),
    ``public`` the job's public shard (None for a legacy spec without one)."""
    keys = sorted(updates)
    hashes = {k: rnd.reveals[k].model_hash for k in keys}
    data = scoring_set(public, shard)
    overflowing: dict[str, str] = {}
    if data is not None:
        # An update whose own integer inference overflows on the scoring data cannot be scored:
        # it is rejected before aggregation, so one hostile update cannot block the round.
        for k in keys:
            try:
                count_correct(spec.arch, updates[k], data[0], data[1])
            except InferenceOverflowError as exc:
                overflowing[k] = f"inference overflows on the validation shard: {exc}"
    live = [k for k in keys if k not in overflowing]
    client_updates = [ClientUpdate(k, updates[k], rnd.reveals[k].weight) for k in live]
    strategy = build_strategy(spec.aggregation)
    validated = strategy.rule == "validated"
    if validated and public is None:
        raise ValueError("the validated rule needs the job's public shard (the spec parser "
                         "refuses such a spec, so this is a bug)")

    if client_updates:
        ctx = ValidationContext(spec.arch, public[0], public[1]) if validated and public else None
        if validated:
            # Each address's data card (its declared sample count) lets the rule tell one
            # trainer's work split over identities (same card) from colluders (different cards);
            # its label histogram names the classes its update is judged on (``card_classes``).
            agg = strategy.aggregate(global_model, client_updates, validation=ctx,
                                     claims={k: rnd.reveals[k].num_samples for k in live},
                                     histograms={k: rnd.reveals[k].histogram for k in live})
        else:
            agg = strategy.aggregate(global_model, client_updates, validation=ctx)
        accepted, rejected, new_model = list(agg.accepted), dict(agg.rejected), agg.model
    else:
        accepted, rejected, new_model = [], {}, global_model
    rejected.update(overflowing)

    seed = seed_from(b"tributary/contribution", job.id.to_bytes(32, "big"),
                     rnd.index.to_bytes(32, "big"),
                     *[bytes.fromhex(hashes[k][2:]) for k in keys])
    accuracy = None
    fallback = shard is None
    scoring = "secret" if public is None else ("secret+public" if shard is not None else "public")
    scores: dict[str, Fraction] = {}
    primary = False   # scores are the validated rule's first pass (what pay "value" prices)
    if accepted and data is not None:
        try:
            if validated:
                assert isinstance(agg, ValidatedResult) and isinstance(strategy, Validated)
                assert public is not None
                scores, scoring, primary = _score_validated(spec, strategy, global_model, agg,
                                                            data, public, seed)
            else:
                scores = score_round(strategy, spec.arch, global_model, client_updates, agg,
                                     data[0], data[1], spec.contribution, KeccakStream(seed))
            accuracy = (count_correct(spec.arch, new_model, data[0], data[1]),
                        int(len(data[1])))
        except InferenceOverflowError:
            # Declared rule: a round whose aggregates cannot be scored in int64 pays like a
            # round without a shard, so the round still closes and pays in full.
            fallback, scores, primary = True, {}, False
    elif data is not None:
        try:
            accuracy = (count_correct(spec.arch, new_model, data[0], data[1]),
                        int(len(data[1])))
        except InferenceOverflowError:
            accuracy = None
    if accepted and not scores:
        scores, scoring, primary = _equal_shares_by_update(accepted, hashes), "equal", False

    price = parse_fraction(job.price) if job.price else None
    pay = strategy.pay if isinstance(strategy, Validated) else "round"
    priced = primary and pay in ("value", "settle")
    value = sum((v for v in scores.values() if v > 0), Fraction(0))
    if priced and price is None and value > 0:
        # Declared rounding: down to a multiple of 2**-128 wei, so the stored price stays a
        # short "p/q" whatever the shares' denominators.
        price = Fraction((Fraction(rnd.budget) / value * PRICE_UNIT).__floor__(), PRICE_UNIT)
        price = price if price > 0 else None
    # ``settle``: a priced round pays at most ADVANCE of its budget before the job ends (the
    # round that sets the price among them); the rest waits for the end, which settles
    # everyone to the value they created.
    spendable = (rnd.budget * ADVANCE.numerator // ADVANCE.denominator
                 if priced and pay == "settle" else rnd.budget)
    if priced and price is not None and (job.price or pay == "settle"):
        split = pay_at_price(spendable, scores, price)
    else:
        split = split_reward(spendable, scores)
    # Declared rounding: a round's value counts in whole units of the score utility (floor).
    created = ({a: v.__floor__() for a, v in scores.items() if v >= 1}
               if priced and pay == "settle" else {})
    history = job.accuracy_history + ([accuracy[0]] if accuracy else [])
    hparams = next_hparams(spec.hparams, job.hparams, history)

    trainers = []
    for addr in sorted(set(rnd.commits) | set(rnd.reveals)):
        entry: dict[str, Any] = {"address": addr}
        if addr not in rnd.reveals:
            entry.update(verdict="no reveal", reward="0")
        else:
            sub = rnd.reveals[addr]
            entry.update(model_cid=sub.model_cid, data_cid=sub.data_cid,
                         model_hash=sub.model_hash, weight=sub.weight)
            if validated and client_updates and isinstance(agg, ValidatedResult) \
                    and addr in agg.gains:
                entry["gain"] = agg.gains[addr]
            if addr in accepted:
                entry.update(verdict="accepted",
                             contribution=fraction_str(scores.get(addr, Fraction(0))),
                             reward=str(split.payouts.get(addr, 0)))
                if validated and addr in agg.notes:
                    entry["note"] = agg.notes[addr]
            else:
                entry.update(verdict="rejected", reason=rejected.get(addr, "rejected"),
                             reward="0")
        trainers.append(entry)
    return RoundResult(model=new_model, payouts=dict(split.payouts),
                       carried=split.remainder + rnd.budget - spendable,
                       accuracy=accuracy, hparams=hparams, trainers=trainers, fallback=fallback,
                       scoring=scoring, price=price, value=created,
                       advance=ADVANCE if pay == "settle" else None)
