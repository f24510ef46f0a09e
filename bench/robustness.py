"""Robustness on real MNIST: attacks x aggregation rules, every round closed and paid by the market.

Each configuration (Dirichlet alpha, trainers n, attacker fraction, attack, rule, seed) runs a
real job through the market backend in-process (``tests.market_harness.MarketSim``: deposit,
join, commit, reveal, the owner's shard reveal, ``closeRound`` -> ``dapp.market.closing.close_round``),
so the wei below are what the market pays. Honest trainers train with PyTorch
(``client.training.train_local``: SGD, learning rate 1/2, 2 local epochs, batch 32) on their
Dirichlet shard of 1,000 x n of MNIST's 50,000 training images (about 1,000 each; 6 rounds, by
which FedAvg has flattened out, so losing a share of the data shows as what it costs);
accuracy is the integer model's on 2,000 images of MNIST's test set, which nobody trains or
validates on. Validation: each round's secret shard (200 images) and the job's public shard (100)
come from MNIST's validation split.

Model (spec data, ``ARCH``): ``avgpool2d`` 2x2 (28x28 -> 14x14) then a 196-32-10 MLP: small enough
that a 50-trainer round closes in seconds on 2 cores, real enough that attacks show.

Attacks (the attackers' updates; f = attackers, n = trainers):
* ``alie`` (Baruch et al. 2019): mean - z_max * std per coordinate, z_max = Phi^-1((n - s) / n)
  with s = floor(n / 2 + 1) - f;
* ``ipm_0.1`` / ``ipm_100`` (Xie et al. 2019, inner-product manipulation): -eps * mean;
* ``minmax`` (Shejwalkar & Houmansadr 2021): mean + gamma * p with p = -std (their "inverse std"),
  gamma the largest (binary search) with max_i ||mal - b_i|| <= max_ij ||b_i - b_j||;
* ``label_flip``: honest training on labels 9 - y, with the card of its true labels;
  ``label_flip_card``: the same update with the card of the data it trained on (the flipped
  labels' histogram: the classes the ``card_classes`` gate then judges it on);
  ``sign_flip``: g - 4 x own delta;
* ``free_rider``: the global model plus Gaussian noise (std 1e-3): no data, not an exact copy;
* ``near_copies``: one attacker trains honestly, all f submit that update plus tiny noise
  (std 1e-4), i.e. one trainer's data sold f times;
* ``alie_same_card``: ``alie`` whose colluders all publish the first colluder's data card (what
  colluders can fake), so nothing tells them from one trainer's work split over identities;
* ``absent``: the attackers send nothing. Not an attack: FedAvg over the honest trainers alone
  is the best any rule can do once the attackers' data is gone (the "oracle" column).
Under commit-reveal the attackers cannot see this round's honest updates, so "mean" and "std"
are of the attackers' own benign updates (each trains honestly on its shard first); ``--omniscient``
uses the honest trainers' updates instead (a stress test the market's protocol does not allow).
ALIE, IPM and Min-Max copies get independent +-1 fixed-point jitter (the market merges exact
copies into one player; real attackers would not submit exact copies).

Reported per (rule, attack), averaged over the configurations run: accuracy over the last two
rounds and its difference from no-attack FedAvg in the same setting (``d_fedavg``) and from
FedAvg over the honest trainers alone (``d_oracle``); attackers' share of the wei paid and of
their submissions accepted; honest trainers' acceptance rate (accepted honest submissions /
honest submissions) and its minimum over honest trainers (``hon_min``: the issue asks every
honest trainer to be accepted in at least 80 % of rounds, i.e. in 5 of 6), and for the
least-accepted honest trainer its shard's size and why it was rejected (``worst_honest``,
printed when under 80 %); and Spearman rank
correlation of honest trainers' total wei with two ground truths (``rho_fl``, ``rho_solo``).

Why two accuracy references: under attack the attackers' data never reaches the model, whatever
the rule does, and with Dirichlet 0.1 label skew three trainers can hold most of some classes:
FedAvg without them loses up to 17 points on one seed here. ``d_fedavg`` is the issue's
reference; ``d_oracle`` is what the rule itself costs.

What an ALIE update built from the attackers' own benign updates is worth (the math the payment
rule follows): mal = mu_A - z * sigma_A, with mu_A the plain mean of the f colluders' honest
deltas and sigma_A their per-coordinate spread (n = 10, f = 3: z = Phi^-1(0.7) = 0.52). mu_A is
exactly what their three shards would contribute as one FedAvg player; -z * sigma_A is a
fixed-sign shift that carries no data, measured here at 0.56-0.70 x |mu_A| (cosine(mal, mu_A)
= 0.72-0.83; the update alone reaches about the test accuracy of g + mu_A). So the f colluders'
submission is worth at most one player holding their union, never f players, and only if they
say so. The payment rule does exactly that (``dapp.ml.aggregation.Validated``, step 0): near-
identical updates under data cards that claim different data contradict their cards (one update
cannot be the training result of f different datasets) and are paid 0, which is the attackers'
ground truth in this bench; colluders who fake one card are one player paid once
(``alie_same_card``), the value of their pooled data less the perturbation's damage. Min-Max and
IPM colluders are the same case (one computed update under f cards).

Ground truth of honest trainers, and why: ``rho_fl`` is against the exact *federated Shapley
value* of each honest trainer's data (Song et al. 2019, Wang et al. 2020): v(S) is the held-out
test accuracy after the same 6 rounds of plain FedAvg among the coalition S alone, from the
job's initial model, every member training exactly as in the market runs; every coalition is
trained (2**7 = 128 federations for 7 honest trainers, about 80 s), so it is computed up to 8
honest trainers. It is what "what your data added to the model" means, averaged over every
order of joining, and is computed away from the market (test set, no validation shard, no
rule). It is averaged over ``TRUTH_RUNS`` = 5 training runs (run 0 with the market runs' own
shuffling seeds, the others with other seeds), because one run is not a stable truth: with 7
honest trainers whose values are often within a point of each other, one run's values rank
like the other runs' mean with Spearman 0.59-1.00 per setting, mean 0.78 at Dirichlet 0.5 and
0.91 at 0.1 (``truth_ceiling``, 30 % attackers, 3 seeds). That is also about the best a payment
measured on one training run, as every market's is, can be expected to reach. ``rho_fl0`` keeps
the single-run truth of earlier reports. ``rho_solo``, the test accuracy of a model trained on
the trainer's data alone, is kept for comparison and for 50 trainers; the rows keep every truth
(``truth_fl_shapley``, ``truth_fl_shapley_runs``, ``truth_solo``), which rank differently
because under skew what a shard adds to the others is not what it teaches alone. Central
leave-one-out was tried as the issue suggests, but with 10-50 trainers each holding 2-10 % of
the data, retraining noise swamps one trainer's removal.

Rules are spec aggregation configs (``--rules`` takes a JSON list); by default FedAvg, Multi-Krum,
the old demo rule (norm clip then Multi-Krum) and the template's default (``client.jobs.
DEMO_AGGREGATION``), each kept only if ``build_strategy`` accepts it at run time.

Default run: alpha {0.5, 0.1}, 10 trainers, 20 % attackers, every attack, every rule, 6
rounds, seed 0. ``--full``: alpha {0.5, 0.1} x trainers {10, 50} x attackers {20 %, 30 %} x every
attack x 3 seeds (hours). ``--alphas``, ``--trainers``, ``--fractions``, ``--seeds``,
``--rounds``, ``--attacks`` pick any other slice; ``--jobs 2`` runs settings in parallel.

Run: `.venv/bin/python -m bench.robustness [--full] [--omniscient] [--rules JSON] [--jobs N] [--out NAME]`;
writes bench/results/robustness.json (``--report NAME`` prints a saved run's summaries
again, per (rule, attack) and per (rule, alpha), without rerunning it). The issue's target slice (30 % attackers, 3 seeds; the
figures in the README) is `--fractions 0.3 --seeds 0,1,2 --jobs 2 --out robustness_30`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import write_results
from bench.datasets import Mnist, dirichlet_split, mnist
from client.jobs import DEMO_CONTRIBUTION
from client.training import train_local
from dapp.market import protocol as p
from dapp.ml.aggregation import FedAvg, build_strategy, flatten, unflatten_like
from dapp.ml.contribution import shapley_exact
from dapp.ml.arch import ArchSpec
from dapp.ml.fixedpoint import dequantize, quantize
from dapp.ml.inference import count_correct
from dapp.ml.model_format import Model, encode_dataset, encode_model, initial_model
from tests.market_harness import OWNER, MarketSim

ARCH: dict[str, Any] = {
    "input_shape": [1, 28, 28], "num_classes": 10, "scale_bits": 16,
    "layers": [{"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"},
               {"type": "linear", "name": "fc1", "in_features": 196, "out_features": 32},
               {"type": "relu"},
               {"type": "linear", "name": "fc2", "in_features": 32, "out_features": 10}]}
HPARAMS = {"learning_rate": [1, 2], "local_epochs": 2, "batch_size": 32}
CONTRIBUTION = DEMO_CONTRIBUTION  # the template's
WINDOWS = {"start_delay": 10, "commit": 10_000, "reveal": 10_000, "validation": 10_000}
ATTACKS = ("none", "absent", "alie", "ipm_0.1", "ipm_100", "minmax", "label_flip", "sign_flip", "free_rider",
           "near_copies", "alie_same_card", "label_flip_card")
SECRET, PUBLIC, TEST = 200, 100, 2000
POOL_PER_TRAINER = 1000
BUDGET = 10**18


def default_rules(n: int, f: int) -> list[Any]:
    """FedAvg (no defence), Multi-Krum(f, n - f) told the true f, the old demo rule (norm clip at
    3x the median norm, then Multi-Krum) and the template's default, whatever it is at run time."""
    from client.jobs import DEMO_AGGREGATION

    krum = {"rule": "multi_krum", "f": f, "m": n - f, "then": "fedavg"}
    return ["fedavg", krum, {"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [3, 1], "then": krum},
            DEMO_AGGREGATION]


def rule_name(rule: Any) -> str:
    if isinstance(rule, str):
        return rule
    if rule.get("rule") == "validated":
        from client.jobs import DEMO_AGGREGATION

        extra = {k: v for k, v in rule.items() if k != "rule" and DEMO_AGGREGATION.get(k) != v}
        return "validated" + ("(" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(extra.items()))
                              + ")" if extra else "")
    parts = [rule["rule"]]
    t = rule.get("then")
    while isinstance(t, dict):
        parts.append(t["rule"])
        t = t.get("then")
    return "+".join(parts)


