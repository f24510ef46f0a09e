"""The one interface both content stores implement, and the logic they share.

A store holds blocks by CID; objects are UnixFS files cut by `dapp.content.unixfs.chunk`, so an
object gets the same CID in the embedded store, in IPFS, and inside the backend. Every read is
verified against its CID: a store is a cache of bytes, never an authority on them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

from dapp.content.cid import Cid
from dapp.content.errors import ContentMismatch, ContentMissing
from dapp.content.unixfs import assemble_object, chunk

# An object read with no explicit cap is still capped, so a hostile root cannot ask for 2**63.
DEFAULT_MAX_SIZE = 1 << 34  # 16 GiB


class ContentStore(ABC):
    """Blocks by CID, and whole objects on top of them."""

    # -- blocks: what each backend implements ----------------------------------------------
    @abstractmethod
    def get_block(self, cid: Cid | str) -> bytes | None:
        """The block's bytes, verified (ContentMismatch if the store holds wrong bytes), or
        None when the store does not have it."""

    @abstractmethod
    def put_block(self, cid: Cid | str, data: bytes) -> None:
        """Store a block under its CID; refuses (ContentMismatch) bytes that do not match."""

    @abstractmethod
    def has(self, cid: Cid | str) -> bool:
        """Whether the store holds this block (for an object: its root block)."""

    def _verified(self, cid: Cid, data: bytes, fault: str) -> bytes:
        """`data` if it hashes to `cid`; otherwise ContentMismatch saying that this store
        (`fault`: what it did wrong) is to blame."""
        try:
            cid.verify(data)
        except ContentMismatch as exc:
            raise ContentMismatch(f"{self} {fault} for block {cid}: {exc}", str(cid)) from None
        return data

    def pin(self, root: Cid) -> None:
        """Keep an object from garbage collection where the backend has any (IPFS)."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""

    # -- objects ----------------------------------------------------------------------------
    def put(self, data: bytes) -> str:
        """Store an object; return its CID string (the same one `ipfs add --cid-version=1
        --raw-leaves` gives)."""
        root, blocks = chunk(data)
        for cid, block in blocks.items():
            self.put_block(cid, block)
        self.pin(root)
        return str(root)

    def get(self, cid: Cid | str, max_size: int | None = None) -> bytes:
        """The object's bytes, every block verified; ContentMissing / ContentMismatch /
        ContentTooLarge (from dapp.content) name the CID when it cannot be had."""
        def fetch(block_cid: Cid) -> bytes:
            block = self.get_block(block_cid)
            if block is None:
                raise ContentMissing(f"block {block_cid} is not in {self}", str(block_cid))
            return block

        return assemble_object(cid, fetch,
                               max_size=DEFAULT_MAX_SIZE if max_size is None else max_size)

    def __enter__(self) -> ContentStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
