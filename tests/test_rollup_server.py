"""The rollup HTTP server as a backend sees it: the same answers as Cartesi's rollup-http-server,
and the machine's accept/reject/exception semantics. No chain needed."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any, Iterator

import pytest

from dapp.rollup_api import AdvanceRequest, InspectRequest, RollupApiError, RollupClient
from rollup.gio import DOMAIN_BLOCK_BY_CID, BlockStoreResolver, NullResolver
from rollup.outputs import decode_output
from rollup.server import (ACCEPTED, EXCEPTION, REJECTED, MachineRequest, RollupHttpServer,
                           RollupMachine)

META = {"chain_id": 31337, "app_contract": "0x" + "ab" * 20, "msg_sender": "0x" + "cd" * 20,
        "block_number": 7, "block_timestamp": 1700000000, "prev_randao": "0x" + "00" * 32, "input_index": 0}


@pytest.fixture
def server() -> Iterator[RollupHttpServer]:
    blocks = {b"\x01\x55known": b"block bytes"}
    machine = RollupMachine(BlockStoreResolver(blocks.get), finish_wait=0.3)
    srv = RollupHttpServer(machine).start()
    try:
        yield srv
    finally:
        srv.stop()


def raw_post(srv: RollupHttpServer, path: str, body: bytes, ctype: str | None = "application/json",
             method: str = "POST", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    hdrs = dict(headers or {})
    if ctype:
        hdrs["Content-Type"] = ctype
    conn.request(method, f"/{srv.token}{path}", body=body, headers=hdrs)  # as the backend: under the secret prefix
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def post(srv: RollupHttpServer, path: str, obj: Any) -> tuple[int, bytes]:
    return raw_post(srv, path, json.dumps(obj).encode())


class Driver:
    """Runs requests through the machine from a thread, as the node's worker does."""

    def __init__(self, machine: RollupMachine) -> None:
        self.machine = machine

    def run(self, req: MachineRequest, after: MachineRequest | None = None) -> threading.Thread:
        def go() -> None:
            if after is not None:  # the node submits the next input once the previous is done
                after.done.wait(10)
            self.machine.submit(req)
            req.done.wait(10)

        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t


def advance(payload: bytes, index: int = 0) -> MachineRequest:
    return MachineRequest("advance", payload, dict(META, input_index=index))


# ------------------------------------------------------------------------- status codes

def test_finish_answers_202_while_nothing_is_pending(server: RollupHttpServer) -> None:
    assert post(server, "/finish", {"status": "accept"})[0] == 202
    assert RollupClient(server.url).finish("accept") is None


def test_finish_refuses_a_bad_status(server: RollupHttpServer) -> None:
    status, body = post(server, "/finish", {"status": "maybe"})
    assert status == 400 and b"accept" in body
    assert post(server, "/finish", {})[0] == 400


def test_bad_hex_wrong_address_and_bad_value_get_400(server: RollupHttpServer) -> None:
    req = advance(b"x")
    Driver(server.machine).run(req)
    assert isinstance(RollupClient(server.url).finish(), AdvanceRequest)
    assert post(server, "/notice", {"payload": "0xzz"})[0] == 400
    assert post(server, "/notice", {"payload": "abcd"})[0] == 400
    assert post(server, "/notice", {})[0] == 400
    status, body = post(server, "/voucher", {"destination": "0x1234", "value": "0x0", "payload": "0x"})
    assert status == 400 and body == b"Address not valid"
    assert post(server, "/voucher", {"destination": "0x" + "1" * 42, "payload": "0x"})[0] == 400
    assert post(server, "/voucher", {"destination": "0x" + "g" * 40, "payload": "0x"})[0] == 400
    assert post(server, "/voucher", {"destination": "0x" + "1" * 40, "value": "0x" + "f" * 65,
                                     "payload": "0x"})[0] == 400
    assert post(server, "/delegate-call-voucher", {"destination": "0x12", "payload": "0x"})[0] == 400
    assert post(server, "/gio", {"domain": 0x10, "id": "0xq"})[0] == 400
    assert post(server, "/gio", {"domain": 70000, "id": "0x"})[0] == 400
    assert post(server, "/gio", {"domain": 1, "id": "0x"})[0] == 400
    # none of the refused requests produced an output
    assert post(server, "/notice", {"payload": "0x01"}) == (201, b'{"index": 0}')


