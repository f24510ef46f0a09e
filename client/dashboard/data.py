"""The dashboard's data layer: what every page shows, computed from public sources only.

Why a layer of its own: the pages must never show a figure that a reader could not recompute
from the chain. So nothing here is stored or trusted beyond what anyone can fetch:

- the node's JSON-RPC (`cartesi_listInputs`, `cartesi_listOutputs`, `cartesi_listReports`,
  `cartesi_listEpochs`, `cartesi_getOutput`, `cartesi_getApplication`): inputs as they were
  added on chain (with their transaction), outputs (notices, vouchers) and their proofs against
  the claimed roots, reports (refusal reasons, model chunks);
- inspect (`jobs`, `job/<id>`, `job/<id>/round/<r>`, `balance/<addr>`): live state that the
  next notice will commit to;
- the chain itself (web3): `ClaimAccepted` / `ClaimSubmitted` on the Authority,
  `OutputExecuted` on the Application; `rollup verify` replays the inputs and checks every claim;
- the content store: the spec (rule, shard commitments) and the initial model, each verified
  against its content id.

Amounts stay exact: every wei figure is a decimal string, summed with Python integers.

`Feed` holds the raw material (inputs, outputs, epochs, claims, executions) and `sync()` brings
it up to date incrementally; `Views` turns a feed into the pages' JSON. The bench builds a
`Feed` from synthesized notices and uses the same `Views`, so it times the code users run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from dapp.hashing import keccak
from dapp.market import protocol as p
from rollup.outputs import NOTICE_SELECTOR, VOUCHER_SELECTOR

log = logging.getLogger(__name__)

ETH = p.ETH
NOTICE_SEL = NOTICE_SELECTOR
VOUCHER_SEL = VOUCHER_SELECTOR
EXECUTE_OUTPUT_SIG = "executeOutput(bytes,(uint64,bytes32[]))"
ACCEPTED_CLAIM = "CLAIM_ACCEPTED"


def _int(v: Any) -> int:
    if isinstance(v, int):
        return v
    return int(v, 16) if isinstance(v, str) and v.startswith("0x") else int(v)


def frac(s: Any) -> Fraction | None:
    """'p/q' (or [p, q], or an integer) as an exact fraction; None when absent."""
    if s is None or s == "":
        return None
    if isinstance(s, (list, tuple)) and len(s) == 2:
        return Fraction(int(s[0]), int(s[1]))
    n, _, d = str(s).partition("/")
    return Fraction(int(n), int(d or 1))


def frac_str(f: Fraction | None) -> str | None:
    return None if f is None else f"{f.numerator}/{f.denominator}"


# ---------------------------------------------------------------------------------- records

@dataclass
class Input:
    """One input as the node lists it, with the market call it carries decoded."""

    index: int
    epoch: int
    block: int
    timestamp: int
    sender: str
    """Who sent it: the account for direct inputs, the depositor for portal deposits."""
    tx: str | None
    status: str
    method: str
    args: dict[str, Any]
    reason: str | None = None
    """For a refused input, its report (why the backend said no)."""

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "epoch": self.epoch, "block": self.block,
                "timestamp": self.timestamp, "sender": self.sender, "tx": self.tx,
                "status": self.status, "method": self.method, "args": self.args,
                "reason": self.reason}


@dataclass
class Output:
    index: int
    input_index: int
    epoch: int
    kind: str  # "notice" | "voucher" | "other"
    data: dict[str, Any] = field(default_factory=dict)
    """A notice's JSON, or a voucher's {destination, value, payload, beneficiary, amount, token}."""
    hash: str | None = None


@dataclass
class Epoch:
    index: int
    first_block: int
    last_block: int
    status: str
    root: str | None
    output_count: int | None
    claim_tx: str | None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "first_block": self.first_block,
                "last_block": self.last_block, "status": self.status, "root": self.root,
                "output_count": self.output_count, "claim_tx": self.claim_tx}


@dataclass
class Claim:
    """A claim event on the Authority (read from the chain, not from the node)."""

    epoch: int
    last_block: int
    root: str
    tx: str
    block: int
    accepted: bool


def _describe_call(payload: bytes, sender: str) -> tuple[str, dict[str, Any], str]:
    """(method, arguments, real sender) of an input's payload; portal deposits included, told
    apart by the portal that sent them (an ERC-20 deposit's bytes also parse as an ether one)."""
    portals = {p.ETHER_PORTAL: (p.decode_ether_deposit, "ether"),
               p.ERC20_PORTAL: (p.decode_erc20_deposit, "ERC-20")}
    if sender.lower() in portals:
        decode, kind = portals[sender.lower()]
        try:
            dep = decode(payload)
        except p.ProtocolError:
            return f"malformed {kind} deposit", {"bytes": len(payload)}, sender
        args = {"value": str(dep.value), "token": getattr(dep, "token", ETH)}
        try:
            args["spec_cid"] = p.decode_create_job(dep.exec_layer_data).spec_cid
            return f"createJob ({kind} deposit)", args, dep.sender
        except p.ProtocolError:
            return f"{kind} deposit", args, dep.sender
    try:
        call = p.decode_account_call(payload)
    except p.ProtocolError:
        return "unknown", {"bytes": len(payload)}, sender
    args = {}
    for k, v in vars(call).items():
        args[k] = ("0x" + v.hex()) if isinstance(v, bytes) else v
    if isinstance(call, p.PutContent):
        args["data"] = f"{len(call.data)} bytes"
    return type(call).SIGNATURE.split("(")[0], args, sender


def decode_output(o: dict[str, Any]) -> Output:
    """An output from `cartesi_listOutputs` as the dashboard uses it."""
    raw = bytes.fromhex(o["raw_data"][2:])
    out = Output(_int(o["index"]), _int(o["input_index"]), _int(o["epoch_index"]), "other",
                 hash=o.get("hash"))
    if raw[:4] == NOTICE_SEL:
        (payload,) = abi_decode(["bytes"], raw[4:])
        out.kind = "notice"
        try:
            data = json.loads(payload)
            out.data = data if isinstance(data, dict) else {"value": data}
        except ValueError:
            out.data = {"type": "bytes", "size": len(payload)}
    elif raw[:4] == VOUCHER_SEL:
        dest, value, payload = abi_decode(["address", "uint256", "bytes"], raw[4:])
        dest = str(dest).lower()
        beneficiary, amount, token = dest, int(value), ETH
        if payload[:4] == p.TRANSFER:
            to, amt = abi_decode(["address", "uint256"], payload[4:])
            beneficiary, amount, token = str(to).lower(), int(amt), dest
        out.kind = "voucher"
        out.data = {"destination": dest, "value": str(int(value)), "payload": "0x" + payload.hex(),
                    "beneficiary": beneficiary, "amount": str(amount), "token": token}
    return out


# ---------------------------------------------------------------------------------- feed

class Feed:
    """The raw public material the pages are computed from, kept up to date by `sync()`.

    Inputs and outputs are append-only on the node, so each sync asks only for what is new;
    epochs (few) are read whole; chain events are read from the last block seen."""

    def __init__(self) -> None:
        self.inputs: list[Input] = []
        self.outputs: list[Output] = []
        self.epochs: list[Epoch] = []
        self.claims: dict[int, Claim] = {}
        self.submitted: dict[int, Claim] = {}
        self.executed: dict[int, dict[str, Any]] = {}
        self.processed = 0
        self.head_block: int | None = None
        self.app: str = ""
        self.authority: str | None = None
        self.chain_id: int | None = None
        self.epoch_length: int = 1
        self.chain_error: str | None = None
        self.version = 0

    # the live methods; a synthetic feed (the bench) leaves them as they are
    def sync(self) -> None:  # pragma: no cover - overridden by LiveFeed
        return None

    def inspect(self, path: str) -> Any:  # pragma: no cover - overridden by LiveFeed
        raise LookupError(path)

    def output_proof(self, index: int) -> dict[str, Any] | None:  # pragma: no cover
        return None

    def content(self, cid: str, max_size: int) -> bytes | None:  # pragma: no cover
        return None

    def round_model(self, job: int, round_: int, input_index: int, model_hash: str) -> bytes:
        raise LookupError("no node")  # pragma: no cover

    def fingerprint(self) -> str:
        """Changes whenever anything a page shows may have changed (the pages poll it)."""
        accepted = sum(1 for e in self.epochs if e.status == ACCEPTED_CLAIM)
        return (f"{self.processed}.{len(self.inputs)}.{len(self.outputs)}.{len(self.epochs)}."
                f"{accepted}.{len(self.claims)}.{len(self.executed)}")


class LiveFeed(Feed):
    """A feed over a running node (JSON-RPC + inspect), a chain (web3) and a content store."""

    def __init__(self, node: Any, w3: Any | None = None, store: Any | None = None,
                 min_interval: float = 0.5) -> None:
        super().__init__()
        self.node = node
        self.w3 = w3
        self.store = store
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last = 0.0
        self._events_from = 0
        self._inspect_cache: dict[str, tuple[str, Any]] = {}
        app = node.rpc("cartesi_getApplication", {})["data"] if node.app else \
            node.rpc("cartesi_listApplications", {"limit": 1})["data"][0]
        self.app = str(app["iapplication_address"]).lower()
        if not node.app:
            node.app = self.app
        self.authority = str(app.get("iconsensus_address") or "").lower() or None
        self.epoch_length = max(1, _int(app.get("epoch_length", "0x1")))
        self.chain_id = _int(node.rpc("cartesi_getChainId")["data"])

    def sync(self) -> None:
        with self._lock:
            if time.monotonic() - self._last < self.min_interval:
                return
            before = self.fingerprint()
            self._sync_inputs()
            self._sync_outputs()
            self._sync_epochs()
            self._sync_chain()
            if self.fingerprint() != before:
                self.version += 1
                self._inspect_cache.clear()
            self._last = time.monotonic()

    def _sync_inputs(self) -> None:
        self.processed = _int(self.node.rpc("cartesi_getProcessedInputCount")["data"])
        # inputs past the first unfinished one may still change status: re-read from there
        # (the lists are rebuilt and swapped whole: pages read them from other threads)
        first_open = next((i.index for i in self.inputs if i.status == "NONE"), len(self.inputs))
        inputs = self.inputs[:first_open]
        for o in self._from_offset("cartesi_listInputs", first_open):
            d = o["decoded_data"]
            payload = bytes.fromhex(d["payload"][2:])
            method, args, sender = _describe_call(payload, str(d["sender"]).lower())
            rec = Input(_int(o["index"]), _int(o["epoch_index"]), _int(d["block_number"]),
                        _int(d["block_timestamp"]), sender, o.get("transaction_reference"),
                        str(o["status"]), method, args)
            if rec.status not in ("ACCEPTED", "NONE"):
                texts = [r.decode("utf-8", "replace") for r in self.node.input_reports(rec.index)
                         if r[:4] != p.MODEL_CHUNK]
                rec.reason = "; ".join(t.removeprefix("refused: ") for t in texts) or rec.status
            inputs.append(rec)
        self.inputs = inputs

    def _from_offset(self, method: str, offset: int) -> Any:
        while True:
            res = self.node.rpc(method, {"limit": 500, "offset": offset})
            data = res.get("data", [])
            yield from data
            offset += len(data)
            if not data or offset >= int(res.get("pagination", {}).get("total_count", 0)):
                return

    def _sync_outputs(self) -> None:
        new = [decode_output(o) for o in self._from_offset("cartesi_listOutputs", len(self.outputs))]
        if new:
            self.outputs = self.outputs + new

    def _sync_epochs(self) -> None:
        eps = []
        for e in self._from_offset("cartesi_listEpochs", 0):
            eps.append(Epoch(_int(e["index"]), _int(e["first_block"]), _int(e["last_block"]),
                             str(e["status"]), e.get("outputs_merkle_root"),
                             None if e.get("output_count") is None else _int(e["output_count"]),
                             e.get("claim_transaction_hash")))
        self.epochs = eps

    def _sync_chain(self) -> None:
        """Claims and executions from the chain's own events (not from the node)."""
        if self.w3 is None:
            self.chain_error = "no Ethereum RPC configured: claims and executions are not checked"
            return
        from eth_utils import to_checksum_address

        from rollup.chain import contract

        try:
            head = int(self.w3.eth.block_number)
            if head < self._events_from:
                return
            app = to_checksum_address(self.app)
            # copies, filled then swapped in whole: pages read these from other threads
            submitted, claims, executed = dict(self.submitted), dict(self.claims), dict(self.executed)
            if self.authority:
                auth = contract(self.w3, "Authority", self.authority)
                for name, into, accepted in (("ClaimSubmitted", submitted, False),
                                             ("ClaimAccepted", claims, True)):
                    for ev in getattr(auth.events, name)().get_logs(
                            from_block=self._events_from, to_block=head,
                            argument_filters={"appContract": app}):
                        last = int(ev["args"]["lastProcessedBlockNumber"])
                        into[last // self.epoch_length] = Claim(
                            last // self.epoch_length, last,
                            "0x" + bytes(ev["args"]["outputsMerkleRoot"]).hex(),
                            "0x" + bytes(ev["transactionHash"]).hex(), int(ev["blockNumber"]),
                            accepted)
            appc = contract(self.w3, "Application", self.app)
            for ev in appc.events.OutputExecuted().get_logs(from_block=self._events_from,
                                                            to_block=head):
                executed[int(ev["args"]["outputIndex"])] = {
                    "tx": "0x" + bytes(ev["transactionHash"]).hex(), "block": int(ev["blockNumber"])}
            self.submitted, self.claims, self.executed = submitted, claims, executed
            self._events_from = head + 1
            self.head_block = head
            self.chain_error = None
        except Exception as exc:  # the chain is one source among others: say so, keep serving
            self.chain_error = f"the chain did not answer: {type(exc).__name__}: {exc}"
            log.warning("dashboard: %s", self.chain_error)

    def inspect(self, path: str) -> Any:
        key = f"{self.version}:{path}"
        hit = self._inspect_cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = self.node.inspect(path)
        self._inspect_cache[path] = (key, value)
        return value

    def output_proof(self, index: int) -> dict[str, Any] | None:
        return dict(self.node.rpc("cartesi_getOutput", {"output_index": hex(index)})["data"])

    def content(self, cid: str, max_size: int) -> bytes | None:
        if self.store is None:
            return None
        try:
            return bytes(self.store.get(cid, max_size=max_size))
        except Exception as exc:
            log.info("dashboard: content %s unavailable: %s", cid, exc)
            return None

    def round_model(self, job: int, round_: int, input_index: int, model_hash: str) -> bytes:
        want = bytes.fromhex(model_hash[2:])
        chunks = [p.ModelChunk.decode(r) for r in self.node.input_reports(input_index)
                  if r[:4] == p.MODEL_CHUNK]
        mine = [c for c in chunks if (c.job_id, c.round) == (job, round_)]
        return p.ModelChunk.join(mine, want)

    def was_executed_on_chain(self, index: int) -> bool | None:
        if self.w3 is None:
            return None
        from rollup.vouchers import was_output_executed

        return was_output_executed(self.w3, self.app, index)


# ---------------------------------------------------------------------------------- views

class NotFound(LookupError):
    """The page asks for something the sources do not have (the message says what)."""


def rule_chain(agg: Any) -> str | None:
    """An aggregation spec as its chain of rules, e.g. "norm_clip → multi_krum → fedavg"."""
    parts: list[str] = []
    while isinstance(agg, dict) and len(parts) < 16:
        parts.append(str(agg.get("rule")))
        agg = agg.get("then")
    if isinstance(agg, str):
        parts.append(agg)
    return " → ".join(parts) or None


def _lr(hparams: dict[str, Any] | None) -> str | None:
    if not hparams or "learning_rate" not in hparams:
        return None
    return frac_str(frac(hparams["learning_rate"]))


class Views:
    """The JSON behind each page, from a feed. Pure functions of the feed (plus inspect)."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self._spec_cache: dict[str, dict[str, Any] | None] = {}

    # ---- helpers --------------------------------------------------------------------------
    def notices(self, type_: str | None = None, job: int | None = None) -> list[Output]:
        return [o for o in self.feed.outputs if o.kind == "notice"
                and (type_ is None or o.data.get("type") == type_)
                and (job is None or o.data.get("job") == job)]

    def spec(self, cid: str) -> dict[str, Any] | None:
        if cid not in self._spec_cache:
            raw = self.feed.content(cid, 256 * 1024)
            try:
                self._spec_cache[cid] = json.loads(raw) if raw is not None else None
            except ValueError:
                self._spec_cache[cid] = None
        return self._spec_cache[cid]

    def epoch_state(self, epoch: int) -> dict[str, Any]:
        """How far an epoch is from making its outputs provable: the node's view and the
        chain's own ClaimAccepted event, side by side."""
        ep = next((e for e in self.feed.epochs if e.index == epoch), None)
        claim = self.feed.claims.get(epoch)
        return {"epoch": epoch, "node_status": ep.status if ep else None,
                "node_root": ep.root if ep else None,
                "claim": None if claim is None else {"root": claim.root, "tx": claim.tx,
                                                     "block": claim.block,
                                                     "last_block": claim.last_block},
                "root_matches": None if claim is None or ep is None or ep.root is None
                else claim.root.lower() == ep.root.lower()}

    def voucher_state(self, o: Output) -> dict[str, Any]:
        """waiting for claim | executable | executed (with its transaction), from the chain's
        events where the chain is reachable, else from the node."""
        ex = self.feed.executed.get(o.index)
        if ex is not None:
            return {"state": "executed", "tx": ex["tx"], "block": ex["block"]}
        claimed = o.epoch in self.feed.claims or any(
            e.index == o.epoch and e.status == ACCEPTED_CLAIM for e in self.feed.epochs)
        return {"state": "executable" if claimed else "waiting for claim", "tx": None, "block": None}

    def _voucher_json(self, o: Output) -> dict[str, Any]:
        return dict(index=o.index, input_index=o.input_index, epoch=o.epoch, **o.data,
                    **self.voucher_state(o))

    def _input(self, index: int) -> Input | None:
        ins = self.feed.inputs
        if 0 <= index < len(ins) and ins[index].index == index:
            return ins[index]
        return next((i for i in ins if i.index == index), None)

    # ---- pages ----------------------------------------------------------------------------
    def jobs(self) -> dict[str, Any]:
        rounds_by_job: dict[int, list[Output]] = {}
        for n in self.notices("round_closed"):
            rounds_by_job.setdefault(int(n.data["job"]), []).append(n)
        cancelled = {int(n.data["job"]) for n in self.notices("job_cancelled")}
        try:
            live = {int(j["job"]): j for j in self.feed.inspect("jobs")}
        except Exception:
            live = {}
        out = []
        for n in self.notices("job_opened"):
            d = n.data
            job = int(d["job"])
            rounds = rounds_by_job.get(job, [])
            spec = self.spec(d["spec_cid"]) or {}
            paid = sum(int(r.data["paid"]) for r in rounds)
            leftover = sum(int(v) for r in rounds
                           for v in (r.data.get("job_finished") or {}).get("leftover", {}).values())
            state = live.get(job, {}).get("status") or (
                "cancelled" if job in cancelled else
                "finished" if any("job_finished" in r.data for r in rounds) else "open")
            out.append({
                "job": job, "owner": d["owner"], "token": d["token"], "budget": d["budget"],
                "paid": str(paid + leftover), "paid_rounds": str(paid), "leftover": str(leftover),
                "carried": rounds[-1].data["carried"] if rounds else "0",
                "rounds_done": len(rounds), "rounds": d.get("rounds"), "state": state,
                "rule": rule_chain(spec.get("aggregation")),
                "aggregation": spec.get("aggregation"),
                "shard_commitments": spec.get("validation"), "spec_cid": d["spec_cid"],
                "name": spec.get("name"), "notice_index": n.index})
        return {"jobs": out}

    def job(self, job: int) -> dict[str, Any]:
        opened = self.notices("job_opened", job)
        if not opened:
            raise NotFound(f"no job {job}: no job_opened notice names it")
        o = opened[0].data
        spec = self.spec(o["spec_cid"]) or {}
        rounds = []
        hash_chain = [{"round": None, "model_cid": o["model_cid"], "model_hash": o["model_hash"],
                       "source": "job_opened notice", "output_index": opened[0].index}]
        rejected = []
        for n in self.notices("round_closed", job):
            d = n.data
            acc = d.get("accuracy")
            trainers = [dict(t, reward=str(t.get("reward", "0"))) for t in d["trainers"]]
            fin = d.get("job_finished")
            rounds.append({
                "round": d["round"], "budget": d["budget"], "paid": d["paid"],
                "carried": d["carried"], "accuracy": acc,
                "learning_rate": _lr(d.get("hparams")), "hparams": d.get("hparams"),
                "model_cid": d["model_cid"], "model_hash": d["model_hash"],
                "model_bytes": d.get("model_bytes"), "fallback": d.get("fallback"),
                "validation_cid": d.get("validation_cid"), "trainers": trainers,
                "notice_index": n.index, "input_index": n.input_index, "epoch": n.epoch,
                "job_finished": fin, "next_round": d.get("next_round")})
            hash_chain.append({"round": d["round"], "model_cid": d["model_cid"],
                               "model_hash": d["model_hash"], "source": "round_closed notice",
                               "output_index": n.index})
            for t in d["trainers"]:
                if t.get("verdict") == "rejected":
                    rejected.append({"round": d["round"], "address": t["address"],
                                     "reason": t.get("reason") or "", "where": "round notice",
                                     "model_cid": t.get("model_cid"), "input_index": n.input_index})
        for i in self.feed.inputs:  # reveals the backend refused outright (bad bytes, late, ...)
            if i.method == "reveal" and i.status not in ("ACCEPTED", "NONE") \
                    and i.args.get("job_id") == job:
                rejected.append({"round": i.args.get("round"), "address": i.sender,
                                 "reason": i.reason or i.status, "where": "refused input",
                                 "model_cid": i.args.get("model_cid"), "input_index": i.index,
                                 "tx": i.tx})
        rejected.sort(key=lambda r: (r["round"] if r["round"] is not None else -1,
                                     r["input_index"]))
        try:
            live = self.feed.inspect(f"job/{job}")
        except Exception:
            live = None
        paid = sum(int(r["paid"]) for r in rounds)
        return {
            "job": job, "owner": o["owner"], "token": o["token"], "budget": o["budget"],
            "rounds_planned": o.get("rounds"), "spec_cid": o["spec_cid"], "name": spec.get("name"),
            "aggregation": spec.get("aggregation"), "rule": rule_chain(spec.get("aggregation")),
            "windows": spec.get("windows"),
            "shard_commitments": spec.get("validation"), "paid": str(paid),
            "public_validation": spec.get("public_validation"),
            "state": (live or {}).get("status") or ("finished" if rounds and rounds[-1]["job_finished"]
                                                    else "open"),
            "live": None if live is None else {
                "status": live.get("status"), "escrow": live.get("escrow"),
                "trainers": len(live.get("trainers", [])),
                "current": (live.get("rounds") or [None])[-1]},
            "rounds": rounds, "rejected": rejected, "hash_chain": hash_chain,
            "opened_index": opened[0].index}

    def trainer(self, address: str) -> dict[str, Any]:
        addr = address.lower()
        if not (len(addr) == 42 and addr.startswith("0x")
                and all(c in "0123456789abcdef" for c in addr[2:])):
            raise NotFound(f"{address!r} is not an address (0x and 40 hex digits)")
        rounds: dict[tuple[int, int], dict[str, Any]] = {}

        def slot(job: int, r: int) -> dict[str, Any]:
            return rounds.setdefault((job, r), {"job": job, "round": r, "commit": None,
                                                "reveal": None, "verdict": None,
                                                "contribution": None, "reward": None,
                                                "reason": None, "notice_index": None})

        for i in self.feed.inputs:
            if i.sender != addr or i.method not in ("commit", "reveal"):
                continue
            s = slot(int(i.args["job_id"]), int(i.args["round"]))
            s[i.method] = {"input_index": i.index, "tx": i.tx, "block": i.block,
                           "status": i.status, "reason": i.reason}
        earned: dict[str, int] = {}
        for n in self.notices("round_closed"):
            for t in n.data["trainers"]:
                if t["address"] != addr:
                    continue
                s = slot(int(n.data["job"]), int(n.data["round"]))
                s.update(verdict=t["verdict"], contribution=t.get("contribution"),
                         reward=str(t.get("reward", "0")), reason=t.get("reason"),
                         notice_index=n.index, token=n.data["token"])
                tok = n.data["token"]
                earned[tok] = earned.get(tok, 0) + int(t.get("reward", 0))
            left = (n.data.get("job_finished") or {}).get("leftover", {}).get(addr)
            if left:
                s = slot(int(n.data["job"]), int(n.data["round"]))
                s["leftover"] = str(left)
                earned[n.data["token"]] = earned.get(n.data["token"], 0) + int(left)
        withdrawals = [{"notice_index": n.index, "input_index": n.input_index,
                        "token": n.data["token"], "amount": n.data["amount"],
                        "tx": getattr(self._input(n.input_index), "tx", None)}
                       for n in self.notices("withdrawal") if n.data.get("account") == addr]
        vouchers = [self._voucher_json(o) for o in self.feed.outputs
                    if o.kind == "voucher" and o.data["beneficiary"] == addr]
        try:
            balances = self.feed.inspect(f"balance/{addr}").get("balances", {})
        except Exception:
            balances = None
        return {"address": addr, "rounds": [rounds[k] for k in sorted(rounds)],
                "earned": {k: str(v) for k, v in earned.items()}, "balances": balances,
                "withdrawals": withdrawals, "vouchers": vouchers}

    def trace(self, job: int, round_: int, address: str) -> dict[str, Any]:
        """The chain of evidence behind one reward: inputs, content, notice, proof, claim,
        voucher, execution."""
        addr = address.lower()
        notice = next((n for n in self.notices("round_closed", job)
                       if int(n.data["round"]) == round_), None)
        if notice is None:
            raise NotFound(f"round {round_} of job {job} has not closed (no round notice)")
        entry = next((t for t in notice.data["trainers"] if t["address"] == addr), None)
        if entry is None:
            raise NotFound(f"{addr} took no part in round {round_} of job {job}")

        def mine(method: str) -> Input | None:
            found = [i for i in self.feed.inputs if i.sender == addr and i.method == method
                     and i.args.get("job_id") == job and i.args.get("round") == round_
                     and i.status == "ACCEPTED"]
            return found[-1] if found else None

        commit, reveal = mine("commit"), mine("reveal")
        check = None
        if commit and reveal:
            want = p.commitment(addr, job, round_, reveal.args["model_cid"],
                                reveal.args["data_cid"], bytes.fromhex(reveal.args["salt"][2:]))
            check = {"recomputed": "0x" + want.hex(), "committed": commit.args["commitment"],
                     "matches": "0x" + want.hex() == commit.args["commitment"]}
        round_state = None
        try:
            rs = self.feed.inspect(f"job/{job}/round/{round_}")
            sub = rs.get("reveals", {}).get(addr)
            round_state = {"model_hash": sub.get("model_hash"), "num_samples": sub.get("num_samples"),
                           "weight": sub.get("weight")} if sub else None
        except Exception:
            pass
        close_input = self._input(notice.input_index)
        proof = None
        try:
            out = self.feed.output_proof(notice.index)
            if out is not None:
                proof = {"hash": out.get("hash"), "siblings": out.get("output_hashes_siblings")}
        except Exception as exc:
            proof = {"error": str(exc)}
        # Rewards are credited to the in-app balance; the account turns its balance into
        # vouchers with `withdraw`. The vouchers that can carry this reward are the account's
        # withdrawals after the round notice.
        later = [o for o in self.feed.outputs if o.kind == "voucher"
                 and o.data["beneficiary"] == addr and o.index > notice.index
                 and o.data["token"] == notice.data["token"]]
        vouchers = []
        for v in later:
            vj = self._voucher_json(v)
            vj["claim"] = self.epoch_state(v.epoch)
            vj["withdraw_input"] = None
            wi = self._input(v.input_index)
            if wi is not None:
                vj["withdraw_input"] = {"index": wi.index, "tx": wi.tx, "block": wi.block}
            vouchers.append(vj)

        def inp(i: Input | None) -> dict[str, Any] | None:
            return None if i is None else i.to_json()

        return {"job": job, "round": round_, "address": addr, "token": notice.data["token"],
                "entry": entry, "reward": str(entry.get("reward", "0")),
                "commit": inp(commit), "reveal": inp(reveal), "commitment_check": check,
                "submission": round_state,
                "notice": {"output_index": notice.index, "input_index": notice.input_index,
                           "epoch": notice.epoch, "hash": notice.hash,
                           "model_hash": notice.data["model_hash"],
                           "close_input": inp(close_input), "proof": proof},
                "claim": self.epoch_state(notice.epoch), "vouchers": vouchers}

    def node(self) -> dict[str, Any]:
        f = self.feed
        counts: dict[str, int] = {}
        for i in f.inputs:
            counts[i.status] = counts.get(i.status, 0) + 1
        # one pass each over inputs and outputs, not one per epoch
        in_epoch: dict[int, int] = {}
        for i in f.inputs:
            in_epoch[i.epoch] = in_epoch.get(i.epoch, 0) + 1
        out_epoch: dict[int, int] = {}
        for o in f.outputs:
            out_epoch[o.epoch] = out_epoch.get(o.epoch, 0) + 1
        epochs = []
        for e in f.epochs:
            ej = e.to_json()
            ej.update(self.epoch_state(e.index))
            ej["inputs"] = in_epoch.get(e.index, 0)
            ej["outputs"] = out_epoch.get(e.index, 0)
            epochs.append(ej)
        claims = [{"epoch": c.epoch, "last_block": c.last_block, "root": c.root, "tx": c.tx,
                   "block": c.block, "accepted": c.epoch in f.claims}
                  for c in sorted({**f.submitted, **f.claims}.values(), key=lambda c: c.epoch)]
        return {"app": f.app, "authority": f.authority, "chain_id": f.chain_id,
                "epoch_length": f.epoch_length, "processed": f.processed,
                "inputs_total": len(f.inputs), "status_counts": counts,
                "head_block": f.head_block, "chain_error": f.chain_error,
                "inputs": [i.to_json() for i in reversed(f.inputs[-200:])],
                "epochs": epochs, "claims": claims,
                "outputs": {"notices": sum(1 for o in f.outputs if o.kind == "notice"),
                            "vouchers": sum(1 for o in f.outputs if o.kind == "voucher"),
                            "executed": len(f.executed)}}

    def voucher(self, index: int) -> dict[str, Any]:
        """What a wallet needs to execute a voucher: the Application and the executeOutput
        calldata with the node's proof (checked on chain by the contract itself)."""
        o = next((x for x in self.feed.outputs if x.index == index and x.kind == "voucher"), None)
        if o is None:
            raise NotFound(f"no voucher with output index {index}")
        state = self.voucher_state(o)
        res = dict(self._voucher_json(o), app=self.feed.app, chain_id=self.feed.chain_id,
                   calldata=None)
        if state["state"] == "executable":
            out = self.feed.output_proof(index)
            sibs = (out or {}).get("output_hashes_siblings")
            if sibs:
                raw = bytes.fromhex(out["raw_data"][2:])  # type: ignore[index]
                args = abi_encode(["bytes", "(uint64,bytes32[])"],
                                  [raw, (index, [bytes.fromhex(s[2:]) for s in sibs])])
                res["calldata"] = "0x" + (p.selector(EXECUTE_OUTPUT_SIG) + args).hex()
        return res

    def model(self, job: int, round_: int | None) -> tuple[bytes, str]:
        """A round's global model (None: the initial one), verified by keccak against the
        hash its notice publishes; returns (bytes, file name)."""
        if round_ is None:
            opened = self.notices("job_opened", job)
            if not opened:
                raise NotFound(f"no job {job}")
            d = opened[0].data
            data = self.feed.content(d["model_cid"], 256 << 20)
            if data is None:
                raise NotFound(f"the initial model {d['model_cid']} is not in the content store")
            if "0x" + keccak(data).hex() != d["model_hash"]:
                raise NotFound("the stored initial model does not hash to the job_opened notice's")
            return data, f"job{job}-initial.safetensors"
        n = next((x for x in self.notices("round_closed", job) if int(x.data["round"]) == round_),
                 None)
        if n is None:
            raise NotFound(f"round {round_} of job {job} has not closed")
        return (self.feed.round_model(job, round_, n.input_index, n.data["model_hash"]),
                f"job{job}-round{round_}.safetensors")


def make_views(node_url: str, app: str | None, rpc_url: str | None, store: Any | None,
               connect: Callable[[str], Any] | None = None) -> Views:
    """Views over live sources (what `tributary dashboard` serves)."""
    from client.node_api import NodeClient

    w3 = None
    if rpc_url:
        from rollup.chain import connect as _connect

        w3 = (connect or _connect)(rpc_url)
    return Views(LiveFeed(NodeClient(node_url, app, timeout=30), w3, store))
