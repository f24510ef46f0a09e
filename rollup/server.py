"""The rollup HTTP server of the host-mode node: what the backend sees as `ROLLUP_HTTP_SERVER_URL`.

Inside a Cartesi machine the backend talks to Cartesi's rollup-http-server (machine-guest-tools);
in host mode it talks to this one, which must answer the same way (status codes, error answers,
output indices) so that a backend cannot tell the difference. `RollupMachine` holds the request
being processed and plays the machine's accept/reject/exception semantics; `RollupHttpServer`
is the HTTP face of it.

Host mode differs from the machine in one way that matters for safety: any local process can
reach a loopback port, while inside the machine only the backend can reach the rollup server. So
the server serves its endpoints only under a per-run secret path prefix, `http://127.0.0.1:5004/<token>`,
which the supervisor hands to the backend as `ROLLUP_HTTP_SERVER_URL` (backends do `url + "/finish"`,
so Cartesi's templates and `dapp/rollup_api.py` work unchanged). A request without the prefix gets
403 and changes nothing. Bodies are capped (`MAX_BODY`, as the real server) and their JSON nesting
is bounded before parsing (`check_json_depth`): `web3` (via py_ecc) raises the recursion limit to
100000, so a 200 KB `[[[[...` would otherwise overflow the C stack inside `json.loads`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import accumulate
from typing import Any

from rollup.gio import ContentResolver, NullResolver
from rollup.outputs import encode_delegate_call_voucher, encode_notice, encode_voucher

log = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024  # the real server's JSON limit
UINT256_MAX = 2**256 - 1
MAX_JSON_DEPTH = 64  # no request of the rollup or node API nests deeper than ~5
DRAIN_MAX = 8 * 1024 * 1024  # a refused body is read (and dropped) up to this many bytes ...
DRAIN_SECONDS = 2.0  # ... for at most this long, so the client sees our answer, then we hang up
REQUEST_TIMEOUT = 300.0  # seconds a connection may sit idle or trickle bytes before we drop it
FINISH_WAIT = 30.0  # seconds an idle /finish waits for the next request before answering 202

ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
EXCEPTION = "EXCEPTION"
DIED = "DIED"  # the backend process died before finishing the request (host mode only)

ENDPOINTS = ("/finish", "/voucher", "/delegate-call-voucher", "/notice", "/report", "/exception", "/gio")


class BadRequest(Exception):
    """A backend request the real server would answer with 400; the message is the body."""


class JsonTooDeep(ValueError):
    """A JSON text nests arrays/objects deeper than allowed; refused before `json.loads`."""


# A JSON string, escapes included (the unrolled form matches in linear time); the strings are
# blanked out before counting brackets so `"[[["` inside a string does not count.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def check_json_depth(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise `JsonTooDeep` if `raw` nests `[`/`{` (outside strings) more than `limit` deep.

    Why: `json.loads` recurses in C once per level and checks only Python's recursion limit,
    which web3's py_ecc import raises to 100000, so a deep enough text segfaults the node. The
    scan is linear and runs in C (count, regex, translate, accumulate): ~1 ms per MiB without
    brackets, ~50 ms per MiB of brackets (bench/node_hostile.py). Malformed JSON is left for
    `json.loads` to report, unless it also nests too deep.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the usual case: few brackets at all
        return
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:  # the brackets were in strings
        return
    depth = max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)
    if depth > limit:
        raise JsonTooDeep(f"JSON nested deeper than {limit} levels")


def loads_bounded(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` that refuses (with ValueError) texts nested deeper than `limit`."""
    check_json_depth(raw, limit)
    try:
        return json.loads(raw)
    except RecursionError:  # belt and braces: never reached with a sane `limit`
        raise JsonTooDeep(f"JSON nested deeper than {limit} levels") from None


@dataclass
class MachineRequest:
    """One advance or inspect handed to the backend, and what the backend produced for it."""

    kind: str  # "advance" | "inspect"
    payload: bytes
    metadata: dict[str, Any] | None = None
    outputs: list[bytes] = field(default_factory=list)
    reports: list[bytes] = field(default_factory=list)
    status: str | None = None
    exception_payload: bytes | None = None
    picked: bool = False  # the backend took it (a /finish answered with it)
    done: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict[str, Any]:
        if self.kind == "advance":
            return {
                "request_type": "advance_state",
                "data": {"metadata": self.metadata, "payload": "0x" + self.payload.hex()},
            }
        return {"request_type": "inspect_state", "data": {"payload": "0x" + self.payload.hex()}}


