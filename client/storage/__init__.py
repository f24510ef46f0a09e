"""Client-side content storage: one `ContentStore` interface, two backends.

- `EmbeddedStore(directory)`: blocks on disk (default `.run/content`), no daemon.
- `IpfsStore(api)`: a real IPFS node over its HTTP RPC.
`open_store(spec)` picks one from a spec string: a directory path, or `ipfs:<multiaddr>` such as
`ipfs:/ip4/127.0.0.1/tcp/5001/http`.
"""
from __future__ import annotations

from client.storage.base import DEFAULT_MAX_SIZE, ContentStore
from client.storage.embedded import DEFAULT_DIRECTORY, EmbeddedStore
from client.storage.errors import StorageError, StoreSpecError, StoreUnavailable

IPFS_PREFIX = "ipfs:"

__all__ = [
    "DEFAULT_DIRECTORY",
    "DEFAULT_MAX_SIZE",
    "ContentStore",
    "EmbeddedStore",
    "IpfsStore",
    "StorageError",
    "StoreSpecError",
    "StoreUnavailable",
    "open_store",
]


def open_store(spec: str, *, timeout: float = 10.0) -> ContentStore:
    """A store from its spec: `ipfs:<multiaddr>` for IPFS, anything else is a directory."""
    if not spec or not spec.strip():
        raise StoreSpecError("empty store spec: give a directory or ipfs:<multiaddr>")
    if spec.startswith(IPFS_PREFIX):
        api = spec[len(IPFS_PREFIX):]
        if not api.startswith("/"):
            raise StoreSpecError(f"store spec {spec!r}: after 'ipfs:' comes a multiaddr such as "
                                 "/ip4/127.0.0.1/tcp/5001/http")
        from client.storage.ipfs import IpfsStore

        return IpfsStore(api, timeout=timeout)
    return EmbeddedStore(spec)


def __getattr__(name: str) -> object:
    # IpfsStore imports ipfshttpclient; load it only when asked for.
    if name == "IpfsStore":
        from client.storage.ipfs import IpfsStore

        return IpfsStore
    raise AttributeError(name)
