"""What handling one input produces, before it is sent to the rollup server.

Handlers collect outputs instead of posting them as they go: an input is all-or-nothing, so
vouchers and notices leave the backend only after the handler returned without error. Reports
are informational and kept even for refused inputs (as the machine does).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class InputRefused(Exception):
    """The input cannot be taken; `reason` is the report the sender reads. State is unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Voucher:
    destination: str
    value: int
    payload: bytes


@dataclass(frozen=True)
class Notice:
    payload: bytes


@dataclass
class Outputs:
    """Ordered vouchers and notices (their order fixes their output indices), then reports."""

    emitted: list[Voucher | Notice] = field(default_factory=list)
    reports: list[bytes] = field(default_factory=list)

    def voucher(self, destination: str, value: int, payload: bytes = b"") -> None:
        self.emitted.append(Voucher(destination, value, payload))

    def notice(self, payload: bytes) -> None:
        self.emitted.append(Notice(payload))

    def report(self, payload: bytes | str) -> None:
        self.reports.append(payload.encode() if isinstance(payload, str) else payload)
