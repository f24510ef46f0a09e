"""The dashboard's HTTP server: static pages (shipped in this package) and a small JSON API.

Why a server at all, when the node already answers JSON-RPC: the pages need joins (a reward to
its commit, reveal, notice, proof, claim, voucher and execution) that would cost a browser
hundreds of calls, and the chain's events need web3. The server keeps no state of its own: each
answer is a function of the public sources (`client.dashboard.data`), recomputed when they move.

Why the standard library's server: a read-only localhost tool with a handful of routes needs no
framework; it binds to 127.0.0.1 by default and serves nothing it did not ship or compute.

Routes (GET): `/` (the app), `/static/<file>`, `/api/version` (what the pages poll for live
updates), `/api/jobs`, `/api/job/<id>`, `/api/trainer/<address>`, `/api/trace/<job>/<round>/<address>`,
`/api/node`, `/api/voucher/<output index>` (executeOutput calldata with the node's proof, for a
browser wallet), `/api/model/<job>/<round|initial>` (the model's bytes, verified by keccak against
the notice's hash).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from client.dashboard.data import NotFound, Views
from rollup.server import BoundedThreadingHTTPServer

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class _Handler(BaseHTTPRequestHandler):
    server: "DashboardServer"
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive (or stalled) connection frees its thread

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard: " + format, *args)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(self.path.split("?", 1)[0])
        try:
            if path in ("/", "/index.html"):
                self._static("index.html")
            elif path.startswith("/static/"):
                self._static(path[len("/static/"):])
            elif path.startswith("/api/"):
                self._api(path[len("/api/"):].strip("/").split("/"))
            else:
                self._json(404, {"error": f"no page {path}"})
        except NotFound as exc:
            self._json(404, {"error": str(exc)})
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # a source that does not answer: say which, keep serving
            log.warning("dashboard: %s failed: %s", path, exc)
            self._json(503, {"error": f"{type(exc).__name__}: {exc}"})

    def _static(self, name: str) -> None:
        f = (STATIC / name).resolve()
        if STATIC not in f.parents or not f.is_file():
            self._json(404, {"error": f"no file {name}"})
            return
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(200, f.read_bytes(), ctype)

    def _api(self, parts: list[str]) -> None:
        views = self.server.views
        views.feed.sync()
        head = parts[0]
        if head == "version" and len(parts) == 1:
            f = views.feed
            self._json(200, {"version": f.fingerprint(), "processed": f.processed,
                             "head_block": f.head_block, "app": f.app, "chain_id": f.chain_id,
                             "chain_error": f.chain_error})
        elif head == "jobs" and len(parts) == 1:
            self._json(200, views.jobs())
        elif head == "job" and len(parts) == 2:
            self._json(200, views.job(_num(parts[1])))
        elif head == "trainer" and len(parts) == 2:
            self._json(200, views.trainer(parts[1]))
        elif head == "trace" and len(parts) == 4:
            self._json(200, views.trace(_num(parts[1]), _num(parts[2]), parts[3]))
        elif head == "node" and len(parts) == 1:
            self._json(200, views.node())
        elif head == "voucher" and len(parts) == 2:
            self._json(200, views.voucher(_num(parts[1])))
        elif head == "model" and len(parts) == 3:
            r = None if parts[2] == "initial" else _num(parts[2])
            data, name = views.model(_num(parts[1]), r)
            self._send(200, data, "application/octet-stream",
                       {"Content-Disposition": f'attachment; filename="{name}"'})
        else:
            raise NotFound(f"no API route /api/{'/'.join(parts)}")


def _num(text: str) -> int:
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()):
        raise NotFound(f"{text[:40]!r} is not a number")
    return int(text)


class DashboardServer(BoundedThreadingHTTPServer):
    """Serves one `Views` (live or synthetic) on host:port; `start()` runs it in a thread."""

    allow_reuse_address = True

    def __init__(self, views: Views, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.views = views
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "DashboardServer":
        self._thread = threading.Thread(target=self.serve_forever, name="dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
