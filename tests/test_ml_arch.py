"""The layers of MNIST / CIFAR-10 baselines: average pooling (integer, declared rounding), batch
norm (trained in PyTorch, folded into the layer before it at export), dropout (training only),
and a CIFAR-shaped job (3x32x32, 10 classes) run end to end: PyTorch training, export, integer
inference, and a round closed and paid through the market."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from client.training import accuracy_float, train_local
from dapp.market import protocol as p
from dapp.ml.arch import ArchSpec
from dapp.ml.errors import ArchSpecError, InferenceOverflowError
from dapp.ml.fixedpoint import export_state_dict, from_torch_module, load_model, quantize, torch_module
from dapp.ml.inference import count_correct, forward, predict
from dapp.ml.model_format import decode_model, encode_dataset, encode_model, initial_model
from tests.market_harness import OWNER, TRAINERS, WINDOWS, DigitsJob, MarketSim

CIFAR_ARCH = {
    "input_shape": [3, 32, 32], "num_classes": 10, "scale_bits": 12,
    "layers": [
        {"type": "conv2d", "name": "conv1", "in_channels": 3, "out_channels": 8, "kernel_size": 3,
         "stride": 1, "padding": 1},
        {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "name": "conv2", "in_channels": 8, "out_channels": 16, "kernel_size": 3,
         "stride": 1, "padding": 1},
        {"type": "batchnorm"}, {"type": "relu"}, {"type": "avgpool2d", "kernel_size": 2},
        {"type": "flatten"}, {"type": "dropout", "p": [1, 4]},
        {"type": "linear", "name": "fc", "in_features": 1024, "out_features": 10}]}

POOL_ONLY = {"input_shape": [1, 5, 5], "num_classes": 4, "scale_bits": 4,
             "layers": [{"type": "avgpool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"},
                        {"type": "linear", "name": "f", "in_features": 16, "out_features": 4}]}


def synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour images whose class is a smooth per-class template plus noise (float, [-1, 1])."""
    rng = np.random.default_rng(1234)  # the templates are the same for every draw
    coarse = rng.normal(0, 1, (10, 3, 4, 4))
    templates = np.kron(coarse, np.ones((1, 1, 8, 8)))
    r = np.random.default_rng(seed)
    y = r.integers(0, 10, n)
    x = np.clip(0.5 * templates[y] + r.normal(0, 0.5, (n, 3, 32, 32)), -1, 1)
    return x.astype(np.float32), y.astype(np.int64)


# ------------------------------------------------------------------ spec

def test_new_layers_parse_round_trip_and_refuse_bad_specs() -> None:
    arch = ArchSpec.from_dict(CIFAR_ARCH)
    assert ArchSpec.from_dict(arch.to_dict()) == arch
    assert arch.to_dict()["layers"][9] == {"type": "dropout", "p": [1, 4]}
    # batch norm and dropout add no tensors to the model file: folded / training-only
    assert [n for n, _ in arch.param_shapes()] == ["conv1.bias", "conv1.weight", "conv2.bias",
                                                   "conv2.weight", "fc.bias", "fc.weight"]
    assert arch.shapes()[8] == (16, 8, 8)
    bad = [
        ({"type": "batchnorm"}, 0, "must directly follow"),               # first layer
        ({"type": "dropout", "p": [1, 1]}, 9, "dropout p"),               # p = 1 drops everything
        ({"type": "dropout", "p": [1.5, 2]}, 9, "dropout p"),
        ({"type": "dropout"}, 9, "dropout p"),
        ({"type": "batchnorm", "eps": 1}, 1, "unknown fields"),
        ({"type": "avgpool2d", "kernel_size": 64}, 3, "pool larger"),
    ]
    for layer, at, msg in bad:
        spec = json.loads(json.dumps(CIFAR_ARCH))
        spec["layers"][at] = layer
        with pytest.raises(ArchSpecError, match=msg):
            ArchSpec.from_dict(spec)
    after_relu = json.loads(json.dumps(CIFAR_ARCH))
    after_relu["layers"][1], after_relu["layers"][2] = after_relu["layers"][2], after_relu["layers"][1]
    with pytest.raises(ArchSpecError, match="must directly follow a conv2d or linear"):
        ArchSpec.from_dict(after_relu)


