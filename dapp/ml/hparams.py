"""Hyper-parameters between rounds, in integers and rationals.

The job spec's ``hparams`` section::

    {"learning_rate": [1, 20], "local_epochs": 2, "batch_size": 32,
     "schedule": {"type": "plateau", "patience": 1, "min_delta": 1,
                  "factor": [1, 2], "min_lr": [1, 1000]}}

``schedule`` is ``{"type": "constant"}`` or ``plateau`` (reduce on plateau). Declared plateau rule,
applied after each round with the history of that round's validation scores (correct predictions,
or any integers/Fractions the market compares across rounds): the round *improves* when its score
is at least ``min_delta`` above the best earlier score (the first round always improves). Each
non-improving round adds one to ``plateau_rounds``; when it reaches ``patience`` the learning
rate becomes ``max(lr * factor, min_lr)`` and the counter resets; an improving round resets it.
Learning rates are exact fractions, serialised as ``[numerator, denominator]`` in lowest terms.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Mapping, Sequence

from .errors import HParamsError


def _frac(v: Any, where: str, *, positive: bool = True) -> Fraction:
    if (not isinstance(v, list) or len(v) != 2
            or any(isinstance(x, bool) or not isinstance(x, int) for x in v) or v[1] <= 0):
        raise HParamsError(f"{where} must be [numerator, denominator] integers, got {v!r}")
    f = Fraction(v[0], v[1])
    if positive and f <= 0:
        raise HParamsError(f"{where} must be positive, got {f}")
    return f


def _int(c: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = c.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise HParamsError(f"{key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _ser(f: Fraction) -> list[int]:
    return [f.numerator, f.denominator]


def parse_config(config: Any) -> dict[str, Any]:
    """Validate the spec's hparams section; returns a normalised copy."""
    if not isinstance(config, Mapping):
        raise HParamsError("hparams config must be an object")
    extra = sorted(set(config) - {"learning_rate", "local_epochs", "batch_size", "schedule"})
    if extra:
        raise HParamsError(f"hparams: unknown fields {extra}")
    lr = _frac(config.get("learning_rate"), "learning_rate")
    out: dict[str, Any] = {"learning_rate": _ser(lr), "local_epochs": _int(config, "local_epochs", 1, 1000),
                           "batch_size": _int(config, "batch_size", 1, 1 << 20)}
    sch = config.get("schedule", {"type": "constant"})
    if not isinstance(sch, Mapping):
        raise HParamsError("schedule must be an object")
    if sch.get("type") == "constant":
        if set(sch) != {"type"}:
            raise HParamsError("constant schedule takes no fields")
        out["schedule"] = {"type": "constant"}
    elif sch.get("type") == "plateau":
        extra = sorted(set(sch) - {"type", "patience", "min_delta", "factor", "min_lr"})
        if extra:
            raise HParamsError(f"plateau schedule: unknown fields {extra}")
        factor = _frac(sch.get("factor"), "factor")
        if factor >= 1:
            raise HParamsError(f"factor {factor} must be below 1")
        out["schedule"] = {"type": "plateau", "patience": _int(sch, "patience", 1, 1000, 1),
                           "min_delta": _int(sch, "min_delta", 0, 1 << 32, 1),
                           "factor": _ser(factor),
                           "min_lr": _ser(_frac(sch.get("min_lr", [0, 1]), "min_lr", positive=False))}
    else:
        raise HParamsError(f"unknown schedule type {sch.get('type')!r} (known: constant, plateau)")
    return out


def initial_hparams(config: Any) -> dict[str, Any]:
    """The round-0 state: the spec's values plus the plateau counter."""
    c = parse_config(config)
    return {"learning_rate": c["learning_rate"], "local_epochs": c["local_epochs"],
            "batch_size": c["batch_size"], "plateau_rounds": 0}


def next_hparams(config: Any, current: Mapping[str, Any],
                 accuracy_history: Sequence[int | Fraction]) -> dict[str, Any]:
    """State for the next round, given every round's score so far (the last one is this round's)."""
    c = parse_config(config)
    lr = _frac(current.get("learning_rate"), "current learning_rate")
    plateau = _int(current, "plateau_rounds", 0, 1 << 30, 0)
    hist = list(accuracy_history)
    if any(isinstance(h, bool) or not isinstance(h, (int, Fraction)) for h in hist):
        raise HParamsError("accuracy history must hold integers or Fractions")
    sch = c["schedule"]
    if sch["type"] == "plateau" and hist:
        improved = len(hist) == 1 or hist[-1] >= max(hist[:-1]) + sch["min_delta"]
        plateau = 0 if improved else plateau + 1
        if plateau >= sch["patience"]:
            lr = max(lr * Fraction(*sch["factor"]), Fraction(*sch["min_lr"]))
            plateau = 0
    return {"learning_rate": _ser(lr), "local_epochs": current.get("local_epochs", c["local_epochs"]),
            "batch_size": current.get("batch_size", c["batch_size"]), "plateau_rounds": plateau}
