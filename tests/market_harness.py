"""Drive the market backend in-process, as the rollup loop would, with an in-memory content store.

`MarketSim` builds the metadata a node would send (block time, input index, sender) and goes
through `dapp.loop.handle_advance`, so refusals and bugs are handled exactly as in production.
`digits_job()` makes a small but real job: a linear model on scikit-learn's digits, a spec with
one committed validation shard per round, and trainers that really train (PyTorch, a few steps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dapp.content.cid import Cid
from dapp.content.source import GIO_DOMAIN_BLOCK, GIO_FOUND, GIO_NOT_FOUND, GioSource
from dapp.content.unixfs import chunk
from dapp.loop import handle_advance, handle_inspect
from dapp.market import protocol as p
from dapp.market.app import Market
from dapp.market.protocol import ERC20_PORTAL, ETHER_PORTAL
from dapp.ml.arch import ArchSpec
from dapp.ml.fixedpoint import from_torch_state_dict, quantize, to_torch_state_dict, torch_module
from dapp.ml.model_format import Model, encode_dataset, encode_model, initial_model
from dapp.outputs import Notice, Outputs, Voucher
from dapp.rollup_api import Metadata

APP = "0x" + "ab" * 20
OWNER = "0x" + "01" * 20
TRAINERS = ["0x" + f"{i:02x}" * 20 for i in range(0x10, 0x20)]
TOKEN = "0x" + "70" * 20

ARCH = {"input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 12,
        "layers": [{"type": "flatten"},
                   {"type": "linear", "name": "fc", "in_features": 64, "out_features": 10}]}


class MemoryContent:
    """The node's block store, minus the network: the market reads it through the production
    `GioSource` (GIO domain 0x10, every block verified), so tampering here is caught as it would
    be with a real node."""

    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}
        self.objects: dict[str, bytes] = {}
        self.source = GioSource(self.gio)

    def put(self, data: bytes) -> str:
        root, blocks = chunk(data)
        self.blocks.update(blocks)
        self.objects[str(root)] = data
        return str(root)

    def gio(self, domain: int, ident: bytes) -> tuple[int, bytes]:
        cid = str(Cid.from_bytes(ident))
        if domain != GIO_DOMAIN_BLOCK or cid not in self.blocks:
            return GIO_NOT_FOUND, b""
        return GIO_FOUND, self.blocks[cid]

    def get(self, cid: str, *, max_size: int) -> bytes:
        return self.source.get(cid, max_size=max_size)


@dataclass
class Result:
    accepted: bool
    outputs: Outputs

    @property
    def reports(self) -> list[str]:
        return [r.decode("utf-8", "replace") for r in self.outputs.reports]

    @property
    def notices(self) -> list[dict[str, Any]]:
        return [json.loads(n.payload) for n in self.outputs.emitted if isinstance(n, Notice)]

    @property
    def vouchers(self) -> list[Voucher]:
        return [v for v in self.outputs.emitted if isinstance(v, Voucher)]


@dataclass
class MarketSim:
    content: MemoryContent = field(default_factory=MemoryContent)
    now: int = 1_700_000_000
    index: int = 0

    def __post_init__(self) -> None:
        self.market = Market(self.content)

    def send(self, sender: str, payload: bytes) -> Result:
        meta = Metadata(chain_id=31337, app_contract=APP, msg_sender=sender.lower(),
                        block_number=100 + self.index, block_timestamp=self.now,
                        prev_randao="0x" + "00" * 32, input_index=self.index)
        self.index += 1
        self.now += 1
        accepted, out = handle_advance(self.market, meta, payload)
        return Result(accepted, out)

    def call(self, sender: str, call: p.Call) -> Result:
        return self.send(sender, call.encode())

    def deposit_eth(self, sender: str, value: int, data: bytes = b"") -> Result:
        payload = bytes.fromhex(sender[2:]) + value.to_bytes(32, "big") + data
        return self.send(ETHER_PORTAL, payload)

    def deposit_erc20(self, sender: str, token: str, value: int, data: bytes = b"") -> Result:
        payload = (bytes.fromhex(token[2:]) + bytes.fromhex(sender[2:])
                   + value.to_bytes(32, "big") + data)
        return self.send(ERC20_PORTAL, payload)

    def inspect(self, path: str) -> Any:
        ok, out = handle_inspect(self.market, path.encode())
        assert ok, out.reports
        return json.loads(out.reports[0])

    def advance(self, seconds: int) -> None:
        self.now += seconds


# ---- a real, small job ---------------------------------------------------------------------

def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, d.target.astype(np.int64)


@dataclass
class DigitsJob:
    sim: MarketSim
    arch: ArchSpec
    spec: dict[str, Any]
    spec_cid: str
    shards: list[tuple[str, bytes]]     # (cid, salt) per round
    x: np.ndarray
    y: np.ndarray
    job_id: int = 0

    def train(self, global_model: Model, idx: np.ndarray, *, flip: bool = False,
              steps: int = 30, seed: int = 0) -> Model:
        """Real local training: a few full-batch SGD steps of the float model, then quantize."""
        import torch

        torch.manual_seed(seed)
        net = torch_module(self.arch)
        net.load_state_dict(to_torch_state_dict(global_model, self.arch))
        xb = torch.from_numpy(self.x[idx])
        yb = torch.from_numpy(self.y[idx])
        if flip:
            yb = 9 - yb
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
        return from_torch_state_dict(net.state_dict(), self.arch)

    def data_card(self, idx: np.ndarray, salt: int = 0) -> bytes:
        hist = np.bincount(self.y[idx], minlength=10).tolist()
        return json.dumps({"version": 1, "num_samples": int(len(idx)), "label_histogram": hist,
                           "feature_shape": [1, 8, 8],
                           "data_commitment": "0x" + f"{salt:064x}", "dp": None}).encode()

    def submit(self, trainer: str, round_: int, model: Model, idx: np.ndarray,
               salt: bytes = b"\x07" * 32, card: bytes | None = None) -> tuple[str, str, bytes]:
        model_cid = self.sim.content.put(encode_model(model, self.arch))
        data_cid = self.sim.content.put(card if card is not None else self.data_card(idx))
        return model_cid, data_cid, salt

    def commit(self, trainer: str, round_: int, sub: tuple[str, str, bytes]) -> Result:
        c = p.commitment(trainer, self.job_id, round_, sub[0], sub[1], sub[2])
        return self.sim.call(trainer, p.Commit(self.job_id, round_, c))

    def reveal(self, trainer: str, round_: int, sub: tuple[str, str, bytes]) -> Result:
        return self.sim.call(trainer, p.Reveal(self.job_id, round_, *sub))

    def reveal_validation(self, round_: int) -> Result:
        cid, salt = self.shards[round_]
        return self.sim.call(OWNER, p.RevealValidation(self.job_id, round_, cid, salt))

    def close(self, round_: int, sender: str = TRAINERS[-1]) -> Result:
        return self.sim.call(sender, p.CloseRound(self.job_id, round_))


WINDOWS = {"start_delay": 10, "commit": 100, "reveal": 100, "validation": 100}


def digits_job(sim: MarketSim | None = None, *, rounds: int = 2, budget: int = 10**18,
               aggregation: dict[str, Any] | None = None,
               contribution: dict[str, Any] | None = None, open_job: bool = True,
               token: str | None = None) -> DigitsJob:
    sim = sim or MarketSim()
    arch = ArchSpec.from_dict(ARCH)
    x, y = digits()
    init = initial_model(arch, b"tributary-test")
    init_cid = sim.content.put(encode_model(init, arch))
    rng = np.random.default_rng(7)
    val_idx = rng.permutation(len(y))[-300:]
    shards, commitments = [], []
    for r in range(rounds):
        sel = val_idx[r * 100 % 300:][:100]
        data = encode_dataset(quantize(x[sel], arch.scale_bits), y[sel].astype(np.int32))
        cid = sim.content.put(data)
        salt = bytes([r + 1]) * 32
        shards.append((cid, salt))
        commitments.append("0x" + p.validation_commitment(cid, salt).hex())
    spec = {"version": 1, "name": "digits-linear", "arch": ARCH, "initial_model": init_cid,
            "rounds": rounds, "windows": WINDOWS,
            "hparams": {"learning_rate": [1, 2], "local_epochs": 1, "batch_size": 32},
            "aggregation": aggregation or {"rule": "multi_krum", "f": 1, "m": 3, "then": "fedavg"},
            "contribution": contribution or {"method": "shapley", "exact_max_players": 8,
                                             "permutations": 32},
            "fallback": "equal",
            "data_schema": {"feature_shape": [1, 8, 8], "num_classes": 10,
                            "max_samples": 100000, "weight_cap": 400},
            "validation": commitments,
            "limits": {"max_model_bytes": 1 << 20, "max_shard_samples": 1000}}
    spec_cid = sim.content.put(json.dumps(spec).encode())
    job = DigitsJob(sim, arch, spec, spec_cid, shards, x, y)
    if open_job:
        data = p.CreateJob(spec_cid).encode()
        res = (sim.deposit_eth(OWNER, budget, data) if token is None
               else sim.deposit_erc20(OWNER, token, budget, data))
        assert res.accepted and res.notices, res.reports
        job.job_id = res.notices[0]["job"]
    return job
