"""What handling one input produces, before it is sent to the rollup server.

Handlers collect outputs instead of posting them as they go: an input is all-or-nothing, so
vouchers and notices leave the backend only after the handler returned without error. Reports
are informational and kept even for refused inputs (as the machine does).

Every output is bounded here, when it is made, not when it is sent: a voucher payload, a notice
or a report larger than ``MAX_OUTPUT_BYTES`` is refused as the handler builds it (so the input is
refused with a reason and nothing changes), and a report made from text keeps at most
``MAX_TEXT_REPORT`` bytes. Text that quotes what a sender sent goes through ``quote``. So no
input or query can make the backend emit something the rollup server cannot take.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Cartesi's guest rollup device holds 2 MiB per output and our node's server takes 5 MiB of JSON
# (hex doubles the bytes): 1 MiB keeps every output under both with room to spare.
MAX_OUTPUT_BYTES = 1 << 20
# A report built from text (a refusal reason, a status line) keeps a prefix of this many bytes.
MAX_TEXT_REPORT = 2048
# How much of a sender's own bytes a message quotes.
QUOTE_CHARS = 64


class InputRefused(Exception):
    """The input cannot be taken; `reason` is the report the sender reads. State is unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutputTooLarge(InputRefused):
    """A handler built an output above MAX_OUTPUT_BYTES: the input is refused, not the backend."""


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A bounded, escaped rendering of something a sender sent (ASCII only, at most ~limit*4+20
    characters), for messages that must say what was wrong without echoing megabytes."""
    text = value if isinstance(value, str) else repr(value)
    head = ascii(text[:limit])
    return head if len(text) <= limit else f"{head}... ({len(text)} characters)"


def bounded_text(text: str, limit: int = MAX_TEXT_REPORT) -> bytes:
    """UTF-8 of `text`, cut to at most `limit` bytes with a note of what was cut."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return data
    note = f" ... [{len(data)} bytes, cut]".encode()
    head = data[:limit - len(note)].decode("utf-8", "ignore").encode()
    return head + note


def _check_size(kind: str, payload: bytes) -> None:
    if len(payload) > MAX_OUTPUT_BYTES:
        raise OutputTooLarge(f"the {kind} this input would produce is {len(payload)} bytes, "
                             f"more than the {MAX_OUTPUT_BYTES} an output may carry")


@dataclass(frozen=True)
class Voucher:
    destination: str
    value: int
    payload: bytes


@dataclass(frozen=True)
class DelegateCallVoucher:
    """The Application delegatecalls `destination` with `payload` (its own balance and storage):
    how one output pays many accounts through a library (dapp.market.payout)."""

    destination: str
    payload: bytes


@dataclass(frozen=True)
class Notice:
    payload: bytes


@dataclass
class Outputs:
    """Ordered vouchers and notices (their order fixes their output indices), then reports."""

    emitted: list[Voucher | DelegateCallVoucher | Notice] = field(default_factory=list)
    reports: list[bytes] = field(default_factory=list)

    def voucher(self, destination: str, value: int, payload: bytes = b"") -> None:
        _check_size("voucher payload", payload)
        self.emitted.append(Voucher(destination, value, payload))

    def delegate_call_voucher(self, destination: str, payload: bytes) -> None:
        _check_size("delegate call voucher payload", payload)
        self.emitted.append(DelegateCallVoucher(destination, payload))

    def notice(self, payload: bytes) -> None:
        _check_size("notice", payload)
        self.emitted.append(Notice(payload))

    def report(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            payload = bounded_text(payload)
        _check_size("report", payload)
        self.reports.append(payload)
