"""A real IPFS node as the store, over its HTTP RPC API (ipfshttpclient).

We cut objects ourselves and `block put` each block with its codec, so the CIDs are exactly the
embedded store's (and the backend's), whatever chunker the daemon would have chosen; the root is
pinned. Reads go through `block get` with a server-side timeout, so an unknown CID answers in
about `missing_timeout` seconds instead of hanging while the node searches for it; every block
read is verified.
"""
from __future__ import annotations

import io
import warnings
from typing import Any

import ipfshttpclient  # type: ignore[import-untyped]
from ipfshttpclient import exceptions as ipfs_errors  # type: ignore[import-untyped]

from dapp.content.cid import Cid

from client.storage.base import ContentStore
from client.storage.errors import StorageError, StoreUnavailable

# ipfshttpclient 0.7.0 passes urllib3 an argument it deprecated; the warning is noise to users.
warnings.filterwarnings("ignore", message="The 'strict' parameter is no longer needed",
                        category=FutureWarning)

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001/http"


class IpfsStore(ContentStore):
    """Blocks in an IPFS node (kubo or js-ipfs) reached at `api` (a multiaddr)."""

    def __init__(self, api: str = DEFAULT_API, timeout: float = 10.0,
                 missing_timeout: float = 1.0) -> None:
        self.api = api
        self.missing_timeout = missing_timeout
        try:
            # Client(), not connect(): connect() refuses current daemons by their version.
            self._client = ipfshttpclient.Client(api, timeout=timeout)
        except ipfs_errors.AddressError as exc:
            raise StorageError(f"bad IPFS API address {api!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"IpfsStore({self.api!r})"

    __str__ = __repr__

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ipfs_errors.ConnectionError as exc:
            raise StoreUnavailable(
                f"no IPFS API answers at {self.api} ({what}): start a daemon there "
                f"(e.g. `ipfs daemon`) or use the embedded store") from exc
        except ipfs_errors.TimeoutError as exc:
            raise StoreUnavailable(f"the IPFS API at {self.api} did not answer {what} in time") from exc

    def _server_timeout(self) -> dict[str, str]:
        return {"timeout": f"{max(1, int(self.missing_timeout * 1000))}ms"}

    def get_block(self, cid: Cid | str) -> bytes | None:
        parsed = Cid.parse(cid)
        try:
            data = self._call(f"block/get {parsed}", self._client.block.get, str(parsed),
                              opts=self._server_timeout())
        except ipfs_errors.ErrorResponse:
            return None  # js-ipfs and kubo answer "timed out" / "not found" for absent blocks
        return self._verified(parsed, bytes(data), "returned wrong bytes")

    def has(self, cid: Cid | str) -> bool:
        parsed = Cid.parse(cid)
        try:
            self._call(f"block/stat {parsed}", self._client.block.stat, str(parsed),
                       opts=self._server_timeout())
        except ipfs_errors.ErrorResponse:
            return False
        return True

    def put_block(self, cid: Cid | str, data: bytes) -> None:
        parsed = Cid.parse(cid)
        parsed.verify(data)
        opts = {"format": parsed.codec_name, "mhtype": "sha2-256", "version": 1,
                "cid-base": "base32"}
        try:
            resp = self._call(f"block/put {parsed}", self._client.block.put, io.BytesIO(data),
                              opts=opts)
        except ipfs_errors.ErrorResponse as exc:
            raise StorageError(f"{self} refused block {parsed}: {exc}") from exc
        key = str(resp.get("Key", ""))
        if key != str(parsed):
            raise StorageError(f"{self} stored block {parsed} under {key!r}: the daemon does not "
                               "honour codec/version/hash options")

    def pin(self, root: Cid) -> None:
        try:
            self._call(f"pin/add {root}", self._client.pin.add, str(root))
        except ipfs_errors.ErrorResponse as exc:
            raise StorageError(f"{self} could not pin {root}: {exc}") from exc
