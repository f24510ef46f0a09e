"""`tributary model import`: bring a model trained in PyTorch to the market.

The market runs models in int32 fixed point (dapp/ml/fixedpoint.py) with the layer types its
arch spec knows; a job's initial model is that format's safetensors file. This module turns a
PyTorch float state dict plus an arch JSON into it, and refuses with the reason whatever the
backend cannot run: a layer type the arch spec does not know, a tensor the arch does not
declare, a shape that differs, a weight too large for int32 at the arch's scale.

Why safetensors only: a PyTorch `.pt`/`.pth` file is a pickle, and loading a pickle runs
whatever code it holds. `torch.save(model.state_dict(), ...)` users convert once with
`safetensors.torch.save_file(model.state_dict(), "model.safetensors")`.

Names: PyTorch modules name parameters after their attributes (`conv1.weight`) or positions
(`0.weight` in an `nn.Sequential`). When the names differ from the arch's but the parametrised
tensors, in order, have the arch's shapes, they are matched by position (and the note says so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dapp.ml.arch import ArchSpec
from dapp.ml.model_format import encode_model

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
IGNORED_SUFFIXES = (".num_batches_tracked",)  # a step counter, not a weight


class ImportError_(Exception):
    """The model cannot become a market model; the message says why and how to fix it."""


def load_arch(path: Path) -> tuple[ArchSpec, dict[str, Any]]:
    """An arch JSON, or a job spec JSON holding one under "arch"; returns (arch, its dict)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ImportError_(f"cannot read arch JSON {path}: {exc}") from None
    d = raw.get("arch", raw) if isinstance(raw, dict) else raw
    try:
        return ArchSpec.from_dict(d), d
    except Exception as exc:
        raise ImportError_(f"{path}: the market cannot run this architecture: {exc}") from None


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ImportError_(
            f"{path} is a pickle ({path.suffix}); loading one runs arbitrary code, so only "
            f"safetensors files are accepted. Convert it once, in the environment that trusts "
            f"it: `import torch; from safetensors.torch import save_file; "
            f"save_file(torch.load('{path.name}', weights_only=True), 'model.safetensors')`")
    try:
        from safetensors.numpy import load_file
    except ImportError:  # pragma: no cover - safetensors ships with the client
        raise ImportError_("the safetensors package is missing (`pip install safetensors`)") from None
    try:
        return dict(load_file(str(path)))
    except Exception as exc:
        raise ImportError_(f"{path} is not a safetensors file: {exc}") from None


_TENSOR_RANK = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}


def _module_order(key: str) -> tuple[Any, ...]:
    """Module order of a state-dict key (safetensors files store keys sorted by name):
    numeric path parts compare as numbers (`2.weight` before `10.weight`), and within a module
    weight, bias, running_mean, running_var come in PyTorch's order."""
    *path, last = key.split(".")
    return (tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in path),
            _TENSOR_RANK.get(last, 9), last)


def match_names(sd: dict[str, np.ndarray], expected: list[tuple[str, tuple[int, ...]]],
                notes: list[str]) -> dict[str, np.ndarray]:
    """The state dict under the expected tensor names (the arch's PyTorch module: parameters
    and batch-norm buffers); by name, else by position and shape."""
    sd = {k: v for k, v in sd.items() if not k.endswith(IGNORED_SUFFIXES)}
    names = [n for n, _ in expected]
    if set(sd) == set(names):
        out = sd
    else:
        if len(sd) != len(expected):
            missing = sorted(set(names) - set(sd))
            extra = sorted(set(sd) - set(names))
            raise ImportError_(
                f"the state dict has {len(sd)} tensors, the arch declares {len(expected)}"
                + (f"; not in the file: {missing}" if missing else "")
                + (f"; not in the arch (a layer the market does not run?): {extra}" if extra else ""))
        out = {}
        ordered = sorted(sd.items(), key=lambda kv: _module_order(kv[0]))
        for (name, shape), (src, arr) in zip(expected, ordered):
            if tuple(arr.shape) != tuple(shape):
                raise ImportError_(f"tensor {src!r} has shape {list(arr.shape)}; by position it "
                                   f"would be {name!r}, shaped {list(shape)} in the arch")
            out[name] = arr
        notes.append("tensor names differ from the arch's; matched by position: " + ", ".join(
            f"{src}->{name}" for (name, _), (src, _a) in zip(expected, ordered)))
    for name, shape in expected:
        if tuple(out[name].shape) != tuple(shape):
            raise ImportError_(f"tensor {name!r}: shape {list(out[name].shape)} where the arch "
                               f"says {list(shape)}")
        if not np.issubdtype(out[name].dtype, np.floating):
            raise ImportError_(f"tensor {name!r} is {out[name].dtype}: a float state dict is "
                               f"expected (the market quantizes it)")
    return out


def import_model(state_dict: Path, arch_path: Path, max_bytes: int | None = None
                 ) -> tuple[bytes, dict[str, Any]]:
    """(canonical model bytes, report): the fixed-point initial model for a job with this arch."""
    import torch

    from dapp.ml import fixedpoint as fp

    arch, arch_dict = load_arch(arch_path)
    notes: list[str] = []
    net = fp.torch_module(arch)
    expected = [(k, tuple(v.shape)) for k, v in net.state_dict().items()
                if not k.endswith(IGNORED_SUFFIXES)]
    sd = match_names(load_state_dict(state_dict), expected, notes)
    with torch.no_grad():
        net.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in sd.items()},
                            strict=False)
    # the spec's tensors, batch norm folded into the layer it follows where the arch has one
    floats = fp.export_state_dict(net, arch)
    if any(l.type == "batchnorm" for l in arch.layers):
        notes.append("batch norm folded into the layer before it (running statistics)")
    tensors = {}
    worst = 0.0
    folded = _folded(arch)
    for name, t in floats.items():
        a = t.detach().double().numpy() if hasattr(t, "detach") else np.asarray(t, np.float64)
        if name in sd and name not in folded:  # rounding against the file's own values,
            a = np.asarray(sd[name], dtype=np.float64)  # not the float32 copy
        try:
            q = fp.quantize(a, arch.scale_bits)
        except Exception as exc:
            raise ImportError_(f"tensor {name!r}: {exc}; lower the arch's scale_bits or keep "
                               f"weights smaller") from None
        worst = max(worst, float(np.max(np.abs(fp.dequantize(q, arch.scale_bits) - a), initial=0.0)))
        tensors[name] = q
    from dapp.ml.model_format import Model

    data = encode_model(Model(tensors), arch)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImportError_(f"the model is {len(data):,} bytes; the job's limit "
                           f"(limits.max_model_bytes) is {max_bytes:,}")
    return data, {"arch": arch_dict, "tensors": len(tensors), "bytes": len(data),
                  "params": int(sum(t.size for t in tensors.values())),
                  "scale_bits": arch.scale_bits, "max_rounding_error": worst, "notes": notes}


def _folded(arch: ArchSpec) -> set[str]:
    """Tensors that batch-norm folding changes (the weight and bias of the layer before one)."""
    out = set()
    for i, l in enumerate(arch.layers):
        if l.type == "batchnorm" and i > 0 and arch.layers[i - 1].name:
            out |= {f"{arch.layers[i - 1].name}.weight", f"{arch.layers[i - 1].name}.bias"}
    return out


__all__ = ["import_model", "load_arch", "load_state_dict", "match_names", "ImportError_"]
