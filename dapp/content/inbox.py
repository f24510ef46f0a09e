"""Content posted through inputs: the source that works on the official Cartesi node.

The official node does not serve GIO, so a job can choose on-chain data availability instead:
anyone posts an object's bytes as `putContent(cid, totalSize, index, data)` inputs, each chunk
`UPLOAD_CHUNK` bytes (the last one shorter), in any order. When every chunk is in, the inbox
rebuilds the object, recomputes its CID (the same UnixFS layout as IPFS) and keeps it only if
the CID matches; otherwise the upload is discarded and can start again.

Uploads belong to their uploader, objects to everyone. A pending upload is keyed by (uploader,
cid): chunks from another account never mix into it, so nobody can complete someone else's
upload with wrong bytes (and get it discarded) or claim its chunk slots. A completed, verified
object is shared by CID: anyone's input can use it, and the other uploaders' pending uploads of
that CID are dropped (they are moot).

Limits (all decided by inputs and block timestamps, so every replica holds the same content at
the same input; a refused chunk says which limit it hit):
- `MAX_OBJECT_BYTES` (16 MiB) per object;
- `MAX_HELD_BYTES` (64 MiB) of complete objects plus received chunks, for the whole inbox;
- per uploader, `UPLOADER_QUOTA_BYTES` (32 MiB): the declared total sizes of its pending
  uploads plus the objects it completed that are still held (so one account can fill at most
  half the inbox, with completed junk or never-completed uploads alike), reserved when an
  upload starts; and `MAX_PENDING_UPLOADS` (8) pending uploads at once (so tiny uploads cannot
  pile up entries);
- `EXPIRY_SECONDS` (7 days of block time): an object or pending upload untouched that long is
  dropped. An object is released as soon as an input that used it succeeded (the market keeps
  what it decoded: a model, a card, a shard or a spec).

Per-account limits do not stop one person with many accounts; what bounds that is the global
cap and the calldata gas (about 16 gas a byte: filling 64 MiB costs some 10^9 gas).

Planning and applying are separate (`plan_put` checks without changing anything, the returned
step mutates), so a refused chunk leaves the inbox exactly as it was. Every iteration that
decides anything (expiry, quotas, the digest) is over sorted keys.
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
UPLOADER_QUOTA_BYTES = 32 << 20
"""Per uploader: declared totals of its pending uploads + bytes of the objects it completed that
are still held. Room for one object of the maximum size in flight and one more held."""
MAX_PENDING_UPLOADS = 8
"""Per uploader: pending (incomplete) uploads at once."""
EXPIRY_SECONDS = 7 * 24 * 3600


class UploadRefused(ValueError):
    """A chunk that cannot be taken; the message says why."""


@dataclass
class _Upload:
    total: int
    touched: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    chunk_hashes: dict[int, bytes] = field(default_factory=dict)
    """keccak of each chunk, taken once when it arrives (`digest` is a free query)."""

    @property
    def count(self) -> int:
        return max(1, -(-self.total // UPLOAD_CHUNK))

    def received(self) -> int:
        return sum(len(c) for c in self.chunks.values())


@dataclass
class _Held:
    data: bytes
    touched: int  # block time of the last use
    uploader: str  # the account whose upload completed it: its quota carries the bytes
    data_hash: bytes = b""
    """keccak of `data`, taken once (`digest` is a free query, and up to 64 MiB is held)."""

    def __post_init__(self) -> None:
        self.data_hash = self.data_hash or keccak(self.data)


@dataclass
class PutOutcome:
    cid: str
    status: str  # "stored", "pending", "discarded"
    received: int
    count: int
    message: str


def _account(uploader: str) -> str:
    return uploader.lower()


@dataclass
class ContentInbox:
    objects: dict[str, _Held] = field(default_factory=dict)
    """cid -> the verified object, shared by everyone."""
    pending: dict[tuple[str, str], _Upload] = field(default_factory=dict)
    """(uploader, cid) -> that uploader's incomplete upload."""

    # ---- the ContentSource side ---------------------------------------------------------

    def get(self, cid: str, *, max_size: int) -> bytes:
        key = str(Cid.parse(cid))
        held = self.objects.get(key)
        if held is None:
            raise ContentMissing(f"content {key} has not been posted through inputs (or was "
                                 f"already used and released)", key)
        if len(held.data) > max_size:
            raise ContentTooLarge(f"content {key} is {len(held.data)} bytes, over the cap of "
                                  f"{max_size}", key)
        return held.data

    def holds(self, cid: str) -> bool:
        try:
            return str(Cid.parse(cid)) in self.objects
        except CidError:
            return False

    def release(self, cids: list[str], *, by: str | None = None) -> None:
        """Drop objects an input used. With `by` (the account whose input used them), only the
        objects that account uploaded: someone else's use never evicts content its uploader
        may still need (they stay until their uploader uses them or they expire)."""
        for cid in cids:
            held = self.objects.get(cid)
            if held is not None and (by is None or held.uploader == _account(by)):
                del self.objects[cid]

    def held_bytes(self) -> int:
        return (sum(len(h.data) for h in self.objects.values())
                + sum(u.received() for u in self.pending.values()))

    def usage(self, uploader: str) -> tuple[int, int]:
        """(bytes charged to `uploader`'s quota, its pending uploads), expired ones included."""
        who = _account(uploader)
        mine = [u for (w, _), u in self.pending.items() if w == who]
        charged = (sum(u.total for u in mine)
                   + sum(len(h.data) for h in self.objects.values() if h.uploader == who))
        return charged, len(mine)

    # ---- uploads ------------------------------------------------------------------------

    def plan_put(self, cid: str, total: int, index: int, data: bytes, now: int, *,
                 uploader: str) -> Callable[[], PutOutcome]:
        """Check one chunk of `uploader`'s upload; returns the step that takes it.
        Raises UploadRefused, the message naming the rule or limit."""
        who = _account(uploader)
        try:
            key = str(Cid.parse(cid))
        except CidError as exc:
            raise UploadRefused(f"{cid!r} is not a valid CID: {exc}") from None
        # Expired entries are as good as gone: this step drops them before taking the chunk.
        expired_objects, expired_uploads = self._expired(now)
        if key in self.objects and key not in expired_objects:
            raise UploadRefused(f"content {key} is already held; nothing to upload")
        if not 0 < total <= MAX_OBJECT_BYTES:
            raise UploadRefused(f"total size {total} is outside (0, {MAX_OBJECT_BYTES}]")
        up = self.pending.get((who, key)) if (who, key) not in expired_uploads else None
        if up is not None and up.total != total:
            raise UploadRefused(f"upload of {key} by {who} was started with total size "
                                f"{up.total}, not {total}")
        count = max(1, -(-total // UPLOAD_CHUNK))
        if not 0 <= index < count:
            raise UploadRefused(f"chunk index {index} is outside [0, {count}) for {total} bytes")
        expected = UPLOAD_CHUNK if index < count - 1 else total - UPLOAD_CHUNK * (count - 1)
        if len(data) != expected:
            raise UploadRefused(f"chunk {index} of {key} has {len(data)} bytes, expected "
                                f"{expected}")
        if up is not None and index in up.chunks:
            same = up.chunks[index] == data
            raise UploadRefused(f"chunk {index} of {key} was already received from {who}"
                                + ("" if same else " with different bytes"))
        if up is None:
            self._check_quota(who, key, total, expired_objects, expired_uploads)
        free = MAX_HELD_BYTES - self.held_bytes() + sum(
            len(self.objects[c].data) for c in expired_objects) + sum(
            self.pending[k].received() for k in expired_uploads)
        if len(data) > free:
            raise UploadRefused(f"the content inbox is full ({MAX_HELD_BYTES} bytes held); "
                                f"try again after content is used or expires")

        def apply() -> PutOutcome:
            for c in expired_objects:
                del self.objects[c]
            for k in expired_uploads:
                del self.pending[k]
            upload = self.pending.setdefault((who, key), _Upload(total, now))
            upload.chunks[index] = data
            upload.chunk_hashes[index] = keccak(data)
            upload.touched = now
            if len(upload.chunks) < count:
                return PutOutcome(key, "pending", len(upload.chunks), count,
                                  f"chunk {index} of {key} received from {who} "
                                  f"({len(upload.chunks)}/{count})")
            del self.pending[(who, key)]
            whole = b"".join(upload.chunks[i] for i in range(count))
            root, _ = unixfs_chunk(whole)
            if str(root) != key:
                return PutOutcome(key, "discarded", count, count,
                                  f"upload of {key} by {who} discarded: the {total} bytes hash "
                                  f"to {root}; post the chunks again")
            self.objects[key] = _Held(whole, now, who)
            moot = sorted(k for k in self.pending if k[1] == key)
            for k in moot:
                del self.pending[k]
            dropped = (f"; {len(moot)} other pending upload(s) of it dropped" if moot else "")
            return PutOutcome(key, "stored", count, count, f"content {key} stored "
                              f"({total} bytes in {count} chunks){dropped}")
        return apply

    def _check_quota(self, who: str, key: str, total: int,
                     expired_objects: list[str], expired_uploads: list[tuple[str, str]]) -> None:
        """A new upload must fit the uploader's quotas (expired entries do not count)."""
        gone_objects, gone_uploads = set(expired_objects), set(expired_uploads)
        mine = [k for k in self.pending if k[0] == who and k not in gone_uploads]
        if len(mine) >= MAX_PENDING_UPLOADS:
            oldest = min(self.pending[k].touched for k in mine)
            raise UploadRefused(
                f"{who} already has {len(mine)} pending uploads, the limit per account is "
                f"{MAX_PENDING_UPLOADS}: finish one, or wait until the oldest expires at block "
                f"time {oldest + EXPIRY_SECONDS}")
        charged = sum(self.pending[k].total for k in mine) + sum(
            len(h.data) for c, h in self.objects.items()
            if h.uploader == who and c not in gone_objects)  # sums and min: order-free
        if charged + total > UPLOADER_QUOTA_BYTES:
            raise UploadRefused(
                f"upload of {key} ({total} bytes) refused: {who} already has {charged} bytes of "
                f"pending uploads and unused content, and the limit per account is "
                f"{UPLOADER_QUOTA_BYTES} bytes; finish or use what is there, or wait until it "
                f"expires ({EXPIRY_SECONDS} s untouched)")

    def touch(self, cid: str, now: int) -> None:
        if cid in self.objects:
            self.objects[cid].touched = now

    def _expired(self, now: int) -> tuple[list[str], list[tuple[str, str]]]:
        objects = sorted(c for c, h in self.objects.items() if now - h.touched >= EXPIRY_SECONDS)
        uploads = sorted(k for k, u in self.pending.items() if now - u.touched >= EXPIRY_SECONDS)
        return objects, uploads

    def status(self, cid: str, uploader: str | None = None) -> dict[str, object]:
        """What the inbox holds of `cid`. Held: its size. Not held: with `uploader`, that
        account's own pending upload (the chunks it can skip when it resumes); without, every
        pending upload by uploader. Another account's chunks are never "received" for you."""
        key = str(Cid.parse(cid))
        if key in self.objects:
            return {"cid": key, "held": True, "bytes": len(self.objects[key].data)}
        if uploader is not None:
            who = _account(uploader)
            up = self.pending.get((who, key))
            if up is None:
                return {"cid": key, "held": False, "uploader": who, "received": [], "count": 0}
            return {"cid": key, "held": False, "uploader": who, "received": sorted(up.chunks),
                    "count": up.count, "total": up.total}
        uploads = {w: {"received": sorted(u.chunks), "count": u.count, "total": u.total}
                   for (w, c), u in sorted(self.pending.items()) if c == key}
        return {"cid": key, "held": False, "uploads": uploads}

    def digest(self) -> bytes:
        """A hash of everything held, for replicas and tests to compare (sorted, so the same
        content gives the same digest whatever order it arrived in)."""
        parts = [c.encode() + h.data_hash + h.touched.to_bytes(8, "big")
                 + h.uploader.encode() for c, h in sorted(self.objects.items())]
        parts += [w.encode() + c.encode() + u.total.to_bytes(8, "big")
                  + u.touched.to_bytes(8, "big") + b"".join(
                      i.to_bytes(4, "big") + d for i, d in sorted(u.chunk_hashes.items()))
                  for (w, c), u in sorted(self.pending.items())]
        return keccak(b"".join(parts))
