"""EmbeddedStore and the store-independent pieces: open_store, rollup.content glue."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.storage import (ContentStore, EmbeddedStore, StoreSpecError, StoreUnavailable,
                            open_store)
from dapp.content.cid import RAW, Cid
from dapp.content.errors import ContentMismatch, ContentMissing, ContentTooLarge
from dapp.content.unixfs import CHUNK_SIZE, chunk
from rollup.content import ContentConfigError, block_getter, open_content_store

DATA = random.Random(5).randbytes(2 * CHUNK_SIZE + 3)


def test_round_trip(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "c")
    cid = store.put(DATA)
    assert cid == str(chunk(DATA)[0])
    assert store.has(cid)
    assert store.get(cid) == DATA
    assert store.get(cid, max_size=len(DATA)) == DATA
    assert store.put(DATA) == cid  # idempotent
    assert EmbeddedStore(tmp_path / "c").get(cid) == DATA  # persisted
    assert not list((tmp_path / "c").rglob(".tmp-*"))


@settings(max_examples=20)
@given(st.binary(max_size=3000))
def test_round_trip_small(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = EmbeddedStore(d)
        assert store.get(store.put(data)) == data


def test_blocks(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid = Cid.for_block(RAW, b"block")
    assert store.get_block(cid) is None and not store.has(cid)
    store.put_block(cid, b"block")
    assert store.get_block(str(cid)) == b"block"
    with pytest.raises(ContentMismatch, match=str(cid)):
        store.put_block(cid, b"other")
    assert store.get_block(cid) == b"block"


def test_tampered_block_is_refused(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    root = store.put(DATA)
    leaf = next(iter(chunk(DATA)[1]))
    path = store.path_of(leaf)
    path.write_bytes(b"\x01" + path.read_bytes()[1:])
    with pytest.raises(ContentMismatch, match=f"content {root}.*corrupt bytes for block {leaf}"):
        store.get(root)
    with pytest.raises(ContentMismatch):
        store.get_block(leaf)
    # the node's GIO glue answers "not found" rather than serving corrupt bytes
    assert block_getter(store)(Cid.parse(leaf).to_bytes()) is None


def test_missing_and_too_large(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    absent = str(Cid.for_block(RAW, b"nobody stored this"))
    with pytest.raises(ContentMissing, match=absent):
        store.get(absent)
    root = store.put(DATA)
    with pytest.raises(ContentTooLarge, match=root):
        store.get(root, max_size=10)


def test_open_store(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "x")), EmbeddedStore)
    with pytest.raises(StoreSpecError):
        open_store("")
    with pytest.raises(StoreSpecError, match="multiaddr"):
        open_store("ipfs:localhost:5001")
    store = open_store("ipfs:/ip4/127.0.0.1/tcp/1/http")
    assert isinstance(store, ContentStore)
    with pytest.raises(StoreUnavailable, match="no IPFS API answers at /ip4/127.0.0.1/tcp/1/http"):
        store.put(b"x")


def test_block_getter(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    root = Cid.parse(store.put(DATA))
    get = block_getter(store)
    assert get(root.to_bytes()) is not None
    assert get(Cid.for_block(RAW, b"?").to_bytes()) is None
    assert get(b"\x00garbage") is None


def test_node_resolver(tmp_path: Path) -> None:
    gio = pytest.importorskip("rollup.gio")
    from rollup.content import resolver_from_args

    store = EmbeddedStore(tmp_path)
    root = Cid.parse(store.put(b"model bytes"))
    resolver = resolver_from_args(str(tmp_path), None)
    assert isinstance(resolver, gio.BlockStoreResolver)
    found = resolver.resolve(0x10, root.to_bytes())
    assert (found.code, found.data) == (0, b"model bytes")
    assert resolver.resolve(0x10, Cid.for_block(RAW, b"?").to_bytes()).code == 1
    with pytest.raises(ContentConfigError):
        open_content_store(None, None)
    with pytest.raises(ContentConfigError):
        open_content_store(str(tmp_path), "/ip4/127.0.0.1/tcp/1/http")