class RollupMachine:
    """The machine's request/response state shared by the HTTP handlers and the node's worker.

    `output_count` is the number of accepted outputs so far (the leaf count of the outputs tree):
    the index of the next voucher or notice is that plus the outputs of the current input.
    """

    def __init__(self, resolver: ContentResolver | None = None, finish_wait: float = FINISH_WAIT) -> None:
        self.resolver: ContentResolver = resolver or NullResolver()
        self.finish_wait = finish_wait
        self._generation = 0  # bumped by reset(): a /finish waiting for an old backend gives up
        self.output_count = 0
        self._cond = threading.Condition()
        self._pending: MachineRequest | None = None
        self._current: MachineRequest | None = None

    # --- the node's side -------------------------------------------------------------------
    def submit(self, req: MachineRequest) -> None:
        with self._cond:
            if self._pending is not None or self._current is not None:
                raise RuntimeError("the machine is already processing a request")
            self._pending = req
            self._cond.notify_all()

    def abort(self, req: MachineRequest, status: str = DIED) -> None:
        """Finish `req` without the backend (it died); its outputs are dropped like a reject."""
        with self._cond:
            if self._pending is req:
                self._pending = None
            if self._current is req:
                self._current = None
            if not req.done.is_set():
                req.status = status
                req.done.set()
            self._cond.notify_all()

    def reset(self) -> None:
        """Forget any request in flight (a new backend process starts from scratch); a /finish
        still waiting for the old process answers 202, so it cannot take the new one's request."""
        with self._cond:
            self._generation += 1
            for req in (self._pending, self._current):
                if req is not None and not req.done.is_set():
                    req.status = DIED
                    req.done.set()
            self._pending = None
            self._current = None
            self._cond.notify_all()

    # --- the backend's side (called from HTTP handler threads) --------------------------------
    def _complete(self, status: str, exception_payload: bytes | None = None) -> None:
        req = self._current
        if req is None:
            return
        self._current = None
        req.status = status
        req.exception_payload = exception_payload
        if req.kind == "advance" and status == ACCEPTED:
            self.output_count += len(req.outputs)
        req.done.set()
        self._cond.notify_all()

    def finish(self, accept: bool) -> MachineRequest | None:
        """Complete the current request and wait for the next one, as Cartesi's server does (the
        machine yields until there is one): a long poll, bounded by `finish_wait` seconds (kept
        under the backends' HTTP timeouts, e.g. dapp.rollup_api's 60 s) after which it answers
        None (HTTP 202, "call again")."""
        with self._cond:
            self._complete(ACCEPTED if accept else REJECTED)
            generation = self._generation
            deadline = time.monotonic() + self.finish_wait
            while self._pending is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._generation != generation:
                    return None
                self._cond.wait(left)
            self._current, self._pending = self._pending, None
            self._current.picked = True
            return self._current

    def add_output(self, output: bytes, what: str) -> int:
        with self._cond:
            req = self._current
            if req is None or req.kind != "advance":
                raise BadRequest(
                    f"unable to insert {what}, error details: "
                    f"'{what}s can only be emitted while processing an advance request'"
                )
            req.outputs.append(output)
            return self.output_count + len(req.outputs) - 1

    def add_report(self, payload: bytes) -> None:
        with self._cond:
            req = self._current
            if req is None:
                raise BadRequest(
                    "unable to insert report, error details: 'no request is being processed'"
                )
            req.reports.append(payload)

    def throw_exception(self, payload: bytes) -> None:
        with self._cond:
            if self._current is None:
                raise BadRequest(
                    "unable to throw exception, error details: 'no request is being processed'"
                )
            self._complete(EXCEPTION, payload)

    def gio(self, domain: int, id: bytes) -> tuple[int, bytes]:
        resp = self.resolver.resolve(domain, id)
        return int(resp.code), bytes(resp.data)


def drain(handler: BaseHTTPRequestHandler, length: int) -> None:
    """After answering a refused request, read and drop a bounded part of its body and hang up.

    Call it *after* sending the answer. Closing a socket with unread data makes Linux send a
    reset, which can destroy the answer before the client reads it; so up to `DRAIN_MAX` bytes
    are read for at most `DRAIN_SECONDS` (a client that trickles gets cut off), never the whole
    of a huge `Content-Length`.
    """
    handler.close_connection = True
    if length <= 0 or length > DRAIN_MAX:
        return
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while length > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            handler.connection.settimeout(left)
            chunk = handler.rfile.read1(min(length, 1 << 16))  # type: ignore[attr-defined]
            if not chunk:
                return
            length -= len(chunk)
    except OSError:
        return


