"""Signed submissions from the client side: sign a `join`/`commit`/`reveal` as EIP-712 typed
data, send signed messages in one `batch` input, or hand them to a relayer.

Why: one input per message costs ~50,000 gas of fixed overhead; a batch of signed messages
shares it (dapp/market/batch.py). A trainer without ether, or one who wants to save gas, signs
and gives its message to a relayer (`tributary relay`): a small HTTP service that checks each
message (the signature recovers, the bytes parse) and posts whatever it holds as one batch input
every N seconds. A relayer cannot forge or alter a message (the backend recovers the signer
from the signature, and a reveal's commitment binds the signer), only withhold it; the trainer
can always send directly instead.

Public API::

    framed = sign(call, private_key, chain_id, app)       # one framed message
    post_batch(chain, signer, [framed, ...]) -> SentInput  # send them directly, one input
    submit(relay_url, framed) -> dict                      # hand one to a relayer
    Relay(chain, signer, chain_id, every=5.0).serve(host, port)

HTTP (the relayer): `POST /submit` with the framed message as the raw body (or 0x-hex text)
answers 202 `{"queued": n, "signer": "0x.."}` or 400 `{"error": "..."}`; `GET /status` answers
`{"queued": n, "sent": [{"index", "messages", "gas_used"}...]}`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import click
import requests
from eth_account import Account

from dapp.market import batch as b
from dapp.market import eip712
from dapp.market import protocol as p
from rollup.server import BoundedThreadingHTTPServer

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 96 * 1024
"""Bytes of messages per batch input (well under the InputBox's limit and a block's gas)."""
MAX_QUEUED = 8 * 512
"""Messages held between flushes (8 full batches); past it a POST is refused until the next."""
MAX_PER_SIGNER = 64
"""Messages one signer may have queued between flushes (anyone can sign many: bound each)."""
MAX_SENT_SHOWN = 1000
"""Batches `GET /status` lists (the latest), so a long-running relayer's answer stays small."""


def sign(call: p.Join | p.Commit | p.Reveal, private_key: str | bytes, chain_id: int,
         app: str) -> bytes:
    """The framed, signed message for `call` (low-s, v in {27, 28})."""
    sig = Account.unsafe_sign_hash(b.digest_of(call, chain_id, app.lower()), private_key)
    r, s, v = sig.r, sig.s, sig.v - 27
    if s > eip712.N // 2:  # EIP-2: the backend takes only the low-s twin
        s, v = eip712.N - s, v ^ 1
    return b.encode(call, r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v]))


def post_batch(chain: Any, signer: Any, framed: list[bytes]) -> Any:
    """Send these messages as one `batch` input from `signer` (any account pays the gas)."""
    return chain.add_input(signer, b.batch_input(framed))


def submit(relay_url: str, framed: bytes, timeout: float = 10.0) -> dict[str, Any]:
    """Hand one framed message to a relayer; returns its answer (raises on refusal)."""
    r = requests.post(relay_url.rstrip("/") + "/submit", data=framed, timeout=timeout)
    answer = r.json()
    if r.status_code != 202:
        raise ValueError(f"the relayer refused the message: {answer.get('error')}")
    return answer


