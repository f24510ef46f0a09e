"""Models and datasets as safetensors of int32 fixed point, parsed strictly and written canonically.

Decoding is our own strict parser, not the safetensors library: the library is lenient where a
market must not be (it accepts float tensors, any names, trailing junk), and its error messages
are not ours to type. The bytes we write are ordinary safetensors (the library reads them; a test
proves it), in one canonical form so that the same model gives the same bytes on every machine:

* 8-byte little-endian header length N, then N bytes of JSON, then the data;
* the JSON is ``{"<name>":{"dtype":"I32","shape":[...],"data_offsets":[b,e]},...}`` with names
  sorted, inner keys in that order, no ``__metadata__``, separators ``,`` and ``:`` without spaces, ASCII only, padded
  with spaces to a multiple of 8 bytes (what the safetensors library does);
* tensors laid out in sorted-name order, contiguous, little-endian int32, no trailing bytes.

Accepted on input: any valid safetensors whose tensors are exactly the declared ones, int32,
with offsets that tile the data region exactly (no gaps, no overlaps, no trailing bytes);
``__metadata__`` (a str -> str object) is allowed and ignored.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

import numpy as np

from .arch import ArchSpec
from .errors import (DtypeError, ExtraTensorError, FloatTensorError, HeaderError,
                     MissingTensorError, ModelFormatError, OversizeError, ShapeError,
                     TruncatedError, ValueBoundsError)
from dapp.hashing import keccak

from .randomness import KeccakStream

INT32_MAX = (1 << 31) - 1
#: Default bound on |value|: int32 without INT32_MIN, so that negation never wraps.
DEFAULT_MAX_ABS = INT32_MAX
MAX_HEADER_BYTES = 1 << 20

_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}
_KNOWN_DTYPES = _FLOAT_DTYPES | {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64"}


class Model(Mapping[str, np.ndarray]):
    """An immutable mapping name -> read-only int32 array, iterated in sorted name order."""

    __slots__ = ("_t",)

    def __init__(self, tensors: Mapping[str, np.ndarray]) -> None:
        t: dict[str, np.ndarray] = {}
        for name in sorted(tensors):
            a = np.asarray(tensors[name])
            if a.dtype != np.int32:
                raise DtypeError(f"tensor {name!r}: dtype {a.dtype} where int32 is required")
            a = np.ascontiguousarray(a).copy()
            a.setflags(write=False)
            t[name] = a
        object.__setattr__(self, "_t", t)

    def __setattr__(self, key: str, value: Any) -> None:  # pragma: no cover - guard
        raise AttributeError("Model is immutable")

    def __getitem__(self, name: str) -> np.ndarray:
        return self._t[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return list(self._t) == list(other._t) and all(
            self._t[k].shape == other._t[k].shape and np.array_equal(self._t[k], other._t[k])
            for k in self._t)

    def __hash__(self) -> int:
        return hash(model_hash(self))

    def __repr__(self) -> str:
        return "Model(" + ", ".join(f"{k}{list(v.shape)}" for k, v in self._t.items()) + ")"


# ---------------------------------------------------------------------------------- writing

def _encode_tensors(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    off = 0
    for name, a in sorted(tensors, key=lambda kv: kv[0]):
        data = np.ascontiguousarray(a, dtype="<i4").tobytes()
        header[name] = {"dtype": "I32", "shape": [int(s) for s in a.shape],
                        "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    # Inner key order dtype, shape, data_offsets is the safetensors library's own: for int32-only
    # files our bytes equal ``safetensors.numpy.save`` (a test checks it).
    hj = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    hj += b" " * (-len(hj) % 8)
    return len(hj).to_bytes(8, "little") + hj + b"".join(chunks)


def _check_model_against(model: Mapping[str, np.ndarray], arch: ArchSpec) -> None:
    expected = dict(arch.param_shapes())
    missing = sorted(set(expected) - set(model))
    extra = sorted(set(model) - set(expected))
    if missing:
        raise MissingTensorError(f"missing tensors {missing}")
    if extra:
        raise ExtraTensorError(f"tensors not in the spec {extra}")
    for name, shape in expected.items():
        a = model[name]
        if a.dtype != np.int32:
            raise DtypeError(f"tensor {name!r}: dtype {a.dtype} where int32 is declared")
        if tuple(a.shape) != shape:
            raise ShapeError(f"tensor {name!r}: shape {list(a.shape)} where the spec says {list(shape)}")


def encode_model(model: Model, arch: ArchSpec) -> bytes:
    """Canonical bytes of a model (checked against the spec first)."""
    _check_model_against(model, arch)
    return _encode_tensors([(k, model[k]) for k in sorted(model)])


def model_hash(model: Model) -> bytes:
    """keccak-256 of the canonical encoding (independent of the spec: names and shapes are in it)."""
    return keccak(_encode_tensors([(k, model[k]) for k in sorted(model)]))


def encode_dataset(x: np.ndarray, y: np.ndarray) -> bytes:
    """Canonical safetensors of a dataset: ``x`` int32 fixed point ``[N, ...]``, ``y`` int32 ``[N]``."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.int32 or y.dtype != np.int32:
        raise DtypeError(f"dataset needs int32 x and y, got {x.dtype} and {y.dtype}")
    if y.ndim != 1 or x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise ShapeError(f"dataset shapes x{list(x.shape)} y{list(y.shape)} do not pair up")
    return _encode_tensors([("x", x), ("y", y)])


