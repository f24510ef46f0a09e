"""A `cartesi run`-style single endpoint in front of the host-mode node and its chain.

Cartesi's CLI serves a running app on one port (6751 by default): `/anvil` is the chain's
JSON-RPC, `/rpc` the node's JSON-RPC and `/inspect/<app>` the inspect API. Tools and front-ends
written against `cartesi run` (`@cartesi/viem` pointed at `http://127.0.0.1:6751/anvil` and
`.../rpc`, `curl .../inspect/<app>`) work against this gateway unchanged, while the node's own
ports (rollup API 5004, node API 10011, anvil 8545) keep working as before.

The gateway only forwards: it adds no behaviour of its own beyond bounding what it reads (bodies
are capped before they are read, like the node's servers do) and naming the app. The app's name
comes from `--app-name`, else `name = "..."` in cartesi.toml, made to fit the official node's name
rule `^[a-z0-9_-]{3,}$`.

`node_settings_from_env` reads the official node's `CARTESI_*` environment variables for the
settings the two nodes share, so a `.env` written for the official node configures this one.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import tomllib
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import click

from rollup.server import LoopbackServer, content_length, drain

log = logging.getLogger(__name__)

DEFAULT_GATEWAY_PORT = 6751  # `cartesi run`'s port
MAX_NODE_BODY = 2 * 1024 * 1024 + 64 * 1024  # the node refuses more (inspect 2 MiB, rpc 1 MiB) anyway
MAX_ANVIL_BODY = 32 * 1024 * 1024  # a transaction deploying a large contract fits well within it
MAX_UPSTREAM_ANSWER = 128 * 1024 * 1024  # an answer is held in memory whole: the node's own bound
UPSTREAM_TIMEOUT = 120.0  # an inspect may take the node's inspect timeout (60 s) and more
REQUEST_TIMEOUT = 60.0
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "content-length", "host", "expect"}


class GatewayError(Exception):
    """A setting the gateway cannot use (a clear message for the user)."""


class _AnswerTooLarge(Exception):
    """An upstream answer past `MAX_UPSTREAM_ANSWER` (answered 502, never buffered whole)."""


def _read_bounded(resp: http.client.HTTPResponse, cap: int) -> bytes:
    """The upstream answer's body, refused (`_AnswerTooLarge`) once it passes `cap` bytes."""
    declared = resp.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise _AnswerTooLarge(f"{int(declared)} bytes")
    chunks, size = [], 0
    while chunk := resp.read(1 << 20):
        size += len(chunk)
        if size > cap:
            raise _AnswerTooLarge(f"more than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------ app name
def app_name(name: str) -> str:
    """`name` as the official node accepts application names: lowercase, `[a-z0-9_-]`, at least
    three characters (other characters become `-`)."""
    out = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-")
    if len(out) < 3:
        raise GatewayError(f"application name {name!r} does not fit ^[a-z0-9_-]{{3,}}$ (the official "
                           "node's rule): pass --app-name")
    return out


def app_name_from_toml(path: str | Path = "cartesi.toml") -> str | None:
    """The app's name from a project's cartesi.toml (`name = "..."`), or None when the file or the
    key is absent. (`cartesi run` names an app after its project directory; a checkout's
    directory name is an accident, so here the name is explicit: this key or `--app-name`.)"""
    toml = Path(path)
    if not toml.is_file():
        return None
    try:
        data = tomllib.loads(toml.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GatewayError(f"cannot read {toml}: {exc}") from exc
    name = data.get("name")
    return app_name(name) if isinstance(name, str) and name else None


# ------------------------------------------------------------------------- CARTESI_* settings
def _host_port(value: str, var: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise GatewayError(f"{var}={value!r}: expected HOST:PORT or :PORT")
    return host or "127.0.0.1", int(port)


def _bool(value: str, var: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise GatewayError(f"{var}={value!r}: expected true or false")


def node_settings_from_env(deployment: Mapping[str, Any], environ: Mapping[str, str] | None = None
                           ) -> dict[str, Any]:
    """Node settings from the official node's environment variables, checked against the
    deployment where both name the same thing (a mismatch is an error, never silently ignored).

    Read: CARTESI_BLOCKCHAIN_HTTP_ENDPOINT (rpc_url), CARTESI_BLOCKCHAIN_ID and
    CARTESI_CONTRACTS_INPUT_BOX_ADDRESS and CARTESI_EPOCH_LENGTH (must match the deployment),
    CARTESI_BLOCKCHAIN_DEFAULT_BLOCK (only `latest`: this node follows the chain head, as
    `cartesi run` configures the official one), CARTESI_JSONRPC_API_ADDRESS (api_port; inspect is
    served on the same port), CARTESI_INSPECT_ADDRESS (must then name the same port),
    CARTESI_FEATURE_CLAIM_SUBMISSION_ENABLED (claim), CARTESI_AUTH_PRIVATE_KEY (claimer_key),
    CARTESI_HTTP_ADDRESS / CARTESI_HTTP_PORT (the single-port gateway), CARTESI_LOG_LEVEL."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}

    def get(var: str) -> str | None:
        value = env.get(var)
        return value if value not in (None, "") else None

    if (v := get("CARTESI_BLOCKCHAIN_HTTP_ENDPOINT")) is not None:
        out["rpc_url"] = v
    if (v := get("CARTESI_BLOCKCHAIN_ID")) is not None:
        if not v.isdigit() or int(v) != int(deployment["chain_id"]):
            raise GatewayError(f"CARTESI_BLOCKCHAIN_ID={v} but the deployment is on chain {deployment['chain_id']}")
    if (v := get("CARTESI_CONTRACTS_INPUT_BOX_ADDRESS")) is not None:
        theirs = str(deployment.get("contracts", {}).get("InputBox", ""))
        if v.lower() != theirs.lower():
            raise GatewayError(f"CARTESI_CONTRACTS_INPUT_BOX_ADDRESS={v} but the deployment's InputBox is {theirs}")
    if (v := get("CARTESI_EPOCH_LENGTH")) is not None:
        if not v.isdigit() or int(v) != int(deployment["epoch_length"]):
            raise GatewayError(f"CARTESI_EPOCH_LENGTH={v} but the application's epoch length is "
                               f"{deployment['epoch_length']} (it is fixed in its consensus contract)")
    if (v := get("CARTESI_BLOCKCHAIN_DEFAULT_BLOCK")) is not None and v.lower() != "latest":
        raise GatewayError(f"CARTESI_BLOCKCHAIN_DEFAULT_BLOCK={v}: this node follows the latest block only")
    api = get("CARTESI_JSONRPC_API_ADDRESS")
    if api is not None:
        out["api_port"] = _host_port(api, "CARTESI_JSONRPC_API_ADDRESS")[1]
    if (v := get("CARTESI_INSPECT_ADDRESS")) is not None:
        port = _host_port(v, "CARTESI_INSPECT_ADDRESS")[1]
        if "api_port" not in out:
            out["api_port"] = port
        elif port != out["api_port"]:
            raise GatewayError("CARTESI_INSPECT_ADDRESS and CARTESI_JSONRPC_API_ADDRESS name different ports: "
                               "this node serves /rpc and /inspect on one port")
    if (v := get("CARTESI_FEATURE_CLAIM_SUBMISSION_ENABLED")) is not None:
        out["claim"] = _bool(v, "CARTESI_FEATURE_CLAIM_SUBMISSION_ENABLED")
    if (v := get("CARTESI_AUTH_PRIVATE_KEY")) is not None:
        out["claimer_key"] = v
    if (v := get("CARTESI_HTTP_PORT")) is not None:
        if not v.isdigit() or not 0 <= int(v) < 65536:
            raise GatewayError(f"CARTESI_HTTP_PORT={v!r}: expected a port")
        out["gateway_port"] = int(v)
    if (v := get("CARTESI_HTTP_ADDRESS")) is not None:
        out["gateway_host"] = v
    if (v := get("CARTESI_LOG_LEVEL")) is not None:
        level = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                 "warning": logging.WARNING, "error": logging.ERROR}.get(v.lower())
        if level is None:
            raise GatewayError(f"CARTESI_LOG_LEVEL={v!r}: one of debug, info, warn, error")
        out["log_level"] = level
    return out


# ------------------------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Gateway"
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("gateway: " + format, *args)

    def _text(self, status: int, message: str, length: int | None = None) -> None:
        data = (message + "\n").encode()
        if length is not None:
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if length:
            drain(self, length)

    def _route(self) -> tuple[str, str, int] | None:
        """(upstream base URL, upstream path, body cap) for this request's path, or None."""
        path = self.path.split("?")[0]
        srv = self.server
        if path in ("/anvil", "/anvil/"):
            return srv.anvil_url, srv.anvil_path, MAX_ANVIL_BODY
        if path in ("/rpc", "/rpc/"):
            return srv.node_url, "/rpc", MAX_NODE_BODY
        if path.startswith("/inspect/"):
            return srv.node_url, path, MAX_NODE_BODY
        if path in ("/health", "/healthz"):
            return srv.node_url, "/health", 0
        return None

    def _forward(self, method: str) -> None:
        route = self._route()
        length = content_length(self)
        if route is None:
            self._text(404, "404 page not found", length or 0)
            return
        base, path, cap = route
        if length is None:
            self._text(411, "a Content-Length is required (chunked bodies are refused)", 0)
            return
        if length > cap:
            self._text(413, "Payload too large", length)
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            return
        url = urlsplit(base)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=UPSTREAM_TIMEOUT)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            conn.request(method, path, body=body if method == "POST" else None, headers=headers)
            resp = conn.getresponse()
            data = _read_bounded(resp, MAX_UPSTREAM_ANSWER)
        except (OSError, http.client.HTTPException) as exc:
            self._text(502, f"upstream {base} unavailable: {exc}")
            return
        except _AnswerTooLarge as exc:
            self._text(502, f"upstream {base} answered {exc}: more than the gateway relays "
                       f"({MAX_UPSTREAM_ANSWER >> 20} MiB); ask for less")
            return
        finally:
            conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in HOP_HEADERS:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("gateway: request failed")
            self.close_connection = True

    def do_POST(self) -> None:
        self._forward("POST")

    def do_GET(self) -> None:
        self._forward("GET")

    def do_OPTIONS(self) -> None:  # CORS preflight from browser front-ends: the upstreams answer
        self._forward("OPTIONS")


class Gateway(LoopbackServer):
    """One port for `/anvil`, `/rpc` and `/inspect/<app>` (and `/health`)."""

    thread_name = "gateway"

    def __init__(self, node_url: str, anvil_url: str, host: str = "127.0.0.1",
                 port: int = DEFAULT_GATEWAY_PORT) -> None:
        super().__init__((host, port), _Handler)
        self.node_url = node_url.rstrip("/")
        parts = urlsplit(anvil_url)
        self.anvil_url = f"{parts.scheme}://{parts.netloc}"
        self.anvil_path = parts.path or "/"


# ---------------------------------------------------------------------------------- the CLI
@click.command("gateway")
@click.option("--node-url", default="http://127.0.0.1:10011", show_default=True,
              help="the node API (JSON-RPC and inspect) to serve at /rpc and /inspect/<app>")
@click.option("--anvil-url", default=None, help="the chain's JSON-RPC served at /anvil "
              "(default: $CARTESI_BLOCKCHAIN_HTTP_ENDPOINT, else http://127.0.0.1:8545)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=None, type=int, help=f"default: $CARTESI_HTTP_PORT, else {DEFAULT_GATEWAY_PORT}")
def gateway_command(node_url: str, anvil_url: str | None, host: str, port: int | None) -> None:
    """Serve a running node and its chain on one port, as `cartesi run` does."""
    anvil = anvil_url or os.environ.get("CARTESI_BLOCKCHAIN_HTTP_ENDPOINT") or "http://127.0.0.1:8545"
    if port is None:
        env_port = os.environ.get("CARTESI_HTTP_PORT", "")
        port = int(env_port) if env_port.isdigit() else DEFAULT_GATEWAY_PORT
    try:
        gw = Gateway(node_url, anvil, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    click.echo(f"serving {gw.url}/anvil -> {anvil}, {gw.url}/rpc and {gw.url}/inspect/<app> -> {node_url}",
               err=True)
    try:
        gw.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        gw.server_close()
