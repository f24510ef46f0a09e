"""Typed errors of the ML core.

Every error carries the context a report needs (which tensor, which bound, which value), so
the market can turn it into a one-line reason without parsing strings.
"""

from __future__ import annotations


class MLError(Exception):
    """Base of every error raised by ``dapp.ml``."""


class ArchSpecError(MLError):
    """The architecture spec is not valid (shape mismatch, unknown layer, bad field)."""


class ModelFormatError(MLError):
    """A model or dataset file cannot be accepted."""


class OversizeError(ModelFormatError):
    """The file (or its header) is larger than the cap the caller set."""


class TruncatedError(ModelFormatError):
    """The file ends before the bytes its header declares."""


class HeaderError(ModelFormatError):
    """The safetensors header is malformed or lies about offsets/sizes."""


class DtypeError(ModelFormatError):
    """A tensor has a dtype other than the declared one."""


class FloatTensorError(DtypeError):
    """A float tensor was supplied where int32 fixed point is declared."""


class ShapeError(ModelFormatError):
    """A tensor's shape differs from the spec."""


class MissingTensorError(ModelFormatError):
    """A tensor the spec requires is absent."""


class ExtraTensorError(ModelFormatError):
    """A tensor the spec does not declare is present."""


class ValueBoundsError(ModelFormatError):
    """A value lies outside the allowed range."""


class FixedPointError(MLError):
    """A float cannot be represented in the declared fixed point (NaN, inf, out of range)."""


class InferenceOverflowError(MLError):
    """The int64 accumulator bound of a layer cannot be proven; the input is refused, never wrapped."""


class AggregationError(MLError):
    """Aggregation inputs or strategy configuration are invalid."""


class StrategyConfigError(AggregationError):
    """The aggregation section of the job spec is invalid."""


class ContributionError(MLError):
    """Contribution method configuration or inputs are invalid."""


class RewardError(MLError):
    """Reward split inputs are invalid."""


class HParamsError(MLError):
    """Hyper-parameter configuration or state is invalid."""