def test_body_method_path_and_content_type_errors(server: RollupHttpServer) -> None:
    big = b'{"payload": "0x' + b"00" * (3 * 1024 * 1024) + b'"}'
    assert raw_post(server, "/notice", big)[0] == 413
    assert raw_post(server, "/finish", b"", method="GET")[0] == 405
    assert raw_post(server, "/notice", b"{}", method="PUT")[0] == 405
    assert post(server, "/nope", {"status": "accept"})[0] == 404
    assert raw_post(server, "/finish", b'{"status": "accept"}', ctype="text/plain")[0] == 400
    assert raw_post(server, "/finish", b'{"status": "accept"}', ctype=None)[0] == 400
    assert raw_post(server, "/finish", b"not json")[0] == 400


def test_outputs_outside_an_advance_are_refused(server: RollupHttpServer) -> None:
    client = RollupClient(server.url)
    for call in (lambda: client.notice(b"x"), lambda: client.report(b"x"),
                 lambda: client.voucher("0x" + "11" * 20, 1, b""), lambda: client.exception(b"x")):
        with pytest.raises(RollupApiError) as info:
            call()
        assert info.value.status == 400
    # during an inspect only reports are allowed
    req = MachineRequest("inspect", b"what")
    Driver(server.machine).run(req)
    got = client.finish()
    assert isinstance(got, InspectRequest) and got.payload == b"what"
    with pytest.raises(RollupApiError) as info:
        client.notice(b"x")
    assert info.value.status == 400
    with pytest.raises(RollupApiError):
        client.voucher("0x" + "11" * 20, 0, b"")
    client.report(b"answer")
    assert client.finish("accept") is None
    assert req.status == ACCEPTED and req.reports == [b"answer"] and req.outputs == []


# ------------------------------------------------------------------------- machine semantics

def test_indices_and_reject_exception_semantics(server: RollupHttpServer) -> None:
    machine, client = server.machine, RollupClient(server.url)
    drv = Driver(machine)

    r0 = advance(b"a", 0)
    drv.run(r0)
    got = client.finish()
    assert isinstance(got, AdvanceRequest)
    assert got.metadata.input_index == 0 and got.metadata.msg_sender == "0x" + "cd" * 20
    assert got.metadata.prev_randao == "0x" + "00" * 32 and got.metadata.block_number == 7
    assert client.notice(b"n0") == 0
    assert client.voucher("0x" + "11" * 20, 5, b"p") == 1
    assert client.delegate_call_voucher("0x" + "22" * 20, b"d") == 2
    client.report(b"r0")

    r1 = advance(b"b", 1)
    drv.run(r1, after=r0)
    assert isinstance(client.finish("accept"), AdvanceRequest)
    assert r0.status == ACCEPTED and len(r0.outputs) == 3 and r0.reports == [b"r0"]
    assert decode_output(r0.outputs[1]).to_json() == {
        "type": "Voucher", "destination": "0x" + "11" * 20, "value": "0x5", "payload": "0x70"}
    assert machine.output_count == 3
    assert client.notice(b"dropped") == 3
    client.report(b"r1")

    r2 = advance(b"c", 2)
    drv.run(r2, after=r1)
    assert isinstance(client.finish("reject"), AdvanceRequest)
    assert r1.status == REJECTED and r1.reports == [b"r1"]
    assert machine.output_count == 3
    assert client.notice(b"also dropped") == 3  # the rejected input's index is reused
    client.exception(b"boom")
    assert r2.status == EXCEPTION and r2.exception_payload == b"boom"
    assert machine.output_count == 3

    r3 = advance(b"d", 3)
    drv.run(r3, after=r2)
    assert isinstance(client.finish("accept"), AdvanceRequest)
    assert client.notice(b"kept") == 3
    assert client.finish("accept") is None
    assert r3.status == ACCEPTED and machine.output_count == 4


