"""The rollup loop: ask the server for the next request, hand it to the application, send what
the application produced, finish, repeat.

The application never talks to the server; it returns `Outputs`. That keeps each input
all-or-nothing (nothing leaves before the handler succeeded) and lets tests drive the market
without a server. An exception in a handler is turned into a report and a reject: the loop
itself never dies on input.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Protocol

from dapp.outputs import InputRefused, Notice, Outputs, Voucher
from dapp.rollup_api import AdvanceRequest, Metadata, RollupClient

log = logging.getLogger("dapp.loop")


class Application(Protocol):
    def advance(self, metadata: Metadata, payload: bytes) -> Outputs: ...

    def inspect(self, payload: bytes) -> Outputs: ...


def handle_advance(app: Application, metadata: Metadata, payload: bytes) -> tuple[bool, Outputs]:
    """Run one advance; returns (accepted, outputs). Refusals and bugs both reject."""
    try:
        return True, app.advance(metadata, payload)
    except InputRefused as refusal:
        out = Outputs()
        out.report(f"refused: {refusal.reason}")
        return False, out
    except Exception as exc:  # a bug must not kill the backend nor change state
        log.error("input %d raised: %s", metadata.input_index, traceback.format_exc())
        out = Outputs()
        out.report(f"refused: internal error {type(exc).__name__}: {exc}")
        return False, out


def handle_inspect(app: Application, payload: bytes) -> tuple[bool, Outputs]:
    try:
        return True, app.inspect(payload)
    except InputRefused as refusal:
        out = Outputs()
        out.report(f"refused: {refusal.reason}")
        return False, out
    except Exception as exc:
        out = Outputs()
        out.report(f"refused: internal error {type(exc).__name__}: {exc}")
        return False, out


def send(client: RollupClient, outputs: Outputs, *, advance: bool) -> None:
    if advance:
        for item in outputs.emitted:
            if isinstance(item, Voucher):
                client.voucher(item.destination, item.value, item.payload)
            elif isinstance(item, Notice):
                client.notice(item.payload)
    for report in outputs.reports:
        client.report(report)


def run(app: Application, client: RollupClient | None = None, *, idle_sleep: float = 0.05) -> None:
    """Serve requests forever (the machine is stopped from outside)."""
    client = client or RollupClient()
    status = "accept"
    while True:
        request = client.finish(status)
        if request is None:
            time.sleep(idle_sleep)
            status = "accept"
            continue
        if isinstance(request, AdvanceRequest):
            accepted, outputs = handle_advance(app, request.metadata, request.payload)
            send(client, outputs, advance=True)
        else:
            accepted, outputs = handle_inspect(app, request.payload)
            send(client, outputs, advance=False)
        status = "accept" if accepted else "reject"