def contribution_for(n: int) -> dict[str, Any]:
    """The template's contribution method; above 10 trainers 40 orders instead of 48, because
    this arch's worst 50-trainer round is 1.0008x the close budget at 48 (the template's digits
    CNN is at 0.94)."""
    return CONTRIBUTION if n <= 10 else dict(CONTRIBUTION, permutations=40)


def address(i: int) -> str:
    return "0x" + f"{0xbe000 + i:040x}"


# ------------------------------------------------------------------ float helpers (attackers' side)

def to_vec(m: Model, s: int) -> np.ndarray:
    return np.concatenate([dequantize(m[k], s).reshape(-1) for k in sorted(m)])


def from_vec(v: np.ndarray, like: Model, s: int) -> Model:
    out, pos = {}, 0
    bound = 0.99 * ((1 << 31) - 1) / 2 ** s
    for k in sorted(like):
        n = like[k].size
        out[k] = quantize(np.clip(v[pos:pos + n], -bound, bound).reshape(like[k].shape), s)
        pos += n
    return Model(out)


def alie_z(n: int, f: int) -> float:
    s = n // 2 + 1 - f
    return statistics.NormalDist().inv_cdf((n - s) / n)


def minmax_delta(ref: np.ndarray) -> np.ndarray:
    """Shejwalkar & Houmansadr's Min-Max with the inverse-std direction over reference deltas."""
    mu = ref.mean(0)
    direction = -ref.std(0)
    limit = max(np.linalg.norm(a - b) for a in ref for b in ref)
    lo, hi = 0.0, 10.0
    while max(np.linalg.norm(mu + hi * direction - b) for b in ref) <= limit and hi < 1e6:
        lo, hi = hi, 2 * hi
    for _ in range(30):
        mid = (lo + hi) / 2
        if max(np.linalg.norm(mu + mid * direction - b) for b in ref) <= limit:
            lo = mid
        else:
            hi = mid
    return mu + lo * direction