# ------------------------------------------------------------------ avgpool2d

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_avgpool_is_the_window_mean_rounded_half_up(seed: int) -> None:
    arch = ArchSpec.from_dict(POOL_ONLY)
    rng = np.random.default_rng(seed)
    x = rng.integers(-40, 41, (3, 1, 5, 5)).astype(np.int32)
    eye = np.zeros((4, 16), dtype=np.int32)
    eye[np.arange(4), np.arange(4)] = 1 << arch.scale_bits     # fc passes the first 4 pooled values
    model = {"f.weight": eye, "f.bias": np.zeros(4, dtype=np.int32)}
    out = forward(arch, model, x)
    for n in range(3):
        for o in range(4):
            i, j = divmod(o, 4)
            window = [int(x[n, 0, i + a, j + b]) for a in range(2) for b in range(2)]
            # mean rounded half up, in exact rationals: floor(sum / 4 + 1/2)
            assert out[n, o] == (2 * sum(window) + 4) // 8


def test_avgpool_rounds_half_way_windows_up_for_both_signs() -> None:
    arch = ArchSpec.from_dict(POOL_ONLY)
    row = [-2, -1, 2, 1, 0]                    # windows at columns 0 and 2 sum to -6 and 6
    x = np.array([[[row, row] + [[0] * 5] * 3]], dtype=np.int32)
    eye = np.zeros((4, 16), dtype=np.int32)
    eye[np.arange(4), np.arange(4)] = 1 << arch.scale_bits
    out = forward(arch, {"f.weight": eye, "f.bias": np.zeros(4, dtype=np.int32)}, x)
    assert (int(out[0, 0]), int(out[0, 2])) == (-1, 2)   # -1.5 -> -1, 1.5 -> 2 (toward +inf)


def test_avgpool_refuses_a_sum_that_could_overflow() -> None:
    arch = ArchSpec.from_dict(POOL_ONLY)
    model = {"f.weight": np.zeros((4, 16), dtype=np.int32), "f.bias": np.zeros(4, dtype=np.int32)}
    x = np.full((1, 1, 5, 5), 1 << 60, dtype=np.int64)
    with pytest.raises(InferenceOverflowError, match="avgpool2d"):
        forward(arch, model, x)


# ------------------------------------------------------------------ batch norm folding, dropout

def test_batchnorm_folds_into_the_layer_before_and_dropout_vanishes_at_export() -> None:
    import torch

    torch.manual_seed(0)
    arch = ArchSpec.from_dict(CIFAR_ARCH)
    x, y = synthetic_cifar(64, seed=1)
    net = torch_module(arch)
    load_model(net, initial_model(arch, b"bn-test"), arch)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    net.train()
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).double().numpy()
    # the running statistics moved, so folding is not a no-op
    assert float(net.bn1.running_var.sub(1).abs().max()) > 0.01
    folded = export_state_dict(net, arch)
    assert sorted(folded) == [n for n, _ in arch.param_shapes()]
    plain = torch_module(arch)
    load_model(plain, from_torch_module(net, arch), arch)
    plain.eval()
    with torch.no_grad():
        got = plain(torch.from_numpy(x)).double().numpy()
    assert np.abs(got - want).max() < 0.05 * max(1.0, np.abs(want).max())
    # and integer inference of the exported model agrees with the float network
    model = from_torch_module(net, arch)
    pred = predict(arch, model, quantize(x, arch.scale_bits))
    assert (pred == want.argmax(1)).mean() >= 0.95
    # in training mode dropout really drops: two passes differ; in eval they do not
    plain.train()
    with torch.no_grad():
        a, b = plain(torch.from_numpy(x[:4])), plain(torch.from_numpy(x[:4]))
    assert not torch.equal(a, b)


# ------------------------------------------------------------------ a CIFAR-shaped job, end to end

