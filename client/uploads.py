"""Posting content through inputs, for jobs whose spec says `"content_source": "inputs"`.

Such jobs run on the official Cartesi node, which serves no GIO: the backend only knows bytes
that were posted to it as `putContent` inputs (see dapp/content/inbox.py for the framing).
Before a reveal (or a deposit, or a shard reveal) the client asks the backend what it already
holds (`inspect content/<cid>`), posts only the missing chunks, shows progress, and reports the
chunk count and the gas paid, because on-chain data availability costs calldata gas.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from rich.progress import Progress

from dapp.market import protocol as p


class UploadError(Exception):
    """The backend did not end up holding the content; the message says what it reported."""


@dataclass(frozen=True)
class UploadResult:
    cid: str
    bytes: int
    chunks: int
    sent: int
    gas: int
    skipped: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def uses_inputs(spec: dict[str, Any]) -> bool:
    return spec.get("content_source", "gio") == "inputs"


def post_content(ctx: Any, cid: str, data: bytes | None = None, *,
                 show_progress: bool = True) -> UploadResult:
    """Make the backend hold `cid`, posting only the chunks it lacks."""
    status = ctx.node.inspect(f"content/{cid}")
    if status.get("held"):
        return UploadResult(cid, int(status.get("bytes", 0)), 0, 0, 0, True)
    body = data if data is not None else ctx.store.get(cid)
    calls = p.PutContent.chunks(cid, body)
    # Pending uploads belong to their uploader: resume from our own (content/<cid>/<account>).
    mine = ctx.node.inspect(f"content/{cid}/{ctx.signer.address.lower()}")
    have = set(mine.get("received", [])) if mine.get("total") == len(body) else set()
    todo = [c for c in calls if c.index not in have]
    gas, last = 0, None
    from rich.console import Console

    # on stderr: stdout carries the command's result (one JSON document with --json)
    with Progress(transient=True, disable=not show_progress,
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(f"posting {cid[:16]}... ({len(body):,} bytes)", total=len(todo))
        for call in todo:
            sent = ctx.chain.add_input(ctx.signer, call.encode())
            gas += sent.gas_used
            last = sent.index
            bar.advance(task)
    if last is not None:
        reports = ctx.node.result(last)
        if not ctx.node.inspect(f"content/{cid}").get("held"):
            raise UploadError(f"the backend does not hold {cid} after the upload: "
                              + "; ".join(reports))
    return UploadResult(cid, len(body), len(calls), len(todo), gas, False)


def describe(results: list[UploadResult]) -> str:
    sent = [r for r in results if not r.skipped]
    if not sent:
        return "content already held by the backend: nothing posted"
    return ", ".join(f"{r.cid[:16]}... {r.sent}/{r.chunks} chunks, {r.gas:,} gas" for r in sent)


def spec_of(ctx: Any, job: int) -> dict[str, Any]:
    info = ctx.node.inspect(f"job/{job}")
    return dict(json.loads(ctx.store.get(info["spec_cid"], max_size=64 * 1024)))
