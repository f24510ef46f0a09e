"""The node's client API as the client uses it: JSON-RPC (`/rpc`), inspect, and what they mean.

Why a module of its own: notices are canonical JSON inside ABI-encoded outputs, the new global
model arrives as `ModelChunk` reports, and vouchers need proofs; every command wants those
decoded, not raw. Everything read here is checked where it can be: a reassembled model must hash
(keccak) to the `model_hash` that the round notice (an output, provable on chain) commits to.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import requests
from eth_abi import decode as abi_decode

from dapp.market import protocol as p

OUTPUT_SELECTORS = {"notice": "0xc258d6e5", "voucher": "0x237a816f", "delegatecallvoucher": "0x10321e8b"}
_NO_APP = ("cartesi_listApplications", "cartesi_getChainId", "cartesi_getNodeVersion", "rpc.discover")


class NodeError(Exception):
    """The node answered with an error, or something that is not what the API promises."""


class NodeUnavailable(NodeError):
    """Nothing answers at the node URL."""


class InputRefusedByApp(NodeError):
    """The application rejected an input; `reason` is its report."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"input {index} was refused: {reason}")
        self.index = index
        self.reason = reason


class ModelVerificationError(NodeError):
    """Reassembled model bytes do not hash to the notice's model_hash (or chunks are missing)."""


@dataclass(frozen=True)
class Notice:
    index: int
    input_index: int
    epoch: int
    data: dict[str, Any]


@dataclass(frozen=True)
class VoucherOut:
    index: int
    input_index: int
    epoch: int
    destination: str
    value: int
    payload: bytes
    proof_ready: bool
    executed_tx: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def _transfer(self) -> tuple[str, int] | None:
        """(to, amount) of an ERC-20 transfer payload; None for an ether voucher."""
        if self.payload[:4] != p.TRANSFER:
            return None
        to, amount = abi_decode(["address", "uint256"], self.payload[4:])
        return str(to).lower(), int(amount)

    def beneficiary(self) -> str:
        """Who the voucher pays: the destination for ether, the `to` of an ERC-20 transfer."""
        t = self._transfer()
        return t[0] if t else self.destination.lower()

    def amount(self) -> int:
        t = self._transfer()
        return t[1] if t else self.value


@dataclass
class PayoutOut:
    """A batched payout: one DelegateCallVoucher that pays every entry when executed."""

    index: int
    token: str
    entries: list[tuple[str, int]]
    proof_ready: bool
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def amount_for(self, payee: str | None) -> int:
        """What it pays `payee` (everyone, for None)."""
        return sum(v for a, v in self.entries if payee is None or a == payee.lower())


def _int(v: Any) -> int:
    if isinstance(v, int):
        return v
    return int(v, 16) if isinstance(v, str) and v.startswith("0x") else int(v)


