"""Whole jobs on scikit-learn's digits, run through the real market backend, for the mechanism's
guarantees (issue 10): what a dishonest owner or a splitting trainer can get, against the same
scenario played honestly.

A job here: a linear digits model (scale 2**12) whose initial model the owner trained on its
public shard (150 samples, the spec's ``public_validation``), one secret shard of 100 samples
per round, honest trainers with disjoint parts of the 947-sample pool who really train
(PyTorch Adam, minibatches, ``tests.ml_scenarios.train_local``) from the current global model
every round. Accuracy is measured on the 400-sample test set that nobody trains or scores on.

Owner strategies (``OWNER_STRATEGIES``): honest; ``near_copies`` (9 identities reveal the global
model plus 1 in one bias), with the secret shards revealed or ``_withheld``; ``withhold`` and
``withhold_some`` (round 1 only); ``useless_shard`` (secret shards of blank images) and
``mislabeled_shard`` (labels shifted by one); ``train_little`` (9 identities, each a few steps of
training on a slice of the public shard); ``stale_global`` (9 identities re-submit the previous
round's global model); ``cancel_late`` (the owner tries to cancel once round 0 started).

Trainer behaviours (``Trainer.mode``): ``honest``; ``split_noise`` (one update under k addresses,
each plus small noise); ``duplicate_data`` (k identities each train on the whole data, own seed);
``subsample`` (k identities each train on a random 3/4 of the data); ``split_data`` (k
identities each train on a disjoint 1/k of the data: the bench measures it, no guarantee is
claimed, see the README); ``overreport`` (claims the
schema's maximum sample count); ``stretch`` (its honest delta times k/10: a larger step, not
more data); attacks ``label_flip``, ``sign_flip``, ``scaled``, ``noise``,
``free_rider`` as in ``tests.ml_scenarios``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from client.jobs import DEMO_AGGREGATION
from dapp.market import protocol as p
from dapp.ml.aggregation import build_strategy
from dapp.ml.arch import ArchSpec
from dapp.ml.fixedpoint import quantize
from dapp.ml.inference import count_correct
from dapp.ml.model_format import Model, encode_dataset, encode_model
from tests.market_harness import OWNER, WINDOWS, MarketSim
from tests.ml_scenarios import digits, initial_float_model, train_local

ARCH_DICT: dict[str, Any] = {
    "input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 12,
    "layers": [{"type": "flatten"},
               {"type": "linear", "name": "fc", "in_features": 64, "out_features": 10}]}
ARCH = ArchSpec.from_dict(ARCH_DICT)
VALIDATED: dict[str, Any] = build_strategy(DEMO_AGGREGATION).to_dict()
"""The rule every job created from the template gets (its canonical form)."""
CONTRIBUTION: dict[str, Any] = {"method": "shapley", "exact_max_players": 10,
                                "permutations": 64}
OWNER_STRATEGIES = ("honest", "near_copies", "near_copies_withheld", "withhold",
                    "withhold_some", "useless_shard", "mislabeled_shard", "train_little",
                    "stale_global", "cancel_late")
IDENTITIES = ["0x" + f"{0xc0 + i:02x}" * 20 for i in range(9)]


def trainer_address(i: int) -> str:
    return "0x" + f"{0x20 + i:02x}" * 20


def fixed(x: np.ndarray) -> np.ndarray:
    return quantize(x.reshape(len(x), 1, 8, 8), ARCH.scale_bits)


OWNER_POOL = 100   # the first samples of the pool are the owner's own (never a trainer's)


@functools.lru_cache(maxsize=None)
def owner_initial_model() -> Model:
    """The owner's starting point: a linear model trained on its own 100 samples (not the
    public shard, which must stay a fair test of every update)."""
    d = digits()
    return train_local(ARCH, initial_float_model(ARCH, 0), d.x_pool[:OWNER_POOL],
                       d.y_pool[:OWNER_POOL], epochs=4, lr=0.01, seed=1)


def test_accuracy(model: Model) -> float:
    d = digits()
    return count_correct(ARCH, model, fixed(d.x_test), d.y_test) / len(d.y_test)


@dataclass
class Trainer:
    """One real data holder; ``k`` identities when it splits (addresses i*16 + j)."""

    index: int
    samples: np.ndarray          # indices into the digits pool
    mode: str = "honest"
    k: int = 1
    label_noise: int = 0         # percent of labels replaced by random ones

    def addresses(self) -> list[str]:
        if self.k == 1:
            return [trainer_address(self.index)]
        return ["0x" + f"{0x40 + self.index * 16 + j:02x}" * 20 for j in range(self.k)]


@dataclass
class JobRun:
    """What a finished job left: final balances, per-round notices, test accuracy per round."""

    balances: dict[str, int]
    notices: list[dict[str, Any]]
    accuracy: list[float]
    refund: int
    cancel_refused: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def total(self, addrs: list[str]) -> int:
        return sum(self.balances.get(a, 0) for a in addrs)

    def value_shares(self) -> dict[str, Fraction]:
        """Each address's share of the positive contributions the job's notices declare (what
        a job paying by value owes it, as a share of the budget)."""
        value: dict[str, Fraction] = {}
        for n in self.notices:
            for e in n["trainers"]:
                if e["verdict"] == "accepted":
                    value[e["address"]] = value.get(e["address"], Fraction(0)) + max(
                        Fraction(e["contribution"]), Fraction(0))
        total = sum(value.values())
        return {a: v / total for a, v in value.items()} if total else {}


def _labels(t: Trainer, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y = y.copy()
    if t.label_noise:
        noisy = rng.random(len(y)) < t.label_noise / 100
        y[noisy] = rng.integers(0, 10, int(noisy.sum()))
    return y


def _delta(g: Model, m: Model, factor: float) -> Model:
    return Model({k: (g[k].astype(np.int64) + np.round(factor * (m[k].astype(np.int64)
                                                                 - g[k].astype(np.int64))))
                  .clip(-(2**31 - 1), 2**31 - 1).astype(np.int32) for k in g})


def trainer_models(t: Trainer, g: Model, round_: int) -> list[tuple[str, Model, int]]:
    """(address, model, claimed samples) for each identity of ``t`` this round."""
    d = digits()
    x, y0 = d.x_pool[t.samples], d.y_pool[t.samples]
    rng = np.random.default_rng(1000 * round_ + t.index)
    y = _labels(t, y0, rng)
    seed = 100 * round_ + t.index
    n = len(t.samples)
    addrs = t.addresses()
    if t.mode == "late" and round_ == 0:   # honest, from round 1 on (it joined the job late)
        return []
    if t.mode in ("honest", "overreport", "late"):
        m = train_local(ARCH, g, x, y, epochs=2, lr=0.01, seed=seed)
        return [(addrs[0], m, 100_000 if t.mode == "overreport" else n)]
    if t.mode == "split_noise":
        m = train_local(ARCH, g, x, y, epochs=2, lr=0.01, seed=seed)
        out = []
        for j, a in enumerate(addrs):
            noise = {k: rng.integers(-2, 3, v.shape) for k, v in m.items()}
            out.append((a, Model({k: (m[k].astype(np.int64) + noise[k]).astype(np.int32)
                                  for k in m}), n))
        return out
    if t.mode == "duplicate_data":
        return [(a, train_local(ARCH, g, x, y, epochs=2, lr=0.01, seed=seed + 7 * j), n)
                for j, a in enumerate(addrs)]
    if t.mode == "subsample":
        out = []
        for j, a in enumerate(addrs):
            sel = rng.choice(n, n * 3 // 4, replace=False)
            out.append((a, train_local(ARCH, g, x[sel], y[sel], epochs=2, lr=0.01,
                                       seed=seed + 7 * j), len(sel)))
        return out
    if t.mode == "split_data":
        return [(a, train_local(ARCH, g, x[sel], y[sel], epochs=2, lr=0.01, seed=seed + 7 * j),
                 len(sel)) for j, (a, sel) in enumerate(zip(addrs, np.array_split(np.arange(n),
                                                                                   t.k)))]
    if t.mode == "label_flip":
        return [(addrs[0], train_local(ARCH, g, x, 9 - y, epochs=2, lr=0.01, seed=seed), n)]
    honest = train_local(ARCH, g, x, y, epochs=2, lr=0.01, seed=seed)
    if t.mode == "sign_flip":
        return [(addrs[0], _delta(g, honest, -4.0), n)]
    if t.mode == "scaled":
        return [(addrs[0], _delta(g, honest, 10.0), n)]
    if t.mode == "stretch":  # its own step times k/10, below the boosted-update threshold
        return [(addrs[0], _delta(g, honest, t.k / 10), n)]
    if t.mode == "noise":
        return [(addrs[0], Model({k: (g[k].astype(np.int64) + quantize(
            rng.normal(0, 1.0, g[k].shape), ARCH.scale_bits)).astype(np.int32) for k in g}), n)]
    if t.mode == "free_rider":
        return [(addrs[0], g, n)]
    raise ValueError(f"unknown trainer mode {t.mode!r}")


def identity_models(strategy: str, g: Model, prev: Model | None, round_: int
                    ) -> list[tuple[str, Model, int]]:
    """The owner's identities' submissions for ``strategy`` (none for the other strategies)."""
    if strategy in ("near_copies", "near_copies_withheld"):
        out = []
        for i, a in enumerate(IDENTITIES):
            m = {k: v.copy() for k, v in g.items()}
            m["fc.bias"][i % 10] += 1
            out.append((a, Model(m), 400))
        return out
    if strategy == "train_little":
        d = digits()
        out = []
        for i, a in enumerate(IDENTITIES):
            sel = np.arange(i * 11, i * 11 + 11)   # slices of the owner's own samples
            out.append((a, train_local(ARCH, g, d.x_pool[sel], d.y_pool[sel], epochs=1,
                                       lr=0.01, seed=500 + i), 400))
        return out
    if strategy == "train_little_one":
        d = digits()
        sel = np.arange(0, 99)   # the same samples as train_little's nine slices, one identity
        return [(IDENTITIES[0], train_local(ARCH, g, d.x_pool[sel], d.y_pool[sel], epochs=1,
                                            lr=0.01, seed=500), 400)]
    if strategy == "train_secret":   # one identity trains on the round's own secret shard
        x, y = secret_shards("honest", round_ + 1)[round_]
        return [(IDENTITIES[0], train_local(ARCH, g, x, y, epochs=2, lr=0.01, seed=900 + round_),
                 400)]
    if strategy == "stale_global" and prev is not None:
        return [(a, prev, 400) for a in IDENTITIES]
    return []


def split_pool(sizes: list[int], seed: int = 3) -> list[np.ndarray]:
    perm = OWNER_POOL + np.random.default_rng(seed).permutation(len(digits().y_pool) - OWNER_POOL)
    out, pos = [], 0
    for s in sizes:
        out.append(np.sort(perm[pos:pos + s]))
        pos += s
    return out


def _card(n: int, salt: int) -> bytes:
    hist = [n // 10 + (1 if c < n % 10 else 0) for c in range(10)]
    return json.dumps({"version": 1, "num_samples": n, "label_histogram": hist,
                       "feature_shape": [1, 8, 8], "data_commitment": "0x" + f"{salt:064x}",
                       "dp": None}).encode()


def secret_shards(strategy: str, rounds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    d = digits()
    out = []
    for r in range(rounds):
        x, y = d.x_val[r * 100:(r + 1) * 100], d.y_val[r * 100:(r + 1) * 100].copy()
        if strategy == "useless_shard":
            x = np.zeros_like(x)
        if strategy == "mislabeled_shard":
            y = (y + 1) % 10
        out.append((x, y))
    return out


def run_job(trainers: list[Trainer], owner: str = "honest", *, rounds: int = 2,
            budget: int = 10**18, aggregation: dict[str, Any] | None = None,
            public: bool = True) -> JobRun:
    """One whole job through the market backend; returns balances and notices."""
    sim = MarketSim()
    d = digits()
    init = owner_initial_model()
    init_cid = sim.content.put(encode_model(init, ARCH))
    shards, commitments = [], []
    for r, (x, y) in enumerate(secret_shards(owner, rounds)):
        cid = sim.content.put(encode_dataset(fixed(x), y.astype(np.int32)))
        salt = bytes([r + 1]) * 32
        shards.append((cid, salt))
        commitments.append("0x" + p.validation_commitment(cid, salt).hex())
    spec: dict[str, Any] = {
        "version": 1, "name": "mechanism", "arch": ARCH_DICT, "initial_model": init_cid,
        "rounds": rounds, "windows": WINDOWS,
        "hparams": {"learning_rate": [1, 100], "local_epochs": 2, "batch_size": 32},
        "aggregation": aggregation or VALIDATED, "contribution": CONTRIBUTION,
        "fallback": "equal",
        "data_schema": {"feature_shape": [1, 8, 8], "num_classes": 10, "max_samples": 100000,
                        "weight_cap": 400},
        "validation": commitments,
        "limits": {"max_model_bytes": 1 << 20, "max_shard_samples": 1000}}
    if public:
        spec["public_validation"] = sim.content.put(
            encode_dataset(fixed(d.x_public), d.y_public.astype(np.int32)))
    spec_cid = sim.content.put(json.dumps(spec).encode())
    res = sim.deposit_eth(OWNER, budget, p.CreateJob(spec_cid).encode())
    assert res.accepted and res.notices, res.reports
    job_id = res.notices[0]["job"]
    idents = (IDENTITIES if owner in ("near_copies", "near_copies_withheld", "train_little",
                                      "stale_global") else
              IDENTITIES[:1] if owner in ("train_little_one", "train_secret") else [])
    everyone = [a for t in trainers for a in t.addresses()] + idents
    for a in everyone:
        assert sim.call(a, p.Join(job_id)).accepted
    sim.advance(WINDOWS["start_delay"])
    cancel_refused = False
    if owner == "cancel_late":
        cancel_refused = not sim.call(OWNER, p.CancelJob(job_id)).accepted
    notices, accuracy = [], []
    refused: dict[int, dict[str, str]] = {}
    prev: Model | None = None
    refund = 0
    for r in range(rounds):
        job = sim.market.state.jobs[job_id]
        g = sim.market._models[job.global_model_hash]
        subs = []
        for t in trainers:
            subs += trainer_models(t, g, r)
        subs += identity_models(owner, g, prev, r)
        posted = {}
        for i, (a, m, n) in enumerate(subs):
            post = (sim.content.put(encode_model(m, ARCH)), sim.content.put(_card(n, i)),
                    bytes([i % 256]) * 32)
            c = p.commitment(a, job_id, r, *post)
            assert sim.call(a, p.Commit(job_id, r, c)).accepted
            posted[a] = post
        sim.advance(WINDOWS["commit"])
        for a, post in posted.items():
            got = sim.call(a, p.Reveal(job_id, r, *post))  # a refusal is part of the story
            if not got.accepted:
                refused.setdefault(r, {})[a] = " ".join(got.reports)
        withhold = (owner in ("withhold", "near_copies_withheld")
                    or (owner == "withhold_some" and r == 1))
        if not withhold:
            assert sim.call(OWNER, p.RevealValidation(job_id, r, *shards[r])).accepted
        sim.advance(WINDOWS["reveal"] + (WINDOWS["validation"] if withhold else 0))
        out = sim.call(trainers_or_owner(everyone), p.CloseRound(job_id, r))
        assert out.accepted, out.reports
        [n] = [x for x in out.notices if x["type"] == "round_closed"]
        notices.append(n)
        prev = g
        accuracy.append(test_accuracy(sim.market._models.get(
            sim.market.state.jobs[job_id].global_model_hash, g)
            if r + 1 < rounds else _final_model(out)))
        if "job_finished" in n:
            refund = int(n["job_finished"]["refund"])
    balances = {a: int(sim.inspect(f"balance/{a}")["balances"].get(p.ETH, 0))
                for a in everyone + [OWNER]}
    assert sim.market.state.conserved()
    return JobRun(balances, notices, accuracy, refund, cancel_refused, {"refused": refused})


def trainers_or_owner(everyone: list[str]) -> str:
    return everyone[0] if everyone else OWNER


def _final_model(out: Any) -> Model:
    from dapp.ml.model_format import decode_model

    chunks = [p.ModelChunk.decode(r) for r in out.outputs.reports if r[:4] == p.MODEL_CHUNK]
    [n] = [x for x in out.notices if x["type"] == "round_closed"]
    data = p.ModelChunk.join(chunks, bytes.fromhex(n["model_hash"][2:]))
    return decode_model(data, ARCH, max_bytes=1 << 20)


def honest_trainers(sizes: tuple[int, ...] = (250, 250, 250)) -> list[Trainer]:
    return [Trainer(i, s) for i, s in enumerate(split_pool(list(sizes)))]
