"""The node's client API: JSON-RPC at `POST /rpc`, `POST /inspect/<app>` and `GET /health`.

Method names, parameters and result shapes follow the Cartesi rollups-node v2 JSON-RPC
(CARTESI_V2.md §7) so clients written for the official node work here: indices are hex strings,
lists come as {"data": [...], "pagination": {"total_count", "limit", "offset"}}, an output's
`output_hashes_siblings` is null until its epoch's claim is accepted, then the 63 siblings against
that claim's root (which is what `Application.executeOutput` / `validateOutput` check).

Bounds, so that no cheap request can crash the node or make it do unbounded work: bodies are
capped (`MAX_RPC_BODY`, `MAX_INSPECT`) and refused before they are read; JSON nesting is checked
before parsing (`rollup.server.check_json_depth`); a batch holds at most `MAX_BATCH` calls asking
for at most `MAX_LIMIT` items in all, and one answer is at most `MAX_RESPONSE_BYTES`, or the calls
past the bound get error -32005 ("limit exceeded", EIP-1474); indices and offsets are uint64 or
-32602; any other failure inside a method is -32603 "internal error" (logged, no traceback sent).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Callable

from rollup import outputs
from rollup.server import JsonTooDeep, LoopbackServer, content_length, drain, loads_bounded
from rollup.outputs import DELEGATE_CALL_VOUCHER_SELECTOR, NOTICE_SELECTOR, VOUCHER_SELECTOR
from rollup.store import EPOCH_CLAIM_ACCEPTED, EpochRecord, InputRecord, OutputRecord, ReportRecord

if TYPE_CHECKING:
    from rollup.node import Node

log = logging.getLogger(__name__)

MAX_INSPECT = 2 * 1024 * 1024
MAX_RPC_BODY = 1024 * 1024
MAX_LIMIT = 10_000  # items per list call, and per batch in all
MAX_BATCH = 100  # calls per JSON-RPC batch
MAX_RESPONSE_BYTES = 128 * 1024 * 1024  # one HTTP answer (a call, or a whole batch)
UINT64_MAX = 2**64 - 1
SQL_INT_MAX = 2**63 - 1  # SQLite's integers are signed 64-bit: larger ones match nothing anyway
REQUEST_TIMEOUT = 60.0  # seconds a client connection may idle or trickle before it is dropped
LIST_METHODS = ("cartesi_listOutputs", "cartesi_listInputs", "cartesi_listReports", "cartesi_listEpochs",
                "cartesi_listApplications")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32001
LIMIT_EXCEEDED = -32005

OUTPUT_TYPES = {
    "notice": NOTICE_SELECTOR,
    "voucher": VOUCHER_SELECTOR,
    "delegatecallvoucher": DELEGATE_CALL_VOUCHER_SELECTOR,
}


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


def decode_output(raw: bytes) -> dict[str, Any]:
    """`decoded_data` of an output: its kind and fields (CARTESI_V2 §3)."""
    try:
        return outputs.decode_output(raw).to_json()
    except outputs.OutputDecodeError:  # a malformed output is still listed, just not decoded
        return {"type": "Unknown"}


class NodeApi:
    """The JSON-RPC methods, over a node's store and tree (read-only, any thread)."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "cartesi_listOutputs": self.list_outputs,
            "cartesi_getOutput": self.get_output,
            "cartesi_listInputs": self.list_inputs,
            "cartesi_getInput": self.get_input,
            "cartesi_listReports": self.list_reports,
            "cartesi_getReport": self.get_report,
            "cartesi_listEpochs": self.list_epochs,
            "cartesi_getEpoch": self.get_epoch,
            "cartesi_getProcessedInputCount": self.get_processed_input_count,
            "cartesi_listApplications": self.list_applications,
            "cartesi_getApplication": self.get_application,
            "cartesi_getChainId": lambda p: {"data": _hex(self.node.chain_id)},
            "cartesi_getNodeVersion": lambda p: {"data": "tributary-host-node/0.1.0"},
        }

    @property
    def store(self) -> Any:
        return self.node.store

    # --- parameter parsing ------------------------------------------------------------------
    def _app(self, params: dict[str, Any]) -> None:
        app = params.get("application")
        if app is None:
            return
        if not isinstance(app, str) or (app.lower() != self.node.app.lower() and app != self.node.app_name):
            raise RpcError(RESOURCE_NOT_FOUND, f"application not found: {_show(app)}")

    @staticmethod
    def _index(params: dict[str, Any], name: str, required: bool = False) -> int | None:
        value = params.get(name)
        if value is None:
            if required:
                raise RpcError(INVALID_PARAMS, f"missing parameter {name}")
            return None
        if isinstance(value, bool):
            raise RpcError(INVALID_PARAMS, f"invalid {name}: {_show(value)}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
            except ValueError:
                raise RpcError(INVALID_PARAMS, f"invalid {name}: {_show(value)} (expected a hex string)") from None
        else:
            raise RpcError(INVALID_PARAMS, f"invalid {name}: {_show(value)} (expected a hex string)")
        if number < 0 or number > UINT64_MAX:
            raise RpcError(INVALID_PARAMS, f"invalid {name}: out of range (0..{hex(UINT64_MAX)})")
        return number

    @staticmethod
    def _page(params: dict[str, Any]) -> tuple[int, int]:
        limit = params.get("limit", 50)
        offset = params.get("offset", 0)
        for name, value in (("limit", limit), ("offset", offset)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RpcError(INVALID_PARAMS, f"invalid {name}: {_show(value)} (expected a non-negative integer)")
        if limit == 0 or limit > MAX_LIMIT:
            raise RpcError(INVALID_PARAMS, f"invalid limit: {_show(limit)} (1..{MAX_LIMIT})")
        if offset > UINT64_MAX:
            raise RpcError(INVALID_PARAMS, f"invalid offset: {_show(offset)} (0..{UINT64_MAX})")
        return limit, offset

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

    @staticmethod
    def _known(params: dict[str, Any], allowed: set[str]) -> None:
        extra = set(params) - allowed - {"application"}
        if extra:
            raise RpcError(INVALID_PARAMS, f"unknown parameters: {_show(sorted(extra))}")

    def _one(self, p: dict[str, Any], name: str, what: str, fetch: Callable[[int], Any],
             shape: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """A get-by-index method: `p` holds only `name` (and the application)."""
        self._known(p, {name})
        self._app(p)
        idx = self._index(p, name, required=True)
        assert idx is not None
        item = fetch(idx) if idx <= SQL_INT_MAX else None
        if item is None:
            raise RpcError(RESOURCE_NOT_FOUND, f"{what} {idx} not found")
        return {"data": shape(item)}

    @staticmethod
    def _paged(data: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
        return {"data": data, "pagination": {"total_count": total, "limit": limit, "offset": offset}}

    # --- shapes -----------------------------------------------------------------------------
    def _epoch_claims(self) -> dict[int, EpochRecord]:
        epochs, _ = self.store.list_epochs(status=EPOCH_CLAIM_ACCEPTED)
        return {e.index: e for e in epochs}

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
        return {
            "epoch_index": _hex(out.epoch),
            "input_index": _hex(out.input_index),
            "index": _hex(out.index),
            "raw_data": "0x" + out.raw.hex(),
            "decoded_data": decode_output(out.raw),
            "hash": "0x" + out.hash.hex(),
            "output_hashes_siblings": siblings,
            "execution_transaction_hash": out.execution_tx,
        }

    def input_json(self, rec: InputRecord) -> dict[str, Any]:
        return {
            "epoch_index": _hex(rec.epoch),
            "index": _hex(rec.index),
            "block_number": _hex(rec.block_number),
            "raw_data": "0x" + rec.raw.hex(),
            "decoded_data": {
                "chain_id": _hex(rec.chain_id),
                "application_contract": rec.app_contract,
                "sender": rec.msg_sender,
                "block_number": _hex(rec.block_number),
                "block_timestamp": _hex(rec.block_timestamp),
                "prev_randao": rec.prev_randao,
                "index": _hex(rec.index),
                "payload": "0x" + rec.payload.hex(),
            },
            "status": rec.status,
            "exception_payload": None if rec.exception_payload is None else "0x" + rec.exception_payload.hex(),
            "transaction_reference": rec.tx_hash,
        }

    @staticmethod
    def report_json(rep: ReportRecord) -> dict[str, Any]:
        return {"epoch_index": _hex(rep.epoch), "input_index": _hex(rep.input_index),
                "index": _hex(rep.index), "raw_data": "0x" + rep.payload.hex()}

    @staticmethod
    def epoch_json(ep: EpochRecord) -> dict[str, Any]:
        return {
            "index": _hex(ep.index),
            "first_block": _hex(ep.first_block),
            "last_block": _hex(ep.last_block),
            "status": ep.status,
            "outputs_merkle_root": None if ep.root is None else "0x" + ep.root.hex(),
            "output_count": None if ep.output_count is None else _hex(ep.output_count),
            "claim_transaction_hash": ep.claim_tx,
        }

    # --- methods ----------------------------------------------------------------------------
    def list_outputs(self, p: dict[str, Any]) -> Any:
        self._known(p, {"epoch_index", "input_index", "output_type", "voucher_address", "limit", "offset"})
        self._app(p)
        limit, offset = self._page(p)
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
            sel = None
            if isinstance(otype, str):
                sel = OUTPUT_TYPES.get(otype.lower())
                if sel is None and otype.lower() in {"0x" + s.hex() for s in OUTPUT_TYPES.values()}:
                    sel = bytes.fromhex(otype[2:])
            if sel is None:
                raise RpcError(INVALID_PARAMS, f"invalid output_type: {_show(otype)}")
            conds.append("substr(raw, 1, 4)=?")
            args.append(sel)
        addr = p.get("voucher_address")
        if addr is not None:
            if not isinstance(addr, str) or len(addr) != 42 or not addr.startswith("0x"):
                raise RpcError(INVALID_PARAMS, f"invalid voucher_address: {_show(addr)}")
            try:
                raw_addr = bytes.fromhex(addr[2:])
            except ValueError:
                raise RpcError(INVALID_PARAMS, f"invalid voucher_address: {_show(addr)}") from None
            # destination is the first ABI word of vouchers and delegate-call vouchers
            conds.append("substr(raw, 1, 4) IN (?, ?) AND substr(raw, 17, 20)=?")
            args += [VOUCHER_SELECTOR, DELEGATE_CALL_VOUCHER_SELECTOR, raw_addr]
        outs, total = self.store.list_outputs(" AND ".join(conds), args, limit, self._sql(offset))
        claims = self._epoch_claims()
        # raw_data and decoded payload in hex, the other fields, a proof's 63 siblings (~4.4 KB)
        self._check_size(sum(4 * len(o.raw) + 600 + (4400 if o.epoch in claims else 0) for o in outs))
        return self._paged([self.output_json(o, claims) for o in outs], total, limit, offset)

    def get_output(self, p: dict[str, Any]) -> Any:
        return self._one(p, "output_index", "output", self.store.get_output, self.output_json)

    def list_inputs(self, p: dict[str, Any]) -> Any:
        self._known(p, {"epoch_index", "sender", "limit", "offset"})
        self._app(p)
        limit, offset = self._page(p)
        sender = p.get("sender")
        if sender is not None and (not isinstance(sender, str) or len(sender) != 42 or not sender.startswith("0x")):
            raise RpcError(INVALID_PARAMS, f"invalid sender: {_show(sender)}")
        recs, total = self.store.list_inputs(self._sql(self._index(p, "epoch_index")), limit, self._sql(offset),
                                             sender)
        self._check_size(sum(2 * len(r.raw) + 2 * len(r.payload) + 1000 for r in recs))
        return self._paged([self.input_json(r) for r in recs], total, limit, offset)

    def get_input(self, p: dict[str, Any]) -> Any:
        return self._one(p, "input_index", "input", self.store.get_input, self.input_json)

    def list_reports(self, p: dict[str, Any]) -> Any:
        self._known(p, {"epoch_index", "input_index", "limit", "offset"})
        self._app(p)
        limit, offset = self._page(p)
        reps, total = self.store.list_reports(self._sql(self._index(p, "epoch_index")),
                                              self._sql(self._index(p, "input_index")), limit, self._sql(offset))
        self._check_size(sum(2 * len(r.payload) + 200 for r in reps))
        return self._paged([self.report_json(r) for r in reps], total, limit, offset)

    def get_report(self, p: dict[str, Any]) -> Any:
        def fetch(idx: int) -> ReportRecord | None:
            reps, _ = self.store.list_reports(limit=1, offset=idx)
            return reps[0] if reps and reps[0].index == idx else None

        return self._one(p, "report_index", "report", fetch, self.report_json)

    def list_epochs(self, p: dict[str, Any]) -> Any:
        self._known(p, {"status", "limit", "offset"})
        self._app(p)
        limit, offset = self._page(p)
        status = p.get("status")
        if status is not None and not isinstance(status, str):
            raise RpcError(INVALID_PARAMS, "invalid status")
        eps, total = self.store.list_epochs(status, limit, self._sql(offset))
        return self._paged([self.epoch_json(e) for e in eps], total, limit, offset)

    def get_epoch(self, p: dict[str, Any]) -> Any:
        return self._one(p, "epoch_index", "epoch", self.store.get_epoch, self.epoch_json)

    def get_processed_input_count(self, p: dict[str, Any]) -> Any:
        self._known(p, set())
        self._app(p)
        return {"data": _hex(self.store.processed_count)}

    def _application(self) -> dict[str, Any]:
        return {"name": self.node.app_name, "application_address": self.node.app.lower(),
                "consensus_address": self.node.authority.lower(), "epoch_length": _hex(self.node.epoch_length),
                "processed_inputs": _hex(self.store.processed_count), "state": "ENABLED"}

    def list_applications(self, p: dict[str, Any]) -> Any:
        limit, offset = self._page(p)
        data = [self._application()][min(offset, 1):]
        return self._paged(data, 1, limit, offset)

    def get_application(self, p: dict[str, Any]) -> Any:
        self._known(p, set())
        if "application" not in p:
            raise RpcError(INVALID_PARAMS, "missing parameter application")
        self._app(p)
        return {"data": self._application()}

    # --- dispatch ---------------------------------------------------------------------------
    def call(self, msg: Any) -> dict[str, Any] | None:
        req_id = msg.get("id") if isinstance(msg, dict) else None
        try:
            if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
                raise RpcError(INVALID_REQUEST, "invalid request")
            method = self.methods.get(msg["method"])
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, f"method not found: {_show(msg['method'])}")
            params = msg.get("params", {})
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise RpcError(INVALID_PARAMS, "params must be an object")
            result = method(params)
            return {"jsonrpc": "2.0", "id": req_id, "result": result}
        except RpcError as exc:
            err: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                err["data"] = exc.data
            return {"jsonrpc": "2.0", "id": req_id, "error": err}
        except Exception:  # never leak a traceback (or its text) to a client; log it
            log.exception("JSON-RPC %s failed", msg.get("method") if isinstance(msg, dict) else type(msg))
            return {"jsonrpc": "2.0", "id": req_id, "error": {"code": INTERNAL_ERROR, "message": "internal error"}}

    @staticmethod
    def cost(msg: Any) -> int:
        """Items a call may return, for the batch budget: its page size for list methods (1 if
        the page size is invalid: such a call fails cheaply), 1 for the others."""
        if not isinstance(msg, dict) or msg.get("method") not in LIST_METHODS:
            return 1
        params = msg.get("params")
        limit = params.get("limit", 50) if isinstance(params, dict) else 50
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit <= MAX_LIMIT:
            return limit
        return 1

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

    def _send(self, status: int, obj: Any) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

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
        elif path in ("/rpc",) or path.startswith("/inspect"):
            self._send(405, {"error": "method not allowed"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        node = self.server.node
        if path.rstrip("/") == "/rpc":
            self._rpc()
            return
        if path.startswith("/inspect/"):
            target = path[len("/inspect/"):].strip("/")
            if target.lower() != node.app.lower() and target != node.app_name:
                self._refuse(404, {"error": f"application not found: {target[:100]}"}, content_length(self))
                return
            payload = self._body(MAX_INSPECT)
            if payload is None:
                return
            try:
                result = node.inspect(payload, timeout=self.server.inspect_timeout)
            except FutureTimeout:
                self._send(503, {"error": "the backend did not answer the inspect in time"})
                return
            except Exception as exc:
                self._send(503, {"error": str(exc)})
                return
            self._send(200, result.to_json())
            return
        self._refuse(404, {"error": "not found"}, content_length(self))

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
