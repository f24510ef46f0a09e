"""Integer inference: exact semantics, overflow refusal, and accuracy against float PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dapp.ml.arch import ArchSpec
from dapp.ml.errors import InferenceOverflowError
from dapp.ml.inference import PreparedShard, count_correct, forward, predict
from dapp.ml.model_format import Model
from tests.ml_scenarios import (CNN_SPEC, MLP_SPEC, arch_for, digits, float_accuracy, global_model,
                                initial_float_model, to_fixed, train_local)

TINY = {"input_shape": [1, 4, 4], "num_classes": 3, "scale_bits": 4,
        "layers": [{"type": "conv2d", "name": "c", "in_channels": 1, "out_channels": 2, "kernel_size": 3,
                    "stride": 1, "padding": 1},
                   {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                   {"type": "linear", "name": "f", "in_features": 8, "out_features": 3}]}


def reference(arch: ArchSpec, m: Model, x: np.ndarray) -> list[list[int]]:
    """Python-int reference of the declared semantics (loops, no NumPy arithmetic)."""
    s = arch.scale_bits
    out = []
    for sample in x.tolist():
        h = sample
        for l in arch.layers:
            if l.type == "conv2d":
                w, b = m[f"{l.name}.weight"].tolist(), m[f"{l.name}.bias"].tolist()
                C, H, W = len(h), len(h[0]), len(h[0][0])
                p = l.padding
                get = lambda c, i, j: h[c][i][j] if 0 <= i < H and 0 <= j < W else 0  # noqa: E731
                oh = (H + 2 * p - l.kernel_size) // l.stride + 1
                ow = (W + 2 * p - l.kernel_size) // l.stride + 1
                h = [[[(sum(w[o][c][a][bb] * get(c, i * l.stride + a - p, j * l.stride + bb - p)
                            for c in range(C) for a in range(l.kernel_size) for bb in range(l.kernel_size))
                        + (b[o] << s) + (1 << (s - 1))) >> s for j in range(ow)] for i in range(oh)]
                     for o in range(l.out_channels)]
            elif l.type == "relu":
                h = [[[max(v, 0) for v in r] for r in c] for c in h] if isinstance(h[0], list) else [max(v, 0) for v in h]
            elif l.type == "maxpool2d":
                k = l.kernel_size
                h = [[[max(c[i * k + a][j * k + bb] for a in range(k) for bb in range(k))
                       for j in range(len(c[0]) // k)] for i in range(len(c) // k)] for c in h]
            elif l.type == "flatten":
                h = [v for c in h for r in c for v in r]
            elif l.type == "linear":
                w, b = m[f"{l.name}.weight"].tolist(), m[f"{l.name}.bias"].tolist()
                h = [(sum(wi * xi for wi, xi in zip(w[o], h)) + (b[o] << s) + (1 << (s - 1))) >> s
                     for o in range(l.out_features)]
        out.append(h)
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_matches_python_int_reference(seed: int) -> None:
    arch = ArchSpec.from_dict(TINY)
    rng = np.random.default_rng(seed)
    m = Model({n: rng.integers(-200, 200, s).astype(np.int32) for n, s in arch.param_shapes()})
    x = rng.integers(-300, 300, (3, 1, 4, 4)).astype(np.int32)
    assert forward(arch, m, x).tolist() == reference(arch, m, x)


def test_argmax_ties_lowest_index() -> None:
    arch = ArchSpec.from_dict({"input_shape": [2], "num_classes": 3, "scale_bits": 0,
                               "layers": [{"type": "linear", "name": "f", "in_features": 2, "out_features": 3}]})
    m = Model({"f.weight": np.array([[1, 0], [1, 0], [0, 1]], np.int32), "f.bias": np.zeros(3, np.int32)})
    assert predict(arch, m, np.array([[5, 5], [5, 1], [1, 5]], np.int32)).tolist() == [0, 0, 2]


def test_overflow_is_refused() -> None:
    arch = ArchSpec.from_dict({"input_shape": [4], "num_classes": 2, "scale_bits": 16,
                               "layers": [{"type": "linear", "name": "f", "in_features": 4, "out_features": 2}]})
    big = 2**31 - 1
    m = Model({"f.weight": np.full((2, 4), big, np.int32), "f.bias": np.zeros(2, np.int32)})
    with pytest.raises(InferenceOverflowError, match="'f'.*2\\*\\*62"):
        predict(arch, m, np.full((1, 4), big, np.int32))
    # A bound just below 2**62 is accepted and exact.
    m2 = Model({"f.weight": np.array([[big, 0, 0, 0], [0, 0, 0, 0]], np.int32), "f.bias": np.zeros(2, np.int32)})
    assert forward(arch, m2, np.full((1, 4), big, np.int32))[0, 0] == (big * big + 2**15) >> 16


def test_prepared_shard_equals_count_correct() -> None:
    arch = arch_for(CNN_SPEC)
    d = digits()
    x, y = to_fixed(d.x_val), d.y_val.astype(np.int32)
    g = global_model()
    assert PreparedShard(arch, x, y).count_correct(g) == count_correct(arch, g, x, y)


@pytest.mark.parametrize("spec", ["cnn", "mlp"])
def test_accuracy_within_one_point_of_float_torch(spec: str) -> None:
    arch = arch_for(CNN_SPEC if spec == "cnn" else MLP_SPEC)
    d = digits()
    x_train = np.concatenate([d.x_public, d.x_pool])
    y_train = np.concatenate([d.y_public, d.y_pool])
    m = train_local(arch, initial_float_model(arch, 1), x_train, y_train, epochs=8, lr=0.01, seed=1)
    xt = d.x_test.reshape(len(d.x_test), *arch.input_shape)
    int_acc = count_correct(arch, m, to_fixed(xt), d.y_test) / len(d.y_test)
    f_acc = float_accuracy(arch, m, d.x_test, d.y_test)
    assert f_acc > 0.9, f_acc
    assert abs(int_acc - f_acc) <= 0.01, (int_acc, f_acc)
