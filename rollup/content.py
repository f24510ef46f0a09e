"""Glue between the client's content stores and the node's GIO resolver (domain 0x10).

The node answers the backend's "block by binary CID" requests from the same stores the client
writes to, so an object stored by `tributary` is what the backend can fetch. A store that holds
corrupt bytes for a block answers "not found" rather than serving them (the backend would refuse
them anyway, but then it could not tell "missing" from "tampered"). A store that cannot answer
at all (`StoreUnavailable`: the IPFS API is down or timed out; an unreadable disk) raises, and
`rollup.gio.BlockStoreResolver` turns that into "unavailable", which the node retries and never
passes off as "not found".
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from dapp.content.cid import Cid
from dapp.content.errors import CidError, ContentMismatch

if TYPE_CHECKING:
    from client.storage import ContentStore
    from rollup.gio import BlockStoreResolver

log = logging.getLogger(__name__)


class ContentConfigError(ValueError):
    """The node was given both or neither content options where one is required."""


def block_getter(store: ContentStore) -> Callable[[bytes], bytes | None]:
    """`get_block(cid_bytes) -> bytes | None` over `store`, as `BlockStoreResolver` wants."""

    def get_block(cid_bytes: bytes) -> bytes | None:
        try:
            cid = Cid.from_bytes(bytes(cid_bytes))
        except CidError as exc:
            log.info("GIO id is not a CID we serve: %s", exc)
            return None
        try:
            return store.get_block(cid)
        except ContentMismatch:
            log.warning("store %s holds corrupt bytes for %s; answering not found", store, cid)
            return None

    return get_block


def open_content_store(content_store: str | None, ipfs_api: str | None) -> ContentStore:
    """The store the node's flags name: `--content-store DIR` or `--ipfs-api MULTIADDR`."""
    from client.storage import EmbeddedStore, IpfsStore

    if content_store and ipfs_api:
        raise ContentConfigError("give either --content-store or --ipfs-api, not both")
    if ipfs_api:
        api = ipfs_api[len("ipfs:"):] if ipfs_api.startswith("ipfs:") else ipfs_api
        return IpfsStore(api)
    if content_store:
        return EmbeddedStore(content_store)
    raise ContentConfigError("no content store given (--content-store DIR or --ipfs-api ADDR)")


def resolver_from_args(content_store: str | None, ipfs_api: str | None) -> BlockStoreResolver:
    """The node's GIO resolver for domain 0x10 over the store its flags name."""
    from rollup.gio import BlockStoreResolver  # the node's module; imported late on purpose

    return BlockStoreResolver(block_getter(open_content_store(content_store, ipfs_api)))

