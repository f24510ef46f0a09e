"""Echo test backend for the host-mode node, written against dapp/rollup_api.py like a real one.

Advance (every accepted one bumps a counter, the backend's only state):
- always: a notice whose payload is the input payload;
- b"voucher:" + destination(20) + value(32, big-endian): also an ETH voucher paying `value` wei;
- b"reject:": outputs, then finish with reject (state untouched, as the backend contract asks);
- b"exception:": outputs, then /exception with the rest as payload;
- containing b"report": also a report with the payload (before any reject/exception);
- b"count": also a notice b"count=<accepted advances before this one>" (shows replayed state);
- b"gio:" + domain(2) + id: also a notice b"gio=" + code(2) + response;
- b"die:": the process exits (code 3) mid-input;
- from the EtherPortal (payload sender(20) ++ value(32) ++ data): also a voucher paying the
  value back to the depositor.
Inspect: one report echoing the payload; b"count" answers the counter.
Env: ECHO_DELAY (seconds to sleep per advance), ECHO_NONDETERMINISTIC=1 (a notice that differs
per process: only for the test that checks replay catches it).
"""

from __future__ import annotations

import os
import sys
import time

from dapp.rollup_api import AdvanceRequest, InspectRequest, RollupClient

ETHER_PORTAL = "0xa632c5c05812c6a6149b7af5c56117d1d2603828"


def main() -> int:
    client = RollupClient()
    delay = float(os.environ.get("ECHO_DELAY", "0") or 0)
    nondeterministic = os.environ.get("ECHO_NONDETERMINISTIC") == "1"
    accepted = 0
    status = "accept"
    while True:
        req = client.finish(status)
        if req is None:
            continue
        status = "accept"
        if isinstance(req, InspectRequest):
            if req.payload == b"count":
                client.report(b"count=%d" % accepted)
            else:
                client.report(req.payload)
            continue
        assert isinstance(req, AdvanceRequest)
        if delay:
            time.sleep(delay)
        p = req.payload
        client.notice(p)
        if nondeterministic:
            client.notice(b"pid=%d" % os.getpid())
        if req.metadata.msg_sender == ETHER_PORTAL and len(p) >= 52:
            depositor = "0x" + p[:20].hex()
            value = int.from_bytes(p[20:52], "big")
            client.voucher(depositor, value, b"")
        if p.startswith(b"voucher:") and len(p) >= 8 + 52:
            body = p[8:]
            client.voucher("0x" + body[:20].hex(), int.from_bytes(body[20:52], "big"), body[52:])
        if b"report" in p:
            client.report(p)
        if p.startswith(b"count"):
            client.notice(b"count=%d" % accepted)
        if p.startswith(b"gio:") and len(p) >= 6:
            res = client.gio(int.from_bytes(p[4:6], "big"), p[6:])
            client.notice(b"gio=" + res.code.to_bytes(2, "big") + res.data)
        if p.startswith(b"die:"):
            sys.stdout.flush()
            os._exit(3)
        if p.startswith(b"exception:"):
            client.exception(p[len(b"exception:"):])
            return 0  # like a real backend: nothing after /exception
        if p.startswith(b"reject:"):
            status = "reject"
            continue
        accepted += 1


if __name__ == "__main__":
    sys.exit(main())
