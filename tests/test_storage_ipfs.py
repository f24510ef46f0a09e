"""IpfsStore against a real js-ipfs daemon: same CIDs as the embedded store, verified reads,
unknown CIDs answered as absent (not a hang), clear errors when no daemon answers."""
from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from client.storage import EmbeddedStore, StoreUnavailable, open_store
from client.storage.ipfs import IpfsStore
from dapp.content.cid import RAW, Cid
from dapp.content.errors import ContentMismatch, ContentMissing, ContentTooLarge
from dapp.content.unixfs import CHUNK_SIZE
from rollup.content import block_getter
from tests.ipfs_daemon import IpfsDaemon, ipfs_api  # noqa: F401

pytestmark = pytest.mark.ipfs
DATA = random.Random(11).randbytes(3 * CHUNK_SIZE + 1)


def test_round_trip_same_cid_as_embedded(ipfs_api: IpfsDaemon, tmp_path: Path) -> None:  # noqa: F811
    store = open_store("ipfs:" + ipfs_api.api)
    assert isinstance(store, IpfsStore)
    cid = store.put(DATA)
    assert cid == EmbeddedStore(tmp_path).put(DATA)
    assert store.has(cid)
    assert store.get(cid) == DATA
    assert store.get(cid, max_size=len(DATA)) == DATA
    # pinned, and servable by the daemon itself
    pins = store._client.pin.ls(type="recursive")["Keys"]
    assert any(Cid.parse(cid).digest == _digest(k) for k in pins)
    assert store._client.cat(cid) == DATA
    with pytest.raises(ContentTooLarge, match=cid):
        store.get(cid, max_size=100)
    assert block_getter(store)(Cid.parse(cid).to_bytes()) is not None


def _digest(key: str) -> bytes:
    # pin ls answers in the daemon's default base (base58btc for CIDv1): compare digests
    import cid as pycid

    return bytes(pycid.make_cid(key).multihash[2:])


def test_missing_block_answers_none(ipfs_api: IpfsDaemon) -> None:  # noqa: F811
    store = IpfsStore(ipfs_api.api, missing_timeout=0.5)
    absent = str(Cid.for_block(RAW, b"nobody stored this"))
    assert store.get_block(absent) is None
    assert not store.has(absent)
    with pytest.raises(ContentMissing, match=absent):
        store.get(absent)


def test_objects_are_verified_above_the_block_layer(ipfs_api: IpfsDaemon) -> None:  # noqa: F811
    # Even a store whose get_block skipped its check cannot pass wrong bytes through get().
    store = IpfsStore(ipfs_api.api)

    class Lying(IpfsStore):
        def get_block(self, cid: Cid | str) -> bytes | None:
            block = super().get_block(cid)
            return None if block is None else block[::-1]

    liar = Lying(store.api)
    cid = liar.put(b"abcdef")
    with pytest.raises(ContentMismatch, match=cid):
        liar.get(cid)


def test_verify_on_read(ipfs_api: IpfsDaemon, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store = IpfsStore(ipfs_api.api)
    cid = store.put(b"the real model")
    monkeypatch.setattr(store._client.block, "get", lambda *a, **k: b"a fake model")
    with pytest.raises(ContentMismatch, match=f"returned wrong bytes for block {cid}"):
        store.get_block(cid)
    with pytest.raises(ContentMismatch, match=cid):
        store.get(cid)


def test_unreachable_is_clear() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    store = IpfsStore(f"/ip4/127.0.0.1/tcp/{port}/http", timeout=2)
    for call in (lambda: store.put(b"x"), lambda: store.get_block(str(Cid.for_block(RAW, b"x"))),
                 lambda: store.has(str(Cid.for_block(RAW, b"x")))):
        with pytest.raises(StoreUnavailable, match=f"no IPFS API answers at .*tcp/{port}"):
            call()
