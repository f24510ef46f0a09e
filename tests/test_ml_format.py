"""Arch spec validation and the strict safetensors model/dataset format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.numpy as stn
from hypothesis import given, settings, strategies as st

from dapp.ml.arch import ArchSpec
from dapp.ml.errors import (ArchSpecError, DtypeError, ExtraTensorError, FloatTensorError, HeaderError,
                            MissingTensorError, ModelFormatError, OversizeError, ShapeError, TruncatedError,
                            ValueBoundsError)
from dapp.ml.model_format import (Model, decode_dataset, decode_model, encode_dataset, encode_model,
                                  initial_model, model_hash, zeros_like)
from tests.ml_scenarios import CNN_SPEC, MLP_SPEC

CNN = ArchSpec.from_dict(CNN_SPEC)
MLP = ArchSpec.from_dict(MLP_SPEC)
CAP = 1 << 20


def raw(header: dict, body: bytes) -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + body


def test_arch_round_trip_and_shapes() -> None:
    assert ArchSpec.from_dict(CNN.to_dict()) == CNN
    assert CNN.param_shapes() == [("conv1.bias", (8,)), ("conv1.weight", (8, 1, 3, 3)),
                                  ("fc1.bias", (10,)), ("fc1.weight", (10, 128))]
    assert CNN.param_count() == 1370 and CNN.scale_bits == 16 and CNN.num_classes == 10
    assert CNN.input_shape == (1, 8, 8)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["layers"][4].__setitem__("in_features", 127), "expects [127]"),
    (lambda d: d.__setitem__("num_classes", 9), "num_classes"),
    (lambda d: d["layers"].append({"type": "softmax"}), "unknown layer type"),
    (lambda d: d.__setitem__("scale_bits", 40), "scale_bits"),
    (lambda d: d.__setitem__("extra", 1), "unknown fields"),
    (lambda d: d["layers"][0].__setitem__("name", "Conv"), "name"),
    (lambda d: d["layers"][0].__setitem__("kernel_size", True), "integer"),
    (lambda d: d["layers"][4].__setitem__("name", "conv1"), "duplicate"),
    (lambda d: d.__setitem__("input_shape", [1, 0, 8]), "input_shape"),
])
def test_arch_errors(mutate, words: str) -> None:
    d = json.loads(json.dumps(CNN_SPEC))
    mutate(d)
    with pytest.raises(ArchSpecError, match=words.replace("[", r"\[").replace("]", r"\]")):
        ArchSpec.from_dict(d)


def test_encode_is_canonical_and_library_compatible() -> None:
    m = initial_model(CNN, b"seed")
    b = encode_model(m, CNN)
    assert b == stn.save({k: np.array(v) for k, v in m.items()})  # byte-identical to the library
    assert decode_model(b, CNN, max_bytes=CAP) == m
    assert len(b[8:8 + int.from_bytes(b[:8], "little")]) % 8 == 0
    # Reading the library's own output, in any insertion order.
    lib = stn.save({k: np.array(m[k]) for k in reversed(list(m))})
    assert decode_model(lib, CNN, max_bytes=CAP) == m
    assert model_hash(m) == model_hash(Model(dict(reversed(list(m.items())))))
    assert model_hash(m).hex() == model_hash(decode_model(b, CNN, max_bytes=CAP)).hex()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_model_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = Model({n: rng.integers(-(2**31) + 1, 2**31 - 1, s, dtype=np.int64).astype(np.int32)
               for n, s in MLP.param_shapes()})
    assert decode_model(encode_model(m, MLP), MLP, max_bytes=CAP) == m


def good_tensors() -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in zeros_like(MLP).items()}


def test_float_tensor_rejected() -> None:
    t = good_tensors()
    t["fc1.weight"] = t["fc1.weight"].astype(np.float32)
    with pytest.raises(FloatTensorError, match="fc1.weight.*F32"):
        decode_model(stn.save(t), MLP, max_bytes=CAP)


def test_wrong_int_dtype_rejected() -> None:
    t = good_tensors()
    t["fc1.bias"] = t["fc1.bias"].astype(np.int64)
    with pytest.raises(DtypeError, match="fc1.bias.*I64"):
        decode_model(stn.save(t), MLP, max_bytes=CAP)


def test_wrong_shape_missing_extra() -> None:
    t = good_tensors()
    t["fc2.weight"] = np.zeros((10, 31), np.int32)
    with pytest.raises(ShapeError, match=r"fc2.weight.*\[10, 31\].*\[10, 32\]"):
        decode_model(stn.save(t), MLP, max_bytes=CAP)
    t = good_tensors()
    del t["fc2.bias"]
    with pytest.raises(MissingTensorError, match="fc2.bias"):
        decode_model(stn.save(t), MLP, max_bytes=CAP)
    t = good_tensors()
    t["fc3.bias"] = np.zeros(3, np.int32)
    with pytest.raises(ExtraTensorError, match="fc3.bias"):
        decode_model(stn.save(t), MLP, max_bytes=CAP)


def test_oversize_and_truncated() -> None:
    b = encode_model(zeros_like(MLP), MLP)
    with pytest.raises(OversizeError, match="exceeds the cap"):
        decode_model(b, MLP, max_bytes=len(b) - 1)
    for cut in (3, 8, 20, len(b) - 1):
        with pytest.raises(ModelFormatError):
            decode_model(b[:cut], MLP, max_bytes=CAP)
    with pytest.raises(TruncatedError):
        decode_model(b[:-4], MLP, max_bytes=CAP)
    with pytest.raises(OversizeError, match="header"):
        decode_model((1 << 40).to_bytes(8, "little") + b"{}", MLP, max_bytes=CAP)


def test_header_lies() -> None:
    body = bytes(8)
    base = {"a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},
            "b": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]}}
    arch2 = None  # parse errors come before name checks
    cases = [
        ({**base, "b": {"dtype": "I32", "shape": [2], "data_offsets": [4, 12]}}, TruncatedError, "beyond"),
        ({**base, "b": {"dtype": "I32", "shape": [1], "data_offsets": [2, 6]}}, HeaderError, "overlap"),
        ({**base, "b": {"dtype": "I32", "shape": [2], "data_offsets": [4, 8]}}, HeaderError, "needs 8"),
        ({**base, "b": {"dtype": "I32", "shape": [1], "data_offsets": [8, 4]}}, HeaderError, "increasing"),
        ({"a": base["a"]}, HeaderError, "trailing"),
        ({**base, "b": {"dtype": "I32", "shape": [1]}}, HeaderError, "exactly"),
        ({**base, "b": {"dtype": "I32", "shape": [-1], "data_offsets": [4, 8]}}, HeaderError, "shape"),
    ]
    del arch2
    for header, err, words in cases:
        with pytest.raises(err, match=words):
            decode_model(raw(header, body), MLP, max_bytes=CAP)
        with pytest.raises(err, match=words):  # same lie with extra bytes available
            decode_model(raw(header, body + bytes(4)), MLP, max_bytes=CAP) if err is not TruncatedError \
                else decode_model(raw(header, body), MLP, max_bytes=CAP)
    gap = {"a": base["a"], "b": {"dtype": "I32", "shape": [1], "data_offsets": [8, 12]}}
    with pytest.raises(HeaderError, match="gap of 4 bytes"):
        decode_model(raw(gap, bytes(12)), MLP, max_bytes=CAP)
    with pytest.raises(HeaderError, match="JSON"):
        decode_model((5).to_bytes(8, "little") + b"{nope", MLP, max_bytes=CAP)
    dup = b'{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}'
    with pytest.raises(HeaderError, match="repeats"):
        decode_model(len(dup).to_bytes(8, "little") + dup + bytes(4), MLP, max_bytes=CAP)


def test_value_bounds() -> None:
    t = good_tensors()
    t["fc1.weight"][3, 4] = 70000
    b = stn.save(t)
    assert decode_model(b, MLP, max_bytes=CAP, max_abs=70000)
    with pytest.raises(ValueBoundsError, match="fc1.weight.*70000"):
        decode_model(b, MLP, max_bytes=CAP, max_abs=65536)
    t["fc1.weight"][3, 4] = -(2**31)
    with pytest.raises(ValueBoundsError):
        decode_model(stn.save(t), MLP, max_bytes=CAP)


def test_dataset_round_trip_and_errors() -> None:
    x = np.arange(3 * 64, dtype=np.int32).reshape(3, 1, 8, 8)
    y = np.array([0, 9, 4], np.int32)
    xd, yd = decode_dataset(encode_dataset(x, y), CNN, max_samples=3)
    assert np.array_equal(xd, x) and np.array_equal(yd, y)
    with pytest.raises(ShapeError, match="1 <= N <= 2"):
        decode_dataset(encode_dataset(x, y), CNN, max_samples=2)
    with pytest.raises(ValueBoundsError, match="labels"):
        decode_dataset(encode_dataset(x, np.array([0, 10, 1], np.int32)), CNN, max_samples=3)
    with pytest.raises(ShapeError):
        decode_dataset(encode_dataset(x.reshape(3, 64), y), CNN, max_samples=3)
    with pytest.raises(FloatTensorError):
        decode_dataset(stn.save({"x": x.astype(np.float32), "y": y}), CNN, max_samples=3)
