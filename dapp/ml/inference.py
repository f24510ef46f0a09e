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
* avgpool2d over the same windows: ``floor((2 * sum + k*k) / (2 * k*k))``, the window mean rounded
  half up (toward +infinity on ties), with the sum in int64 after checking
  ``2 * max|x| * k*k + k*k < 2**62``;
* batchnorm and dropout are the identity: batch norm is folded into the preceding layer's weight
  and bias at export, dropout acts in training only (see ``dapp.ml.arch``);
* argmax ties go to the lowest class index (``np.argmax``'s first occurrence).

Margin utility (``PreparedShard.margin_sum``): per sample ``m = z[y] - max_{c != y} z[c]`` on the
int64 logits (scale s), clipped to ``[-B, B]`` with ``B = clip << s``, summed over the shard in
int64. No overflow: logits are below ``2**62`` in magnitude (the accumulator bound above), so the
difference of two fits int64, and ``N * B`` is checked against ``2**62``.
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


def _avgpool(l: Layer, x: np.ndarray) -> np.ndarray:
    k, st = l.kernel_size, l.stride
    kk = k * k
    if 2 * _max_abs(x) * kk + kk >= ACC_LIMIT:
        raise InferenceOverflowError(f"avgpool2d: window sums of max|x|={_max_abs(x)} over {kk} values "
                                     "could overflow int64")
    oh = (x.shape[2] - k) // st + 1
    ow = (x.shape[3] - k) // st + 1
    total = np.zeros((x.shape[0], x.shape[1], oh, ow), dtype=np.int64)
    for a in range(k):  # k*k strided adds: exact, and far faster than a reduction over window axes
        for b in range(k):
            total += x[:, :, a:a + st * (oh - 1) + 1:st, b:b + st * (ow - 1) + 1:st]
    return (2 * total + kk) // (2 * kk)


def forward(arch: ArchSpec, params: Mapping[str, np.ndarray], x: np.ndarray,
            first_patches: np.ndarray | None = None) -> np.ndarray:
    """Logits (int64, scale s) for a batch x [N, *input_shape].

    ``first_patches`` lets a caller that evaluates many models on one shard (Shapley) pass the
    im2col of the input once; it must equal ``im2col`` of x for the first layer.
    """
    h = np.asarray(x, dtype=np.int64)
    if tuple(h.shape[1:]) != arch.input_shape:
        raise ShapeError(f"input shape {list(h.shape[1:])} where {list(arch.input_shape)} is declared")
    return forward_from(arch, params, h, 0, first_patches)


def forward_from(arch: ArchSpec, params: Mapping[str, np.ndarray], h: np.ndarray, start: int,
                 patches: np.ndarray | None = None, stop: int | None = None) -> np.ndarray:
    """Run layers ``start`` to ``stop - 1`` (default: the last) on activations ``h`` (the output of
    layer ``start - 1``); ``patches``, if given, is the im2col of ``h`` for layer ``start``."""
    s = arch.scale_bits
    for i in range(start, len(arch.layers) if stop is None else stop):
        l = arch.layers[i]
        if l.type == "linear":
            h = _linear(l, h, params, s)
        elif l.type == "conv2d":
            h = _conv(l, h, params, s, patches if i == start else None)
        elif l.type == "relu":
            h = np.maximum(h, 0)
        elif l.type == "maxpool2d":
            h = _maxpool(l, h)
        elif l.type == "avgpool2d":
            h = _avgpool(l, h)
        elif l.type in ("batchnorm", "dropout"):
            pass  # folded at export / training only
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
    """A validation shard prepared once for many evaluations.

    The layers before the first parametrised one (pooling, flatten, relu, ...) do not depend on
    the model, so their output is computed once; if that first parametrised layer is a conv2d,
    its im2col is cached too. Results equal ``forward`` exactly (same functions, same order).
    """

    def __init__(self, arch: ArchSpec, x: np.ndarray, y: np.ndarray) -> None:
        self.arch = arch
        self.x = np.asarray(x, dtype=np.int64)
        self.y = np.asarray(y, dtype=np.int64)
        if tuple(self.x.shape[1:]) != arch.input_shape:
            raise ShapeError(f"input shape {list(self.x.shape[1:])} where {list(arch.input_shape)} is declared")
        self.start = next((i for i, l in enumerate(arch.layers) if l.type in ("linear", "conv2d")),
                          len(arch.layers))
        self.h0 = forward_from(arch, {}, self.x, 0, stop=self.start)
        first = arch.layers[self.start] if self.start < len(arch.layers) else None
        self.patches = (im2col(self.h0, first.kernel_size, first.stride, first.padding)
                        if first is not None and first.type == "conv2d" else None)

    def logits(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        return forward_from(self.arch, params, self.h0, self.start, self.patches)

    def count_correct(self, params: Mapping[str, np.ndarray]) -> int:
        return int(np.count_nonzero(np.argmax(self.logits(params), axis=1) == self.y))

    def margin_sum(self, params: Mapping[str, np.ndarray], clip: int) -> int:
        """Sum over the shard of the clipped margin (see the module docstring for the rule)."""
        return margin_sum(self.logits(params), self.y, clip << self.arch.scale_bits)


def margins(logits: np.ndarray, y: np.ndarray, bound: int) -> np.ndarray:
    """Per sample ``clip(z_i[y_i] - max_{c != y_i} z_i[c], -bound, bound)`` (int64), with the
    bound checked so that any sum of them fits int64."""
    z = np.asarray(logits, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    n = z.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if bound < 0 or n * bound >= ACC_LIMIT:
        raise InferenceOverflowError(f"margin sum of {n} samples clipped at {bound} could overflow int64")
    rows = np.arange(n)
    true = z[rows, y]
    other = z.copy()
    other[rows, y] = np.iinfo(np.int64).min
    return np.clip(true - other.max(axis=1), -bound, bound)


def margin_sum(logits: np.ndarray, y: np.ndarray, bound: int) -> int:
    """sum_i clip(z_i[y_i] - max_{c != y_i} z_i[c], -bound, bound), exact in int64."""
    return int(margins(logits, y, bound).sum())