def content_length(handler: BaseHTTPRequestHandler) -> int | None:
    """The request's Content-Length (0 when absent), or None when it is unusable: not a
    non-negative integer (a negative one would make `rfile.read` read until EOF), or a chunked
    body, which `http.server` does not decode."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        return None
    value = handler.headers.get("Content-Length")
    if value is None:
        return 0
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


# --- request validation, as the real server does it -----------------------------------------
def _hex_field(obj: dict, name: str, what: str) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"Json deserialize error: missing or invalid field `{name}`")
    if not value.startswith("0x"):
        raise BadRequest(f"unable to insert {what}, error details: 'payload must start with 0x'")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise BadRequest(f"unable to insert {what}, error details: 'Invalid hex: {value[:80]}'") from None


def _address_field(obj: dict, name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"Json deserialize error: missing or invalid field `{name}`")
    if len(value) != 42 or not value.startswith("0x"):
        raise BadRequest("Address not valid")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise BadRequest("Address not valid") from None
    return "0x" + value[2:].lower()


def _value_field(obj: dict) -> int:
    value = obj.get("value", "0x0")
    if value is None:
        value = "0x0"
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 66:
        raise BadRequest("unable to insert voucher, error details: 'Invalid value'")
    try:
        number = int(value[2:] or "0", 16)
    except ValueError:
        raise BadRequest("unable to insert voucher, error details: 'Invalid value'") from None
    if number > UINT256_MAX:
        raise BadRequest("unable to insert voucher, error details: 'Invalid value'")
    return number


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "RollupHttpServer"
    timeout = REQUEST_TIMEOUT  # socket timeout: an idle or trickling client is dropped

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        log.debug("rollup http: " + format, *args)

    def _send(self, status: int, body: bytes | str | dict | None = None) -> None:
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            ctype = "application/json"
        elif isinstance(body, str):
            data = body.encode()
            ctype = "text/plain; charset=utf-8"
        else:
            data = body or b""
            ctype = "text/plain; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _endpoint(self) -> str | None:
        """The endpoint path under the server's secret prefix, or None (answered 403) when the
        prefix is missing or wrong. The comparison takes the same time wherever it differs."""
        path = self.path.split("?")[0]
        first, _, rest = path[1:].partition("/") if path.startswith("/") else ("", "", "")
        given = first.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self.server.token.encode()):
            return None
        return "/" + rest

    def _refuse(self, status: int, message: str, length: int | None) -> None:
        """Answer without reading the body, then drop (a bounded part of) it and hang up."""
        self.close_connection = True
        self._send(status, message)
        drain(self, length or 0)

    def _not_post(self) -> None:
        length = content_length(self)
        path = self._endpoint()
        if path is None:
            self._refuse(403, "Forbidden", length)
        elif path in ENDPOINTS:
            self._refuse(405, "Method Not Allowed", length)
        else:
            self._refuse(404, "Not Found", length)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_post  # type: ignore[assignment]

    def do_POST(self) -> None:
        length = content_length(self)
        path = self._endpoint()
        if path is None:  # not the backend: refuse before reading anything
            self._refuse(403, "Forbidden", length)
            return
        if length is None:
            self._refuse(400, "invalid Content-Length (a length is required; chunked bodies are refused)", 0)
            return
        if length > MAX_BODY:
            self._refuse(413, "JSON payload (%d bytes) is larger than allowed (limit: %d bytes)."
                         % (length, MAX_BODY), length)
            return
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client hung up mid-body
            self.close_connection = True
            return
        if path not in ENDPOINTS:
            self._send(404, "Not Found")
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._send(400, "Content type error")
            return
        try:
            obj = loads_bounded(raw)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:  # includes JsonTooDeep and UnicodeDecodeError
            self._send(400, f"Json deserialize error: {exc}")
            return
        try:
            self._dispatch(path, obj)
        except BadRequest as exc:
            self._send(400, str(exc))
        except OSError:  # the client went away mid-answer
            self.close_connection = True
        except Exception:  # a bug must not kill the connection silently or leak a traceback
            log.exception("rollup http %s failed", path)
            self._send(500, "internal error")

    def _dispatch(self, path: str, obj: dict[str, Any]) -> None:
        machine = self.server.machine
        if path == "/finish":
            status = obj.get("status")
            if not isinstance(status, str):
                raise BadRequest("Json deserialize error: missing field `status`")
            if status not in ("accept", "reject"):
                raise BadRequest("status must be 'accept' or 'reject'")
            req = machine.finish(status == "accept")
            if req is None:
                self._send(202, "")
            else:
                self._send(200, req.to_json())
        elif path == "/voucher":
            destination = _address_field(obj, "destination")
            value = _value_field(obj)
            payload = _hex_field(obj, "payload", "voucher")
            index = machine.add_output(encode_voucher(destination, value, payload), "voucher")
            self._send(201, {"index": index})
        elif path == "/delegate-call-voucher":
            destination = _address_field(obj, "destination")
            payload = _hex_field(obj, "payload", "delegate call voucher")
            index = machine.add_output(
                encode_delegate_call_voucher(destination, payload), "delegate call voucher"
            )
            self._send(201, {"index": index})
        elif path == "/notice":
            payload = _hex_field(obj, "payload", "notice")
            index = machine.add_output(encode_notice(payload), "notice")
            self._send(201, {"index": index})
        elif path == "/report":
            machine.add_report(_hex_field(obj, "payload", "report"))
            self._send(202, "")
        elif path == "/exception":
            machine.throw_exception(_hex_field(obj, "payload", "exception"))
            self._send(202, "")
        elif path == "/gio":
            domain = obj.get("domain")
            if not isinstance(domain, int) or isinstance(domain, bool) or not 0 <= domain <= 0xFFFF:
                raise BadRequest("Json deserialize error: invalid field `domain` (u16)")
            if domain < 0x10:
                raise BadRequest(
                    "unable to process gio request, error details: "
                    f"'domain {domain:#x} is reserved (applications use 0x10 and up)'"
                )
            gio_id = _hex_field(obj, "id", "gio")
            code, data = machine.gio(domain, gio_id)
            self._send(202, {"response_code": code, "response": "0x" + data.hex()})


MAX_CONNECTIONS = 256  # connections one server holds at once (one thread each) ...
MAX_CONNECTIONS_PER_CLIENT = 64  # ... and from any one client address


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    """A thread per connection, up to ``max_connections`` at once and
    ``max_connections_per_client`` from one address: a connection over either is answered
    ``503`` with ``Retry-After`` and closed at once, without a thread. Without the caps, anyone
    who can reach the port opens connections until the process runs out of threads or file
    descriptors, and nobody else is served (bench/connection_flood.py measures it). Loopback
    clients (the operator's own proxy, gateway or CLI, which speak for many users) have only
    the global cap."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog (the standard library's 5 drops SYNs under load)
    max_connections = MAX_CONNECTIONS
    max_connections_per_client = MAX_CONNECTIONS_PER_CLIENT
    loopback_is_one_client = False
    """True: loopback clients are capped per address like remote ones (tests)."""
    refused_connections = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open_lock = threading.Lock()
        self._open: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    @property
    def open_connections(self) -> int:
        with self._open_lock:
            return sum(self._open.values())

    def process_request(self, request: Any, client_address: Any) -> None:
        client = _client(client_address)
        capped = self.loopback_is_one_client or not _is_loopback(client)
        with self._open_lock:
            full = (sum(self._open.values()) >= self.max_connections
                    or (capped and self._open.get(client, 0) >= self.max_connections_per_client))
            if full:
                self.refused_connections += 1
            else:
                self._open[client] = self._open.get(client, 0) + 1
        if full:
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                                b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread did not start: the slot is free again
            self._release(client)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(_client(client_address))

    def _release(self, client: str) -> None:
        with self._open_lock:
            left = self._open.get(client, 0) - 1
            if left > 0:
                self._open[client] = left
            else:
                self._open.pop(client, None)


def _client(address: Any) -> str:
    """Who a connection is from: its host (an AF_INET/AF_INET6 address is a tuple)."""
    return str(address[0]) if isinstance(address, tuple) else str(address)


def _is_loopback(client: str) -> bool:
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


class LoopbackServer(BoundedThreadingHTTPServer):
    """A threaded HTTP server on loopback, served from a daemon thread; port 0 picks a free
    port. The node's two servers (rollup API, node API) share this lifecycle."""

    allow_reuse_address = True
    thread_name = "http"
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class RollupHttpServer(LoopbackServer):
    """Loopback HTTP server bound to a `RollupMachine`; port 0 picks a free port.

    Only requests under `/<token>/` are served: `url` (what the backend gets as
    `ROLLUP_HTTP_SERVER_URL`) includes the token, `base_url` does not (safe to print or log).
    `token=None` draws a fresh one with `secrets.token_urlsafe`.
    """

    thread_name = "rollup-http"

    def __init__(self, machine: RollupMachine, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        if token is not None and (not token or "/" in token or "?" in token):
            raise ValueError("the rollup server token must be a non-empty path segment")
        super().__init__((host, port), _Handler)
        self.machine = machine
        self.token = token if token is not None else secrets.token_urlsafe(32)

    @property
    def base_url(self) -> str:
        """The server's address without the secret (what may appear in logs)."""
        return super().url

    @property
    def url(self) -> str:
        """The backend's `ROLLUP_HTTP_SERVER_URL`: the address plus the secret path prefix."""
        return f"{self.base_url}/{self.token}"
