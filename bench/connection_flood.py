"""Idle connections from one hostile client against our HTTP servers, and what an honest client
still gets.

Every server we run (the node's rollup and JSON-RPC APIs, the gateway, the dashboard, the relay)
is a `rollup.server.BoundedThreadingHTTPServer`: a thread per connection, at most 256 at once
and 64 from one address; one over either is answered 503 at once. The baseline, in the same run,
is the standard library's `ThreadingHTTPServer` they were before (with the same listen backlog). Both serve the same handler,
which like the node's keeps an idle connection open for its request timeout.

The attacker opens N idle TCP connections from 127.0.0.2 (a second loopback address, so it is
a different client from the honest one on 127.0.0.1); then the honest client sends one GET.
Reported: the server process's threads and RSS growth, how many of the attacker's connections
were refused, and the honest request's answer and latency.

Run: `.venv/bin/python -m bench.connection_flood [--connections N]`; writes
bench/results/connection_flood.json.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import write_results
from rollup.server import BoundedThreadingHTTPServer

SETTLE = 10.0  # seconds at most


class Handler(BaseHTTPRequestHandler):
    timeout = 60  # like the node's: an idle connection holds its thread this long

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


class Unbounded(ThreadingHTTPServer):
    """The baseline: the standard library's server, with the same listen backlog as ours."""

    request_queue_size = BoundedThreadingHTTPServer.request_queue_size


def taken(srv: ThreadingHTTPServer, threads0: int) -> int:
    """Connections the server has accepted (refused ones included), as far as it can tell."""
    if isinstance(srv, BoundedThreadingHTTPServer):
        return srv.open_connections + srv.refused_connections
    return status("Threads:") - threads0


def flood(server_cls: type[ThreadingHTTPServer], n: int) -> dict[str, Any]:
    srv = server_cls(("127.0.0.1", 0), Handler)
    if isinstance(srv, BoundedThreadingHTTPServer):
        srv.loopback_is_one_client = True  # 127.0.0.2 is a client of its own, as a remote one
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    threads0, rss0 = status("Threads:"), status("VmRSS:")
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    deadline = time.monotonic() + SETTLE  # let the server take them all in
    while time.monotonic() < deadline and taken(srv, threads0) < n:
        time.sleep(0.2)
    threads, rss = status("Threads:"), status("VmRSS:")
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/")
    answer = conn.getresponse().status
    latency = time.perf_counter() - t
    conn.close()
    refused = getattr(srv, "refused_connections", 0)
    for s in socks:
        s.close()
    srv.shutdown()
    srv.server_close()
    return {"server": server_cls.__name__, "connections": n, "threads_added": threads - threads0,
            "rss_added_mib": (rss - rss0) / 1024, "refused": refused,
            "honest_status": answer, "honest_latency_s": latency}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=2000)
    args = ap.parse_args(argv)
    rows = [flood(BoundedThreadingHTTPServer, args.connections),
            flood(Unbounded, args.connections)]
    for r in rows:
        print(f"{r['server']:<28} {r['connections']} idle connections: +{r['threads_added']} "
              f"threads, +{r['rss_added_mib']:.1f} MiB, {r['refused']} refused; honest GET "
              f"{r['honest_status']} in {r['honest_latency_s'] * 1e3:.1f} ms")
    result = {"what": "idle-connection flood from one client vs an honest request", "rows": rows}
    write_results("connection_flood", result)
    return result


if __name__ == "__main__":
    main()
