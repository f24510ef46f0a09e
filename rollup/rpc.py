"""The node's client API: JSON-RPC at `POST /rpc`, `POST /inspect/<app>` and `GET /health`.

The JSON-RPC is Cartesi's rollups-node v2 API (its OpenRPC document, served here by
`rpc.discover`, is rollup/openrpc.py), so `@cartesi/rpc`, `@cartesi/viem` and the CLI work against
this node unchanged (tests/test_cartesi_clients.py drives them). It follows the official node's
code where its document is silent or differs:

- params come by name (an object) or by position (an array, in the document's order); `params: []`
  and `null` mean "none given"; unknown keys are ignored and keys match case-insensitively (Go's
  `encoding/json`); absent params, or a value of the wrong JSON type, answer -32602 "Invalid
  parameters"; `cartesi_getChainId`, `cartesi_getNodeVersion` and `rpc.discover` read no params.
- `application` is required (-32602 when absent or neither a name `^[a-z0-9_-]{3,}$` nor an
  address); an unknown one answers -32001 "Application not found" (lists), "<Item> not found"
  (gets), "Epoch not found" (`cartesi_getLastAcceptedEpochIndex`).
- `limit` 0 or absent means 50, more than 10,000 means 10,000 (the answer's pagination says which);
  `offset` and `limit` are JSON integers in uint64; `descending` sorts newest first.
- indices are hex strings `0x...` in uint64 (decimal strings and numbers are -32602).
- the PRT methods (tournaments, commitments, matches) answer what the official node answers for an
  Authority-settled application: empty lists, and -32001 for any single item.
- objects carry the official fields; `created_at`/`updated_at` are the block time of the input
  they come from (the official node stamps its database rows: the chain's time is the
  deterministic stand-in); `machine_hash`, `outputs_hash`, `commitment` and the epoch's
  `outputs_merkle_proof` are null (host mode has no machine state to hash).

Bounds, so that no cheap request can crash the node or make it do unbounded work: bodies are
capped (`MAX_RPC_BODY`, `MAX_INSPECT`) and refused before they are read; JSON nesting is checked
before parsing (`rollup.server.check_json_depth`); a batch holds at most `MAX_BATCH` calls asking
for at most `MAX_LIMIT` items in all, and one answer is at most `MAX_RESPONSE_BYTES`, or the calls
past the bound get error -32005 ("limit exceeded", EIP-1474); any other failure inside a method is
-32603 "Internal server error" (logged, no traceback sent).

Inspect answers as the official node does: `{"status", "exception" (only when there is one),
"reports" (null when none), "processed_input_count"}`; its errors are plain text.
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Callable

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from rollup import openrpc, outputs
from rollup.deploy import DEFAULT_TEMPLATE_HASH
from rollup.outputs import DELEGATE_CALL_VOUCHER_SELECTOR, VOUCHER_SELECTOR
from rollup.server import JsonTooDeep, LoopbackServer, content_length, drain, loads_bounded
from rollup.store import EPOCH_CLAIM_ACCEPTED, EpochRecord, InputRecord, OutputRecord, ReportRecord

if TYPE_CHECKING:
    from rollup.node import Node

log = logging.getLogger(__name__)

MAX_INSPECT = 2 * 1024 * 1024
MAX_RPC_BODY = 1024 * 1024
MAX_LIMIT = 10_000  # items per list call (larger limits are capped to it), and per batch in all
DEFAULT_LIMIT = 50  # a list call's page when limit is absent or 0
MAX_BATCH = 100  # calls per JSON-RPC batch
MAX_RESPONSE_BYTES = 128 * 1024 * 1024  # one HTTP answer (a call, or a whole batch)
UINT64_MAX = 2**64 - 1
SQL_INT_MAX = 2**63 - 1  # SQLite's integers are signed 64-bit: larger ones match nothing anyway
REQUEST_TIMEOUT = 60.0  # seconds a client connection may idle or trickle before it is dropped
LIST_METHODS = ("cartesi_listOutputs", "cartesi_listInputs", "cartesi_listReports", "cartesi_listEpochs",
                "cartesi_listApplications", "cartesi_listTournaments", "cartesi_listCommitments",
                "cartesi_listMatches", "cartesi_listMatchAdvances")
NODE_VERSION = "2.0.0"  # the API version we serve (the official node's release it matches)
INPUT_BOX_DA_SELECTOR = bytes.fromhex("b12c9ede")  # DataAvailability.InputBox(address)
EPOCH_STATUSES = ("OPEN", "CLOSED", "INPUTS_PROCESSED", "CLAIM_COMPUTED", "CLAIM_SUBMITTED", "CLAIM_ACCEPTED",
                  "CLAIM_REJECTED")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32001
LIMIT_EXCEEDED = -32005


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _hex(n: int) -> str:
    return hex(n)


def _show(value: Any, limit: int = 80) -> str:
    """A client's value for an error message, cut short: an error must not echo a megabyte."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _time(ts: int) -> str:
    """A unix time as Go's RFC 3339 `time.Time` JSON (UTC, no fraction when whole)."""
    return datetime.fromtimestamp(max(0, int(ts)), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checksum(addr: str) -> str:
    try:
        return to_checksum_address(addr)
    except (ValueError, TypeError):
        return addr


def decode_output(raw: bytes) -> dict[str, Any] | None:
    """`decoded_data` of an output as the official node writes it (destinations checksummed,
    value `0x%x`), or None for bytes that are no known output (the official node logs those)."""
    try:
        out = outputs.decode_output(raw).to_json()
    except outputs.OutputDecodeError:
        return None
    if "destination" in out:
        out["destination"] = _checksum(out["destination"])
    return out


_MISSING = object()
NO_PARAMS = ("cartesi_getChainId", "cartesi_getNodeVersion", "rpc.discover")
UINT_PARAMS = {"limit", "offset"}
BOOL_PARAMS = {"descending"}
APP_NAME = re.compile(r"[a-z0-9_-]{3,}")  # used with fullmatch: `$` would let a trailing newline in
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
HASH = re.compile(r"0x[0-9a-fA-F]{64}")
ZERO_ADDRESS = "0x" + "00" * 20
ZERO_HASH = "0x" + "00" * 32
INVALID = "Invalid parameters"


def parse_params(method: str, raw: Any) -> dict[str, Any]:
    """The params of a call, by name, as the official node's `UnmarshalParams` reads them.

    An array fills the method's fields in the document's order (more items than fields is an
    error); an object is matched by name, exactly or else case-insensitively, unknown keys
    ignored; JSON null is "not given". A value of the wrong JSON type is -32602."""
    names = openrpc.PARAM_NAMES[method]
    if raw is _MISSING:
        raise RpcError(INVALID_PARAMS, INVALID)
    got: dict[str, Any] = {}
    if raw is None:
        pass
    elif isinstance(raw, list):
        if len(raw) > len(names):
            raise RpcError(INVALID_PARAMS, INVALID)
        got = {name: value for name, value in zip(names, raw)}
    elif isinstance(raw, dict):
        lower = {}
        for key in raw:
            if isinstance(key, str):
                lower.setdefault(key.lower(), key)
        for name in names:
            if name in raw:
                got[name] = raw[name]
            elif name.lower() in lower:
                got[name] = raw[lower[name.lower()]]
    else:
        raise RpcError(INVALID_PARAMS, INVALID)
    out: dict[str, Any] = {}
    for name, value in got.items():
        if value is None:
            continue
        if name in UINT_PARAMS:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
                raise RpcError(INVALID_PARAMS, INVALID)
        elif name in BOOL_PARAMS:
            if not isinstance(value, bool):
                raise RpcError(INVALID_PARAMS, INVALID)
        elif not isinstance(value, str):
            raise RpcError(INVALID_PARAMS, INVALID)
        out[name] = value
    return out


def parse_index(value: str, name: str) -> int:
    """A hex uint64 as the official `parseIndex` takes it: `0x`/`0X` and 1..16 hex digits."""
    if len(value) < 3 or value[:2] not in ("0x", "0X"):
        raise RpcError(INVALID_PARAMS, f"invalid {name}: expected hex encoded value")
    digits = value[2:]
    if not all(c in "0123456789abcdefABCDEF" for c in digits) or int(digits, 16) > UINT64_MAX:
        raise RpcError(INVALID_PARAMS, f"invalid {name}: error parsing")
    return int(digits, 16)


class NodeApi:
    """The JSON-RPC methods, over a node's store and tree (read-only, any thread)."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "cartesi_listApplications": self.list_applications,
            "cartesi_getApplication": self.get_application,
            "cartesi_listEpochs": self.list_epochs,
            "cartesi_getEpoch": self.get_epoch,
            "cartesi_getLastAcceptedEpochIndex": self.get_last_accepted_epoch_index,
            "cartesi_listInputs": self.list_inputs,
            "cartesi_getInput": self.get_input,
            "cartesi_getProcessedInputCount": self.get_processed_input_count,
            "cartesi_listOutputs": self.list_outputs,
            "cartesi_getOutput": self.get_output,
            "cartesi_listReports": self.list_reports,
            "cartesi_getReport": self.get_report,
            "cartesi_listTournaments": self._prt_list,
            "cartesi_getTournament": self._prt_get("address", "Tournament"),
            "cartesi_listCommitments": self._prt_list,
            "cartesi_getCommitment": self._prt_get("commitment", "Commitment"),
            "cartesi_listMatches": self._prt_list,
            "cartesi_getMatch": self._prt_get("id_hash", "Match"),
            "cartesi_listMatchAdvances": self._prt_list,
            "cartesi_getMatchAdvanced": self._prt_get("parent", "Match advanced"),
            "cartesi_getChainId": lambda p: {"data": _hex(self.node.chain_id)},
            "cartesi_getNodeVersion": lambda p: {"data": NODE_VERSION},
            "rpc.discover": lambda p: openrpc.document(),
        }
        store = self.store
        self.created_at = int(time.time())
        if store is not None:  # the time this node first served the app, kept across restarts
            self.created_at = int(store.get_meta("api_created_at") or self.created_at)
            if store.get_meta("api_created_at") is None:
                store.set_meta("api_created_at", self.created_at)

    @property
    def store(self) -> Any:
        return self.node.store

    # --- parameter parsing ------------------------------------------------------------------
    def _ours(self, app: str) -> bool:
        return app == self.node.app_name or app.lower() == self.node.app.lower()

    def _app(self, p: dict[str, Any]) -> bool:
        """Check `application` (required, a name or an address); True when it is this node's."""
        app = p.get("application", "")
        if ADDRESS.fullmatch(app) or APP_NAME.fullmatch(app):
            return self._ours(app)
        raise RpcError(INVALID_PARAMS, "Invalid application identifier: invalid application name")

    def _need_app(self, p: dict[str, Any], missing: str = "Application not found") -> None:
        if not self._app(p):
            raise RpcError(RESOURCE_NOT_FOUND, missing)

    @staticmethod
    def _index(p: dict[str, Any], name: str) -> int | None:
        value = p.get(name)
        return None if value is None else parse_index(value, name)

    @staticmethod
    def _page(p: dict[str, Any]) -> tuple[int, int, bool]:
        limit = p.get("limit", 0)
        if limit <= 0:
            limit = DEFAULT_LIMIT
        limit = min(limit, MAX_LIMIT)
        return limit, p.get("offset", 0), bool(p.get("descending", False))

    @staticmethod
    def _address(p: dict[str, Any], name: str, what: str) -> str | None:
        value = p.get(name)
        if value is not None and not ADDRESS.fullmatch(value):
            raise RpcError(INVALID_PARAMS, f"Invalid {what}: invalid address {_show(value)}")
        return value

    @staticmethod
    def _sql(number: int | None) -> int | None:
        """An index or offset as SQLite can take it (past 2**63-1 nothing can match anyway)."""
        return None if number is None else min(number, SQL_INT_MAX)

    @staticmethod
    def _check_size(estimate: int) -> None:
        """Refuse a page whose answer would be too large, before building it."""
        if estimate > MAX_RESPONSE_BYTES:
            raise RpcError(LIMIT_EXCEEDED, f"the answer would take about {estimate >> 20} MiB, more than "
                           f"{MAX_RESPONSE_BYTES >> 20} MiB: ask for fewer items (limit)")

    def _one(self, p: dict[str, Any], name: str, what: str, fetch: Callable[[int], Any],
             shape: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """A get-by-index method."""
        ours = self._app(p)
        idx = parse_index(p.get(name, ""), name)
        item = fetch(idx) if ours and idx <= SQL_INT_MAX else None
        if item is None:
            raise RpcError(RESOURCE_NOT_FOUND, f"{what} not found")
        return {"data": shape(item)}

    @staticmethod
    def _paged(data: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
        return {"data": data, "pagination": {"total_count": total, "limit": limit, "offset": offset}}

    # --- shapes -----------------------------------------------------------------------------
    def _epoch_claims(self, epochs: set[int]) -> dict[int, EpochRecord]:
        """The accepted claims of `epochs` (a page's: not every epoch of the store per call)."""
        found = (self.store.get_epoch(e) for e in sorted(epochs))
        return {ep.index: ep for ep in found if ep is not None and ep.status == EPOCH_CLAIM_ACCEPTED}

    def output_json(self, out: OutputRecord, claims: dict[int, EpochRecord] | None = None) -> dict[str, Any]:
        if claims is None:
            ep = self.store.get_epoch(out.epoch)
            claim = ep if ep is not None and ep.status == EPOCH_CLAIM_ACCEPTED else None
        else:
            claim = claims.get(out.epoch)
        siblings = None
        if claim is not None and claim.output_count is not None:
            with self.node.tree_lock:
                siblings = ["0x" + s.hex() for s in self.node.tree.proof(out.index, claim.output_count)]
        stamp = _time(out.block_timestamp)
        return {
            "epoch_index": _hex(out.epoch),
            "input_index": _hex(out.input_index),
            "index": _hex(out.index),
            "raw_data": "0x" + out.raw.hex(),
            "hash": "0x" + out.hash.hex(),
            "output_hashes_siblings": siblings,
            "execution_transaction_hash": out.execution_tx,
            "created_at": stamp,
            "updated_at": stamp,
            "decoded_data": decode_output(out.raw),
        }

    def input_json(self, rec: InputRecord) -> dict[str, Any]:
        stamp = _time(rec.block_timestamp)
        tx = rec.tx_hash or ZERO_HASH
        return {
            "epoch_index": _hex(rec.epoch),
            "index": _hex(rec.index),
            "block_number": _hex(rec.block_number),
            "raw_data": "0x" + rec.raw.hex(),
            "status": rec.status,
            "machine_hash": None,
            "outputs_hash": None,
            "transaction_reference": tx,
            "transaction_hash": tx,
            # ours, beyond the official fields: what the backend passed to /exception
            "exception_payload": None if rec.exception_payload is None else "0x" + rec.exception_payload.hex(),
            "created_at": stamp,
            "updated_at": stamp,
            "decoded_data": {
                "chain_id": _hex(rec.chain_id),
                "application_contract": _checksum(rec.app_contract),
                "sender": _checksum(rec.msg_sender),
                "block_number": _hex(rec.block_number),
                "block_timestamp": _hex(rec.block_timestamp),
                "prev_randao": _hex(int(rec.prev_randao, 16)),
                "index": _hex(rec.index),
                "payload": "0x" + rec.payload.hex(),
            },
        }

    @staticmethod
    def report_json(rep: ReportRecord) -> dict[str, Any]:
        stamp = _time(rep.block_timestamp)
        return {"epoch_index": _hex(rep.epoch), "input_index": _hex(rep.input_index),
                "index": _hex(rep.index), "raw_data": "0x" + rep.payload.hex(),
                "created_at": stamp, "updated_at": stamp}

    @staticmethod
    def epoch_json(ep: EpochRecord) -> dict[str, Any]:
        stamp = _time(ep.block_timestamp)
        lower = ep.first_input if ep.first_input is not None else 0
        return {
            "index": _hex(ep.index),
            "first_block": _hex(ep.first_block),
            "last_block": _hex(ep.last_block),
            "input_index_lower_bound": _hex(lower),
            "input_index_upper_bound": _hex(lower + ep.input_count),
            "machine_hash": None,
            "outputs_merkle_root": None if ep.root is None else "0x" + ep.root.hex(),
            "outputs_merkle_proof": None,
            "commitment": None,
            "commitment_proof": None,
            "claim_transaction_hash": ep.claim_tx,
            "tournament_address": None,
            "status": ep.status,
            "virtual_index": _hex(ep.index),
            "created_at": stamp,
            "updated_at": stamp,
        }

    # --- methods ----------------------------------------------------------------------------
    def list_outputs(self, p: dict[str, Any]) -> Any:
        limit, offset, desc = self._page(p)
        ours = self._app(p)
        conds, args = [], []
        epoch = self._sql(self._index(p, "epoch_index"))
        if epoch is not None:
            conds.append("epoch=?")
            args.append(epoch)
        input_index = self._sql(self._index(p, "input_index"))
        if input_index is not None:
            conds.append("input_index=?")
            args.append(input_index)
        otype = p.get("output_type")
        if otype is not None:
            digits = otype[2:] if otype[:2] in ("0x", "0X") else otype
            if len(digits) != 8 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise RpcError(INVALID_PARAMS, "Invalid output type: expected exactly 4 bytes")
            conds.append("substr(raw, 1, 4)=?")
            args.append(bytes.fromhex(digits))
        addr = self._address(p, "voucher_address", "voucher address")
        if addr is not None:
            # destination is the first ABI word of vouchers and delegate-call vouchers
            conds.append("substr(raw, 1, 4) IN (?, ?) AND substr(raw, 17, 20)=?")
            args += [VOUCHER_SELECTOR, DELEGATE_CALL_VOUCHER_SELECTOR, bytes.fromhex(addr[2:])]
        if not ours:
            raise RpcError(RESOURCE_NOT_FOUND, "Application not found")
        outs, total = self.store.list_outputs(" AND ".join(conds), args, limit, self._sql(offset), desc)
        claims = self._epoch_claims({o.epoch for o in outs})
        # raw_data and decoded payload in hex, the other fields, a proof's 63 siblings (~4.4 KB)
        self._check_size(sum(4 * len(o.raw) + 700 + (4400 if o.epoch in claims else 0) for o in outs))
        return self._paged([self.output_json(o, claims) for o in outs], total, limit, offset)

    def get_output(self, p: dict[str, Any]) -> Any:
        return self._one(p, "output_index", "Output", self.store.get_output, self.output_json)

    def list_inputs(self, p: dict[str, Any]) -> Any:
        limit, offset, desc = self._page(p)
        ours = self._app(p)
        epoch = self._sql(self._index(p, "epoch_index"))
        sender = self._address(p, "sender", "input sender address")
        if not ours:
            raise RpcError(RESOURCE_NOT_FOUND, "Application not found")
        recs, total = self.store.list_inputs(epoch, limit, self._sql(offset), sender, desc)
        self._check_size(sum(2 * len(r.raw) + 2 * len(r.payload) + 1200 for r in recs))
        return self._paged([self.input_json(r) for r in recs], total, limit, offset)

    def get_input(self, p: dict[str, Any]) -> Any:
        return self._one(p, "input_index", "Input", self.store.get_input, self.input_json)

    def list_reports(self, p: dict[str, Any]) -> Any:
        limit, offset, desc = self._page(p)
        ours = self._app(p)
        epoch = self._sql(self._index(p, "epoch_index"))
        input_index = self._sql(self._index(p, "input_index"))
        if not ours:
            raise RpcError(RESOURCE_NOT_FOUND, "Application not found")
        reps, total = self.store.list_reports(epoch, input_index, limit, self._sql(offset), desc)
        self._check_size(sum(2 * len(r.payload) + 300 for r in reps))
        return self._paged([self.report_json(r) for r in reps], total, limit, offset)

    def get_report(self, p: dict[str, Any]) -> Any:
        return self._one(p, "report_index", "Report", self.store.get_report, self.report_json)

    def list_epochs(self, p: dict[str, Any]) -> Any:
        limit, offset, desc = self._page(p)
        ours = self._app(p)
        status = p.get("status")
        if status is not None and status not in EPOCH_STATUSES:
            raise RpcError(INVALID_PARAMS, f"Invalid epoch status: invalid value {_show(status)} for EpochStatus enum")
        if not ours:
            raise RpcError(RESOURCE_NOT_FOUND, "Application not found")
        eps, total = self.store.list_epochs(status, limit, self._sql(offset), desc)
        return self._paged([self.epoch_json(e) for e in eps], total, limit, offset)

    def get_epoch(self, p: dict[str, Any]) -> Any:
        return self._one(p, "epoch_index", "Epoch", self.store.get_epoch, self.epoch_json)

    def get_last_accepted_epoch_index(self, p: dict[str, Any]) -> Any:
        self._need_app(p, "Epoch not found")
        last = self.store.last_accepted_epoch()
        if last is None:
            raise RpcError(RESOURCE_NOT_FOUND, "Epoch not found")
        return {"data": _hex(last)}

    def get_processed_input_count(self, p: dict[str, Any]) -> Any:
        self._need_app(p)
        return {"data": _hex(self.store.processed_count)}

    def _prt_list(self, p: dict[str, Any]) -> Any:
        """Tournaments, commitments, matches, match advances: none for an Authority app."""
        limit, offset, _ = self._page(p)
        self._app(p)
        for name in ("epoch_index", "level"):
            self._index(p, name)
        for name in ("tournament_address", "parent_tournament_address"):
            self._address(p, name, name.replace("_", " "))
        for name in ("id_hash", "parent_match_id_hash"):
            if p.get(name) is not None and not HASH.fullmatch(p[name]):
                raise RpcError(INVALID_PARAMS, f"Invalid {name.replace('_', ' ')}")
        return self._paged([], 0, limit, offset)

    def _prt_get(self, key: str, what: str) -> Callable[[dict[str, Any]], Any]:
        """A single tournament, commitment, match or advance: never found for an Authority app."""
        def get(p: dict[str, Any]) -> Any:
            self._app(p)
            if what != "Tournament":
                parse_index(p.get("epoch_index", ""), "epoch_index")
            name = "address" if what == "Tournament" else "tournament_address"
            if not ADDRESS.fullmatch(p.get(name, "")):
                raise RpcError(INVALID_PARAMS, f"Invalid tournament address: {_show(p.get(name))}")
            if key != "address" and not HASH.fullmatch(p.get(key, "")):
                raise RpcError(INVALID_PARAMS, f"Invalid {key.replace('_', ' ')}: {_show(p.get(key))}")
            raise RpcError(RESOURCE_NOT_FOUND, f"{what} not found")
        return get

    def _application(self) -> dict[str, Any]:
        node, store = self.node, self.store
        dep = getattr(node, "deployment", {}) or {}
        template = dep.get("template_hash") or "0x" + DEFAULT_TEMPLATE_HASH.hex()
        last = store.get_input(store.processed_count - 1) if store.processed_count else None
        updated = max(self.created_at, last.block_timestamp if last is not None else 0)
        scanned = max(0, store.scanned_block)
        params_time = _time(self.created_at)
        zero = "0x0"
        return {
            "name": node.app_name,
            "iapplication_address": node.app.lower(),
            "iconsensus_address": node.authority.lower(),
            "iinputbox_address": node.input_box.lower(),
            "template_hash": template,
            "epoch_length": _hex(node.epoch_length),
            "data_availability": "0x" + (INPUT_BOX_DA_SELECTOR + abi_encode(["address"], [node.input_box])).hex(),
            "consensus_type": "AUTHORITY",
            "state": "ENABLED" if node.error is None else "INOPERABLE",
            "reason": None if node.error is None else str(node.error)[:500],
            "iinputbox_block": _hex(node.deploy_block),
            "last_epoch_check_block": _hex(scanned),
            "last_input_check_block": _hex(scanned),
            "last_output_check_block": _hex(max(0, store.executions_scanned_block)),
            "last_tournament_check_block": zero,
            "processed_inputs": _hex(store.processed_count),
            "created_at": _time(self.created_at),
            "updated_at": _time(updated),
            "execution_parameters": {
                "snapshot_policy": "NONE",
                "advance_inc_cycles": zero, "advance_max_cycles": zero,
                "inspect_inc_cycles": zero, "inspect_max_cycles": zero,
                "advance_inc_deadline": zero, "advance_max_deadline": zero,
                "inspect_inc_deadline": zero,
                "inspect_max_deadline": _hex(int(getattr(node, "request_timeout", 0) or 0) * 10**9),
                "load_deadline": zero, "store_deadline": zero, "fast_deadline": zero,
                "max_concurrent_inspects": 1,
                "created_at": params_time, "updated_at": params_time,
            },
            # the fields newer clients (@cartesi/rpc 2.0.0-alpha.25, @cartesi/viem) read as well
            "enabled": True,
            "status": "OK" if node.error is None else "FAILED",
            "claim_staging_period": zero,
            "withdrawal_config": {"guardian": ZERO_ADDRESS, "log2_leaves_per_account": zero,
                                  "log2_max_num_of_accounts": zero, "accounts_drive_start_index": zero,
                                  "withdrawal_output_builder": ZERO_ADDRESS},
            "last_foreclose_check_block": zero,
            "last_accounts_drive_proved_check_block": zero,
            "last_withdrawal_check_block": zero,
            "foreclose_block": zero,
            "foreclose_transaction": ZERO_HASH,
            "accounts_drive_proved_block": zero,
            "accounts_drive_proved_transaction": ZERO_HASH,
            "accounts_drive_merkle_root": ZERO_HASH,
        }

    def list_applications(self, p: dict[str, Any]) -> Any:
        limit, offset, _ = self._page(p)
        data = [self._application()][min(offset, 1):][:limit]
        return self._paged(data, 1, limit, offset)

    def get_application(self, p: dict[str, Any]) -> Any:
        self._need_app(p)
        return {"data": self._application()}

    # --- dispatch ---------------------------------------------------------------------------
    def call(self, msg: Any) -> dict[str, Any] | None:
        req_id = msg.get("id") if isinstance(msg, dict) else None
        try:
            if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
                raise RpcError(INVALID_REQUEST, "Invalid request")
            method = self.methods.get(msg["method"])
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, "Method not found")
            if msg["method"] in NO_PARAMS:
                params: dict[str, Any] = {}
            else:
                params = parse_params(msg["method"], msg.get("params", _MISSING))
            result = method(params)
            return {"jsonrpc": "2.0", "id": req_id, "result": result}
        except RpcError as exc:
            err: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                err["data"] = exc.data
            return {"jsonrpc": "2.0", "id": req_id, "error": err}
        except Exception:  # never leak a traceback (or its text) to a client; log it
            log.exception("JSON-RPC %s failed", msg.get("method") if isinstance(msg, dict) else type(msg))
            return {"jsonrpc": "2.0", "id": req_id,
                    "error": {"code": INTERNAL_ERROR, "message": "Internal server error"}}

    @staticmethod
    def cost(msg: Any) -> int:
        """Items a call may return, for the batch budget: its effective page size for list
        methods (the default when absent or 0, the cap when larger), 1 for the others."""
        if not isinstance(msg, dict) or msg.get("method") not in LIST_METHODS:
            return 1
        try:
            params = parse_params(msg["method"], msg.get("params"))
        except RpcError:
            return 1  # such a call fails cheaply
        limit = params.get("limit", 0)
        return DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)

    def call_batch(self, batch: list[Any]) -> bytes:
        """A batch's answer as JSON bytes, under the batch bounds (the caller checked its length).

        Calls run in order; a call whose page would push the batch past `MAX_LIMIT` items, or
        any call once the answer has passed `MAX_RESPONSE_BYTES`, gets -32005 instead, so the
        client learns which calls to send again with smaller pages."""
        items_left = MAX_LIMIT
        size = 2
        parts: list[bytes] = []
        for msg in batch:
            req_id = msg.get("id") if isinstance(msg, dict) else None
            cost = self.cost(msg)
            if cost > items_left:
                answer: dict[str, Any] | None = _limit_error(
                    req_id, f"this batch asks for more than {MAX_LIMIT} items in all: send smaller pages "
                    "or fewer calls per batch")
            elif size > MAX_RESPONSE_BYTES:
                answer = _limit_error(req_id, f"the batch's answer passed {MAX_RESPONSE_BYTES >> 20} MiB: "
                                      "send the remaining calls again")
            else:
                items_left -= cost
                answer = self.call(msg)
            part = json.dumps(answer).encode()
            size += len(part) + 1
            parts.append(part)
        return b"[" + b",".join(parts) + b"]"


def _limit_error(req_id: Any, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": LIMIT_EXCEEDED, "message": message}}


def _rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ApiServer"
    timeout = REQUEST_TIMEOUT  # socket timeout: an idle or trickling client is dropped

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("node api: " + format, *args)

    def end_headers(self) -> None:
        # browser front-ends (a dapp page using @cartesi/viem) read this API cross-origin, as they
        # read the official node's: it is public, read-only data
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def do_OPTIONS(self) -> None:
        """A CORS preflight: allowed for any origin (no body is read)."""
        self.close_connection = bool(content_length(self))
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, obj: Any) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _text(self, status: int, message: str, length: int | None = None) -> None:
        """A plain-text error as Go's `http.Error` writes it (the official inspect errors); with
        `length` the unread body is dropped and the connection closed, as `_refuse` does."""
        data = (message + "\n").encode()
        if length is not None:
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        if status == 405:
            self.send_header("Allow", "POST")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if length is not None:
            drain(self, length)

    def _refuse(self, status: int, obj: Any, length: int | None) -> None:
        """Answer without reading the body, then drop (a bounded part of) it and hang up."""
        self.close_connection = True
        self._send(status, obj)
        drain(self, length or 0)

    def _body(self, limit: int) -> bytes | None:
        """The request body, or None once a refusal was sent (too large, bad length, hung up)."""
        length = content_length(self)
        if length is None:
            self._refuse(411, {"error": "a Content-Length is required (chunked bodies are refused)"}, 0)
            return None
        if length > limit:
            self._refuse(413, {"error": f"body larger than {limit} bytes"}, length)
            return None
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client hung up mid-body
            self.close_connection = True
            return None
        return raw

    def handle_one_request(self) -> None:
        """A failure in our code answers 500 without a traceback and keeps the server serving."""
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("node api: request failed")
            self.close_connection = True
            try:
                self._send(500, {"error": "internal error"})
            except OSError:
                pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        node = self.server.node
        length = content_length(self)
        if length:  # no GET here takes a body: do not read one
            self.close_connection = True
        if path == "/health":
            alive = node.supervisor is not None and node.supervisor.alive()
            ok = node.error is None
            self._send(200 if ok else 503, {
                "status": "ok" if ok else "error",
                "error": None if ok else str(node.error),
                "backend_alive": alive,
                "backend_restarts": node.supervisor.restarts if node.supervisor is not None else 0,
                "processed_input_count": node.store.processed_count if node.store else 0,
                "application": node.app.lower(),
            })
        elif path.startswith("/inspect/") and path != "/inspect/":
            self._text(405, "Method not allowed")
        elif path == "/rpc":
            self._send(405, {"error": "method not allowed"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path.rstrip("/") == "/rpc":
            self._rpc()
            return
        if path.startswith("/inspect/"):
            self._inspect(path[len("/inspect/"):].strip("/"))
            return
        self._refuse(404, {"error": "not found"}, content_length(self))

    def _inspect(self, target: str) -> None:
        """`POST /inspect/<app name or address>`, answered as the official node's inspect server."""
        node = self.server.node
        length = content_length(self)
        if not target:
            self._text(400, "Missing application address", length or 0)
            return
        if length is None:
            self._text(411, "Length Required", 0)
            return
        if length > MAX_INSPECT:
            self._text(413, "Payload too large", length)
            return
        if target != node.app_name and target.lower() != node.app.lower():
            self._text(404, "Application not found", length)
            return
        payload = self.rfile.read(length) if length else b""
        if len(payload) < length:  # the client hung up mid-body
            self.close_connection = True
            return
        try:
            result = node.inspect(payload, timeout=self.server.inspect_timeout)
        except FutureTimeout:
            self._text(503, "Machine not ready")
            return
        except Exception:
            log.exception("inspect failed")
            self._text(503, "Machine not ready")
            return
        self._send(200, result.to_json())

    def _rpc(self) -> None:
        length = content_length(self)
        if length is not None and length > MAX_RPC_BODY:
            self._refuse(413, _rpc_error(INVALID_REQUEST, f"body larger than {MAX_RPC_BODY} bytes"), length)
            return
        raw = self._body(MAX_RPC_BODY)
        if raw is None:
            return
        try:
            msg = loads_bounded(raw)
        except JsonTooDeep as exc:
            self._send(200, _rpc_error(INVALID_REQUEST, f"invalid request: {exc}"))
            return
        except ValueError as exc:
            self._send(200, _rpc_error(PARSE_ERROR, f"parse error: {exc}"))
            return
        api = self.server.api
        if isinstance(msg, list):
            if not msg:
                self._send(200, _rpc_error(INVALID_REQUEST, "empty batch"))
            elif len(msg) > MAX_BATCH:
                self._send(200, _rpc_error(INVALID_REQUEST, f"batch of {len(msg)} calls: at most {MAX_BATCH}"))
            else:
                self._send(200, api.call_batch(msg))
            return
        answer = json.dumps(api.call(msg)).encode()
        if len(answer) > MAX_RESPONSE_BYTES:  # _check_size estimates; this is the exact bound
            answer = json.dumps(_limit_error(msg.get("id") if isinstance(msg, dict) else None,
                                             f"the answer is larger than {MAX_RESPONSE_BYTES >> 20} MiB: "
                                             "ask for fewer items (limit)")).encode()
        self._send(200, answer)


class ApiServer(LoopbackServer):
    thread_name = "node-api"

    def __init__(self, node: "Node", host: str = "127.0.0.1", port: int = 0, inspect_timeout: float = 60.0) -> None:
        super().__init__((host, port), _Handler)
        self.node = node
        self.api = NodeApi(node)
        self.inspect_timeout = inspect_timeout