# ------------------------------------------------------------------ one configuration

@dataclass
class Setting:
    alpha: float
    n: int
    frac: float
    seed: int
    rounds: int
    omniscient: bool

    @property
    def f(self) -> int:
        return max(1, round(self.n * self.frac))


class Data:
    """The split and evaluation sets of one (alpha, n, seed); shared by every attack and rule."""

    def __init__(self, d: Mnist, st: Setting, arch: ArchSpec) -> None:
        rng = np.random.default_rng(1000 + st.seed)
        pool = rng.permutation(len(d.y_train))[:POOL_PER_TRAINER * st.n]
        self.parts = [pool[p] for p in dirichlet_split(d.y_train[pool], st.n, st.alpha, rng, min_size=10)]
        vperm = rng.permutation(len(d.y_val))
        s = arch.scale_bits
        self.public = (quantize(d.x_val[vperm[:PUBLIC]], s), d.y_val[vperm[:PUBLIC]].astype(np.int32))
        self.secret = [(quantize(d.x_val[vperm[PUBLIC + r * SECRET:PUBLIC + (r + 1) * SECRET]], s),
                        d.y_val[vperm[PUBLIC + r * SECRET:PUBLIC + (r + 1) * SECRET]].astype(np.int32))
                       for r in range(st.rounds)]
        tperm = rng.permutation(len(d.y_test))[:TEST]
        self.test = (quantize(d.x_test[tperm], s), d.y_test[tperm].astype(np.int32))
        self.init = initial_model(arch, b"bench/robustness/%d" % st.seed)
        self.solo: dict[int, float] | None = None
        self.fl_shapley: dict[tuple[int, ...], dict[int, float]] = {}

    def ground_truth(self, d: Mnist, arch: ArchSpec) -> dict[int, float]:
        if self.solo is None:
            self.solo = {}
            for i, idx in enumerate(self.parts):
                m, _ = train_local(arch, self.init, d.x_train[idx], d.y_train[idx], HPARAMS, seed=i)
                self.solo[i] = count_correct(arch, m, *self.test) / TEST
        return self.solo

    def federated_shapley(self, d: Mnist, st: Setting, arch: ArchSpec,
                          players: list[int], k: int = 0) -> dict[int, float]:
        """Exact Shapley value of each player's data in the federation, for training run ``k``:
        v(S) is the held-out test accuracy after ``st.rounds`` rounds of plain FedAvg (weights =
        true sample counts) among S alone, from the job's initial model, each member training
        exactly as in the market runs (same hyper-parameters; run 0 uses the market runs' very
        seeds, run k adds 100000 * k to each). Every coalition is trained (2**n runs), so it is
        used for n <= MAX_EXACT_TRUTH players only."""
        key = (tuple(players), k)
        if key in self.fl_shapley:
            return self.fl_shapley[key]
        fields: list[Any] = [st.alpha, st.n, st.seed, st.rounds, players, HPARAMS, POOL_PER_TRAINER, ARCH, TEST]
        disk = json.dumps(fields + ([k] if k else []), sort_keys=True)  # run 0 keeps its old key
        cache = _truth_cache()
        if disk in cache:
            self.fl_shapley[key] = {int(i): v for i, v in cache[disk].items()}
            return self.fl_shapley[key]

        def federation(coalition: tuple[str, ...]) -> int:
            """Correct test predictions after st.rounds rounds of FedAvg among the coalition."""
            members = sorted(int(c) for c in coalition)
            g = self.init
            for r in range(st.rounds if members else 0):
                ups = [flatten(train_local(arch, g, d.x_train[self.parts[i]], d.y_train[self.parts[i]],
                                           HPARAMS, seed=1000 * r + i + 100000 * k)[0]) for i in members]
                w = np.array([len(self.parts[i]) for i in members], dtype=np.int64)
                g = unflatten_like(FedAvg().combine_flat(flatten(g), np.stack(ups), w), g)
            return count_correct(arch, g, *self.test)

        exact = shapley_exact([str(i) for i in players], federation)
        phi = {int(i): float(v) / TEST for i, v in exact.items()}
        self.fl_shapley[key] = phi
        cache = _truth_cache()
        cache[disk] = phi
        tmp = TRUTH_CACHE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(TRUTH_CACHE)
        return phi

    def truth(self, d: Mnist, st: Setting, arch: ArchSpec,
              players: list[int]) -> tuple[dict[int, float], list[dict[int, float]]]:
        """The ground truth: each player's federated Shapley value averaged over TRUTH_RUNS
        training runs, and the runs themselves (see the module docstring for why)."""
        runs = [self.federated_shapley(d, st, arch, players, k) for k in range(TRUTH_RUNS)]
        return {i: sum(run[i] for run in runs) / len(runs) for i in players}, runs


