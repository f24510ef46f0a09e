"""Architecture spec: the JSON a job declares, validated once, then trusted by everything else.

Supported layers: ``linear``, ``conv2d``, ``relu``, ``maxpool2d``, ``avgpool2d``, ``flatten``,
``batchnorm`` and ``dropout``. Shapes are traced through the whole network at validation time so
that a spec whose layers do not fit together is refused before any model is loaded. Every
parametrised layer has a weight and a bias, named ``<name>.weight`` / ``<name>.bias`` and shaped
like PyTorch's.

Training-only layers, so that the models people train (MNIST / CIFAR-10 baselines) fit:

* ``batchnorm`` (no fields) must directly follow a ``conv2d`` or ``linear``; trainers train with
  it (``BatchNorm2d`` / ``BatchNorm1d`` over that layer's outputs) and fold its running statistics
  into that layer's weight and bias at export (``dapp.ml.fixedpoint.export_state_dict``). It has
  no tensors in the model file and is the identity in integer inference;
* ``dropout`` (``"p": [num, den]``, 0 <= num/den < 1) drops activations in training only; the
  identity in integer inference (PyTorch's inverted dropout needs no rescaling at eval time);
* ``avgpool2d`` (``kernel_size``, ``stride`` defaulting to ``kernel_size``) is an inference layer
  with declared integer rounding (see ``dapp.ml.inference``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ArchSpecError

#: Caps that keep a hostile spec from asking the machine for absurd work.
MAX_LAYERS = 64
MAX_PARAMS = 1 << 24
MAX_DIM = 1 << 16
MIN_SCALE_BITS = 0
MAX_SCALE_BITS = 24

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TOP_KEYS = {"input_shape", "num_classes", "scale_bits", "layers"}


def _int(d: Mapping[str, Any], key: str, where: str, *, lo: int = 1, hi: int = MAX_DIM,
         default: int | None = None) -> int:
    if key not in d:
        if default is None:
            raise ArchSpecError(f"{where}: missing field {key!r}")
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArchSpecError(f"{where}: field {key!r} must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ArchSpecError(f"{where}: field {key!r}={v} outside [{lo}, {hi}]")
    return v


@dataclass(frozen=True)
class Layer:
    """One layer; fields not used by a layer type stay 0 / empty."""

    type: str
    name: str = ""
    in_features: int = 0
    out_features: int = 0
    in_channels: int = 0
    out_channels: int = 0
    kernel_size: int = 0
    stride: int = 0
    padding: int = 0
    p: tuple[int, int] = (0, 1)

    def to_dict(self) -> dict[str, Any]:
        if self.type == "linear":
            return {"type": "linear", "name": self.name, "in_features": self.in_features,
                    "out_features": self.out_features}
        if self.type == "conv2d":
            return {"type": "conv2d", "name": self.name, "in_channels": self.in_channels,
                    "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                    "stride": self.stride, "padding": self.padding}
        if self.type in ("maxpool2d", "avgpool2d"):
            return {"type": self.type, "kernel_size": self.kernel_size, "stride": self.stride}
        if self.type == "dropout":
            return {"type": "dropout", "p": [self.p[0], self.p[1]]}
        return {"type": self.type}

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        if self.type == "linear":
            return [(f"{self.name}.weight", (self.out_features, self.in_features)),
                    (f"{self.name}.bias", (self.out_features,))]
        if self.type == "conv2d":
            k = self.kernel_size
            return [(f"{self.name}.weight", (self.out_channels, self.in_channels, k, k)),
                    (f"{self.name}.bias", (self.out_channels,))]
        return []


_LAYER_KEYS = {
    "linear": {"type", "name", "in_features", "out_features"},
    "conv2d": {"type", "name", "in_channels", "out_channels", "kernel_size", "stride", "padding"},
    "maxpool2d": {"type", "kernel_size", "stride"},
    "avgpool2d": {"type", "kernel_size", "stride"},
    "relu": {"type"},
    "flatten": {"type"},
    "batchnorm": {"type"},
    "dropout": {"type", "p"},
}
MAX_DROPOUT_DEN = 1_000_000


def _parse_layer(d: Any, i: int) -> Layer:
    where = f"layers[{i}]"
    if not isinstance(d, Mapping):
        raise ArchSpecError(f"{where}: must be an object")
    t = d.get("type")
    if not isinstance(t, str) or t not in _LAYER_KEYS:
        raise ArchSpecError(f"{where}: unknown layer type {t!r} (known: {sorted(_LAYER_KEYS)})")
    extra = sorted(set(d) - _LAYER_KEYS[t])
    if extra:
        raise ArchSpecError(f"{where}: unknown fields {extra} for {t}")
    if t in ("linear", "conv2d"):
        name = d.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ArchSpecError(f"{where}: name {name!r} must match {_NAME_RE.pattern}")
        if t == "linear":
            return Layer(t, name, in_features=_int(d, "in_features", where),
                         out_features=_int(d, "out_features", where))
        return Layer(t, name, in_channels=_int(d, "in_channels", where),
                     out_channels=_int(d, "out_channels", where),
                     kernel_size=_int(d, "kernel_size", where, hi=64),
                     stride=_int(d, "stride", where, hi=64, default=1),
                     padding=_int(d, "padding", where, lo=0, hi=64, default=0))
    if t in ("maxpool2d", "avgpool2d"):
        k = _int(d, "kernel_size", where, hi=64)
        return Layer(t, kernel_size=k, stride=_int(d, "stride", where, hi=64, default=k))
    if t == "dropout":
        p = d.get("p")
        if (not isinstance(p, list) or len(p) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in p)
                or not 1 <= p[1] <= MAX_DROPOUT_DEN or not 0 <= p[0] < p[1]):
            raise ArchSpecError(f"{where}: dropout p must be [num, den] with 0 <= num < den <= "
                                f"{MAX_DROPOUT_DEN}, got {p!r}")
        return Layer(t, p=(p[0], p[1]))
    return Layer(t)


@dataclass(frozen=True)
class ArchSpec:
    """A validated architecture: immutable, hashable, and round-trips through ``to_dict``."""

    input_shape: tuple[int, ...]
    num_classes: int
    scale_bits: int
    layers: tuple[Layer, ...]

    @classmethod
    def from_dict(cls, d: Any) -> "ArchSpec":
        if not isinstance(d, Mapping):
            raise ArchSpecError("arch spec must be a JSON object")
        extra = sorted(set(d) - _TOP_KEYS)
        if extra:
            raise ArchSpecError(f"arch spec: unknown fields {extra}")
        shape = d.get("input_shape")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
                or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_DIM
                       for s in shape)):
            raise ArchSpecError(f"input_shape must be a list of 1 to 3 positive integers, got {shape!r}")
        num_classes = _int(d, "num_classes", "arch spec", lo=2, hi=MAX_DIM)
        scale_bits = _int(d, "scale_bits", "arch spec", lo=MIN_SCALE_BITS, hi=MAX_SCALE_BITS)
        layers_raw = d.get("layers")
        if not isinstance(layers_raw, list) or not 1 <= len(layers_raw) <= MAX_LAYERS:
            raise ArchSpecError(f"layers must be a list of 1 to {MAX_LAYERS} layers")
        layers = tuple(_parse_layer(x, i) for i, x in enumerate(layers_raw))
        spec = cls(tuple(shape), num_classes, scale_bits, layers)
        spec._validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "scale_bits": self.scale_bits, "layers": [l.to_dict() for l in self.layers]}

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-sample activation shape after each layer (index 0 = the input)."""
        out = [self.input_shape]
        cur = self.input_shape
        for i, l in enumerate(self.layers):
            where = f"layers[{i}] ({l.type})"
            if l.type == "linear":
                if len(cur) != 1 or cur[0] != l.in_features:
                    raise ArchSpecError(f"{where}: expects [{l.in_features}], gets {list(cur)}")
                cur = (l.out_features,)
            elif l.type == "conv2d":
                if len(cur) != 3 or cur[0] != l.in_channels:
                    raise ArchSpecError(f"{where}: expects [{l.in_channels}, H, W], gets {list(cur)}")
                h = (cur[1] + 2 * l.padding - l.kernel_size) // l.stride + 1
                w = (cur[2] + 2 * l.padding - l.kernel_size) // l.stride + 1
                if h < 1 or w < 1:
                    raise ArchSpecError(f"{where}: kernel larger than the padded input {list(cur)}")
                cur = (l.out_channels, h, w)
            elif l.type == "batchnorm":
                prev = self.layers[i - 1] if i else None
                if prev is None or prev.type not in ("conv2d", "linear"):
                    raise ArchSpecError(f"{where}: batchnorm must directly follow a conv2d or linear "
                                        "(it is folded into that layer at export)")
            elif l.type in ("maxpool2d", "avgpool2d"):
                if len(cur) != 3:
                    raise ArchSpecError(f"{where}: expects [C, H, W], gets {list(cur)}")
                h = (cur[1] - l.kernel_size) // l.stride + 1
                w = (cur[2] - l.kernel_size) // l.stride + 1
                if h < 1 or w < 1:
                    raise ArchSpecError(f"{where}: pool larger than the input {list(cur)}")
                cur = (cur[0], h, w)
            elif l.type == "flatten":
                n = 1
                for s in cur:
                    n *= s
                cur = (n,)
            out.append(cur)
        return out

    def _validate(self) -> None:
        shapes = self.shapes()
        if shapes[-1] != (self.num_classes,):
            raise ArchSpecError(f"network output {list(shapes[-1])} != [num_classes={self.num_classes}]")
        names = [l.name for l in self.layers if l.name]
        if len(set(names)) != len(names):
            raise ArchSpecError(f"duplicate layer names in {names}")
        if self.param_count() > MAX_PARAMS:
            raise ArchSpecError(f"{self.param_count()} parameters exceed the cap {MAX_PARAMS}")
        for s in shapes:
            n = 1
            for v in s:
                n *= v
            if n > MAX_PARAMS:
                raise ArchSpecError(f"activation of {n} values per sample exceeds the cap {MAX_PARAMS}")

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Every parameter tensor, sorted by name (the canonical order of files and flat vectors)."""
        out: list[tuple[str, tuple[int, ...]]] = []
        for l in self.layers:
            out.extend(l.param_shapes())
        return sorted(out)

    def param_count(self) -> int:
        total = 0
        for _, shape in self.param_shapes():
            n = 1
            for v in shape:
                n *= v
            total += n
        return total
