"""Local training in PyTorch from a job's arch spec and hyper-parameters, then quantization.

Training-only layers of the spec act here: dropout drops in training, batch norm normalises with
batch statistics and keeps running ones, which are folded into the preceding conv/linear at export
(``dapp.ml.fixedpoint.export_state_dict``), so the market receives a plain model.

Why here and not in dapp/: training is float work on the trainer's own machine and decides
nothing by itself; the market only sees the quantized result (int32 fixed point, through
`dapp.ml.fixedpoint`), which it checks, scores and aggregates in integers.

Optional local differential privacy (DP-SGD): each sample's gradient is clipped to L2 norm
`clip`, the clipped gradients of a batch are summed, Gaussian noise of standard deviation
`noise_multiplier * clip` is added, and the sum is divided by the batch size.

The accountant, stated so anyone can check it: within an epoch the batches are disjoint, so a
sample touches one step per epoch, and each step is a Gaussian mechanism with L2 sensitivity
`clip` (add/remove one sample, batch partition fixed first) and noise `sigma * clip`. Its Renyi
DP is `alpha / (2 sigma^2)`; `E` epochs compose to `E * alpha / (2 sigma^2)`, and the standard
conversion gives `epsilon(delta) = min over alpha > 1 of E*alpha/(2 sigma^2) + ln(1/delta)/(alpha-1)`.
No subsampling amplification is claimed, so the bound is conservative. The spent epsilon
(rounded up to 1/1000) goes into the data card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from dapp.canonical import parse_fraction
from dapp.ml.arch import ArchSpec
from dapp.ml.fixedpoint import from_torch_module, load_model, quantize, torch_module
from dapp.ml.model_format import Model


class TrainingError(Exception):
    """Local training could not produce a model (diverged, bad hyper-parameters, ...)."""


@dataclass(frozen=True)
class DPConfig:
    clip: float
    noise_multiplier: float
    delta: float = 1e-5


@dataclass(frozen=True)
class TrainStats:
    samples: int
    steps: int
    final_loss: float
    epsilon: float | None


def dp_epsilon(epochs: int, noise_multiplier: float, delta: float) -> float:
    """The documented accountant: min over alpha of E*alpha/(2 s^2) + ln(1/delta)/(alpha-1)."""
    if noise_multiplier <= 0:
        return math.inf
    c = epochs / (2 * noise_multiplier ** 2)
    alpha = 1 + math.sqrt(math.log(1 / delta) / c)  # the exact minimiser of the convex bound
    return c * alpha + math.log(1 / delta) / (alpha - 1)


def dp_card_fields(dp: DPConfig, epochs: int) -> dict[str, Fraction]:
    eps = dp_epsilon(epochs, dp.noise_multiplier, dp.delta)
    return {"epsilon": Fraction(math.ceil(eps * 1000), 1000),
            "delta": Fraction(dp.delta).limit_denominator(10**12),
            "clip": Fraction(dp.clip).limit_denominator(10**6),
            "noise_multiplier": Fraction(dp.noise_multiplier).limit_denominator(10**6)}


def hparams_floats(hparams: dict[str, Any]) -> tuple[float, int, int]:
    try:
        raw = hparams.get("learning_rate", hparams.get("lr"))
        if isinstance(raw, list):
            lr = raw[0] / raw[1]
        else:
            lr = float(parse_fraction(str(raw)))
        return lr, int(hparams["local_epochs"]), int(hparams["batch_size"])
    except (KeyError, ValueError, TypeError) as exc:
        raise TrainingError(f"bad hyper-parameters {hparams}: {exc}") from None


def train_local(arch: ArchSpec, start: Model, x: np.ndarray, y: np.ndarray,
                hparams: dict[str, Any], *, dp: DPConfig | None = None, seed: int = 0,
                label_map: np.ndarray | None = None) -> tuple[Model, TrainStats]:
    """SGD from `start` on (x, y) with the job's lr / local_epochs / batch_size; quantized result."""
    import torch

    lr, epochs, batch = hparams_floats(hparams)
    if dp is not None and any(l.type == "batchnorm" for l in arch.layers):
        # Batch statistics mix samples, so per-sample clipping no longer bounds one sample's
        # influence (the reason Opacus refuses BatchNorm too).
        raise TrainingError("DP-SGD cannot train an architecture with batchnorm; drop one of them")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = torch_module(arch)
    load_model(net, start, arch)
    net.train()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(label_map[y] if label_map is not None else y, dtype=np.int64))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps, last = 0, float("nan")
    params = dict(net.named_parameters())
    has_bn = any(l.type == "batchnorm" for l in arch.layers)
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=gen)
        for s in range(0, len(yt), batch):
            idx = perm[s:s + batch]
            if has_bn and len(idx) < 2 and steps:
                continue  # batch statistics of one sample are undefined (a last odd sample)
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad()
            if dp is None:
                loss = loss_fn(net(xb), yb)
                loss.backward()
                last = float(loss.detach())
            else:
                last = _dp_grads(net, params, xb, yb, dp, gen)
            opt.step()
            steps += 1
    if not math.isfinite(last):
        raise TrainingError(f"training diverged (loss {last}); lower the learning rate")
    net.eval()
    model = from_torch_module(net, arch)  # batch norm folded into the layer before it
    eps = dp_epsilon(epochs, dp.noise_multiplier, dp.delta) if dp else None
    return model, TrainStats(len(yt), steps, last, eps)


def _dp_grads(net: Any, params: dict[str, Any], xb: Any, yb: Any, dp: DPConfig, gen: Any) -> float:
    """Per-sample gradients (torch.func), clipped, summed, noised, averaged into .grad."""
    import torch
    from torch.func import functional_call, grad, vmap

    detached = {k: v.detach() for k, v in params.items()}

    def loss_one(p: dict[str, Any], xi: Any, yi: Any) -> Any:
        out = functional_call(net, p, (xi.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))

    per = vmap(grad(loss_one), in_dims=(None, 0, 0))(detached, xb, yb)
    norms = torch.sqrt(sum((g.reshape(len(yb), -1) ** 2).sum(1) for g in per.values()))
    factor = torch.clamp(dp.clip / (norms + 1e-12), max=1.0)
    for k, prm in params.items():
        g = (per[k] * factor.view(-1, *([1] * (per[k].dim() - 1)))).sum(0)
        g = g + torch.randn(g.shape, generator=gen) * (dp.noise_multiplier * dp.clip)
        prm.grad = g / len(yb)
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(net(xb), yb))


def accuracy_float(arch: ArchSpec, model: Model, x: np.ndarray, y: np.ndarray) -> float:
    """Float accuracy of a model (for the trainer's own display and benchmarks only)."""
    import torch

    net = torch_module(arch)
    load_model(net, model, arch)
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).argmax(1).numpy()
    return float((pred == np.asarray(y)).mean())


def scaled_sign_flip(start: Model, trained: Model, arch: ArchSpec, scale: float) -> Model:
    """An attacker's update: start - scale * (trained - start), i.e. a boosted reversed step."""
    s = arch.scale_bits
    out = {}
    for k in start:
        g = start[k].astype(np.float64) / 2 ** s
        t = trained[k].astype(np.float64) / 2 ** s
        bound = 0.99 * ((1 << 31) - 1) / 2 ** s
        out[k] = quantize(np.clip(g - scale * (t - g), -bound, bound), s)
    return Model(out)
