"""The host-mode node under cheap attacks from other local processes and API clients.

Each family is reproduced against a real node process (`python -m rollup node`, real anvil, the
echo backend) and, after each, the node must still answer a normal request and its backend must
not have been restarted:
- a racing process posting outputs to the rollup server (only the backend, which holds the
  per-run secret in ROLLUP_HTTP_SERVER_URL, may);
- deeply nested JSON (web3's py_ecc raises the recursion limit to 100000, so `json.loads` on a
  200 KB `[[[[...` used to overflow the C stack and kill the node);
- JSON-RPC batches that amplify work, huge indices/offsets/limits, random parameters;
- oversize or lying Content-Length headers and slow clients;
- SIGKILL of the node (devnet): its anvil and backend must not outlive it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollup.anvil import free_port
from rollup.deploy import Deployment
from tests.node_fixtures import (ECHO_CMD, OWNER, Chain, chain, marked_processes, post_json,  # noqa: F401
                                  result, rpc)

pytestmark = pytest.mark.chain

TEMPLATE = Path(__file__).resolve().parent / "backends" / "cartesi_template.py"
DEEP = 100_000  # the nesting of the reproduced crash (200 KB)


# ------------------------------------------------------------------------------- helpers

def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def get_json(url: str, timeout: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def raw_request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def head_only(port: int, head: bytes, timeout: float = 5.0) -> tuple[int, float]:
    """Send only a request head (no body, socket kept open); the status and seconds to answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        start = time.monotonic()
        sock.sendall(head)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]), time.monotonic() - start