class NodeClient:
    def __init__(self, node_url: str, app: str | None = None, timeout: float = 30.0) -> None:
        self.url = node_url.rstrip("/")
        self.app = app
        self.timeout = timeout
        self._session = requests.Session()

    # ---- transport -----------------------------------------------------------------------

    def application(self) -> str:
        """The application this client reads: the one it was given, else the node's only one
        (the official API requires `application` on every per-application method)."""
        if not self.app:
            apps = self.rpc("cartesi_listApplications", {"limit": 1})["data"]
            if not apps:
                raise NodeError(f"the node at {self.url} serves no application")
            self.app = str(apps[0]["iapplication_address"])
        return self.app

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": dict(params or {})}
        if method not in _NO_APP:
            body["params"]["application"] = self.application()
        try:
            r = self._session.post(self.url + "/rpc", json=body, timeout=self.timeout)
        except requests.ConnectionError:
            raise NodeUnavailable(f"no node answers at {self.url}: start one with "
                                  f"`python -m rollup devnet --backend 'python -m dapp'` or "
                                  f"pass --node URL") from None
        except requests.RequestException as exc:
            raise NodeUnavailable(f"node at {self.url}: {exc}") from None
        try:
            answer = r.json()
        except ValueError:
            raise NodeError(f"{self.url}/rpc answered HTTP {r.status_code} without JSON") from None
        if answer.get("error"):
            raise NodeError(f"{method}: {answer['error'].get('message', answer['error'])}")
        return answer.get("result")

    def _paged(self, method: str, params: dict[str, Any], page: int = 500) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            res = self.rpc(method, dict(params, limit=page, offset=offset))
            data = res.get("data", [])
            yield from data
            offset += len(data)
            if not data or offset >= int(res.get("pagination", {}).get("total_count", 0)):
                return

    def inspect_raw(self, path: str) -> dict[str, Any]:
        target = self.application()
        try:
            r = self._session.post(f"{self.url}/inspect/{target}", data=path.encode(),
                                   timeout=self.timeout)
        except requests.ConnectionError:
            raise NodeUnavailable(f"no node answers at {self.url}: start one or pass --node URL") from None
        if r.status_code != 200:
            raise NodeError(f"inspect {path!r}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def inspect(self, path: str) -> Any:
        """The market's answer to an inspect path (jobs, job/<id>, balance/<addr>, ...)."""
        ans = self.inspect_raw(path)
        reports = [bytes.fromhex(rep["payload"][2:]) for rep in ans.get("reports") or []]  # null: none
        if ans.get("status") != "Accepted":
            reason = reports[0].decode("utf-8", "replace") if reports else ans.get("exception") or ans.get("status")
            raise NodeError(f"inspect {path!r} refused: {reason}")
        if not reports:
            raise NodeError(f"inspect {path!r} gave no report")
        try:
            return json.loads(reports[0])
        except ValueError:
            raise NodeError(f"inspect {path!r}: {reports[0][:200]!r}") from None

    # ---- inputs --------------------------------------------------------------------------

    def processed_count(self) -> int:
        return _int(self.rpc("cartesi_getProcessedInputCount")["data"])

    def wait_processed(self, index: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.processed_count() <= index:
            if time.monotonic() > deadline:
                raise NodeError(f"the node did not process input {index} within {timeout:.0f} s "
                                f"(is it following the chain?)")
            time.sleep(0.05)

    def input_status(self, index: int) -> str:
        return str(self.rpc("cartesi_getInput", {"input_index": hex(index)})["data"]["status"])

    def input_reports(self, index: int) -> list[bytes]:
        return [bytes.fromhex(r["raw_data"][2:])
                for r in self._paged("cartesi_listReports", {"input_index": hex(index)})]

    def result(self, index: int, timeout: float = 120.0) -> list[str]:
        """Wait for input `index`; return its text reports, or raise InputRefusedByApp."""
        self.wait_processed(index, timeout)
        status = self.input_status(index)
        texts = [r.decode("utf-8", "replace") for r in self.input_reports(index)
                 if r[:4] != p.MODEL_CHUNK]
        if status.upper() != "ACCEPTED":
            reason = "; ".join(t.removeprefix("refused: ") for t in texts) or status
            raise InputRefusedByApp(index, reason)
        return texts

    # ---- outputs -------------------------------------------------------------------------

    def outputs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Outputs; `output_type` may be a kind's name (notice, voucher, delegatecallvoucher),
        sent as the function selector the API takes."""
        kind = filters.get("output_type")
        if isinstance(kind, str) and kind.lower() in OUTPUT_SELECTORS:
            filters["output_type"] = OUTPUT_SELECTORS[kind.lower()]
        return self._paged("cartesi_listOutputs", filters)

    def notices(self, type_: str | None = None, job: int | None = None) -> list[Notice]:
        out = []
        for o in self.outputs(output_type="notice"):
            raw = bytes.fromhex(o["raw_data"][2:])
            (payload,) = abi_decode(["bytes"], raw[4:])
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            if type_ and data.get("type") != type_:
                continue
            if job is not None and data.get("job") != job:
                continue
            out.append(Notice(_int(o["index"]), _int(o["input_index"]), _int(o["epoch_index"]), data))
        return out

    def round_notices(self, job: int) -> list[Notice]:
        return self.notices("round_closed", job)

    def job_opened(self, job: int) -> Notice:
        found = self.notices("job_opened", job)
        if not found:
            raise NodeError(f"no job {job}: no job_opened notice names it (see `tributary trainer jobs`)")
        return found[0]

    def round_model(self, notice: Notice) -> bytes:
        """The round's new global model from its ModelChunk reports, verified by keccak against
        the notice's model_hash (the notice is an output; its hash is provable on chain)."""
        want = bytes.fromhex(notice.data["model_hash"][2:])
        chunks = [p.ModelChunk.decode(rep) for rep in self.input_reports(notice.input_index)
                  if rep[:4] == p.MODEL_CHUNK]
        mine = [c for c in chunks if (c.job_id, c.round) == (notice.data["job"], notice.data["round"])]
        try:
            return p.ModelChunk.join(mine, want)
        except p.ProtocolError as exc:
            raise ModelVerificationError(f"model of job {notice.data['job']} round "
                                         f"{notice.data['round']}: {exc}") from None

    def vouchers(self, beneficiary: str | None = None) -> list[VoucherOut]:
        out = []
        for o in self.outputs(output_type="voucher"):
            d = o["decoded_data"]
            v = VoucherOut(_int(o["index"]), _int(o["input_index"]), _int(o["epoch_index"]),
                           d["destination"], _int(d["value"]), bytes.fromhex(d["payload"][2:]),
                           bool(o.get("output_hashes_siblings")), o.get("execution_transaction_hash"),
                           raw=o)
            if beneficiary is None or v.beneficiary() == beneficiary.lower():
                out.append(v)
        return out

    def payouts(self, payee: str | None = None) -> list[PayoutOut]:
        """Batched payouts (DelegateCallVouchers running BatchPayout); with `payee`, those that
        pay it. Anyone may execute one: it pays every payee in it."""
        from dapp.market.payout import BATCH_PAYOUT, payees_of

        out = []
        for o in self.outputs(output_type="delegatecallvoucher"):
            d = o["decoded_data"]
            decoded = payees_of(bytes.fromhex(d["payload"][2:]))
            if d["destination"].lower() != BATCH_PAYOUT or decoded is None:
                continue
            token, entries = decoded
            if payee is None or any(a == payee.lower() for a, _ in entries):
                out.append(PayoutOut(_int(o["index"]), token, entries,
                                     bool(o.get("output_hashes_siblings")), raw=o))
        return out

    def health(self) -> dict[str, Any]:
        try:
            return self._session.get(self.url + "/health", timeout=5).json()
        except requests.RequestException:
            raise NodeUnavailable(f"no node answers at {self.url}") from None
