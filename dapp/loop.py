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
from typing import Callable, Protocol

from dapp.outputs import InputRefused, Notice, Outputs, Voucher
from dapp.rollup_api import AdvanceRequest, Metadata, RollupClient

log = logging.getLogger("dapp.loop")


class Application(Protocol):
    def advance(self, metadata: Metadata, payload: bytes) -> Outputs: ...

    def inspect(self, payload: bytes) -> Outputs: ...


def _guarded(run: Callable[[], Outputs], what: str) -> tuple[bool, Outputs]:
    """Run one request; returns (accepted, outputs). Refusals and bugs both reject, with a
    report saying why, and the loop goes on."""
    try:
        return True, run()
    except InputRefused as refusal:
        reason = refusal.reason
    except Exception as exc:  # a bug must not kill the backend nor change state
        log.error("%s raised: %s", what, traceback.format_exc())
        reason = f"internal error {type(exc).__name__}: {exc}"
    out = Outputs()
    out.report(f"refused: {reason}")
    return False, out


def handle_advance(app: Application, metadata: Metadata, payload: bytes) -> tuple[bool, Outputs]:
    return _guarded(lambda: app.advance(metadata, payload), f"input {metadata.input_index}")


def handle_inspect(app: Application, payload: bytes) -> tuple[bool, Outputs]:
    return _guarded(lambda: app.inspect(payload), "inspect")


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
