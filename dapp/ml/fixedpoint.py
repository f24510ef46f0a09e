"""Float <-> fixed point, shared by the client (PyTorch) and the backend so both use one definition.

Declared rules:

* value = int / 2**scale_bits, stored as int32 in [-(2**31 - 1), 2**31 - 1] (INT32_MIN is never
  produced, so negation cannot wrap);
* ``quantize`` rounds half away from zero (2.5 -> 3, -2.5 -> -3), computed exactly: scaling by a
  power of two is exact in float64, and the rounding compares the fractional part with 0.5
  instead of adding 0.5 (which would misround 0.49999999999999994);
* saturation policy: none. A value out of range, NaN or infinite raises ``FixedPointError``;
  nothing is clipped or wrapped silently;
* ``rescale`` (used by inference after each linear/conv) divides an int64 by 2**s rounding half
  up, i.e. ``(acc + 2**(s-1)) >> s`` with an arithmetic (flooring) shift.

Floats appear only here, for the PyTorch side and for printing; no output of the backend depends
on them. torch is imported lazily, inside the conversion functions only.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .arch import ArchSpec
from .errors import FixedPointError
from .model_format import INT32_MAX, Model, _check_model_against


def quantize(x: Any, scale_bits: int) -> np.ndarray:
    """Float array -> int32 fixed point, round half away from zero, error when out of range."""
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, int) or not 0 <= scale_bits <= 30:
        raise FixedPointError(f"scale_bits must be an integer in [0, 30], got {scale_bits!r}")
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise FixedPointError("cannot quantize NaN or infinite values")
    scaled = np.ldexp(a, scale_bits)
    mag = np.abs(scaled)
    fl = np.floor(mag)
    r = np.where(mag - fl >= 0.5, fl + 1.0, fl)
    if r.size and float(r.max()) > INT32_MAX:
        worst = float(a.flat[int(np.argmax(mag))])
        raise FixedPointError(f"value {worst!r} does not fit int32 at scale 2**{scale_bits}")
    return (np.sign(scaled) * r).astype(np.int32)


def dequantize(q: Any, scale_bits: int) -> np.ndarray:
    """int fixed point -> float64 (exact for int32 values)."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -scale_bits)


def rescale(acc: np.ndarray, shift: int) -> np.ndarray:
    """int64 / 2**shift rounded half up (toward +infinity on ties)."""
    if shift == 0:
        return acc
    return (acc + np.int64(1 << (shift - 1))) >> np.int64(shift)


def from_torch_state_dict(sd: Mapping[str, Any], arch: ArchSpec) -> Model:
    """PyTorch float state dict -> Model; names and shapes checked against the spec."""
    import torch  # noqa: F401  (lazy: the riscv64 machine has no torch)

    tensors: dict[str, np.ndarray] = {}
    for name in sorted(sd):
        v = sd[name]
        arr = v.detach().to("cpu").double().numpy() if hasattr(v, "detach") else np.asarray(v, dtype=np.float64)
        tensors[name] = quantize(arr, arch.scale_bits)
    _check_model_against(tensors, arch)
    return Model(tensors)


def to_torch_state_dict(model: Model, arch: ArchSpec) -> dict[str, Any]:
    """Model -> PyTorch float32 state dict (for loading into the trainer's ``nn.Module``)."""
    import torch

    _check_model_against(model, arch)
    return {name: torch.from_numpy(dequantize(model[name], arch.scale_bits).astype(np.float32))
            for name in sorted(model)}


def torch_module(arch: ArchSpec) -> Any:
    """The float PyTorch ``nn.Module`` equivalent of an arch spec (parameter names match)."""
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seq: list[tuple[str, Any]] = []
            for i, l in enumerate(arch.layers):
                if l.type == "linear":
                    m: Any = nn.Linear(l.in_features, l.out_features)
                    setattr(self, l.name, m)
                elif l.type == "conv2d":
                    m = nn.Conv2d(l.in_channels, l.out_channels, l.kernel_size, l.stride, l.padding)
                    setattr(self, l.name, m)
                elif l.type == "relu":
                    m = nn.ReLU()
                elif l.type == "maxpool2d":
                    m = nn.MaxPool2d(l.kernel_size, l.stride)
                else:
                    m = nn.Flatten()
                self.seq.append((l.type, m))

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            for _, m in self.seq:
                x = m(x)
            return x

    return _Net()
