"""Where the backend gets content by id: one interface, several sources.

The market asks a `ContentSource` for an object by CID and a size cap, and gets verified bytes or
one of three typed errors; it never knows which source answered. Sources:
- `GioSource`: blocks one by one over the rollup API's `/gio`, domain 0x10 (our node serves it).
- `dapp.content.inbox.ContentInbox` (issue 6): objects posted as chunked inputs and kept by
  the backend, for the official node, which does not serve GIO; it implements the same `get`.

GIO response codes for domain 0x10 (the node's side is rollup/gio.py, which uses the same
numbers) and what the backend makes of them:

==== ====================== ====================================================================
code name                   backend
==== ====================== ====================================================================
0    GIO_FOUND              the block (verified against its CID; bytes that do not hash right
                            are ContentMismatch: a verdict, the node cannot forge content)
1    GIO_NOT_FOUND          ContentMissing: a verdict. The node's reachable store lacks the
                            block; the input that needs it is refused
2    GIO_UNSUPPORTED_DOMAIN ContentMissing: a verdict (this node serves no such domain)
3    GIO_ERROR              ContentUnavailable (legacy: older nodes answered it when the store
                            raised, i.e. could not be reached)
4    GIO_UNAVAILABLE        ContentUnavailable: "temporarily unavailable", the node could not
                            reach its store (down, timed out, none configured)
any  other                  ContentUnavailable: an answer we do not understand decides nothing
==== ====================== ====================================================================

ContentUnavailable is never a verdict: the market lets it propagate out of `advance`, so the
rollup loop stops or retries the input; it never refuses the input nor credits a deposit on it.
Only "not found" from a working store changes what the market decides.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from dapp.content.cid import Cid
from dapp.content.errors import ContentMissing, ContentUnavailable
from dapp.content.unixfs import assemble_object

__all__ = [
    "GIO_DOMAIN_BLOCK",
    "GIO_ERROR",
    "GIO_FOUND",
    "GIO_NOT_FOUND",
    "GIO_UNAVAILABLE",
    "GIO_UNSUPPORTED_DOMAIN",
    "GIO_VERDICTS",
    "ContentSource",
    "GioSource",
]

GIO_DOMAIN_BLOCK = 0x10  # id = a block's binary CID
GIO_FOUND = 0
GIO_NOT_FOUND = 1
GIO_UNSUPPORTED_DOMAIN = 2
GIO_ERROR = 3
GIO_UNAVAILABLE = 4
GIO_VERDICTS = {GIO_NOT_FOUND: "not found", GIO_UNSUPPORTED_DOMAIN: "unsupported domain"}
"""The non-found codes that are verdicts (ContentMissing); every other code is unavailability."""

GioCall = Callable[[int, bytes], tuple[int, bytes]]


@runtime_checkable
class ContentSource(Protocol):
    """Verified bytes by CID: raises ContentMissing, ContentMismatch (ContentMalformed and
    ContentOverBudget are ones) or ContentTooLarge, each naming the CID; CidError for an id that
    is not a CID; ContentUnavailable when the source could not be asked (never a verdict)."""

    def get(self, cid: str, *, max_size: int) -> bytes: ...


class GioSource:
    """Content over GIO domain 0x10, one block per request, every block verified.

    `gio(domain, id) -> (response_code, response_bytes)` is the rollup API client's call; it is
    taken as a parameter so this module stays free of HTTP and testable without a node. Each
    `get` asks for a distinct block at most once and within the block budget of
    `dapp.content.unixfs.assemble`.
    """

    def __init__(self, gio: GioCall, *, domain: int = GIO_DOMAIN_BLOCK) -> None:
        self._gio = gio
        self._domain = domain
        self.requests = 0  # GIO round trips made, for benchmarks

    def get_block(self, cid: Cid) -> bytes:
        """One block by CID, unverified (assemble verifies). "Not found" is ContentMissing;
        "unavailable", the legacy "error" and unknown codes are ContentUnavailable."""
        self.requests += 1
        code, data = self._gio(self._domain, cid.to_bytes())
        if code == GIO_FOUND:
            return bytes(data)
        if code in GIO_VERDICTS:
            raise ContentMissing(
                f"block {cid}: the node answered GIO response code {code} ({GIO_VERDICTS[code]})",
                str(cid))
        meaning = {GIO_ERROR: "error", GIO_UNAVAILABLE: "temporarily unavailable"}.get(
            code, "unknown code")
        raise ContentUnavailable(
            f"block {cid}: the node answered GIO response code {code} ({meaning}): its content "
            f"store could not be asked; this is not a verdict on the content", str(cid))

    def get(self, cid: str, *, max_size: int) -> bytes:
        return assemble_object(cid, self.get_block, max_size=max_size)
