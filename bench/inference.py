"""Integer inference throughput against float PyTorch on the same digits CNN.

Layouts tried for the conv (all give identical logits, checked here):
* ``im2col_right``: patches [N, OH, OW, C*k*k] @ W.T (the library's layout);
* ``im2col_left``: W [O, C*k*k] @ patches [C*k*k, N*OH*OW] (channel-major output);
* ``per_tap``: no patch matrix; k*k shifted multiply-adds (broadcast), one per kernel tap.
Each at batch sizes 128 and 512. ``--full`` uses 16x more samples.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench import write_results
from dapp.ml import inference
from dapp.ml.fixedpoint import rescale, to_torch_state_dict, torch_module
from tests.ml_scenarios import CNN_SPEC, arch_for, digits, global_model, to_fixed


def conv_left(l, x, params, s, patches=None):
    w = np.asarray(params[f"{l.name}.weight"], dtype=np.int64).reshape(l.out_channels, -1)
    b = np.asarray(params[f"{l.name}.bias"], dtype=np.int64)
    inference._check_bound(l.name, inference._max_abs(x), w, b, s)
    p = inference.im2col(x, l.kernel_size, l.stride, l.padding)
    n, oh, ow, f = p.shape
    acc = w @ p.reshape(-1, f).T  # O, N*OH*OW
    acc += (b << np.int64(s))[:, None]
    return rescale(acc, s).reshape(l.out_channels, n, oh, ow).transpose(1, 0, 2, 3)


def conv_taps(l, x, params, s, patches=None):
    w = np.asarray(params[f"{l.name}.weight"], dtype=np.int64)
    b = np.asarray(params[f"{l.name}.bias"], dtype=np.int64)
    inference._check_bound(l.name, inference._max_abs(x), w.reshape(l.out_channels, -1), b, s)
    k, p, st = l.kernel_size, l.padding, l.stride
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh = (x.shape[2] + 2 * p - k) // st + 1
    ow = (x.shape[3] + 2 * p - k) // st + 1
    acc = np.zeros((x.shape[0], l.out_channels, oh, ow), np.int64)
    for i in range(k):
        for j in range(k):
            sl = xp[:, :, i:i + st * oh:st, j:j + st * ow:st]  # N C OH OW
            acc += np.einsum("nchw,oc->nohw", sl, w[:, :, i, j])
    acc += (b << np.int64(s))[None, :, None, None]
    return rescale(acc, s)


def timeit(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args(argv)
    arch = arch_for(CNN_SPEC)
    m = global_model()
    d = digits()
    reps = 40 if args.full else 5
    xf = np.concatenate([d.x_test] * reps)  # 400 * reps samples
    x = to_fixed(xf)
    n = len(x)
    ref = inference.forward(arch, m, x[:256])
    layouts = {"im2col_right": inference._conv, "im2col_left": conv_left, "per_tap": conv_taps}
    results: dict[str, float] = {}
    orig = inference._conv
    try:
        for name, fn in layouts.items():
            inference._conv = fn
            assert np.array_equal(inference.forward(arch, m, x[:256]), ref), name
            for batch in (128, 512):
                t = timeit(lambda: inference.predict(arch, m, x, batch=batch))
                results[f"{name}/batch{batch}"] = n / t
    finally:
        inference._conv = orig
    net = torch_module(arch)
    net.load_state_dict(to_torch_state_dict(m, arch))
    net.eval()
    xt = torch.from_numpy(xf.astype(np.float32))
    torch_rates = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            torch_rates[threads] = n / timeit(lambda: net(xt).argmax(1))
    best = max(results, key=results.get)
    print(f"samples: {n}; digits CNN ({arch.param_count()} params)")
    for k, v in results.items():
        print(f"  int64 {k:<22} {v:>12,.0f} samples/s   ratio to torch(1 thread) {v / torch_rates[1]:.3f}")
    for th, v in torch_rates.items():
        print(f"  torch float32 {th} thread(s)      {v:>12,.0f} samples/s")
    print(f"best integer layout: {best} ({results[best] / torch_rates[1]:.3f} x torch 1 thread, "
          f"{results[best] / torch_rates[2]:.3f} x torch 2 threads)")
    out = {"samples": n, "int_samples_per_s": results, "torch_samples_per_s": {str(k): v for k, v in torch_rates.items()},
           "best_layout": best, "best_ratio_vs_torch_1thread": results[best] / torch_rates[1],
           "best_ratio_vs_torch_2threads": results[best] / torch_rates[2]}
    write_results("inference", out)


if __name__ == "__main__":
    main()
