"""Integer inference: int64 accumulation, declared rounding, proven absence of overflow.

Declared semantics (scale s = ``arch.scale_bits``; inputs and weights share it):

* linear / conv2d: ``acc = x @ W.T + (b << s)`` in int64 (scale 2s), then ``(acc + 2**(s-1)) >> s``
  (round half up) back to scale s. Activations stay int64 between layers (no int32 clamp);
* before each product the worst case is bounded with exact Python integers:
  ``max|x| * max_row(sum|W_row|) + max|b| * 2**s < 2**62``; otherwise ``InferenceOverflowError``.
  Since every partial sum is bounded by that worst case, no int64 wrap is possible;
* conv2d is im2col (patch order channel, kernel row, kernel column = PyTorch's weight order)
  followed by an int64 matmul. NumPy integer matmul is exact (no BLAS);
* relu = max(x, 0); maxpool2d over windows like PyTorch (floor mode, no padding);
* argmax ties go to the lowest class index (``np.argmax``'s first occurrence).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .arch import ArchSpec, Layer
from .errors import InferenceOverflowError, ShapeError
from .fixedpoint import rescale

ACC_LIMIT = 1 << 62
DEFAULT_BATCH = 512


def _max_abs(a: np.ndarray) -> int:
    if a.size == 0:
        return 0
    return max(abs(int(a.max())), abs(int(a.min())))


def _check_bound(name: str, x_abs: int, w2d: np.ndarray, b: np.ndarray, s: int) -> None:
    """w2d is [out, fan_in] int64; |w| <= 2**31 so a row sum fits int64 for fan_in < 2**32."""
    row_l1 = int(np.abs(w2d).sum(axis=1).max()) if w2d.size else 0
    bound = x_abs * row_l1 + (_max_abs(b) << s)
    if bound >= ACC_LIMIT:
        raise InferenceOverflowError(
            f"layer {name!r}: worst-case accumulator {bound} >= 2**62 "
            f"(max|x|={x_abs}, max row L1 of |W|={row_l1}, max|b|={_max_abs(b)})")


def im2col(x: np.ndarray, k: int, stride: int, padding: int) -> np.ndarray:
    """[N, C, H, W] -> [N, OH, OW, C*k*k] patches in (c, ki, kj) order."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # N C OH OW k k
    n, c, oh, ow = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n, oh, ow, c * k * k)


def _linear(l: Layer, x: np.ndarray, params: Mapping[str, np.ndarray], s: int) -> np.ndarray:
    w = np.asarray(params[f"{l.name}.weight"], dtype=np.int64)
    b = np.asarray(params[f"{l.name}.bias"], dtype=np.int64)
    _check_bound(l.name, _max_abs(x), w, b, s)
    acc = x @ w.T
    acc += b << np.int64(s)
    return rescale(acc, s)


def _conv(l: Layer, x: np.ndarray, params: Mapping[str, np.ndarray], s: int,
          patches: np.ndarray | None = None) -> np.ndarray:
    w = np.asarray(params[f"{l.name}.weight"], dtype=np.int64).reshape(l.out_channels, -1)
    b = np.asarray(params[f"{l.name}.bias"], dtype=np.int64)
    _check_bound(l.name, _max_abs(x), w, b, s)
    p = im2col(x, l.kernel_size, l.stride, l.padding) if patches is None else patches
    acc = p @ w.T  # N OH OW O
    acc += b << np.int64(s)
    return rescale(acc, s).transpose(0, 3, 1, 2)


def _maxpool(l: Layer, x: np.ndarray) -> np.ndarray:
    k, st = l.kernel_size, l.stride
    if k == st and x.shape[2] % k == 0 and x.shape[3] % k == 0:
        n, c, h, w = x.shape
        return x.reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::st, ::st].max(axis=(-2, -1))


def forward(arch: ArchSpec, params: Mapping[str, np.ndarray], x: np.ndarray,
            first_patches: np.ndarray | None = None) -> np.ndarray:
    """Logits (int64, scale s) for a batch x [N, *input_shape].

    ``first_patches`` lets a caller that evaluates many models on one shard (Shapley) pass the
    im2col of the input once; it must equal ``im2col`` of x for the first layer.
    """
    s = arch.scale_bits
    h = np.asarray(x, dtype=np.int64)
    if tuple(h.shape[1:]) != arch.input_shape:
        raise ShapeError(f"input shape {list(h.shape[1:])} where {list(arch.input_shape)} is declared")
    for i, l in enumerate(arch.layers):
        if l.type == "linear":
            h = _linear(l, h, params, s)
        elif l.type == "conv2d":
            h = _conv(l, h, params, s, first_patches if i == 0 else None)
        elif l.type == "relu":
            h = np.maximum(h, 0)
        elif l.type == "maxpool2d":
            h = _maxpool(l, h)
        elif l.type == "flatten":
            h = h.reshape(h.shape[0], -1)
    return h


def predict(arch: ArchSpec, model: Mapping[str, np.ndarray], x: np.ndarray,
            batch: int = DEFAULT_BATCH) -> np.ndarray:
    """Labels (int64) by argmax of integer logits, lowest index on ties; batched to bound memory."""
    x = np.asarray(x)
    out = [np.argmax(forward(arch, model, x[i:i + batch]), axis=1).astype(np.int64)
           for i in range(0, x.shape[0], batch)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def count_correct(arch: ArchSpec, model: Mapping[str, np.ndarray], x: np.ndarray,
                  y: np.ndarray) -> int:
    """Number of correct predictions: the utility that contribution and rewards rest on."""
    return int(np.count_nonzero(predict(arch, model, x) == np.asarray(y)))


class PreparedShard:
    """A validation shard prepared once for many evaluations (first-layer im2col cached)."""

    def __init__(self, arch: ArchSpec, x: np.ndarray, y: np.ndarray) -> None:
        self.arch = arch
        self.x = np.asarray(x, dtype=np.int64)
        self.y = np.asarray(y, dtype=np.int64)
        first = arch.layers[0]
        self.patches = (im2col(self.x, first.kernel_size, first.stride, first.padding)
                        if first.type == "conv2d" else None)

    def count_correct(self, params: Mapping[str, np.ndarray]) -> int:
        logits = forward(self.arch, params, self.x, self.patches)
        return int(np.count_nonzero(np.argmax(logits, axis=1) == self.y))
