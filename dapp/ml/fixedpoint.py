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


#: Batch norm's epsilon in training (PyTorch's default); folding uses the same value.
BN_EPS = 1e-5


def torch_module(arch: ArchSpec) -> Any:
    """The float PyTorch ``nn.Module`` equivalent of an arch spec (parameter names match).

    Training-only layers become real modules: ``batchnorm`` a ``BatchNorm2d``/``BatchNorm1d``
    registered as ``bn<layer index>`` (so its tensors never collide with the spec's names),
    ``dropout`` an ``nn.Dropout``. Their tensors are not part of the market's model: load a
    model with ``load_model`` and export with ``export_state_dict`` (which folds batch norm).
    """
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
                elif l.type == "avgpool2d":
                    m = nn.AvgPool2d(l.kernel_size, l.stride)
                elif l.type == "batchnorm":
                    prev = arch.layers[i - 1]
                    m = (nn.BatchNorm2d(prev.out_channels, eps=BN_EPS) if prev.type == "conv2d"
                         else nn.BatchNorm1d(prev.out_features, eps=BN_EPS))
                    setattr(self, f"bn{i}", m)
                elif l.type == "dropout":
                    m = nn.Dropout(l.p[0] / l.p[1])
                    setattr(self, f"drop{i}", m)  # registered, so .eval() switches it off
                else:
                    m = nn.Flatten()
                self.seq.append((l.type, m))

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            for _, m in self.seq:
                x = m(x)
            return x

    return _Net()


def load_model(net: Any, model: Model, arch: ArchSpec) -> None:
    """Load a market model into ``torch_module(arch)``; batch norms restart as the identity
    (running mean 0, running variance 1 - eps, weight 1, bias 0), because the model already
    carries the folded normalisation of earlier rounds."""
    import torch

    net.load_state_dict(to_torch_state_dict(model, arch), strict=False)
    with torch.no_grad():
        for i, l in enumerate(arch.layers):
            if l.type == "batchnorm":
                bn = getattr(net, f"bn{i}")
                bn.reset_parameters()
                bn.running_var.fill_(1.0 - BN_EPS)


def export_state_dict(net: Any, arch: ArchSpec) -> dict[str, Any]:
    """The spec's tensors (float64) from a trained module, batch norm folded into the layer it
    follows: with ``a = gamma / sqrt(running_var + eps)``, ``W' = W * a`` (per output channel /
    feature) and ``b' = (b - running_mean) * a + beta``. Equal to the module in eval mode."""
    import torch

    sd = {k: v.detach().to("cpu").double() for k, v in net.state_dict().items()}
    out: dict[str, Any] = {name: sd[name] for name, _ in arch.param_shapes()}
    for i, l in enumerate(arch.layers):
        if l.type != "batchnorm":
            continue
        prev = arch.layers[i - 1]
        p = f"bn{i}."
        a = sd[p + "weight"] / torch.sqrt(sd[p + "running_var"] + BN_EPS)
        w = out[f"{prev.name}.weight"]
        out[f"{prev.name}.weight"] = w * a.reshape(-1, *([1] * (w.dim() - 1)))
        out[f"{prev.name}.bias"] = (out[f"{prev.name}.bias"] - sd[p + "running_mean"]) * a + sd[p + "bias"]
    return out


def from_torch_module(net: Any, arch: ArchSpec) -> Model:
    """Trained module -> Model (batch norm folded, then quantized)."""
    return from_torch_state_dict(export_state_dict(net, arch), arch)
