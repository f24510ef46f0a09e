"""A full market scenario with no torch and no sklearn, for cross-architecture checks.

Run on the host and under qemu-riscv64 (tests/test_market_riscv.py); both print one line per
output (notice, voucher, report) with its keccak, then the market digest. The lines must be
identical: the same inputs give the same output bytes on x86-64 and on RISC-V.

Trainers' updates are made in integers: each honest trainer moves the global model part of the
way toward a hidden teacher model (which labels the synthetic data), with a little noise; one
attacker moves it the other way, scaled up. Two jobs run: one over GIO, one whose content is
posted through inputs (so the inbox's reassembly and hashing run too), and one under the
template's `validated` rule with a public shard, scored by stratified sampled Shapley.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from dapp.hashing import keccak
from dapp.market import protocol as p
from dapp.market.app import Market
from dapp.ml.arch import ArchSpec
from dapp.ml.inference import predict
from dapp.ml.model_format import Model, encode_dataset, encode_model, initial_model
from dapp.ml.randomness import KeccakStream
from dapp.outputs import Notice
from tests.market_harness import OWNER, TRAINERS, MarketSim

ARCH = {"input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 10,
        "layers": [
            {"type": "conv2d", "name": "conv", "in_channels": 1, "out_channels": 4,
             "kernel_size": 3, "stride": 1, "padding": 1},
            {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
            {"type": "linear", "name": "fc", "in_features": 64, "out_features": 10}]}
WINDOWS = {"start_delay": 5, "commit": 50, "reveal": 50, "validation": 50}
ROUNDS = 2


def ints(stream: KeccakStream, shape: tuple[int, ...], bound: int) -> np.ndarray:
    n = int(np.prod(shape))
    return np.array([stream.randbelow(2 * bound + 1) - bound for _ in range(n)],
                    dtype=np.int64).reshape(shape)


def toward(g: Model, target: Model, num: int, den: int, noise: np.ndarray | None) -> Model:
    out, pos = {}, 0
    for name in sorted(g):
        a, t = g[name].astype(np.int64), target[name].astype(np.int64)
        v = a + (t - a) * num // den
        if noise is not None:
            v = v + noise[pos:pos + v.size].reshape(v.shape)
        pos += v.size
        out[name] = v.astype(np.int32)
    return Model(out)


def toward_classes(g: Model, target: Model, num: int, den: int, noise: np.ndarray,
                   classes: tuple[int, ...]) -> Model:
    """A skewed trainer: the output rows of its own classes move toward the teacher, the rest of
    the model a quarter as far, so trainers with different classes send different updates."""
    near = toward(g, target, num, 4 * den, noise)
    far = toward(g, target, num, den, noise)
    out = dict(near)
    for name in ("fc.weight", "fc.bias"):
        v = near[name].copy()
        v[list(classes)] = far[name][list(classes)]
        out[name] = v
    return Model(out)


def emit(lines: list[str], tag: str, res) -> None:
    for item in res.outputs.emitted:
        kind = "notice" if isinstance(item, Notice) else "voucher"
        body = item.payload if isinstance(item, Notice) else (
            item.destination.encode() + item.value.to_bytes(32, "big") + item.payload)
        lines.append(f"{tag} {kind} {keccak(body).hex()}")
    for r in res.outputs.reports:
        lines.append(f"{tag} report {keccak(r).hex()}")


def run(source: str, lines: list[str]) -> None:
    """`source`: "gio" or "inputs" (the content source), or "validated": over GIO with the
    template's rule, a public shard and stratified, truncated sampling with a zero band."""
    validated = source == "validated"
    sim = MarketSim()
    if source == "inputs":
        sim.market = Market(None)
    arch = ArchSpec.from_dict(ARCH)
    stream = KeccakStream(b"tributary/golden/market")
    g0 = initial_model(arch, b"golden-initial")
    teacher = initial_model(arch, b"golden-teacher")
    one = 1 << arch.scale_bits
    shards, commitments = [], []
    for r in range(ROUNDS):
        x = ints(stream, (48, 1, 8, 8), one).astype(np.int32)
        y = predict(arch, teacher, x).astype(np.int32)
        cid = sim.content.put(encode_dataset(x, y))
        salt = bytes([r + 1]) * 32
        shards.append((cid, salt))
        commitments.append("0x" + p.validation_commitment(cid, salt).hex())
    spec = {"version": 1, "name": "golden", "arch": ARCH,
            "initial_model": sim.content.put(encode_model(g0, arch)), "rounds": ROUNDS,
            "windows": WINDOWS, "content_source": source,
            "hparams": {"learning_rate": [1, 10], "local_epochs": 1, "batch_size": 16,
                        "schedule": {"type": "plateau", "patience": 1, "min_delta": 1,
                                     "factor": [1, 2], "min_lr": [1, 1000]}},
            "aggregation": {"rule": "multi_krum", "f": 1, "m": 4, "then": "fedavg"},
            "contribution": {"method": "shapley", "exact_max_players": 8},
            "data_schema": {"feature_shape": [1, 8, 8], "num_classes": 10,
                            "max_samples": 10000, "weight_cap": 500},
            "validation": commitments, "max_trainers": 8,
            "limits": {"max_shard_samples": 1000}}
    if validated:
        x = ints(stream, (32, 1, 8, 8), one).astype(np.int32)
        from client.jobs import DEMO_AGGREGATION

        spec.update(content_source="gio", aggregation=DEMO_AGGREGATION,
                    public_validation=sim.content.put(encode_dataset(
                        x, predict(arch, teacher, x).astype(np.int32))),
                    contribution={"method": "shapley", "exact_max_players": 2,
                                  "permutations": 8, "sampling": "stratified",
                                  "truncation": [1, 100], "zero_band": [1, 100]})
    spec_cid = sim.content.put(json.dumps(spec, sort_keys=True).encode())

    def post(cid: str) -> None:
        if source != "inputs":
            return
        for call in p.PutContent.chunks(cid, sim.content.objects[cid]):
            emit(lines, source, sim.call(OWNER, call))

    post(spec_cid)
    post(spec["initial_model"])
    emit(lines, source, sim.deposit_eth(OWNER, 10**18 + 7, p.CreateJob(spec_cid).encode()))
    trainers = TRAINERS[:5]
    for t in trainers:
        emit(lines, source, sim.call(t, p.Join(1)))
    sim.advance(WINDOWS["start_delay"])
    for r in range(ROUNDS):
        g = sim.market._models[sim.market.state.jobs[1].global_model_hash]
        subs = {}
        for i, t in enumerate(trainers):
            noise = ints(stream, (arch.param_count(),), 3)
            m = (toward(g, teacher, -3, 1, noise) if i == 4
                 else toward_classes(g, teacher, i + 1, 8, noise, (2 * i, 2 * i + 1)) if validated
                 else toward(g, teacher, i + 1, 8, noise))
            # under the template's rule, skewed cards: trainer i holds classes 2i and 2i + 1
            hist = ([50 * (i + 1) if c in (2 * i, 2 * i + 1) else 0 for c in range(10)]
                    if validated else [10 * (i + 1)] * 10)
            card = json.dumps({"version": 1, "num_samples": 100 * (i + 1),
                               "label_histogram": hist,
                               "feature_shape": [1, 8, 8], "data_commitment": "0x" + "11" * 32,
                               "dp": None}).encode()
            sub = (sim.content.put(encode_model(m, arch)), sim.content.put(card),
                   bytes([i + 9]) * 32)
            subs[t] = sub
            emit(lines, source, sim.call(t, p.Commit(1, r, p.commitment(t, 1, r, *sub))))
        sim.advance(WINDOWS["commit"])
        for t, sub in subs.items():
            post(sub[0])
            post(sub[1])
            emit(lines, source, sim.call(t, p.Reveal(1, r, *sub)))
        post(shards[r][0])
        emit(lines, source, sim.call(OWNER, p.RevealValidation(1, r, *shards[r])))
        sim.advance(WINDOWS["reveal"])
        emit(lines, source, sim.call(OWNER, p.CloseRound(1, r)))
    for t in trainers + [OWNER]:
        bal = sim.market.state.ledger.balance(p.ETH, t)
        if bal:
            emit(lines, source, sim.call(t, p.Withdraw(p.ETH, bal)))
    lines.append(f"{source} digest {sim.market.digest().hex()}")


def main() -> None:
    lines: list[str] = []
    for source in ("gio", "inputs", "validated"):
        run(source, lines)
    lines.append(f"all {keccak(chr(10).join(lines).encode()).hex()}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
