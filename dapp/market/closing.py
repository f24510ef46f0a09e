"""Closing a round: the one place where the market decides who is paid what.

Given the round's validated updates and (when the owner revealed it) the validation shard:
1. the job's aggregation rule filters outliers and aggregates the rest;
2. each accepted update's contribution is its Shapley value (or leave-one-out) for the utility
   "correct predictions of the aggregate on the shard"; identical updates are one player whose
   value is shared, so splitting an update over several addresses earns nothing more;
3. the round's budget is split pro rata over positive contributions in integer wei (floor); the
   rest of the budget carries to the next round, and after the last round back to the owner;
4. without a shard (the owner withheld it) the spec's fallback pays the whole budget equally
   over the accepted distinct updates: withholding never saves the owner money;
5. hyper-parameters for the next round follow the spec's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from dapp.canonical import fraction_str
from dapp.market.spec import JobSpec
from dapp.market.state import Job, Round
from dapp.ml.aggregation import ClientUpdate, build_strategy
from dapp.ml.contribution import score_round
from dapp.ml.errors import InferenceOverflowError
from dapp.ml.hparams import next_hparams
from dapp.ml.inference import count_correct
from dapp.ml.model_format import Model
from dapp.ml.randomness import KeccakStream, seed_from
from dapp.ml.rewards import split_reward


@dataclass(frozen=True)
class RoundResult:
    model: Model
    payouts: dict[str, int]
    carried: int
    accuracy: tuple[int, int] | None
    hparams: dict[str, Any]
    trainers: list[dict[str, Any]]
    fallback: bool


def _equal_shares_by_update(accepted: list[str], hashes: dict[str, str]) -> dict[str, Fraction]:
    """Fallback scores: one share per distinct update, divided among the addresses that sent it."""
    by_hash: dict[str, list[str]] = {}
    for key in accepted:
        by_hash.setdefault(hashes[key], []).append(key)
    return {k: Fraction(1, len(ks)) for ks in by_hash.values() for k in ks}


def close_round(spec: JobSpec, job: Job, rnd: Round, global_model: Model,
                updates: dict[str, Model], shard: tuple[np.ndarray, np.ndarray] | None
                ) -> RoundResult:
    keys = sorted(updates)
    hashes = {k: rnd.reveals[k].model_hash for k in keys}
    overflowing: dict[str, str] = {}
    if shard is not None:
        # An update whose own integer inference overflows on the shard cannot be scored: it is
        # rejected before aggregation, so one hostile update cannot block the round.
        for k in keys:
            try:
                count_correct(spec.arch, updates[k], shard[0], shard[1])
            except InferenceOverflowError as exc:
                overflowing[k] = f"inference overflows on the validation shard: {exc}"
    client_updates = [ClientUpdate(k, updates[k], rnd.reveals[k].weight)
                      for k in keys if k not in overflowing]
    strategy = build_strategy(spec.aggregation)

    if client_updates:
        agg = strategy.aggregate(global_model, client_updates)
        accepted, rejected, new_model = list(agg.accepted), dict(agg.rejected), agg.model
    else:
        accepted, rejected, new_model = [], {}, global_model
    rejected.update(overflowing)

    seed = seed_from(b"tributary/contribution", job.id.to_bytes(32, "big"),
                     rnd.index.to_bytes(32, "big"),
                     *[bytes.fromhex(hashes[k][2:]) for k in keys])
    accuracy = None
    fallback = shard is None
    scores: dict[str, Fraction] = {}
    if accepted and shard is not None:
        try:
            scores = score_round(strategy, spec.arch, global_model, client_updates, agg,
                                 shard[0], shard[1], spec.contribution, KeccakStream(seed))
            accuracy = (count_correct(spec.arch, new_model, shard[0], shard[1]),
                        int(len(shard[1])))
        except InferenceOverflowError:
            # Declared rule: a round whose aggregates cannot be scored in int64 pays like a
            # round without a shard, so the round still closes and pays in full.
            fallback, scores = True, {}
    elif shard is not None:
        try:
            accuracy = (count_correct(spec.arch, new_model, shard[0], shard[1]),
                        int(len(shard[1])))
        except InferenceOverflowError:
            accuracy = None
    if accepted and fallback:
        scores = _equal_shares_by_update(accepted, hashes)

    split = split_reward(rnd.budget, scores)
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
            if addr in accepted:
                entry.update(verdict="accepted",
                             contribution=fraction_str(scores.get(addr, Fraction(0))),
                             reward=str(split.payouts.get(addr, 0)))
            else:
                entry.update(verdict="rejected", reason=rejected.get(addr, "rejected"),
                             reward="0")
        trainers.append(entry)
    return RoundResult(model=new_model, payouts=dict(split.payouts), carried=split.remainder,
                       accuracy=accuracy, hparams=hparams, trainers=trainers, fallback=fallback)
