"""Canonical JSON: the byte form of every notice and every inspect answer.

Sorted keys, no whitespace, UTF-8, and no floats anywhere (a float's text form is not a promise
of its value across machines): rationals travel as "p/q" strings, wei as decimal strings.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any


class CanonicalJsonError(TypeError):
    """A value that has no canonical JSON form (a float, a set, ...)."""


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return
    if isinstance(value, float):
        raise CanonicalJsonError(f"float at {path or '$'}: use an integer or a 'p/q' string")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CanonicalJsonError(f"non-string key {k!r} at {path or '$'}")
            _check(v, f"{path}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check(v, f"{path}[{i}]")
        return
    raise CanonicalJsonError(f"{type(value).__name__} at {path or '$'} has no JSON form")


def dumps(value: Any) -> bytes:
    _check(value, "")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fraction_str(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def parse_fraction(text: str) -> Fraction:
    """Parse "p/q" or "p" strictly (no floats, no exponent)."""
    num, _, den = text.partition("/")
    try:
        result = Fraction(int(num), int(den) if den else 1)
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"{text!r} is not a rational 'p/q'") from exc
    return result
