"""The node's client API: JSON-RPC at `POST /rpc`, `POST /inspect/<app>` and `GET /health`.

Method names, parameters and result shapes follow the Cartesi rollups-node v2 JSON-RPC
(CARTESI_V2.md §7) so clients written for the official node work here: indices are hex strings,
lists come as {"data": [...], "pagination": {"total_count", "limit", "offset"}}, an output's
`output_hashes_siblings` is null until its epoch's claim is accepted, then the 63 siblings against
that claim's root (which is what `Application.executeOutput` / `validateOutput` check).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Callable

from rollup import outputs
from rollup.server import LoopbackServer, drain
from rollup.outputs import DELEGATE_CALL_VOUCHER_SELECTOR, NOTICE_SELECTOR, VOUCHER_SELECTOR
from rollup.store import EPOCH_CLAIM_ACCEPTED, EpochRecord, InputRecord, OutputRecord, ReportRecord

if TYPE_CHECKING:
    from rollup.node import Node

log = logging.getLogger(__name__)

MAX_INSPECT = 2 * 1024 * 1024
MAX_RPC_BODY = 1024 * 1024
MAX_LIMIT = 10_000

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32001

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
            raise RpcError(RESOURCE_NOT_FOUND, f"application not found: {app!r}")

    @staticmethod
    def _index(params: dict[str, Any], name: str, required: bool = False) -> int | None:
        value = params.get(name)
        if value is None:
            if required:
                raise RpcError(INVALID_PARAMS, f"missing parameter {name}")
            return None
        if isinstance(value, bool):
            raise RpcError(INVALID_PARAMS, f"invalid {name}: {value!r}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
            except ValueError:
                raise RpcError(INVALID_PARAMS, f"invalid {name}: {value!r} (expected a hex string)") from None
        else:
            raise RpcError(INVALID_PARAMS, f"invalid {name}: {value!r} (expected a hex string)")
        if number < 0 or number >= 2**64:
            raise RpcError(INVALID_PARAMS, f"invalid {name}: out of range")
        return number

    @staticmethod
    def _page(params: dict[str, Any]) -> tuple[int, int]:
        limit = params.get("limit", 50)
        offset = params.get("offset", 0)
        for name, value in (("limit", limit), ("offset", offset)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RpcError(INVALID_PARAMS, f"invalid {name}: {value!r} (expected a non-negative integer)")
        if limit == 0 or limit > MAX_LIMIT:
            raise RpcError(INVALID_PARAMS, f"invalid limit: {limit} (1..{MAX_LIMIT})")
        return limit, offset

    @staticmethod
    def _known(params: dict[str, Any], allowed: set[str]) -> None:
        extra = set(params) - allowed - {"application"}
        if extra:
            raise RpcError(INVALID_PARAMS, f"unknown parameters: {sorted(extra)}")

    def _one(self, p: dict[str, Any], name: str, what: str, fetch: Callable[[int], Any],
             shape: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """A get-by-index method: `p` holds only `name` (and the application)."""
        self._known(p, {name})
        self._app(p)
        idx = self._index(p, name, required=True)
        item = fetch(idx)
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
        epoch = self._index(p, "epoch_index")
        if epoch is not None:
            conds.append("epoch=?")
            args.append(epoch)
        input_index = self._index(p, "input_index")
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
                raise RpcError(INVALID_PARAMS, f"invalid output_type: {otype!r}")
            conds.append("substr(raw, 1, 4)=?")
            args.append(sel)
        addr = p.get("voucher_address")
        if addr is not None:
            if not isinstance(addr, str) or len(addr) != 42 or not addr.startswith("0x"):
                raise RpcError(INVALID_PARAMS, f"invalid voucher_address: {addr!r}")
            try:
                raw_addr = bytes.fromhex(addr[2:])
            except ValueError:
                raise RpcError(INVALID_PARAMS, f"invalid voucher_address: {addr!r}") from None
            # destination is the first ABI word of vouchers and delegate-call vouchers
            conds.append("substr(raw, 1, 4) IN (?, ?) AND substr(raw, 17, 20)=?")
            args += [VOUCHER_SELECTOR, DELEGATE_CALL_VOUCHER_SELECTOR, raw_addr]
        outs, total = self.store.list_outputs(" AND ".join(conds), args, limit, offset)
        claims = self._epoch_claims()
        return self._paged([self.output_json(o, claims) for o in outs], total, limit, offset)

    def get_output(self, p: dict[str, Any]) -> Any:
        return self._one(p, "output_index", "output", self.store.get_output, self.output_json)

    def list_inputs(self, p: dict[str, Any]) -> Any:
        self._known(p, {"epoch_index", "sender", "limit", "offset"})
        self._app(p)
        limit, offset = self._page(p)
        sender = p.get("sender")
        if sender is not None and (not isinstance(sender, str) or len(sender) != 42 or not sender.startswith("0x")):
            raise RpcError(INVALID_PARAMS, f"invalid sender: {sender!r}")
        recs, total = self.store.list_inputs(self._index(p, "epoch_index"), limit, offset, sender)
        return self._paged([self.input_json(r) for r in recs], total, limit, offset)

    def get_input(self, p: dict[str, Any]) -> Any:
        return self._one(p, "input_index", "input", self.store.get_input, self.input_json)

    def list_reports(self, p: dict[str, Any]) -> Any:
        self._known(p, {"epoch_index", "input_index", "limit", "offset"})
        self._app(p)
        limit, offset = self._page(p)
        reps, total = self.store.list_reports(self._index(p, "epoch_index"), self._index(p, "input_index"),
                                              limit, offset)
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
        eps, total = self.store.list_epochs(status, limit, offset)
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
        data = [self._application()][offset:offset + limit]
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
                raise RpcError(METHOD_NOT_FOUND, f"method not found: {msg['method']}")
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
        except Exception as exc:  # never leak a traceback to a client; log it
            log.exception("JSON-RPC %s failed", msg.get("method") if isinstance(msg, dict) else msg)
            return {"jsonrpc": "2.0", "id": req_id, "error": {"code": INTERNAL_ERROR, "message": str(exc)}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ApiServer"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("node api: " + format, *args)

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self, limit: int) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > limit:
            drain(self, length)
            self._send(413, {"error": f"body larger than {limit} bytes"})
            return None
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        node = self.server.node
        if path == "/health":
            alive = node.supervisor is not None and node.supervisor.alive()
            ok = node.error is None
            self._send(200 if ok else 503, {
                "status": "ok" if ok else "error",
                "error": None if ok else str(node.error),
                "backend_alive": alive,
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
            raw = self._body(MAX_RPC_BODY)
            if raw is None:
                return
            try:
                msg = json.loads(raw)
            except ValueError as exc:
                self._send(200, {"jsonrpc": "2.0", "id": None,
                                 "error": {"code": PARSE_ERROR, "message": f"parse error: {exc}"}})
                return
            if isinstance(msg, list):
                if not msg:
                    self._send(200, {"jsonrpc": "2.0", "id": None,
                                     "error": {"code": INVALID_REQUEST, "message": "empty batch"}})
                    return
                self._send(200, [self.server.api.call(m) for m in msg])
            else:
                self._send(200, self.server.api.call(msg))
            return
        if path.startswith("/inspect/"):
            target = path[len("/inspect/"):].strip("/")
            if target.lower() != node.app.lower() and target != node.app_name:
                self._body(MAX_INSPECT)
                self._send(404, {"error": f"application not found: {target}"})
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
        self._body(MAX_INSPECT)
        self._send(404, {"error": "not found"})


class ApiServer(LoopbackServer):
    thread_name = "node-api"

    def __init__(self, node: "Node", host: str = "127.0.0.1", port: int = 0, inspect_timeout: float = 60.0) -> None:
        super().__init__((host, port), _Handler)
        self.node = node
        self.api = NodeApi(node)
        self.inspect_timeout = inspect_timeout
