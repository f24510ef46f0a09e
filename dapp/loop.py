"""The rollup loop: ask the server for the next request, hand it to the application, send what
the application produced, finish, repeat.

The application never talks to the server; it returns `Outputs`. That keeps each input
all-or-nothing (nothing leaves before the handler succeeded) and lets tests drive the market
without a server. An exception in a handler is turned into a report and a reject: the loop
itself never dies on input.

Content the node could not reach (`ContentUnavailable`: its store down or not configured) is
never a verdict: the input is neither accepted nor refused; the loop waits and runs it again, with
a backoff capped at RETRY_MAX_SLEEP, logging each attempt, until the content can be asked for.
The node stalls on that input, which is what every replica must do: "unreachable" turned into a
refusal would make two nodes with different stores disagree.

Outputs are bounded when they are made (`dapp.outputs`), so the server takes every one. Should
it still refuse one (a bug), an advance input is reverted with `/exception` (exact on the real
machine, and our node replays the accepted inputs into a fresh backend), and a refused inspect
report is dropped: neither is a reason for the backend to exit. Only losing the server itself
ends the loop.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Callable, Protocol

from dapp.content.errors import ContentUnavailable
from dapp.outputs import (DelegateCallVoucher, InputRefused, Notice, Outputs, Voucher,
                          bounded_text)
from dapp.rollup_api import (AdvanceRequest, Metadata, RollupApiError, RollupClient,
                             RollupConnectionError)

log = logging.getLogger("dapp.loop")

# How long the loop waits before asking again after the server refused a /finish.
RETRY_SLEEP = 0.5
# Longest wait between two attempts at an input whose content could not be reached.
RETRY_MAX_SLEEP = 10.0


class Application(Protocol):
    def advance(self, metadata: Metadata, payload: bytes) -> Outputs: ...

    def inspect(self, payload: bytes) -> Outputs: ...


def _guarded(run: Callable[[], Outputs], what: str) -> tuple[bool, Outputs]:
    """Run one request; returns (accepted, outputs). Refusals and bugs both reject, with a
    report saying why, and the loop goes on."""
    try:
        return True, run()
    except ContentUnavailable:
        raise                     # not a verdict: the caller waits and retries
    except InputRefused as refusal:
        reason = refusal.reason
    except Exception as exc:  # a bug must not kill the backend nor change state
        log.error("%s raised: %s", what, traceback.format_exc()[-4000:])
        reason = f"internal error {type(exc).__name__}: {exc}"
    out = Outputs()
    out.report(f"refused: {reason}")
    return False, out


def handle_advance(app: Application, metadata: Metadata, payload: bytes) -> tuple[bool, Outputs]:
    return _guarded(lambda: app.advance(metadata, payload), f"input {metadata.input_index}")


def handle_inspect(app: Application, payload: bytes) -> tuple[bool, Outputs]:
    try:
        return _guarded(lambda: app.inspect(payload), "inspect")
    except ContentUnavailable as exc:    # a query decides nothing: say so and go on
        out = Outputs()
        out.report(f"refused: content unavailable right now: {exc}")
        return False, out


def advance_when_available(app: Application, metadata: Metadata, payload: bytes,
                           sleep: Callable[[float], None] = time.sleep) -> tuple[bool, Outputs]:
    """handle_advance, run again (never decided) while the content it needs is unreachable."""
    wait = RETRY_SLEEP
    attempt = 1
    while True:
        try:
            return handle_advance(app, metadata, payload)
        except ContentUnavailable as exc:
            log.error("input %d waits for content (attempt %d, next in %.1f s): %s",
                      metadata.input_index, attempt, wait, exc)
            sleep(wait)
            wait = min(wait * 2, RETRY_MAX_SLEEP)
            attempt += 1


def send(client: RollupClient, outputs: Outputs, *, advance: bool) -> None:
    """Post the outputs in order. A refused voucher or notice raises (the caller reverts the
    input); a refused report is logged and skipped, since reports never change state."""
    if advance:
        for item in outputs.emitted:
            if isinstance(item, Voucher):
                client.voucher(item.destination, item.value, item.payload)
            elif isinstance(item, DelegateCallVoucher):
                client.delegate_call_voucher(item.destination, item.payload)
            elif isinstance(item, Notice):
                client.notice(item.payload)
    for report in outputs.reports:
        try:
            client.report(report)
        except RollupConnectionError:
            raise
        except RollupApiError as exc:
            log.error("the server refused a report of %d bytes: %s", len(report), exc)


def _revert(client: RollupClient, exc: RollupApiError) -> None:
    """The server refused one of this input's outputs: revert the whole input."""
    log.error("output refused, reverting the input: %s", exc)
    client.exception(bounded_text(f"an output of this input was refused by the rollup server: "
                                  f"{exc}"))


def run(app: Application, client: RollupClient | None = None, *, idle_sleep: float = 0.05) -> None:
    """Serve requests forever (the machine is stopped from outside)."""
    client = client or RollupClient()
    status = "accept"
    while True:
        try:
            request = client.finish(status)
        except RollupConnectionError:
            raise
        except RollupApiError as exc:  # e.g. a /finish outside a request after a restart
            log.error("/finish refused: %s", exc)
            time.sleep(RETRY_SLEEP)
            status = "accept"
            continue
        if request is None:
            time.sleep(idle_sleep)
            status = "accept"
            continue
        if isinstance(request, AdvanceRequest):
            accepted, outputs = advance_when_available(app, request.metadata, request.payload)
            try:
                send(client, outputs, advance=True)
            except RollupConnectionError:
                raise
            except RollupApiError as exc:
                _revert(client, exc)
                status = "reject"
                continue
        else:
            accepted, outputs = handle_inspect(app, request.payload)
            send(client, outputs, advance=False)
        status = "accept" if accepted else "reject"
