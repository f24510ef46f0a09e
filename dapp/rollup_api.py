"""Stdlib client of the Cartesi rollup HTTP API (CARTESI_V2.md §1).

The backend runs inside the Cartesi machine, where only the standard library and a small
pinned set are available, so this client uses `urllib` and nothing else. The same code talks
to Cartesi's own rollup-http-server (in the machine) and to our host-mode node (rollup/server.py).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

DEFAULT_URL = "http://127.0.0.1:5004"


class RollupApiError(Exception):
    """The rollup HTTP server refused a request; carries the endpoint, status and body."""

    def __init__(self, endpoint: str, status: int, body: str) -> None:
        super().__init__(f"{endpoint}: HTTP {status}: {body[:500]}")
        self.endpoint = endpoint
        self.status = status
        self.body = body


class RollupConnectionError(RollupApiError):
    """The rollup HTTP server could not be reached at all (status 0)."""


@dataclass(frozen=True)
class Metadata:
    """Advance metadata as the v2 server sends it."""

    chain_id: int
    app_contract: str
    msg_sender: str
    block_number: int
    block_timestamp: int
    prev_randao: str
    input_index: int

    @classmethod
    def from_json(cls, obj: dict) -> "Metadata":
        return cls(
            chain_id=int(obj["chain_id"]),
            app_contract=str(obj["app_contract"]).lower(),
            msg_sender=str(obj["msg_sender"]).lower(),
            block_number=int(obj["block_number"]),
            block_timestamp=int(obj["block_timestamp"]),
            prev_randao=str(obj["prev_randao"]),
            input_index=int(obj["input_index"]),
        )


@dataclass(frozen=True)
class AdvanceRequest:
    metadata: Metadata
    payload: bytes


@dataclass(frozen=True)
class InspectRequest:
    payload: bytes


Request = AdvanceRequest | InspectRequest


@dataclass(frozen=True)
class GioResult:
    code: int
    data: bytes


def to_hex(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def from_hex(text: str) -> bytes:
    if not isinstance(text, str) or not text.startswith("0x"):
        raise ValueError(f"not a 0x-prefixed hex string: {text!r:.80}")
    return bytes.fromhex(text[2:])


def parse_request(obj: dict) -> Request:
    """Turn the JSON of a /finish answer into a typed request."""
    kind = obj.get("request_type")
    data = obj.get("data") or {}
    if kind == "advance_state":
        return AdvanceRequest(Metadata.from_json(data["metadata"]), from_hex(data["payload"]))
    if kind == "inspect_state":
        return InspectRequest(from_hex(data["payload"]))
    raise ValueError(f"unknown request_type {kind!r}")


class RollupClient:
    """One rollup HTTP server; `url` defaults to $ROLLUP_HTTP_SERVER_URL."""

    def __init__(self, url: str | None = None, timeout: float = 60.0) -> None:
        self.url = (url or os.environ.get("ROLLUP_HTTP_SERVER_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout

    def _post(self, endpoint: str, body: dict) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + endpoint,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            raise RollupApiError(endpoint, exc.code, exc.read().decode(errors="replace")) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise RollupConnectionError(endpoint, 0, str(exc)) from None

    def _index(self, endpoint: str, body: dict) -> int:
        status, raw = self._post(endpoint, body)
        if status != 201:
            raise RollupApiError(endpoint, status, raw.decode(errors="replace"))
        return int(json.loads(raw)["index"])

    def _accepted(self, endpoint: str, body: dict) -> bytes:
        status, raw = self._post(endpoint, body)
        if status not in (200, 202):
            raise RollupApiError(endpoint, status, raw.decode(errors="replace"))
        return raw

    def finish(self, status: str = "accept") -> Request | None:
        """Finish the current request; returns the next one, or None when the server says 202."""
        if status not in ("accept", "reject"):
            raise ValueError("status must be 'accept' or 'reject'")
        code, raw = self._post("/finish", {"status": status})
        if code == 202:
            return None
        if code != 200:
            raise RollupApiError("/finish", code, raw.decode(errors="replace"))
        return parse_request(json.loads(raw))

    def voucher(self, destination: str, value: int, payload: bytes) -> int:
        return self._index(
            "/voucher",
            {"destination": destination, "value": hex(int(value)), "payload": to_hex(payload)},
        )

    def delegate_call_voucher(self, destination: str, payload: bytes) -> int:
        return self._index(
            "/delegate-call-voucher", {"destination": destination, "payload": to_hex(payload)}
        )

    def notice(self, payload: bytes) -> int:
        return self._index("/notice", {"payload": to_hex(payload)})

    def report(self, payload: bytes) -> None:
        self._accepted("/report", {"payload": to_hex(payload)})

    def exception(self, payload: bytes) -> None:
        """Tell the node the input failed; the node reverts the input (the call may not return)."""
        self._accepted("/exception", {"payload": to_hex(payload)})

    def gio(self, domain: int, id: bytes) -> GioResult:
        raw = self._accepted("/gio", {"domain": int(domain), "id": to_hex(id)})
        obj = json.loads(raw)
        return GioResult(int(obj["response_code"]), from_hex(obj["response"]))


_default: RollupClient | None = None


def default_client() -> RollupClient:
    global _default
    if _default is None:
        _default = RollupClient()
    return _default


def finish(status: str = "accept") -> Request | None:
    return default_client().finish(status)


def voucher(destination: str, value: int, payload: bytes) -> int:
    return default_client().voucher(destination, value, payload)


def delegate_call_voucher(destination: str, payload: bytes) -> int:
    return default_client().delegate_call_voucher(destination, payload)


def notice(payload: bytes) -> int:
    return default_client().notice(payload)


def report(payload: bytes) -> None:
    default_client().report(payload)


def exception(payload: bytes) -> None:
    default_client().exception(payload)


def gio(domain: int, id: bytes) -> GioResult:
    return default_client().gio(domain, id)