TRUTH_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "robustness_truth.json"
"""Federated Shapley values already trained, keyed by everything they depend on (128+
federations each): reruns and parallel workers reuse them."""


def _truth_cache() -> dict[str, Any]:
    try:
        return json.loads(TRUTH_CACHE.read_text())
    except (OSError, ValueError):
        TRUTH_CACHE.parent.mkdir(parents=True, exist_ok=True)
        return {}


MAX_EXACT_TRUTH = 8
"""Federated Shapley (``Data.federated_shapley``) trains 2**k coalitions: up to 8 honest players."""
TRUTH_RUNS = 5
"""Training runs the federated Shapley truth is averaged over. One run's values rank like the
other runs' mean with Spearman 0.59-1.00 per setting (MNIST, Dirichlet 0.5 / 0.1, 10 trainers,
30 % attackers: ``truth_ceiling`` in the rows), so a truth from one run would grade a payment
rule on that run's luck."""


def make_updates(d: Mnist, st: Setting, data: Data, arch: ArchSpec, g: Model, attack: str, r: int,
                 attackers: list[int]) -> dict[int, Model]:
    s = arch.scale_bits
    rng = np.random.default_rng(10_000 * st.seed + 100 * r + 7)
    out: dict[int, Model] = {}
    benign: dict[int, Model] = {}
    for i, idx in enumerate(data.parts):
        lm = (np.arange(10)[::-1].copy() if attack in ("label_flip", "label_flip_card") and i in attackers
              else None)
        if attack in ("free_rider", "absent") and i in attackers:
            continue
        m, _ = train_local(arch, g, d.x_train[idx], d.y_train[idx], HPARAMS, seed=1000 * r + i, label_map=lm)
        benign[i] = m
    honest = [i for i in range(st.n) if i not in attackers]
    for i in honest:
        out[i] = benign[i]
    gv = to_vec(g, s)
    if attack == "absent":
        return out
    if attack == "none":
        for i in attackers:
            out[i] = benign[i]
        return out
    if attack in ("label_flip", "label_flip_card"):
        for i in attackers:
            out[i] = benign[i]
        return out
    if attack == "sign_flip":
        for i in attackers:
            out[i] = from_vec(gv - 4.0 * (to_vec(benign[i], s) - gv), g, s)
        return out
    if attack == "free_rider":
        for i in attackers:
            out[i] = from_vec(gv + rng.normal(0, 1e-3, gv.shape), g, s)
        return out
    if attack == "near_copies":
        base = to_vec(benign[attackers[0]], s)
        for i in attackers:
            out[i] = from_vec(base + rng.normal(0, 1e-4, gv.shape), g, s)
        return out
    if attack == "alie_same_card":
        attack = "alie"
    ref_ids = honest if st.omniscient else attackers
    ref = np.stack([to_vec(benign[i], s) - gv for i in ref_ids])
    mu = ref.mean(0)
    if attack == "alie":
        mal = mu - alie_z(st.n, len(attackers)) * ref.std(0)
    elif attack.startswith("ipm_"):
        mal = -float(attack[4:]) * mu
    elif attack == "minmax":
        mal = minmax_delta(ref)
    else:
        raise ValueError(f"unknown attack {attack!r}")
    base_model = from_vec(gv + mal, g, s)
    for i in attackers:
        jitter = {k: (base_model[k].astype(np.int64) + rng.integers(-1, 2, base_model[k].shape)).clip(
            -(2**31 - 1), 2**31 - 1).astype(np.int32) for k in base_model}
        out[i] = Model(jitter)
    return out


