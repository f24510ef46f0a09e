"""GIO (generic I/O) resolvers: how the host-mode node answers a backend's `/gio` request.

The official v2 node does not serve GIO; ours does, so that content (models, shards) can be
fetched by hash instead of being pushed through inputs. Storage backends plug in behind
`ContentResolver`; the backend verifies every answer, so a resolver need not be trusted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

log = logging.getLogger(__name__)

DOMAIN_BLOCK_BY_CID = 0x10
CODE_OK = 0
CODE_NOT_FOUND = 1
CODE_UNSUPPORTED_DOMAIN = 2
CODE_ERROR = 3


@dataclass(frozen=True)
class GioResponse:
    code: int
    data: bytes = b""


@runtime_checkable
class ContentResolver(Protocol):
    def resolve(self, domain: int, id: bytes) -> GioResponse: ...


class NullResolver:
    """Answers every request with an error code: the node has no content store."""

    def resolve(self, domain: int, id: bytes) -> GioResponse:
        if domain == DOMAIN_BLOCK_BY_CID:
            return GioResponse(CODE_NOT_FOUND)
        return GioResponse(CODE_UNSUPPORTED_DOMAIN)


class BlockStoreResolver:
    """Domain 0x10: one block by binary CID, from any `get_block(cid_bytes)` callable."""

    def __init__(self, get_block: Callable[[bytes], bytes | None]) -> None:
        self._get_block = get_block

    def resolve(self, domain: int, id: bytes) -> GioResponse:
        if domain != DOMAIN_BLOCK_BY_CID:
            return GioResponse(CODE_UNSUPPORTED_DOMAIN)
        try:
            data = self._get_block(bytes(id))
        except Exception:  # a broken store must not take the node down; the backend sees an error
            log.exception("content store failed on GIO id %s", bytes(id).hex())
            return GioResponse(CODE_ERROR)
        if data is None:
            return GioResponse(CODE_NOT_FOUND)
        return GioResponse(CODE_OK, bytes(data))


def resolver_from_args(content_store: str | None = None, ipfs_api: str | None = None) -> ContentResolver:
    """Build the node's resolver from its CLI options (`rollup.content` wires in the stores of
    `client.storage`, imported lazily)."""
    if not content_store and not ipfs_api:
        return NullResolver()
    from rollup import content

    return content.resolver_from_args(content_store, ipfs_api)
