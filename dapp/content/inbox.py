"""Content posted through inputs: the source that works on the official Cartesi node.

The official node does not serve GIO, so a job can choose on-chain data availability instead:
anyone posts an object's bytes as `putContent(cid, totalSize, index, data)` inputs, each chunk
`UPLOAD_CHUNK` bytes (the last one shorter), in any order. When every chunk is in, the inbox
rebuilds the object, recomputes its CID (the same UnixFS layout as IPFS) and keeps it only if
the CID matches; otherwise the upload is discarded and can start again.

Memory stays bounded: at most `MAX_HELD_BYTES` of complete and pending content at once (new
uploads are refused beyond it), an object is released as soon as the market has consumed it
(decoded a model, a card, a shard or a spec), and anything untouched for `EXPIRY_SECONDS` of
block time is dropped. All of it is decided by inputs and block timestamps, so every replica
holds the same content at the same input.

Planning and applying are separate (`plan_put` checks without changing anything, the returned
step mutates), so a refused chunk leaves the inbox exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dapp.content.cid import Cid
from dapp.content.errors import CidError, ContentMissing, ContentTooLarge
from dapp.content.unixfs import chunk as unixfs_chunk
from dapp.hashing import keccak

UPLOAD_CHUNK = 60_000
"""Bytes of content per input: with the ABI framing the encoded input stays under 65,536."""
MAX_OBJECT_BYTES = 16 << 20
MAX_HELD_BYTES = 64 << 20
EXPIRY_SECONDS = 7 * 24 * 3600


class UploadRefused(ValueError):
    """A chunk that cannot be taken; the message says why."""


@dataclass
class _Upload:
    total: int
    touched: int
    chunks: dict[int, bytes] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return max(1, -(-self.total // UPLOAD_CHUNK))

    def received(self) -> int:
        return sum(len(c) for c in self.chunks.values())


@dataclass
class PutOutcome:
    cid: str
    status: str  # "stored", "pending", "discarded"
    received: int
    count: int
    message: str


@dataclass
class ContentInbox:
    objects: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    """cid -> (bytes, block time of last use)."""
    pending: dict[str, _Upload] = field(default_factory=dict)

    # ---- the ContentSource side ---------------------------------------------------------

    def get(self, cid: str, *, max_size: int) -> bytes:
        key = str(Cid.parse(cid))
        held = self.objects.get(key)
        if held is None:
            raise ContentMissing(f"content {key} has not been posted through inputs (or was "
                                 f"already used and released)", key)
        if len(held[0]) > max_size:
            raise ContentTooLarge(f"content {key} is {len(held[0])} bytes, over the cap of "
                                  f"{max_size}", key)
        return held[0]

    def holds(self, cid: str) -> bool:
        try:
            return str(Cid.parse(cid)) in self.objects
        except CidError:
            return False

    def release(self, cids: list[str]) -> None:
        for cid in cids:
            self.objects.pop(cid, None)

    def held_bytes(self) -> int:
        return (sum(len(b) for b, _ in self.objects.values())
                + sum(u.received() for u in self.pending.values()))

    # ---- uploads ------------------------------------------------------------------------

    def plan_put(self, cid: str, total: int, index: int, data: bytes,
                 now: int) -> Callable[[], PutOutcome]:
        """Check one chunk; returns the step that takes it. Raises UploadRefused."""
        try:
            key = str(Cid.parse(cid))
        except CidError as exc:
            raise UploadRefused(f"{cid!r} is not a valid CID: {exc}") from None
        if key in self.objects:
            raise UploadRefused(f"content {key} is already held; nothing to upload")
        if not 0 < total <= MAX_OBJECT_BYTES:
            raise UploadRefused(f"total size {total} is outside (0, {MAX_OBJECT_BYTES}]")
        up = self.pending.get(key)
        if up is not None and up.total != total:
            raise UploadRefused(f"upload of {key} was started with total size {up.total}, "
                                f"not {total}")
        count = max(1, -(-total // UPLOAD_CHUNK))
        if not 0 <= index < count:
            raise UploadRefused(f"chunk index {index} is outside [0, {count}) for {total} bytes")
        expected = UPLOAD_CHUNK if index < count - 1 else total - UPLOAD_CHUNK * (count - 1)
        if len(data) != expected:
            raise UploadRefused(f"chunk {index} of {key} has {len(data)} bytes, expected "
                                f"{expected}")
        if up is not None and index in up.chunks:
            same = up.chunks[index] == data
            raise UploadRefused(f"chunk {index} of {key} was already received"
                                + ("" if same else " with different bytes"))
        expired = self._expired(now)
        free = MAX_HELD_BYTES - self.held_bytes() + sum(
            len(self.objects[c][0]) if c in self.objects else self.pending[c].received()
            for c in expired)
        if len(data) > free:
            raise UploadRefused(f"the content inbox is full ({MAX_HELD_BYTES} bytes held); "
                                f"try again after content is used or expires")

        def apply() -> PutOutcome:
            for c in expired:
                self.objects.pop(c, None)
                self.pending.pop(c, None)
            upload = self.pending.setdefault(key, _Upload(total, now))
            upload.chunks[index] = data
            upload.touched = now
            if len(upload.chunks) < count:
                return PutOutcome(key, "pending", len(upload.chunks), count,
                                  f"chunk {index} of {key} received ({len(upload.chunks)}/"
                                  f"{count})")
            del self.pending[key]
            whole = b"".join(upload.chunks[i] for i in range(count))
            root, _ = unixfs_chunk(whole)
            if str(root) != key:
                return PutOutcome(key, "discarded", count, count,
                                  f"upload of {key} discarded: the {total} bytes hash to "
                                  f"{root}; post the chunks again")
            self.objects[key] = (whole, now)
            return PutOutcome(key, "stored", count, count, f"content {key} stored "
                              f"({total} bytes in {count} chunks)")
        return apply

    def touch(self, cid: str, now: int) -> None:
        if cid in self.objects:
            self.objects[cid] = (self.objects[cid][0], now)

    def _expired(self, now: int) -> list[str]:
        old = [c for c, (_, t) in self.objects.items() if now - t >= EXPIRY_SECONDS]
        old += [c for c, u in self.pending.items() if now - u.touched >= EXPIRY_SECONDS]
        return sorted(old)

    def status(self, cid: str) -> dict[str, object]:
        key = str(Cid.parse(cid))
        if key in self.objects:
            return {"cid": key, "held": True, "bytes": len(self.objects[key][0])}
        up = self.pending.get(key)
        if up is None:
            return {"cid": key, "held": False, "received": [], "count": 0}
        return {"cid": key, "held": False, "received": sorted(up.chunks), "count": up.count,
                "total": up.total}

    def digest(self) -> bytes:
        """A hash of everything held, for replicas and tests to compare."""
        parts = [c.encode() + keccak(b) + t.to_bytes(8, "big")
                 for c, (b, t) in sorted(self.objects.items())]
        parts += [c.encode() + u.total.to_bytes(8, "big") + b"".join(
            i.to_bytes(4, "big") + keccak(d) for i, d in sorted(u.chunks.items()))
            for c, u in sorted(self.pending.items())]
        return keccak(b"".join(parts))