def test_gio_calls_the_resolver(server: RollupHttpServer) -> None:
    client = RollupClient(server.url)
    res = client.gio(DOMAIN_BLOCK_BY_CID, b"\x01\x55known")
    assert (res.code, res.data) == (0, b"block bytes")
    assert client.gio(DOMAIN_BLOCK_BY_CID, b"\x01\x55unknown").code == 1
    assert client.gio(0x20, b"x").code != 0
    status, body = post(server, "/gio", {"domain": 16, "id": "0x0155" + b"known".hex()})
    assert status == 202 and json.loads(body) == {"response_code": 0, "response": "0x" + b"block bytes".hex()}


def test_null_resolver_answers_errors() -> None:
    assert NullResolver().resolve(DOMAIN_BLOCK_BY_CID, b"x").code != 0
    assert NullResolver().resolve(0x99, b"x").code != 0


# ------------------------------------------------------------------------- hostile callers

def bare_post(srv: RollupHttpServer, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    """POST exactly `path` (no secret prefix added), as another local process would."""
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    status = conn.getresponse().status
    conn.close()
    return status


def test_only_requests_under_the_secret_prefix_are_served(server: RollupHttpServer) -> None:
    assert server.url == f"{server.base_url}/{server.token}" and len(server.token) >= 40
    assert RollupHttpServer(server.machine).token != server.token  # a fresh secret per server
    req = advance(b"x")
    Driver(server.machine).run(req)
    client = RollupClient(server.url)
    assert isinstance(client.finish(), AdvanceRequest)
    voucher = json.dumps({"destination": "0x" + "66" * 20, "value": hex(3 * 10**18), "payload": "0x"}).encode()
    for path in ("/voucher", "/x/voucher", f"/{server.token[:-1]}/voucher", f"/{server.token}x/voucher",
                 f"/{server.token.upper()}/voucher", f"/voucher/{server.token}", f"/%2F{server.token}/voucher"):
        assert bare_post(server, path, voucher) == 403, path
    for path in ("/exception", "/finish", "/report", "/gio"):
        assert bare_post(server, path, b'{"status": "accept", "payload": "0x"}') == 403, path
    assert req.outputs == [] and req.reports == [] and not req.done.is_set()
    assert bare_post(server, f"/{server.token}/voucher", voucher) == 201
    assert client.finish("accept") is None
    assert req.status == ACCEPTED and len(req.outputs) == 1


def test_deep_json_and_unusable_lengths_are_refused(server: RollupHttpServer) -> None:
    import sys

    assert sys.getrecursionlimit() >= 1000
    for body in (b"[" * 100_000, b'{"payload": ' * 100_000, b'{"status": ' + b"[" * 65 + b"]" * 65 + b"}"):
        status, answer = raw_post(server, "/finish", body)
        assert status == 400 and b"deeper than 64" in answer
    status, _ = raw_post(server, "/finish", b'{"status": "accept", "x": ' + b"[" * 60 + b"]" * 60 + b"}")
    assert status == 202  # deep enough for any real request
    for headers in ({"Content-Length": "-1"}, {"Content-Length": "1e3"}, {"Transfer-Encoding": "chunked"}):
        assert bare_post(server, f"/{server.token}/finish", b"", headers) == 400


def test_the_backend_never_inherits_the_node_keys(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The claimer's key reaches the node as $TRIBUTARY_CLAIMER_KEY or the official node's
    $CARTESI_AUTH_PRIVATE_KEY; the backend (the app's code) gets neither."""
    import sys

    from rollup.supervisor import Supervisor

    for var in ("TRIBUTARY_CLAIMER_KEY", "CARTESI_AUTH_PRIVATE_KEY", "CARTESI_AUTH_MNEMONIC"):
        monkeypatch.setenv(var, "secret-" + var)
    out = tmp_path / "env.json"
    dump = f"import json, os; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"
    sup = Supervisor([sys.executable, "-c", dump], "http://127.0.0.1:1/token")
    sup.start()
    assert sup.proc is not None and sup.proc.wait(20) == 0
    env = json.loads(out.read_text())
    assert env["ROLLUP_HTTP_SERVER_URL"] == "http://127.0.0.1:1/token"
    assert not [k for k, v in env.items() if v.startswith("secret-")]
