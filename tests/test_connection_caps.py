"""Our HTTP servers hold a bounded number of connections: one client that opens connections and
sends nothing gets 503 past its share, while another client is still served, and a freed slot
is usable again (bench/connection_flood.py measures the flood itself)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator

import pytest

from rollup.server import BoundedThreadingHTTPServer


class Ok(BaseHTTPRequestHandler):
    timeout = 30

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[BoundedThreadingHTTPServer]:
    srv = BoundedThreadingHTTPServer(("127.0.0.1", 0), Ok)
    srv.max_connections, srv.max_connections_per_client = 6, 3
    srv.loopback_is_one_client = True  # 127.0.0.2 and 127.0.0.1 are two clients here
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def idle(srv: BoundedThreadingHTTPServer, source: str) -> socket.socket:
    s = socket.create_connection(srv.server_address[:2], timeout=5, source_address=(source, 0))
    return s


def get(srv: BoundedThreadingHTTPServer, source: str = "127.0.0.1") -> int:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=5,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


def wait_open(srv: BoundedThreadingHTTPServer, n: int) -> None:
    deadline = time.monotonic() + 5
    while srv.open_connections != n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.open_connections == n


def test_one_client_past_its_share_gets_503_and_another_is_served(server):
    hog = [idle(server, "127.0.0.2") for _ in range(3)]
    wait_open(server, 3)
    assert get(server, "127.0.0.2") == 503          # its fourth: refused at once
    assert get(server, "127.0.0.1") == 200          # someone else: served
    hog.pop().close()
    wait_open(server, 2)
    assert get(server, "127.0.0.2") == 200          # a freed slot is usable again
    for s in hog:
        s.close()


def test_the_global_cap_holds_across_clients(server):
    socks = [idle(server, src) for src in ("127.0.0.2", "127.0.0.3") for _ in range(3)]
    wait_open(server, 6)
    assert get(server, "127.0.0.4") == 503
    assert server.refused_connections >= 1
    for s in socks:
        s.close()
    wait_open(server, 0)
    assert get(server, "127.0.0.4") == 200


def test_loopback_clients_share_only_the_global_cap():
    srv = BoundedThreadingHTTPServer(("127.0.0.1", 0), Ok)
    srv.max_connections, srv.max_connections_per_client = 6, 2
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        socks = [idle(srv, "127.0.0.1") for _ in range(4)]  # a local proxy speaks for many
        wait_open(srv, 4)
        assert get(srv) == 200
        for s in socks:
            s.close()
    finally:
        srv.shutdown()
        srv.server_close()


def test_every_server_we_run_is_bounded():
    from client.dashboard.server import DashboardServer
    from client.relay import Relay
    from rollup.gateway import Gateway
    from rollup.rpc import ApiServer
    from rollup.server import LoopbackServer, RollupHttpServer

    for cls in (DashboardServer, Gateway, ApiServer, RollupHttpServer, LoopbackServer):
        assert issubclass(cls, BoundedThreadingHTTPServer), cls
    relay = Relay.__new__(Relay).server()  # the relay's HTTP side needs no chain to exist
    try:
        assert isinstance(relay, BoundedThreadingHTTPServer)
    finally:
        relay.server_close()