def rejection_kind(reason: str) -> str:
    """A rejection reason from a round notice, in a word."""
    for kind, mark in (("boosted", "boosted update"), ("colluding", "collud"),
                       ("gate", "below min_gain"), ("overflow", "overflows"),
                       ("collateral", "flipped labels?")):
        if mark in reason:
            return kind
    return "other"


def worst_honest(data: Data, per_sub: dict[int, int], per_acc: dict[int, int],
                 per_why: dict[int, Counter[str]]) -> dict[str, Any] | None:
    """The least-accepted honest trainer (lowest index on ties): its shard's size and label
    counts, and why its updates were rejected."""
    if not per_sub:
        return None
    i = min(per_sub, key=lambda k: (per_acc[k] / per_sub[k], k))
    return {"trainer": i, "images": int(len(data.parts[i])), "accepted": per_acc[i],
            "rounds": per_sub[i], "rejected_as": dict(sorted(per_why.get(i, Counter()).items()))}


def run_config(d: Mnist, st: Setting, data: Data, rule: Any, attack: str) -> dict[str, Any]:
    arch = ArchSpec.from_dict(ARCH)
    sim = MarketSim()
    init_cid = sim.content.put(encode_model(data.init, arch))
    public_cid = sim.content.put(encode_dataset(*data.public))
    shards, commitments = [], []
    for r in range(st.rounds):
        cid = sim.content.put(encode_dataset(*data.secret[r]))
        salt = bytes([r + 1]) * 32
        shards.append((cid, salt))
        commitments.append("0x" + p.validation_commitment(cid, salt).hex())
    spec = {"version": 1, "name": "mnist-robustness", "arch": ARCH, "initial_model": init_cid,
            "rounds": st.rounds, "windows": WINDOWS, "hparams": HPARAMS,
            "aggregation": {"rule": rule} if isinstance(rule, str) else rule,
            "contribution": contribution_for(st.n), "fallback": "equal",
            "data_schema": {"feature_shape": [1, 28, 28], "num_classes": 10, "max_samples": 100000,
                            "weight_cap": 2000},
            "validation": commitments, "public_validation": public_cid, "max_trainers": st.n,
            "limits": {"max_model_bytes": 1 << 20, "max_shard_samples": SECRET + PUBLIC}}
    spec_cid = sim.content.put(json.dumps(spec).encode())
    res = sim.deposit_eth(OWNER, BUDGET, p.CreateJob(spec_cid).encode())
    if not res.notices:
        raise RuntimeError(f"job refused: {res.reports}")
    job_id = res.notices[0]["job"]
    addrs = [address(i) for i in range(st.n)]
    for a in addrs:
        assert sim.call(a, p.Join(job_id)).accepted
    attackers = list(range(st.n - st.f, st.n)) if attack != "none" else []
    wei = {i: 0 for i in range(st.n)}
    acc: list[float] = []
    honest_sub = honest_acc = att_sub = att_acc = 0
    per_sub: dict[int, int] = {}
    per_acc: dict[int, int] = {}
    per_why: dict[int, Counter[str]] = {}
    sim.advance(WINDOWS["start_delay"])
    for r in range(st.rounds):
        g = sim.market._models[sim.market.state.jobs[job_id].global_model_hash]
        ups = make_updates(d, st, data, arch, g, attack, r, attackers)
        subs = {}
        for i, m in sorted(ups.items()):
            # alie_same_card: the colluders all publish the first colluder's card (what they can
            # fake), so nothing on chain tells them from one trainer's work split over identities
            idx = data.parts[attackers[0] if attack == "alie_same_card" and i in attackers else i]
            labels = d.y_train[idx]
            if attack == "label_flip_card" and i in attackers:
                labels = 9 - labels  # the card of the data it trained on: the flipped labels
            hist = np.bincount(labels, minlength=10).tolist()
            card = json.dumps({"version": 1, "num_samples": int(len(idx)), "label_histogram": hist,
                               "feature_shape": [1, 28, 28], "data_commitment": "0x" + f"{i:064x}",
                               "dp": None}).encode()
            mc = sim.content.put(encode_model(m, arch))
            dc = sim.content.put(card)
            salt = bytes([i % 250 + 1]) * 32
            subs[i] = (mc, dc, salt)
            c = p.commitment(addrs[i], job_id, r, mc, dc, salt)
            cr = sim.call(addrs[i], p.Commit(job_id, r, c))
            assert cr.accepted, cr.reports
        sim.advance(WINDOWS["commit"])
        for i, sub in subs.items():
            rr = sim.call(addrs[i], p.Reveal(job_id, r, *sub))
            assert rr.accepted, rr.reports
        cid, salt = shards[r]
        assert sim.call(OWNER, p.RevealValidation(job_id, r, cid, salt)).accepted
        sim.advance(WINDOWS["reveal"])
        res = sim.call(addrs[0], p.CloseRound(job_id, r))
        assert res.accepted and res.notices, res.reports
        notice = [n for n in res.notices if n.get("type") == "round_closed"][0]
        verdicts = {e["address"]: e for e in notice["trainers"]}
        for i in range(st.n):
            e = verdicts.get(addrs[i])
            if e is None:
                continue
            wei[i] += int(e.get("reward", "0"))
            if i in attackers:
                att_sub += 1
                att_acc += e.get("verdict") == "accepted"
            if i not in attackers:
                honest_sub += 1
                honest_acc += e.get("verdict") == "accepted"
                per_sub[i] = per_sub.get(i, 0) + 1
                per_acc[i] = per_acc.get(i, 0) + (e.get("verdict") == "accepted")
                if e.get("verdict") != "accepted":
                    per_why.setdefault(i, Counter())[rejection_kind(e.get("reason", ""))] += 1
        # what the rounds did not pay goes to the job's earners at the end (settled or pro rata)
        for a, v in notice.get("job_finished", {}).get("leftover", {}).items():
            wei[addrs.index(a)] += int(v)
        new = sim.market._models.get(sim.market.state.jobs[job_id].global_model_hash)
        if new is None:  # the job finished and dropped its models: rebuild from the reports
            from dapp.ml.model_format import decode_model

            chunks = [p.ModelChunk.decode(x) for x in res.outputs.reports if x[:4] == p.MODEL_CHUNK]
            new = decode_model(p.ModelChunk.join(chunks, bytes.fromhex(notice["model_hash"][2:])), arch,
                               max_bytes=1 << 20)
        acc.append(count_correct(arch, new, *data.test) / TEST)
    paid = sum(wei.values())
    honest = [i for i in range(st.n) if i not in attackers]
    truth = data.ground_truth(d, arch)
    from tests.test_ml_scenarios import spearman

    hv = [float(wei[i]) for i in honest]
    rho = spearman(hv, [truth[i] for i in honest]) if len(set(hv)) > 1 else float("nan")
    rho_fl = rho_fl_run0 = ceiling = float("nan")
    fl: dict[int, float] = {}
    runs: list[dict[int, float]] = []
    if len(honest) <= MAX_EXACT_TRUTH and len(set(hv)) > 1:
        fl, runs = data.truth(d, st, arch, honest)
        rho_fl = spearman(hv, [fl[i] for i in honest])
        rho_fl_run0 = spearman(hv, [runs[0][i] for i in honest])
        ceiling = truth_ceiling(runs, honest)
    return {"honest_reward_rho_fl_shapley": rho_fl, "honest_reward_rho_fl_run0": rho_fl_run0,
            "truth_ceiling": ceiling, "wei": [wei[i] for i in range(st.n)],
            "truth_fl_shapley": {str(i): fl[i] for i in sorted(fl)},
            "truth_fl_shapley_runs": [{str(i): run[i] for i in sorted(run)} for run in runs],
            "truth_solo": {str(i): truth[i] for i in honest},
            "attackers_accepted": att_acc / att_sub if att_sub else float("nan"),
            "accuracy_last2": sum(acc[-2:]) / len(acc[-2:]), "accuracy": acc,
            "attackers_wei_share": (sum(wei[i] for i in attackers) / paid) if paid else 0.0,
            "honest_acceptance": honest_acc / honest_sub if honest_sub else float("nan"),
            "honest_min_acceptance": min((per_acc[i] / per_sub[i] for i in per_sub), default=float("nan")),
            "worst_honest": worst_honest(data, per_sub, per_acc, per_why),
            "honest_reward_rho": rho, "paid": paid}


