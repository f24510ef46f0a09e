"""What one hostile reveal costs the backend: a UnixFS DAG of 1-byte leaves (issue 9 item 3).

The attack: 4 distinct blocks (the largest ~5 KB) describe a 1,000,000-byte file of 1-byte
leaves, under the default 8 MiB model cap. Before the block budget, the backend fetched every
declared block over GIO: 1,010,101 requests for one reveal. Now `assemble` refuses it from the
root's declared links (ContentOverBudget) and fetches each distinct block once.

Measured here over a real HTTP round trip (the production `RollupClient.gio` + `GioSource`
against a loopback server that answers `/gio` as the node does), with the in-run baseline of an
honest 1 MB object (4 leaves + root). The pre-fix cost is the declared block count times the
measured median round trip; the "budget off" line runs the traversal with de-duplication only
(MIN_LEAF_BYTES set to 1), in process, to show why a cache alone is not enough.

Run: ``.venv/bin/python -m bench.content_budget``; writes bench/results/content_budget.json.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench import write_results
from dapp.content import unixfs
from dapp.content.cid import DAG_PB, RAW, Cid
from dapp.content.errors import ContentOverBudget
from dapp.content.source import GIO_FOUND, GIO_NOT_FOUND, GioSource
from dapp.rollup_api import RollupClient


def hostile_dag() -> tuple[Cid, dict[bytes, bytes], int]:
    """Root -> 100 x B -> 100 x A -> 100 x one 1-byte leaf: 10^6 leaves, 4 distinct blocks."""
    child = Cid.for_block(RAW, b"x")
    blocks = {child.to_bytes(): b"x"}
    size = 1
    for fan in (100, 100, 100):
        node = unixfs._encode_node([(child, size)] * fan, [size] * fan)
        child = Cid.for_block(DAG_PB, node)
        blocks[child.to_bytes()] = node
        size *= fan
    return child, blocks, size


def serve(blocks: dict[bytes, bytes]) -> ThreadingHTTPServer:
    """A loopback `/gio` endpoint in the rollup HTTP API's format (domain 0x10 only)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            block = blocks.get(bytes.fromhex(body["id"][2:]))
            code, data = (GIO_NOT_FOUND, b"") if block is None else (GIO_FOUND, block)
            raw = json.dumps({"response_code": code, "response": "0x" + data.hex()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def fetch(source: GioSource, cid: Cid, cap: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        source.get(str(cid), max_size=cap)
        outcome = "assembled"
    except ContentOverBudget as exc:
        outcome = f"refused: {exc}"
    return time.perf_counter() - t0, outcome


def main() -> None:
    cap = 8 << 20
    root, hostile, size = hostile_dag()
    declared = 1 + 100 + 100**2 + 100**3
    honest = random.Random(1).randbytes(1_000_000)  # 4 distinct leaves + root
    honest_root, honest_blocks = unixfs.chunk(honest)
    blocks = dict(hostile)
    blocks.update({Cid.parse(c).to_bytes(): b for c, b in honest_blocks.items()})
    server = serve(blocks)
    client = RollupClient(f"http://127.0.0.1:{server.server_address[1]}")

    def gio(domain: int, ident: bytes) -> tuple[int, bytes]:
        r = client.gio(domain, ident)
        return r.code, r.data

    rtts = []
    for _ in range(200):
        t0 = time.perf_counter()
        gio(0x10, root.to_bytes())
        rtts.append(time.perf_counter() - t0)
    rtt = statistics.median(rtts)

    base_src = GioSource(gio)
    base_s, base_out = fetch(base_src, honest_root, cap)
    hostile_src = GioSource(gio)
    hostile_s, hostile_out = fetch(hostile_src, root, cap)
    server.shutdown()

    saved = unixfs.MIN_LEAF_BYTES
    unixfs.MIN_LEAF_BYTES = 1  # budget off: de-duplication only
    try:
        local = GioSource(lambda d, i: (GIO_FOUND, hostile[i]))
        nobudget_s, nobudget_out = fetch(local, root, cap)
    finally:
        unixfs.MIN_LEAF_BYTES = saved

    results = {
        "object_bytes": size, "distinct_blocks": len(hostile), "declared_blocks": declared,
        "gio_round_trip_median_ms": round(rtt * 1e3, 3),
        "baseline_honest_1mb": {"requests": base_src.requests, "ms": round(base_s * 1e3, 2),
                                "outcome": base_out},
        "hostile_now": {"requests": hostile_src.requests, "ms": round(hostile_s * 1e3, 2),
                        "outcome": hostile_out.split(";")[0]},
        "hostile_before_estimate": {"requests": declared,
                                    "s": round(declared * rtt, 1)},
        "hostile_dedup_only": {"requests": local.requests, "s": round(nobudget_s, 2),
                               "outcome": nobudget_out[:40]},
    }
    print(f"GIO round trip (loopback HTTP, median of {len(rtts)}): {rtt * 1e3:.3f} ms")
    print(f"baseline, honest 1 MB object: {base_src.requests} requests, {base_s * 1e3:.1f} ms")
    print(f"hostile 1 MB of 1-byte leaves, now: {hostile_src.requests} request(s), "
          f"{hostile_s * 1e3:.1f} ms, {hostile_out[:60]}...")
    print(f"hostile, before the budget: {declared:,} requests, about {declared * rtt:,.0f} s "
          f"({declared * rtt / 60:.0f} min) at the measured round trip")
    print(f"hostile, de-duplication without budget: {local.requests} requests but "
          f"{nobudget_s:.2f} s of CPU walking 10^6 leaves")
    print(f"hostile now vs honest baseline: {hostile_src.requests}/{base_src.requests} requests")
    write_results("content_budget", results)


if __name__ == "__main__":
    main()