def test_cifar_shaped_job_trains_exports_infers_and_closes_a_round() -> None:
    import torch

    torch.set_num_threads(1)
    sim = MarketSim()
    arch = ArchSpec.from_dict(CIFAR_ARCH)
    init = initial_model(arch, b"cifar-init")
    init_cid = sim.content.put(encode_model(init, arch))
    xv, yv = synthetic_cifar(100, seed=99)
    shard_cid = sim.content.put(encode_dataset(quantize(xv, arch.scale_bits), yv.astype(np.int32)))
    salt = b"\x05" * 32
    spec = {"version": 1, "name": "cifar-shaped", "arch": CIFAR_ARCH, "initial_model": init_cid,
            "rounds": 1, "windows": WINDOWS,
            "hparams": {"learning_rate": [1, 20], "local_epochs": 2, "batch_size": 32},
            "aggregation": {"rule": "fedavg"},
            "contribution": {"method": "shapley", "exact_max_players": 8, "utility": "margin",
                             "zero_band": [1, 100]},
            "fallback": "equal",
            "data_schema": {"feature_shape": [3, 32, 32], "num_classes": 10,
                            "max_samples": 100000, "weight_cap": 400},
            "validation": ["0x" + p.validation_commitment(shard_cid, salt).hex()],
            "max_trainers": 3,
            "limits": {"max_model_bytes": 1 << 20, "max_shard_samples": 100}}
    spec_cid = sim.content.put(json.dumps(spec).encode())
    res = sim.deposit_eth(OWNER, 10**18, p.CreateJob(spec_cid).encode())
    assert res.accepted and res.notices, res.reports
    job = DigitsJob(sim, arch, spec, spec_cid, [(shard_cid, salt)], xv, yv, res.notices[0]["job"])

    trainers = TRAINERS[:3]
    for t in trainers:
        assert sim.call(t, p.Join(job.job_id)).accepted
    sim.advance(WINDOWS["start_delay"])
    g = sim.market._models[sim.market.state.jobs[job.job_id].global_model_hash]
    subs, models = {}, {}
    for i, t in enumerate(trainers):
        x, y = synthetic_cifar(160, seed=10 + i)
        model, stats = train_local(arch, g, x, y, spec["hparams"], seed=i)
        assert stats.steps == 10
        models[t] = model
        # integer inference of the exported (folded) model agrees with float PyTorch
        ip = predict(arch, model, quantize(xv, arch.scale_bits))
        float_acc = accuracy_float(arch, model, xv, yv)
        int_acc = count_correct(arch, model, quantize(xv, arch.scale_bits), yv) / len(yv)
        assert abs(float_acc - int_acc) <= 0.03 and int_acc > 0.5, (float_acc, int_acc)
        assert len(set(ip.tolist())) > 1
        card = json.dumps({"version": 1, "num_samples": len(y), "label_histogram":
                           np.bincount(y, minlength=10).tolist(), "feature_shape": [3, 32, 32],
                           "data_commitment": "0x" + f"{i:064x}", "dp": None}).encode()
        subs[t] = job.submit(t, 0, model, np.arange(len(y)), salt=bytes([i + 1]) * 32, card=card)
        assert job.commit(t, 0, subs[t]).accepted
    sim.advance(WINDOWS["commit"])
    for t, sub in subs.items():
        r = job.reveal(t, 0, sub)
        assert r.accepted, r.reports
    assert job.reveal_validation(0).accepted
    sim.advance(WINDOWS["reveal"])
    res = job.close(0)
    assert res.accepted, res.reports
    [notice] = res.notices
    assert notice["type"] == "round_closed"
    verdicts = {e["address"]: e for e in notice["trainers"]}
    assert all(verdicts[t]["verdict"] == "accepted" for t in trainers)
    assert int(notice["paid"]) + int(notice["carried"]) == int(notice["budget"])
    assert int(notice["paid"]) > 0
    assert notice["accuracy"]["total"] == 100 and notice["accuracy"]["correct"] > 50
    assert sim.market.state.conserved()
    # the published aggregate is a plain model of the spec: it decodes, and its integer accuracy
    # on the shard is the notice's
    chunks = [p.ModelChunk.decode(r_) for r_ in res.outputs.reports if r_[:4] == p.MODEL_CHUNK]
    new = decode_model(p.ModelChunk.join(chunks, bytes.fromhex(notice["model_hash"][2:])), arch,
                       max_bytes=1 << 20)
    assert count_correct(arch, new, quantize(xv, arch.scale_bits), yv) == notice["accuracy"]["correct"]


def test_prepared_shard_caches_the_parameter_free_prefix_exactly() -> None:
    from dapp.ml.inference import PreparedShard

    pool_conv = {"input_shape": [2, 9, 9], "num_classes": 3, "scale_bits": 6,
                 "layers": [{"type": "avgpool2d", "kernel_size": 3, "stride": 2}, {"type": "relu"},
                            {"type": "conv2d", "name": "c", "in_channels": 2, "out_channels": 3,
                             "kernel_size": 2, "stride": 1, "padding": 1},
                            {"type": "batchnorm"}, {"type": "relu"}, {"type": "flatten"},
                            {"type": "dropout", "p": [1, 2]},
                            {"type": "linear", "name": "f", "in_features": 75, "out_features": 3}]}
    for spec in (pool_conv, POOL_ONLY, CIFAR_ARCH):
        arch = ArchSpec.from_dict(spec)
        rng = np.random.default_rng(3)
        x = rng.integers(-(1 << arch.scale_bits), 1 << arch.scale_bits, (5, *arch.input_shape)).astype(np.int32)
        y = rng.integers(0, arch.num_classes, 5)
        model = initial_model(arch, b"prefix")
        shard = PreparedShard(arch, x, y)
        assert np.array_equal(shard.logits(model), forward(arch, model, x))
        assert shard.count_correct(model) == count_correct(arch, model, x, y)
