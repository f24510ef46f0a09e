"""Where the backend gets content by id: one interface, several sources.

The market asks a `ContentSource` for an object by CID and a size cap, and gets verified bytes or
one of three typed errors; it never knows which source answered. Sources:
- `GioSource`: blocks one by one over the rollup API's `/gio`, domain 0x10 (our node serves it).
- `dapp.content.inbox.ContentInbox` (issue 6): objects posted as chunked inputs and kept by
  the backend, for the official node, which does not serve GIO; it implements the same `get`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from dapp.content.cid import Cid
from dapp.content.errors import ContentMissing
from dapp.content.unixfs import assemble_object

__all__ = [
    "GIO_DOMAIN_BLOCK",
    "GIO_FOUND",
    "GIO_NOT_FOUND",
    "ContentSource",
    "GioSource",
]

GIO_DOMAIN_BLOCK = 0x10  # id = a block's binary CID
GIO_FOUND = 0
GIO_NOT_FOUND = 1

GioCall = Callable[[int, bytes], tuple[int, bytes]]


@runtime_checkable
class ContentSource(Protocol):
    """Verified bytes by CID: raises ContentMissing, ContentMismatch (ContentMalformed is one)
    or ContentTooLarge, each naming the CID; CidError for an id that is not a CID."""

    def get(self, cid: str, *, max_size: int) -> bytes: ...


class GioSource:
    """Content over GIO domain 0x10, one block per request, every block verified.

    `gio(domain, id) -> (response_code, response_bytes)` is the rollup API client's call; it is
    taken as a parameter so this module stays free of HTTP and testable without a node.
    """

    def __init__(self, gio: GioCall, *, domain: int = GIO_DOMAIN_BLOCK) -> None:
        self._gio = gio
        self._domain = domain
        self.requests = 0  # GIO round trips made, for benchmarks

    def get_block(self, cid: Cid) -> bytes:
        """One block by CID, unverified (assemble verifies); a non-zero code means missing."""
        self.requests += 1
        code, data = self._gio(self._domain, cid.to_bytes())
        if code != GIO_FOUND:
            meaning = "not found" if code == GIO_NOT_FOUND else "error"
            raise ContentMissing(
                f"block {cid}: the node answered GIO response code {code} ({meaning})", str(cid))
        return bytes(data)

    def get(self, cid: str, *, max_size: int) -> bytes:
        return assemble_object(cid, self.get_block, max_size=max_size)