def truth_ceiling(runs: list[dict[int, float]], players: list[int]) -> float:
    """Mean over training runs of Spearman(that run's federated Shapley values, the mean of the
    other runs'): how well a value measured on one training run, as any market's must be, can
    rank like the truth at best."""
    from tests.test_ml_scenarios import spearman

    if len(runs) < 2:
        return float("nan")
    out = []
    for k, run in enumerate(runs):
        rest = [r for j, r in enumerate(runs) if j != k]
        out.append(spearman([run[i] for i in players], [sum(r[i] for r in rest) / len(rest) for i in players]))
    return sum(out) / len(out)


def run_setting(work: tuple[Setting, str | None, tuple[str, ...]]) -> list[dict[str, Any]]:
    """Every (rule, attack) of one (alpha, n, fraction, seed), on one split; the two FedAvg
    baselines (no attack, and without the attackers at all) come first."""
    import torch

    torch.set_num_threads(1)
    st, rules_json, attacks = work
    d = mnist()
    arch = ArchSpec.from_dict(ARCH)
    data = Data(d, st, arch)
    rules = json.loads(rules_json) if rules_json else default_rules(st.n, st.f)
    ok_rules = []
    for rule in rules:
        try:
            build_strategy(rule)
            ok_rules.append(rule)
        except Exception as exc:  # a rule this tree does not know yet: skipped, and said so
            print(f"skipping rule {rule_name(rule)}: {exc}")
    base = {a: run_config(d, st, data, "fedavg", a)["accuracy_last2"] for a in ("none", "absent")}
    rows = []
    for rule in ok_rules:
        for attack in attacks:
            t = time.perf_counter()
            try:
                row = run_config(d, st, data, rule, attack)
            except Exception as exc:  # noqa: BLE001 - one broken configuration must not end the bench
                print(f"FAILED alpha={st.alpha} n={st.n} f={st.f} {rule_name(rule)} {attack}: {exc}")
                continue
            row.update(alpha=st.alpha, n=st.n, f=st.f, seed=st.seed, rule=rule_name(rule), attack=attack,
                       seconds=time.perf_counter() - t, fedavg_no_attack=base["none"],
                       fedavg_without_attackers=base["absent"])
            rows.append(row)
            print(f"a={st.alpha} n={st.n} f={st.f} s={st.seed} {rule_name(row['rule']):<30} {attack:<15} "
                  f"acc {row['accuracy_last2']:.3f} (fedavg: no attack {base['none']:.3f}, without attackers "
                  f"{base['absent']:.3f})  attackers' wei {row['attackers_wei_share']:.3f}  honest accepted "
                  f"{row['honest_acceptance']:.2f} (min {row['honest_min_acceptance']:.2f})  rho_fl "
                  f"{row['honest_reward_rho_fl_shapley']:.2f}  {row['seconds']:.0f} s", flush=True)
            w = row["worst_honest"]
            if w and w["accepted"] * 5 < w["rounds"] * 4:  # under the 80 %
                print(f"    worst honest trainer {w['trainer']} ({w['images']} images): accepted "
                      f"{w['accepted']} of {w['rounds']}, rejected as {w['rejected_as']}", flush=True)
    return rows


