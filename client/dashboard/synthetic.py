"""A synthetic feed: a finished job of N trainers and R rounds, as the node would list it.

Why: the bench (bench/dashboard.py) times the job page of a 50-trainer, 10-round job and the
fast tests check the pages' arithmetic without a devnet. The feed holds the same records a live
feed builds from the node (inputs with their calls, notices as the backend writes them,
withdrawal vouchers, epochs, claims, executions), so the same `Views` and pages run on it.
Amounts follow the market's integer rules (floor shares, remainder carried), so every figure
is exact and checkable.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from typing import Any

from dapp.content.unixfs import chunk as unixfs_chunk
from dapp.hashing import keccak
from dapp.market import protocol as p

from client.dashboard.data import ACCEPTED_CLAIM, Claim, Epoch, Feed, Input, Output

ETH = p.ETH


def _addr(i: int) -> str:
    return "0x" + keccak(f"trainer-{i}".encode())[-20:].hex()


def _h(tag: str) -> str:
    return "0x" + keccak(tag.encode()).hex()


def _cid(tag: str) -> str:
    return "bafkrei" + keccak(tag.encode()).hex()[:52]


class SyntheticFeed(Feed):
    """A feed that never changes: `sync()` does nothing; inspect answers from the notices."""

    def __init__(self, trainers: int = 50, rounds: int = 10, budget: int = 10**18,
                 seed: int = 7, store: Any | None = None) -> None:
        """`store`: a content store (embedded or IPFS) to hold the spec and the initial model,
        read back through it like a live feed does; None keeps them in memory."""
        super().__init__()
        self.store = store
        rng = random.Random(seed)
        self.app = "0x" + "ab" * 20
        self.authority = "0x" + "cd" * 20
        self.chain_id = 31337
        self.epoch_length = 10
        owner = "0x" + "11" * 20
        addrs = [_addr(i) for i in range(trainers)]
        self._balances: dict[str, int] = {}
        inputs: list[Input] = []
        outputs: list[Output] = []
        block = 10

        def add_input(sender: str, method: str, args: dict[str, Any], status: str = "ACCEPTED",
                      reason: str | None = None) -> Input:
            nonlocal block
            block += 1
            rec = Input(len(inputs), block // self.epoch_length, block, 1_700_000_000 + block * 12,
                        sender, _h(f"tx-{len(inputs)}"), status, method, args, reason)
            inputs.append(rec)
            return rec

        def notice(inp: Input, data: dict[str, Any]) -> None:
            outputs.append(Output(len(outputs), inp.index, inp.epoch, "notice", data,
                                  hash=_h(f"out-{len(outputs)}")))

        spec = json.dumps({"name": "synthetic",
                           "aggregation": {"rule": "multi_krum", "f": 3, "then": "fedavg"},
                           "windows": {"commit": 600, "reveal": 600, "validation": 600},
                           "validation": [_h(f"vc-{r}") for r in range(rounds)]}).encode()
        initial = b"synthetic initial model " * 64
        self._content: dict[str, bytes] = {}
        if store is not None:
            spec_cid, init_cid = store.put(spec), store.put(initial)
        else:
            spec_cid, init_cid = str(unixfs_chunk(spec)[0]), str(unixfs_chunk(initial)[0])
            self._content = {spec_cid: spec, init_cid: initial}
        dep = add_input(owner, "createJob (ether deposit)",
                        {"value": str(budget), "token": ETH, "spec_cid": spec_cid})
        notice(dep, {"type": "job_opened", "job": 1, "owner": owner, "token": ETH,
                     "budget": str(budget), "spec_cid": spec_cid, "rounds": rounds,
                     "model_cid": init_cid, "model_hash": "0x" + keccak(initial).hex(),
                     "round_start": 0})
        per_round = budget // rounds
        carry = 0
        lr = Fraction(1, 5)
        correct = 900
        earned: dict[str, int] = {}
        for r in range(rounds):
            rb = per_round + carry + (budget - per_round * rounds if r == rounds - 1 else 0)
            for a in addrs:
                add_input(a, "commit", {"job_id": 1, "round": r, "commitment": _h(f"c-{a}-{r}")})
            for a in addrs:
                add_input(a, "reveal", {"job_id": 1, "round": r, "model_cid": _cid(f"m-{a}-{r}"),
                                        "data_cid": _cid(f"d-{a}-{r}"), "salt": _h(f"s-{a}-{r}")})
            close = add_input(addrs[0], "closeRound", {"job_id": 1, "round": r})
            rejected = set(rng.sample(addrs, 3))
            weights = {a: rng.randint(1, 1000) for a in addrs if a not in rejected}
            total = sum(weights.values())
            trainers_json = []
            paid = 0
            for a in sorted(addrs):
                if a in rejected:
                    trainers_json.append({"address": a, "verdict": "rejected",
                                          "reason": "outlier: multi_krum score above the cut",
                                          "contribution": "0/1", "reward": "0",
                                          "model_cid": _cid(f"m-{a}-{r}"),
                                          "data_cid": _cid(f"d-{a}-{r}"), "weight": 0})
                    continue
                reward = rb * weights[a] // total
                paid += reward
                earned[a] = earned.get(a, 0) + reward
                trainers_json.append({"address": a, "verdict": "accepted",
                                      "contribution": f"{weights[a]}/{total}",
                                      "reward": str(reward), "model_cid": _cid(f"m-{a}-{r}"),
                                      "data_cid": _cid(f"d-{a}-{r}"), "weight": weights[a]})
            carry = rb - paid
            correct = min(1000, correct + rng.randint(-5, 12))
            if r % 3 == 2:
                lr /= 2
            data: dict[str, Any] = {
                "type": "round_closed", "job": 1, "round": r, "token": ETH, "budget": str(rb),
                "paid": str(paid), "carried": str(carry), "model_cid": _cid(f"g-{r}"),
                "model_hash": _h(f"g-{r}"), "model_bytes": 5_000,
                "accuracy": {"correct": correct, "total": 1000}, "validation_cid": _cid(f"v-{r}"),
                "fallback": None, "scoring": "shapley",
                "hparams": {"learning_rate": [lr.numerator, lr.denominator], "local_epochs": 2,
                            "batch_size": 32}, "trainers": trainers_json}
            if r == rounds - 1:
                data["job_finished"] = {"refund": str(carry), "owner": owner, "leftover": {}}
            else:
                data["next_round"] = {"round": r + 1, "start": 0, "budget": str(per_round + carry)}
            notice(close, data)
        for a in addrs[:10]:  # some trainers withdraw
            w = add_input(a, "withdraw", {"token": ETH, "amount": earned.get(a, 0)})
            notice(w, {"type": "withdrawal", "account": a, "token": ETH,
                       "amount": str(earned.get(a, 0))})
            outputs.append(Output(len(outputs), w.index, w.epoch, "voucher", {
                "destination": a, "value": str(earned.get(a, 0)), "payload": "0x",
                "beneficiary": a, "amount": str(earned.get(a, 0)), "token": ETH},
                hash=_h(f"out-{len(outputs)}")))
            earned[a] = 0
        self._balances = earned
        self.inputs, self.outputs = inputs, outputs
        last_epoch = inputs[-1].epoch
        self.epochs = [Epoch(e, e * self.epoch_length, (e + 1) * self.epoch_length - 1,
                             ACCEPTED_CLAIM if e < last_epoch else "OPEN", _h(f"root-{e}"),
                             sum(1 for o in outputs if o.epoch <= e), _h(f"claim-{e}"))
                       for e in range(last_epoch + 1)]
        self.claims = {e.index: Claim(e.index, e.last_block, e.root or "", e.claim_tx or "",
                                      e.last_block + 1, True)
                       for e in self.epochs if e.status == ACCEPTED_CLAIM}
        first_voucher = next(o for o in outputs if o.kind == "voucher")
        self.executed = {first_voucher.index: {"tx": _h("exec-0"), "block": block}}
        self.processed = len(inputs)
        self.head_block = block
        self._rounds = rounds
        self._trainers = addrs

    def inspect(self, path: str) -> Any:
        if path == "jobs":
            return [{"job": 1, "status": "finished", "round": self._rounds - 1}]
        if path == "job/1":
            return {"status": "finished", "escrow": "0", "trainers": self._trainers,
                    "rounds": [{"round": self._rounds - 1, "commits": len(self._trainers),
                                "reveals": len(self._trainers)}]}
        if path.startswith("balance/"):
            a = path.split("/", 1)[1]
            v = self._balances.get(a, 0)
            return {"account": a, "balances": {ETH: str(v)} if v else {}}
        raise LookupError(path)

    def content(self, cid: str, max_size: int) -> bytes | None:
        if self.store is None:
            data = self._content.get(cid)
            return data if data is not None and len(data) <= max_size else None
        try:
            return bytes(self.store.get(cid, max_size=max_size))
        except Exception:
            return None
