"""Split a round's budget in integer wei by positive contribution.

Declared rule: only strictly positive scores are paid; key k receives
``floor(budget * s_k / S)`` with ``S`` the sum of positive scores (exact rational arithmetic);
every other key receives 0. The remainder ``budget - sum(payouts)`` (at most one wei per paid key,
or the whole budget when nobody scored positive) goes back to the job's escrow, i.e. stays the
owner's (the market books it). Invariant: ``sum(payouts) + remainder == budget`` exactly.

``pay_at_price`` is the same split at a job's fixed price per unit of value (``pay: "value"``
and ``"settle"``): a round pays what its value is worth at that price, at most its budget, and
carries the rest. ``settle_to_value`` is ``pay: "settle"``'s end of a job: what is left tops every
earner up towards its share of the value created over the whole job; ``split_whole`` pays a
job's end (every wei, the dust to the largest share).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

from .errors import RewardError


@dataclass(frozen=True)
class RewardSplit:
    payouts: dict[str, int]
    remainder: int


def _checked(budget_wei: int, scores: Mapping[str, Fraction | int]) -> dict[str, Fraction]:
    """The scores as Fractions in key order, after checking the budget and every entry."""
    if isinstance(budget_wei, bool) or not isinstance(budget_wei, int) or budget_wei < 0:
        raise RewardError(f"budget must be a non-negative integer of wei, got {budget_wei!r}")
    clean: dict[str, Fraction] = {}
    for k in sorted(scores):
        v = scores[k]
        if not isinstance(k, str):
            raise RewardError(f"score keys must be strings, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, Fraction)):
            raise RewardError(f"score of {k!r} must be an int or Fraction, got {type(v).__name__}")
        clean[k] = Fraction(v)
    return clean


def split_reward(budget_wei: int, scores: Mapping[str, Fraction | int]) -> RewardSplit:
    clean = _checked(budget_wei, scores)
    total = sum((v for v in clean.values() if v > 0), Fraction(0))
    payouts: dict[str, int] = {}
    for k, v in clean.items():
        if v > 0:
            q = budget_wei * v / total
            payouts[k] = q.numerator // q.denominator
        else:
            payouts[k] = 0
    paid = sum(payouts.values())
    return RewardSplit(payouts, budget_wei - paid)


def pay_at_price(budget_wei: int, scores: Mapping[str, Fraction | int],
                 price: Fraction) -> RewardSplit:
    """A job's ``pay: "value"`` rule for every round after the one that set its price: key k
    receives ``floor(price * s_k)`` wei for ``s_k > 0`` (``price`` in wei per unit of value), so
    equal value earns equal wei in every round; when that would pay more than ``budget_wei``,
    the budget is split as ``split_reward`` does (what the round has is what it pays). The
    remainder carries, like ``split_reward``'s."""
    if not isinstance(price, Fraction) or price <= 0:
        raise RewardError(f"price must be a positive Fraction, got {price!r}")
    at_price = {k: (price * v).__floor__() if v > 0 else 0
                for k, v in _checked(budget_wei, scores).items()}
    paid = sum(at_price.values())
    if paid > budget_wei:
        return split_reward(budget_wei, scores)
    return RewardSplit(at_price, budget_wei - paid)


def settle_to_value(amount: int, value: Mapping[str, int], paid: Mapping[str, int]) -> dict[str, int]:
    """``pay: "settle"``'s end of a job: ``amount`` (what is left of the escrow) tops earners up
    towards their share of the value they created. The pot is ``amount`` plus everything the
    job already paid; address a's target is ``pot * value_a / sum(value)``; its deficit is its
    target less what it was paid, never below 0 (nothing is clawed back). ``amount`` is split
    pro rata to the deficits (floor; the dust to the largest deficit, ties to the smallest
    address). The deficits add up to at least ``amount``, so nobody is paid above its target
    but for that dust; when nobody was paid above its target before, every earner ends with
    its target (within a wei) and the job's pay is proportional to value. {} when there is
    nothing to settle (no amount, or no value)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise RewardError(f"amount must be a non-negative integer of wei, got {amount!r}")
    for name, table in (("value", value), ("paid", paid)):
        for k, v in table.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise RewardError(f"{name} of {k!r} must be a non-negative int, got {v!r}")
    total = sum(value.values())
    if amount == 0 or total == 0:
        return {}
    pot = amount + sum(paid.values())
    deficits = {a: max(Fraction(pot * v, total) - paid.get(a, 0), Fraction(0))
                for a, v in sorted(value.items()) if v > 0}
    return split_whole(amount, deficits)


def split_whole(amount: int, weights: Mapping[str, Fraction | int]) -> dict[str, int]:
    """``amount`` pro rata to the positive weights, ``split_reward``'s floor, with its rounding
    dust to the largest weight (ties: the smallest key), so every wei is paid: a job's end
    (``settle_to_value``'s shortfalls, or what each address earned). Only positive shares are
    listed; {} when no weight is positive."""
    split = split_reward(amount, weights)
    positive = {k: v for k, v in weights.items() if v > 0}
    if not positive:
        return {}
    out = dict(split.payouts)
    out[min(positive, key=lambda k: (-positive[k], k))] += split.remainder
    return {k: v for k, v in out.items() if v > 0}