class NodeProcess:
    """`python -m rollup node` in a subprocess, with its ports, log and a marker in its env."""

    def __init__(self, dep: Deployment, tmp: Path, backend: str = ECHO_CMD, env: dict[str, str] | None = None) -> None:
        self.dep = dep
        self.tmp = tmp
        dep_path = dep.save(tmp / "deployment.json")
        self.http_port, self.api_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.rollup = f"http://127.0.0.1:{self.http_port}"
        self.marker = "TRIBUTARY_HOSTILE_TEST_" + uuid.uuid4().hex
        self.log_path = tmp / "node.log"
        self._log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "rollup", "node", "--deployment", str(dep_path), "--backend", backend,
               "--state-dir", str(tmp / "state"), "--http-port", str(self.http_port),
               "--api-port", str(self.api_port), "--poll-interval", "0.05"]
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, **(env or {}), **{self.marker: "1"}),
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        wait_for(lambda: self.health() is not None or self.proc.poll() is not None, 60, "node start")
        assert self.proc.poll() is None, self.log()
        wait_for(lambda: self.backend_pid() is not None, 30, "backend start")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def health(self) -> dict[str, Any] | None:
        try:
            return get_json(self.api + "/health", 2)
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None

    def backend_pid(self) -> int | None:
        kids = [p for p in marked_processes(self.marker) if p != self.proc.pid]
        return kids[0] if kids else None

    def token_url(self) -> str:
        """What the backend got as ROLLUP_HTTP_SERVER_URL (readable by its own user only)."""
        pid = self.backend_pid()
        assert pid is not None
        return environ_of(pid)["ROLLUP_HTTP_SERVER_URL"]

    def processed(self) -> int:
        h = self.health()
        return -1 if h is None else int(h["processed_input_count"])

    def assert_serving(self, restarts: int = 0) -> None:
        """Alive, healthy, backend not restarted, and a normal RPC call and inspect answered."""
        assert self.proc.poll() is None, f"the node died (code {self.proc.returncode}):\n{self.log()}"
        h = self.health()
        assert h is not None and h["status"] == "ok" and h["backend_alive"], h
        assert h["backend_restarts"] == restarts, h
        count = result(rpc(self.api, "cartesi_getProcessedInputCount", {}))["data"]
        assert int(count, 16) == h["processed_input_count"]
        status, body = post_json(self.api + f"/inspect/{self.dep.application}", b"still here")
        assert status == 200 and body["reports"] == [{"payload": "0x" + b"still here".hex()}], body

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def node(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    dep = chain.deploy()
    # a slow advance keeps the request open long enough for a racing process to try its luck
    proc = NodeProcess(dep, tmp_path_factory.mktemp("hostile"),
                       env={"ECHO_DELAY": "0.4", "TRIBUTARY_CLAIMER_KEY": OWNER.private_key})
    try:
        yield proc
    finally:
        proc.stop()


def add_and_wait(chain: Chain, node: NodeProcess, payload: bytes) -> int:
    """addInput and wait until the node processed it; returns its input index."""
    before = node.processed()
    chain.add_input(node.dep, payload)
    wait_for(lambda: node.processed() > before, 30, "the input to be processed")
    return before


def outputs_of(node: NodeProcess, input_index: int) -> list[dict[str, Any]]:
    return result(rpc(node.api, "cartesi_listOutputs", {"input_index": hex(input_index), "limit": 100}))["data"]


# ------------------------------------------------------------------------ racing processes

class Racer(threading.Thread):
    """Posts a 3 ETH voucher and a notice to `base` in a loop, as a hostile local process would,
    while the node processes an input; records every answer's status."""

    def __init__(self, base: str, notices_only: bool = False) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.notices_only = notices_only
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        voucher = {"destination": "0x" + "66" * 20, "value": hex(3 * 10**18), "payload": "0x"}
        notice = {"payload": "0x" + b"racer".hex()}
        posts = [("/notice", notice)]
        if not self.notices_only:
            posts = [("/voucher", voucher), ("/notice", notice), ("/report", notice), ("/exception", notice)]
        while not self.stop.is_set():
            for path, body in posts:
                try:
                    self.statuses.append(post_json(self.base + path, body, timeout=5)[0])
                except OSError:
                    self.statuses.append(0)


def race(chain: Chain, node: NodeProcess, base: str, payload: bytes,
         notices_only: bool = False) -> tuple[int, list[int]]:
    racer = Racer(base, notices_only)
    racer.start()
    try:
        index = add_and_wait(chain, node, payload)
    finally:
        racer.stop.set()
        racer.join(10)
    return index, racer.statuses


def test_a_racing_process_without_the_token_posts_nothing(chain: Chain, node: NodeProcess) -> None:
    for base in (node.rollup, node.rollup + "/wrong-token", node.rollup + "/" + "A" * 43):
        index, statuses = race(chain, node, base, b"race %s" % base.encode())
        assert len(statuses) >= 8 and set(statuses) == {403}, statuses
        outs = outputs_of(node, index)
        assert [o["decoded_data"]["type"] for o in outs] == ["Notice"], outs  # the echo's only
        inp = result(rpc(node.api, "cartesi_getInput", {"input_index": hex(index)}))["data"]
        assert inp["status"] == "ACCEPTED"
    reports = result(rpc(node.api, "cartesi_listReports", {"limit": 1000}))["data"]
    assert not any(r["raw_data"] == "0x" + b"racer".hex() for r in reports)
    node.assert_serving()


def test_the_token_is_what_stops_the_racer(chain: Chain, node: NodeProcess) -> None:
    """The same race with the backend's URL (read from its environment, as only its own user
    can) does get a notice in: the race window is real, the secret is the protection."""
    url = node.token_url()
    assert url.startswith(node.rollup + "/") and len(url) > len(node.rollup) + 40
    assert "/" not in url[len(node.rollup) + 1:]
    index, statuses = race(chain, node, url, b"race with the token", notices_only=True)
    assert 201 in statuses, statuses
    payloads = [o["decoded_data"]["payload"] for o in outputs_of(node, index)]
    assert "0x" + b"racer".hex() in payloads
    node.assert_serving()


def test_the_backend_gets_the_secret_url_but_not_the_claimer_key(node: NodeProcess) -> None:
    env = environ_of(node.backend_pid())  # type: ignore[arg-type]
    assert env["ROLLUP_HTTP_SERVER_URL"].startswith(node.rollup + "/")
    assert "TRIBUTARY_CLAIMER_KEY" not in env and OWNER.private_key not in "".join(env.values())
    assert env["ROLLUP_HTTP_SERVER_URL"] not in node.log()  # the node never prints the secret


def test_outputs_outside_an_open_request_are_refused_even_with_the_token(node: NodeProcess) -> None:
    url = node.token_url()
    before = result(rpc(node.api, "cartesi_listOutputs", {"limit": 1}))["pagination"]["total_count"]
    for path, body in (("/voucher", {"destination": "0x" + "66" * 20, "value": "0x1", "payload": "0x"}),
                       ("/delegate-call-voucher", {"destination": "0x" + "66" * 20, "payload": "0x"}),
                       ("/notice", {"payload": "0x01"}), ("/report", {"payload": "0x01"}),
                       ("/exception", {"payload": "0x01"})):
        status, _ = post_json(url + path, body)
        assert status == 400, path
    after = result(rpc(node.api, "cartesi_listOutputs", {"limit": 1}))["pagination"]["total_count"]
    assert after == before
    node.assert_serving()


def test_every_method_and_path_without_the_token_is_403(node: NodeProcess) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        for path in ("/finish", "/notice", "/", "/x/finish", "/finish/" + "a" * 43):
            status, _ = raw_request(node.http_port, method, path, b'{"status": "accept"}')
            assert status == 403, (method, path)
    node.assert_serving()


# ------------------------------------------------------------------------------ deep JSON

@pytest.mark.parametrize("body", [
    b"[" * DEEP,
    b'{"a":' * DEEP,
    b'{"jsonrpc": "2.0", "id": 1, "method": "cartesi_listOutputs", "params": {"limit": ' + b"[" * DEEP + b"}",
    b'[{"jsonrpc": "2.0", "id": 1, "method": "cartesi_getChainId", "params": ' + b"[" * DEEP + b"}]",
], ids=["array", "object", "in-params", "in-batch"])
def test_deep_json_to_rpc_is_refused_and_the_node_survives(node: NodeProcess, body: bytes) -> None:
    status, answer = post_json(node.api + "/rpc", body, timeout=20)
    assert status == 200 and answer["error"]["code"] in (-32600, -32700), answer
    assert "deeper than" in answer["error"]["message"]
    # a deep but legal nesting inside a string is just a string
    answer = rpc(node.api, "cartesi_listInputs", {"sender": "[" * 1000})
    assert answer["error"]["code"] == -32602
    node.assert_serving()


def test_deep_json_to_the_rollup_server_is_refused_and_the_node_survives(node: NodeProcess) -> None:
    url = node.token_url()
    for body in (b"[" * DEEP, b'{"payload": ' + b"[" * DEEP):
        status, answer = post_json(url + "/notice", body, timeout=20)
        assert status == 400 and "deeper than" in str(answer), answer
        status, _ = post_json(node.rollup + "/notice", body, timeout=20)  # no token: not even parsed
        assert status == 403
    node.assert_serving()


# -------------------------------------------------------------------------------- batches

def test_batch_bounds(chain: Chain, node: NodeProcess) -> None:
    add_and_wait(chain, node, b"one for the batches")
    call = {"jsonrpc": "2.0", "method": "cartesi_listOutputs", "params": {"limit": 10_000}}
    # the reproduced amplification: 1,000 calls asking for 10,000 items each, 90 KB of body
    body = json.dumps([dict(call, id=i) for i in range(1000)]).encode()
    assert len(body) < 100_000
    start = time.monotonic()
    status, answer = post_json(node.api + "/rpc", body, timeout=30)
    assert status == 200 and answer["error"]["code"] == -32600 and "at most 100" in answer["error"]["message"]
    assert time.monotonic() - start < 5

    # 100 calls of 10,000: the first is served, the 99 others would pass 10,000 items in all
    call = dict(call, params={"application": node.dep.application, "limit": 10_000})
    status, answers = post_json(node.api + "/rpc", [dict(call, id=i) for i in range(100)])
    assert status == 200 and len(answers) == 100 and [a["id"] for a in answers] == list(range(100))
    assert "result" in answers[0]
    assert {a["error"]["code"] for a in answers[1:]} == {-32005}

    # 100 calls of 100 items: within the budget, every one answered, pagination intact
    total = answers[0]["result"]["pagination"]["total_count"]
    pages = [{"jsonrpc": "2.0", "id": i, "method": "cartesi_listOutputs",
              "params": {"application": node.dep.application, "limit": 1, "offset": i}}
             for i in range(min(total, 100))]
    status, answers = post_json(node.api + "/rpc", pages)
    got = [a["result"]["data"][0]["index"] for a in answers]
    assert got == [hex(i) for i in range(len(pages))]
    assert all(a["result"]["pagination"] == {"total_count": total, "limit": 1, "offset": i}
               for i, a in enumerate(answers))

    # mixed: bad entries get their own errors, good ones their results
    status, answers = post_json(node.api + "/rpc", [1, {"jsonrpc": "2.0", "id": "x", "method": "cartesi_getChainId"},
                                                    {"jsonrpc": "2.0", "id": 2, "method": "nope"}])
    assert [a.get("error", {}).get("code") for a in answers] == [-32600, None, -32601]
    node.assert_serving()


def test_answers_are_capped_in_bytes(chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the byte cap lowered to a few outputs' worth, a page or batch past it gets -32005
    (before the answer is built) and the calls within it their results."""
    import rollup.rpc
    from rollup.node import Node
    from tests.node_fixtures import ECHO

    dep = chain.deploy()
    with Node(dep, ECHO, tmp_path / "node", poll_interval=0.05, claim=False) as n:
        for i in range(6):
            chain.add_input(dep, b"x" * 1000 + bytes([i]))
        n.wait_processed(6, 60)
        monkeypatch.setattr(rollup.rpc, "MAX_RESPONSE_BYTES", 12_000)
        answer = rpc(n.api_url, "cartesi_listOutputs", {"limit": 6})
        assert answer["error"]["code"] == -32005 and "fewer items" in answer["error"]["message"]
        page = result(rpc(n.api_url, "cartesi_listOutputs", {"limit": 2, "offset": 2}))
        assert [o["index"] for o in page["data"]] == ["0x2", "0x3"]
        calls = [{"jsonrpc": "2.0", "id": i, "method": "cartesi_listOutputs",
                  "params": {"application": dep.application, "limit": 1, "offset": i}} for i in range(6)]
        status, answers = post_json(n.api_url + "/rpc", calls)
        served = [a for a in answers if "result" in a]
        assert 2 <= len(served) < 6 and answers[:len(served)] == served
        assert {a["error"]["code"] for a in answers[len(served):]} == {-32005}
        assert [a["result"]["data"][0]["index"] for a in served] == [hex(i) for i in range(len(served))]


# ----------------------------------------------------------------- huge and random params

HUGE = [2**64, 2**64 + 1, 2**80, 10**30, -1, -(2**70)]


def test_huge_indices_offsets_and_limits_are_invalid_params(node: NodeProcess) -> None:
    def code(method: str, params: dict[str, Any]) -> int | None:
        answer = rpc(node.api, method, params)
        return answer["error"]["code"] if "error" in answer else None

    for n in HUGE:
        for value in (n, hex(n) if n >= 0 else str(n)):
            assert code("cartesi_listOutputs", {"offset": n}) == -32602
            assert code("cartesi_listOutputs", {"limit": n}) == -32602
            assert code("cartesi_listInputs", {"epoch_index": value}) == -32602
            assert code("cartesi_listReports", {"input_index": value}) == -32602
            assert code("cartesi_listOutputs", {"epoch_index": value, "input_index": value}) == -32602
            assert code("cartesi_getOutput", {"output_index": value}) == -32602
            assert code("cartesi_getInput", {"input_index": value}) == -32602
            assert code("cartesi_getReport", {"report_index": value}) == -32602
            assert code("cartesi_getEpoch", {"epoch_index": value}) == -32602
    top = 2**64 - 1  # the largest uint64: valid, and simply beyond everything stored
    for method in ("cartesi_listOutputs", "cartesi_listInputs", "cartesi_listReports", "cartesi_listEpochs",
                   "cartesi_listApplications"):
        page = result(rpc(node.api, method, {"offset": top}))
        assert page["data"] == [] and page["pagination"]["offset"] == top
    assert result(rpc(node.api, "cartesi_listOutputs", {"epoch_index": hex(top)}))["data"] == []
    for method, name in (("cartesi_getOutput", "output_index"), ("cartesi_getInput", "input_index"),
                         ("cartesi_getReport", "report_index"), ("cartesi_getEpoch", "epoch_index")):
        assert code(method, {name: hex(top)}) == -32001
        assert code(method, {name: hex(2**63)}) == -32001
    node.assert_serving()


def test_oversize_fields_are_invalid_params(node: NodeProcess) -> None:
    from rollup.openrpc import PARAM_NAMES as PARAM_NAMES_OF

    big_hex = "0x" + "f" * 900_000
    for name in PARAM_NAMES:
        for value in (big_hex, "x" * 900_000, ["0x1"] * 50_000):
            for method in ("cartesi_listOutputs", "cartesi_getOutput", "cartesi_listInputs", "cartesi_getEpoch"):
                start = time.monotonic()
                answer = rpc(node.api, method, {name: value}, timeout=20)
                if name not in PARAM_NAMES_OF[method]:  # ignored: answered as if it were absent
                    assert str(value)[:1000] not in json.dumps(answer) and time.monotonic() - start < 5, \
                        (method, name)
                    continue
                assert answer["error"]["code"] in (-32602, -32001), (method, name, answer)
                assert len(answer["error"]["message"]) < 1000  # the value is not echoed back whole
                assert time.monotonic() - start < 5
    # an integer of 5,000 digits is refused by the parser itself (Python's int digit limit)
    status, answer = post_json(node.api + "/rpc", b'{"jsonrpc": "2.0", "id": 1, "method": "cartesi_listOutputs",'
                               b' "params": {"offset": ' + b"9" * 5000 + b"}}")
    assert status == 200 and answer["error"]["code"] == -32700
    node.assert_serving()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
    | st.sampled_from(["0x", "0xzz", "0x" + "f" * 17, "0x" + "f" * 16, "1e400", "-0x1", "0x-1", "Voucher",
                       "notice", "0x" + "11" * 20, "CLAIM_ACCEPTED", "\u0000", "\ud7ff"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
PARAM_NAMES = ["limit", "offset", "epoch_index", "input_index", "output_index", "report_index", "output_type",
               "voucher_address", "sender", "status", "application"]
METHODS = ["cartesi_listOutputs", "cartesi_getOutput", "cartesi_listInputs", "cartesi_getInput",
           "cartesi_listReports", "cartesi_getReport", "cartesi_listEpochs", "cartesi_getEpoch",
           "cartesi_getProcessedInputCount", "cartesi_listApplications", "cartesi_getApplication",
           "cartesi_getChainId", "cartesi_getNodeVersion"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(calls=st.lists(st.tuples(st.sampled_from(METHODS),
                                st.dictionaries(st.sampled_from(PARAM_NAMES), JSON_VALUES, max_size=4)
                                | JSON_VALUES),
                      min_size=1, max_size=20))
def test_random_params_never_reach_an_internal_error(node: NodeProcess, calls: list[tuple[str, Any]]) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    status, answers = post_json(node.api + "/rpc", batch)
    assert status == 200 and len(answers) == len(batch)
    for answer in answers:
        if "error" in answer:
            assert answer["error"]["code"] in (-32600, -32602, -32001, -32005), answer
    assert node.proc.poll() is None


def test_random_params_left_the_node_serving(node: NodeProcess) -> None:
    node.assert_serving()


# --------------------------------------------------------------- oversize bodies, slow clients

def test_oversize_bodies_are_refused_without_being_read(node: NodeProcess) -> None:
    token_path = node.token_url()[len(node.rollup):]
    app = node.dep.application
    cases = [
        (node.http_port, f"POST {token_path}/notice", 5 * 1024 * 1024 + 1, 413),
        (node.http_port, f"POST {token_path}/notice", 10**12, 413),
        (node.http_port, "POST /notice", 10**12, 403),
        (node.api_port, "POST /rpc", 1024 * 1024 + 1, 413),
        (node.api_port, f"POST /inspect/{app}", 2 * 1024 * 1024 + 1, 413),
        (node.api_port, "POST /inspect/someone-else", 2 * 1024 * 1024, 404),
        (node.api_port, "POST /elsewhere", 10**9, 404),
    ]
    for port, line, length, expected in cases:
        head = f"{line} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        status, seconds = head_only(port, head.encode(), timeout=10)
        assert status == expected and seconds < 5, (line, length, status, seconds)  # not waiting for a body
    # lengths http.server would misread: negative (read until EOF), garbage, chunked
    for port, line in ((node.http_port, f"POST {token_path}/notice"), (node.api_port, "POST /rpc"),
                       (node.api_port, f"POST /inspect/{app}")):
        for extra in ("Content-Length: -1", "Content-Length: 1e3", "Transfer-Encoding: chunked"):
            head = f"{line} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n\r\n"
            status, seconds = head_only(port, head.encode(), timeout=10)
            assert status in (400, 411) and seconds < 5, (line, extra, status)
    node.assert_serving()


def test_slow_and_idle_clients_do_not_block_others(node: NodeProcess) -> None:
    socks = []
    try:
        for i in range(60):  # half a request head each, never finished
            port = node.api_port if i % 2 else node.http_port
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /rpc HTTP/1.1\r\nContent-Le")
            socks.append(sock)
        start = time.monotonic()
        node.assert_serving()
        assert time.monotonic() - start < 10
    finally:
        for sock in socks:
            sock.close()


# -------------------------------------------------------------- Cartesi's template, unchanged

def test_the_cartesi_python_template_runs_unchanged(chain: Chain, tmp_path: Path) -> None:
    dep = chain.deploy()
    proc = NodeProcess(dep, tmp_path, backend=f"{sys.executable} {TEMPLATE}")
    try:
        chain.add_input(dep, b"hello template")
        wait_for(lambda: proc.processed() >= 1, 30, "the template to process an input")
        inp = result(rpc(proc.api, "cartesi_getInput", {"input_index": "0x0"}))["data"]
        assert inp["status"] == "ACCEPTED"
        status, body = post_json(proc.api + f"/inspect/{dep.application}", b"hi")
        assert status == 200 and body["status"] == "Accepted"
        h = proc.health()
        assert h is not None and h["backend_restarts"] == 0
        backend_log = (tmp_path / "state" / "backend.log")
        assert "Received advance request data" in backend_log.read_text()
        assert oct(backend_log.stat().st_mode & 0o777) == oct(0o600)  # it logs the secret URL
    finally:
        proc.stop()


# ------------------------------------------------------------------ no child outlives the node

def test_sigkill_of_devnet_takes_anvil_and_the_backend_along(tmp_path: Path) -> None:
    marker = "TRIBUTARY_ORPHAN_TEST_" + uuid.uuid4().hex
    http_port, api_port = free_port(), free_port()
    log = open(tmp_path / "devnet.log", "ab")
    cmd = [sys.executable, "-m", "rollup", "devnet", "--port", "0", "--epoch-length", "4",
           "--state-dir", str(tmp_path / "devnet"), "--backend", ECHO_CMD,
           "--http-port", str(http_port), "--api-port", str(api_port)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, **{marker: "1"}), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log)
    try:
        def up() -> bool:
            try:
                return get_json(f"http://127.0.0.1:{api_port}/health", 2)["backend_alive"]
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, KeyError):
                return proc.poll() is not None

        wait_for(up, 120, "devnet and node up")
        assert proc.poll() is None, (tmp_path / "devnet.log").read_text()[-3000:]
        children = [p for p in marked_processes(marker) if p != proc.pid]
        names = sorted(Path(f"/proc/{p}/comm").read_text().strip() for p in children)
        assert len(children) == 2 and "anvil" in names, names  # anvil and the backend
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not marked_processes(marker), 10, f"children {children} to die with devnet")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in marked_processes(marker):  # never leave them behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
        log.close()