METRICS = ("accuracy_last2", "delta_vs_fedavg_no_attack", "delta_vs_fedavg_without_attackers",
           "attackers_wei_share", "attackers_accepted", "honest_acceptance", "honest_min_acceptance",
           "honest_reward_rho", "honest_reward_rho_fl_shapley", "honest_reward_rho_fl_run0", "truth_ceiling")


def _means(rows: list[dict[str, Any]], key: Any) -> dict[str, dict[str, Any]]:
    """Each metric's mean over the rows of each ``key(row)`` (NaN and missing skipped)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for name, group in groups.items():
        s: dict[str, Any] = {"runs": len(group)}
        for k in METRICS:
            if k.startswith("delta_"):
                ref = "fedavg_no_attack" if k == "delta_vs_fedavg_no_attack" else "fedavg_without_attackers"
                vals = [r["accuracy_last2"] - r[ref] for r in group if r.get(ref) is not None]
            else:
                vals = [r[k] for r in group if r.get(k) is not None]
            vals = [v for v in vals if v == v]
            s[k] = sum(vals) / len(vals) if vals else None
        out[name] = s
    return out


def summarize(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Print and return the means per (rule, attack) over configurations, and per (rule, alpha)
    over attacks and seeds (what the README's two-column tables quote)."""
    summary = _means(rows, lambda r: f"{r['rule']} / {r['attack']}")
    by_alpha = _means([r for r in rows if r["attack"] not in ("none", "absent")],
                      lambda r: f"{r['rule']} / alpha {r['alpha']}")

    def fmt(v: Any) -> str:
        return "   n/a" if v is None else f"{v:6.3f}"

    print("\nper (rule, attack), mean over configurations:")
    print(f"{'rule / attack':<46} {'acc':>6} {'d_fedavg':>8} {'d_oracle':>8} {'att_wei':>8} {'att_acc':>8} "
          f"{'hon_acc':>8} {'hon_min':>8} {'rho_fl':>7} {'ceiling':>7} {'rho_fl0':>7} {'rho_solo':>8}")
    for key, s in summary.items():
        print(f"{key:<46} {fmt(s['accuracy_last2'])} {fmt(s['delta_vs_fedavg_no_attack']):>8} "
              f"{fmt(s['delta_vs_fedavg_without_attackers']):>8} {fmt(s['attackers_wei_share']):>8} "
              f"{fmt(s['attackers_accepted']):>8} {fmt(s['honest_acceptance']):>8} "
              f"{fmt(s['honest_min_acceptance']):>8} {fmt(s['honest_reward_rho_fl_shapley']):>7} "
              f"{fmt(s['truth_ceiling']):>7} {fmt(s['honest_reward_rho_fl_run0']):>7} "
              f"{fmt(s['honest_reward_rho']):>8}")
    print("\nper (rule, alpha), mean over the attacks and seeds (honest pay vs the truths):")
    print(f"{'rule / alpha':<46} {'rho_fl':>7} {'ceiling':>7} {'rho_fl0':>7} {'rho_solo':>8}")
    for key, s in by_alpha.items():
        print(f"{key:<46} {fmt(s['honest_reward_rho_fl_shapley']):>7} {fmt(s['truth_ceiling']):>7} "
              f"{fmt(s['honest_reward_rho_fl_run0']):>7} {fmt(s['honest_reward_rho']):>8}")
    return summary, by_alpha


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--omniscient", action="store_true",
                    help="attackers see the honest updates of the round (stress test)")
    ap.add_argument("--rules", help="JSON list of aggregation configs (default: see the docstring)")
    ap.add_argument("--attacks", help="comma-separated subset of " + ",".join(ATTACKS))
    ap.add_argument("--alphas", help="comma-separated Dirichlet alphas (overrides the grid's)")
    ap.add_argument("--trainers", help="comma-separated trainer counts (overrides the grid's)")
    ap.add_argument("--fractions", help="comma-separated attacker fractions (overrides the grid's)")
    ap.add_argument("--seeds", help="comma-separated seeds (overrides the grid's)")
    ap.add_argument("--rounds", type=int, help="rounds per job (default 6)")
    ap.add_argument("--jobs", type=int, default=1, help="settings run in parallel processes (default 1)")
    ap.add_argument("--out", help="results name under bench/results/ (default: robustness[_omniscient]"
                                  "[_full][_custom])")
    ap.add_argument("--report", metavar="NAME",
                    help="print the summaries of bench/results/NAME.json again (from its rows, "
                         "nothing rerun) and store them there")
    args = ap.parse_args(argv)
    if args.report:
        from bench import RESULTS_DIR

        saved = json.loads((RESULTS_DIR / f"{args.report}.json").read_text())
        saved["summary"], saved["summary_by_alpha"] = summarize(saved["rows"])
        write_results(args.report, saved)
        return saved
    t0 = time.perf_counter()
    mnist()  # loaded once before the workers fork
    alphas, trainers, fractions, seeds = (((0.5, 0.1), (10, 50), (0.2, 0.3), (0, 1, 2)) if args.full
                                          else ((0.5, 0.1), (10,), (0.2,), (0,)))
    if args.alphas:
        alphas = tuple(float(v) for v in args.alphas.split(","))
    if args.trainers:
        trainers = tuple(int(v) for v in args.trainers.split(","))
    if args.fractions:
        fractions = tuple(float(v) for v in args.fractions.split(","))
    if args.seeds:
        seeds = tuple(int(v) for v in args.seeds.split(","))
    rounds = args.rounds or 6
    grid = [Setting(a, n, fr, s, rounds, args.omniscient) for a in alphas for n in trainers
            for fr in fractions for s in seeds]
    attacks = tuple(args.attacks.split(",")) if args.attacks else ATTACKS
    work = [(st, args.rules, attacks) for st in grid]
    rows: list[dict[str, Any]] = []
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            for part in pool.imap(run_setting, work):
                rows.extend(part)
    else:
        for w in work:
            rows.extend(run_setting(w))
    summary, by_alpha = summarize(rows)
    result = {"grid": {"alphas": alphas, "trainers": trainers, "attacker_fractions": fractions, "seeds": seeds,
                       "rounds": rounds, "attacks": attacks, "full": args.full},
              "omniscient": args.omniscient, "contribution": CONTRIBUTION, "arch": ARCH, "hparams": HPARAMS,
              "ground_truth": {"rho_fl": "exact federated Shapley value of each honest trainer's data "
                                         "(v(S) = test accuracy of FedAvg among S), mean of "
                                         f"{TRUTH_RUNS} training runs, up to {MAX_EXACT_TRUTH} honest trainers",
                               "ceiling": "mean over runs of Spearman(one run's values, the other runs' mean)",
                               "rho_fl0": "rho_fl against training run 0 alone (the market runs' seeds)",
                               "rho_solo": "test accuracy of a model trained on the trainer's data alone"},
              "summary": summary, "summary_by_alpha": by_alpha, "rows": rows,
              "elapsed_s": time.perf_counter() - t0}
    custom = any((args.alphas, args.trainers, args.fractions, args.seeds, args.rounds, args.attacks, args.rules))
    write_results(args.out or ("robustness" + ("_omniscient" if args.omniscient else "")
                               + ("_full" if args.full else "") + ("_custom" if custom else "")), result)
    return result


if __name__ == "__main__":
    main()
