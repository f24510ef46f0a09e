"""Fixed-point conversion: declared rounding, no silent saturation, PyTorch round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dapp.ml.errors import FixedPointError
from dapp.ml.fixedpoint import dequantize, from_torch_state_dict, quantize, rescale, to_torch_state_dict
from dapp.ml.arch import ArchSpec
from dapp.ml.model_format import initial_model
from tests.ml_scenarios import CNN_SPEC


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**31) + 1, 2**31 - 1), st.integers(0, 24))
def test_int_round_trip(q: int, s: int) -> None:
    assert int(quantize(dequantize(np.array([q]), s), s)[0]) == q


@settings(max_examples=200, deadline=None)
@given(st.floats(-1000, 1000, allow_nan=False), st.integers(0, 20))
def test_float_round_trip_error_at_most_half_ulp(x: float, s: int) -> None:
    q = int(quantize(np.array([x]), s)[0])
    assert abs(dequantize(np.array([q]), s)[0] - x) <= 2.0 ** -(s + 1)


def test_rounding_half_away_from_zero() -> None:
    assert quantize(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994]), 0).tolist() == [1, 2, 3, -1, -3, 0]


def test_out_of_range_and_nonfinite_raise() -> None:
    with pytest.raises(FixedPointError, match="does not fit"):
        quantize(np.array([40000.0]), 16)
    with pytest.raises(FixedPointError, match="NaN"):
        quantize(np.array([np.nan]), 16)
    with pytest.raises(FixedPointError):
        quantize(np.array([-np.inf]), 4)
    assert int(quantize(np.array([-(2.0**31 - 1)]), 0)[0]) == -(2**31 - 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**61), 2**61), st.integers(1, 30))
def test_rescale_is_round_half_up(acc: int, s: int) -> None:
    got = int(rescale(np.array([acc], np.int64), s)[0])
    assert got == (2 * acc + (1 << s)) // (2 << s)


def test_torch_state_dict_round_trip() -> None:
    arch = ArchSpec.from_dict(CNN_SPEC)
    m = initial_model(arch, b"t")
    sd = to_torch_state_dict(m, arch)
    assert sorted(sd) == sorted(m)
    assert from_torch_state_dict(sd, arch) == m