# ---------------------------------------------------------------------------------- reading

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise HeaderError(f"header repeats the key {k!r}")
        d[k] = v
    return d


def _parse(data: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    """Strictly parse safetensors bytes holding only int32 tensors; returns name -> array."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise OversizeError(f"file of {len(data)} bytes exceeds the cap of {max_bytes} bytes")
    if len(data) < 8:
        raise TruncatedError(f"file of {len(data)} bytes is shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise OversizeError(f"header of {n} bytes exceeds the cap of {MAX_HEADER_BYTES} bytes")
    if 8 + n > len(data):
        raise TruncatedError(f"header declares {n} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except HeaderError:
        raise
    except (UnicodeDecodeError, ValueError) as e:
        raise HeaderError(f"header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise HeaderError("header must be a JSON object")
    body = memoryview(data)[8 + n:]
    meta = header.pop("__metadata__", None)
    if meta is not None and (not isinstance(meta, dict)
                             or not all(isinstance(v, str) for v in meta.values())):
        raise HeaderError("__metadata__ must be an object of strings")
    spans: list[tuple[int, int, str]] = []
    entries: dict[str, tuple[tuple[int, ...], int, int]] = {}
    for name in sorted(header):
        e = header[name]
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise HeaderError(f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dt, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dt in _FLOAT_DTYPES:
            raise FloatTensorError(f"tensor {name!r}: float dtype {dt} where int32 fixed point (I32) is declared")
        if dt != "I32":
            known = "" if dt in _KNOWN_DTYPES else " (unknown dtype)"
            raise DtypeError(f"tensor {name!r}: dtype {dt!r}{known} where I32 is declared")
        if (not isinstance(shape, list) or len(shape) > 8
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape)):
            raise HeaderError(f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        if (not isinstance(offs, list) or len(offs) != 2
                or any(isinstance(o, bool) or not isinstance(o, int) for o in offs)):
            raise HeaderError(f"tensor {name!r}: data_offsets {offs!r} must be two integers")
        b, end = offs
        count = 1
        for s in shape:
            count *= s
        if b < 0 or end < b:
            raise HeaderError(f"tensor {name!r}: data_offsets [{b}, {end}] are not an increasing range")
        if end - b != 4 * count:
            raise HeaderError(f"tensor {name!r}: data_offsets span {end - b} bytes but shape "
                              f"{shape} of I32 needs {4 * count}")
        if end > len(body):
            raise TruncatedError(f"tensor {name!r}: data_offsets end at {end} beyond the "
                                 f"{len(body)} data bytes present")
        spans.append((b, end, name))
        entries[name] = (tuple(shape), b, end)
    pos = 0
    for b, end, name in sorted(spans):
        if b < pos:
            raise HeaderError(f"tensor {name!r}: data_offsets [{b}, {end}] overlap the previous tensor")
        if b > pos:
            raise HeaderError(f"tensor {name!r}: gap of {b - pos} bytes before it (offsets must be contiguous)")
        pos = end
    if pos != len(body):
        raise HeaderError(f"{len(body) - pos} trailing bytes after the last tensor")
    out: dict[str, np.ndarray] = {}
    for name, (shape, b, end) in entries.items():
        out[name] = np.frombuffer(body[b:end], dtype="<i4").astype(np.int32).reshape(shape)
    return out


def _check_bounds(name: str, a: np.ndarray, max_abs: int) -> None:
    if a.size == 0:
        return
    lo, hi = int(a.min()), int(a.max())
    if lo < -max_abs or hi > max_abs:
        bad = lo if lo < -max_abs else hi
        raise ValueBoundsError(f"tensor {name!r}: value {bad} outside [-{max_abs}, {max_abs}]")


def decode_model(data: bytes, arch: ArchSpec, *, max_bytes: int,
                 max_abs: int = DEFAULT_MAX_ABS) -> Model:
    """Validate everything (size, header, dtype, names, shapes, bounds) and return the model."""
    if not 0 <= max_abs <= INT32_MAX:
        raise ValueError(f"max_abs must lie in [0, {INT32_MAX}]")
    tensors = _parse(data, max_bytes)
    _check_model_against(tensors, arch)
    for name in sorted(tensors):
        _check_bounds(name, tensors[name], max_abs)
    return Model(tensors)


def decode_dataset(data: bytes, arch: ArchSpec, *, max_samples: int,
                   max_bytes: int | None = None,
                   max_abs: int = DEFAULT_MAX_ABS) -> tuple[np.ndarray, np.ndarray]:
    """Parse a dataset (``x`` int32 ``[N, *input_shape]``, ``y`` int32 labels ``[N]``), 1 <= N <= max_samples."""
    per_sample = 4
    for s in arch.input_shape:
        per_sample *= s
    cap = max_bytes if max_bytes is not None else MAX_HEADER_BYTES + 8 + max_samples * (per_sample + 4)
    t = _parse(data, cap)
    missing = sorted({"x", "y"} - set(t))
    extra = sorted(set(t) - {"x", "y"})
    if missing:
        raise MissingTensorError(f"dataset lacks tensors {missing}")
    if extra:
        raise ExtraTensorError(f"dataset has tensors other than x and y: {extra}")
    x, y = t["x"], t["y"]
    if y.ndim != 1 or not 1 <= y.shape[0] <= max_samples:
        raise ShapeError(f"y shape {list(y.shape)}: need [N] with 1 <= N <= {max_samples}")
    if tuple(x.shape) != (y.shape[0], *arch.input_shape):
        raise ShapeError(f"x shape {list(x.shape)} where [{y.shape[0]}, *{list(arch.input_shape)}] is declared")
    _check_bounds("x", x, max_abs)
    if int(y.min()) < 0 or int(y.max()) >= arch.num_classes:
        raise ValueBoundsError(f"labels must lie in [0, {arch.num_classes - 1}], "
                               f"got [{int(y.min())}, {int(y.max())}]")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


# ---------------------------------------------------------------------------------- helpers

def zeros_like(arch: ArchSpec) -> Model:
    return Model({name: np.zeros(shape, dtype=np.int32) for name, shape in arch.param_shapes()})


def initial_model(arch: ArchSpec, seed: bytes) -> Model:
    """A deterministic initial model: PyTorch-like uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) in integers.

    Each value is ``randbelow(2*B + 1) - B`` from a keccak stream, with ``B = floor(2**s / isqrt(fan_in))``
    (``isqrt`` rounds down, so the bound is at most 1/sqrt(fan_in) rounded up by integer slack).
    Tensors are drawn in sorted-name order. Meant for tests and demos (slow for huge models).
    """
    import math

    stream = KeccakStream(seed)
    fan_in: dict[str, int] = {}
    for l in arch.layers:
        if l.type == "linear":
            fan_in[l.name] = l.in_features
        elif l.type == "conv2d":
            fan_in[l.name] = l.in_channels * l.kernel_size * l.kernel_size
    out: dict[str, np.ndarray] = {}
    for name, shape in arch.param_shapes():
        bound = (1 << arch.scale_bits) // max(1, math.isqrt(fan_in[name.rsplit(".", 1)[0]]))
        count = 1
        for s in shape:
            count *= s
        vals = [stream.randbelow(2 * bound + 1) - bound for _ in range(count)]
        out[name] = np.array(vals, dtype=np.int32).reshape(shape)
    return Model(out)