class Relay:
    """Collects signed messages and posts them as one batch input every `every` seconds."""

    def __init__(self, chain: Any, signer: Any, chain_id: int, every: float = 5.0) -> None:
        self.chain = chain
        self.signer = signer
        self.chain_id = chain_id
        self.app = str(chain.app).lower()
        self.every = every
        self.queue: list[bytes] = []
        self._queued: set[bytes] = set()  # the queue's messages, for O(1) duplicate checks
        self._per_signer: dict[str, int] = {}
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def accept(self, framed: bytes) -> str:
        """Queue one framed message after checking it parses and its signature recovers
        (ValueError otherwise); duplicates are dropped. Returns the signer. A full queue
        (MAX_QUEUED), or a signer with MAX_PER_SIGNER messages queued, refuses (ValueError)
        until the next flush."""
        bodies = b.split(framed)
        if len(bodies) != 1:
            raise ValueError("send one framed message per request")
        msg = b.parse(bodies[0], self.chain_id, self.app)
        signer = str(msg.signer).lower()
        with self._lock:
            if framed in self._queued:
                return msg.signer
            if len(self.queue) >= MAX_QUEUED:
                raise ValueError(f"the relayer holds {MAX_QUEUED} messages; retry after its "
                                 f"next batch")
            if self._per_signer.get(signer, 0) >= MAX_PER_SIGNER:
                raise ValueError(f"{MAX_PER_SIGNER} messages from this signer are queued; "
                                 f"retry after the next batch")
            self.queue.append(framed)
            self._queued.add(framed)
            self._per_signer[signer] = self._per_signer.get(signer, 0) + 1
        return msg.signer

    def flush(self) -> list[Any]:
        """Post what is queued (as many inputs as MAX_BATCH_BYTES and MAX_MESSAGES need)."""
        with self._lock:
            pending, self.queue = self.queue, []
            self._queued, self._per_signer = set(), {}
        sent = []
        while pending:
            take, size = 0, 0
            while (take < len(pending) and take < b.MAX_MESSAGES
                   and size + len(pending[take]) <= MAX_BATCH_BYTES):
                size += len(pending[take])
                take += 1
            group, pending = pending[:take], pending[take:]
            res = post_batch(self.chain, self.signer, group)
            with self._lock:
                self.sent.append({"index": res.index, "messages": len(group),
                                  "gas_used": res.gas_used})
                del self.sent[:-MAX_SENT_SHOWN]
            log.info("relayed %d messages as input %d (%d gas)", len(group), res.index,
                     res.gas_used)
            sent.append(res)
        return sent

    def run_forever(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.flush()
            except Exception as exc:  # a failed send must not stop the relayer
                log.error("batch not sent: %s", exc)

    def stop(self) -> None:
        self._stop.set()

    def server(self, host: str = "127.0.0.1", port: int = 0) -> BoundedThreadingHTTPServer:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a client that stops sending must not hold its thread forever

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/submit":
                    return self._answer(404, {"error": "POST /submit"})
                size = int(self.headers.get("Content-Length") or 0)
                if not 0 < size <= 4096:
                    return self._answer(400, {"error": "one message, at most 4096 bytes"})
                body = self.rfile.read(size)
                try:
                    if body[:2] == b"0x":
                        body = bytes.fromhex(body[2:].decode().strip())
                    signer = relay.accept(body)
                except (ValueError, p.ProtocolError) as exc:
                    return self._answer(400, {"error": str(exc)})
                with relay._lock:
                    queued = len(relay.queue)
                self._answer(202, {"queued": queued, "signer": signer})

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/status":
                    return self._answer(404, {"error": "GET /status"})
                with relay._lock:
                    self._answer(200, {"queued": len(relay.queue), "sent": relay.sent})

            def log_message(self, *args: Any) -> None:
                log.debug("relay http: %s", args)

        return BoundedThreadingHTTPServer((host, port), Handler)

    def serve(self, host: str = "127.0.0.1", port: int = 8780) -> None:
        """Serve until interrupted; flush every `every` seconds and once more at the end."""
        httpd = self.server(host, port)
        worker = threading.Thread(target=self.run_forever, daemon=True)
        worker.start()
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            httpd.server_close()
            self.flush()


def wait_flushed(relay: Relay, timeout: float = 30.0) -> None:
    """Block until the relayer's queue is empty (tests, scripts)."""
    deadline = time.monotonic() + timeout
    while relay.queue and time.monotonic() < deadline:
        time.sleep(0.05)


# ---- CLI: `tributary relay` and `tributary payout` (registered in client/cli.py) ------------

@click.command("relay")
@click.option("--every", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="seconds between batches")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8780, show_default=True)
@click.pass_context
def relay_command(ctx: click.Context, every: float, host: str, port: int) -> None:
    """Relay signed trainer messages: POST /submit (one framed message), posted as one `batch`
    input every EVERY seconds from the configured key (which pays the gas)."""
    st = ctx.obj  # client.cli.State: the chain, the node and the signer
    c = st.ctx  # type: ignore[attr-defined]
    relay = Relay(c.chain, c.signer, int(c.chain.w3.eth.chain_id), every=every)
    click.echo(f"relaying to {c.chain.app} from {c.signer.address} on http://{host}:{port} "
               f"every {every:g} s", err=True)
    relay.serve(host, port)


@click.command("payout")
@click.option("--token", default=p.ETH, show_default=True,
              help="token address (the zero address: ether)")
@click.option("--execute", "execute_ready", is_flag=True,
              help="instead: execute every batched payout whose epoch is claimed")
@click.pass_context
def payout_command(ctx: click.Context, token: str, execute_ready: bool) -> None:
    """Ask the backend to pay every balance in TOKEN with one DelegateCallVoucher (anyone may
    ask); with --execute, execute the batched payouts that are ready (anyone may, too)."""
    st = ctx.obj
    c = st.ctx  # type: ignore[attr-defined]
    if not execute_ready:
        sent = c.chain.add_input(c.signer, p.Payout(token.lower()).encode())
        click.echo(json.dumps({"input": sent.index, "tx": sent.tx_hash,
                               "gas_used": sent.gas_used}))
        return
    from dapp.market.payout import BATCH_PAYOUT
    from rollup.vouchers import ProvableOutput, execute_output, was_output_executed

    rows = []
    for o in c.node.outputs(output_type="delegatecallvoucher"):
        if o["decoded_data"]["destination"].lower() != BATCH_PAYOUT:
            continue
        index = int(o["index"], 16) if isinstance(o["index"], str) else int(o["index"])
        row: dict[str, Any] = {"index": index, "proof_ready": bool(o.get("output_hashes_siblings"))}
        row["executed"] = was_output_executed(c.chain.w3, c.chain.app, index)
        if row["proof_ready"] and not row["executed"]:
            rcpt = execute_output(c.chain.w3, c.chain.app, ProvableOutput.from_rpc(o),
                                  c.signer.private_key)
            row.update(executed=True, tx="0x" + bytes(rcpt["transactionHash"]).hex(),
                       gas_used=int(rcpt["gasUsed"]))
        rows.append(row)
    click.echo(json.dumps(rows))
