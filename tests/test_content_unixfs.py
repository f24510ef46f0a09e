"""UnixFS chunk/assemble on the host: layout, round trips, and every refusal of assemble.

Compatibility with a real IPFS implementation is in test_content_ipfs_compat.py.
"""
from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dapp.content.cid import DAG_PB, RAW, Cid
from dapp.content.errors import (ContentMalformed, ContentMismatch, ContentMissing,
                                 ContentTooLarge)
from dapp.content.unixfs import (CHUNK_SIZE, MAX_LINKS, _bytes_field, _encode_node,
                                 _varint_field, assemble, chunk, decode_node)


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def getter(blocks: dict[str, bytes], calls: list[Cid] | None = None) -> Callable[[Cid], bytes]:
    def get(cid: Cid) -> bytes:
        if calls is not None:
            calls.append(cid)
        try:
            return blocks[str(cid)]
        except KeyError:
            raise ContentMissing(f"{cid} missing", str(cid)) from None
    return get


@pytest.mark.parametrize(("size", "codec", "n_blocks"), [
    (0, RAW, 1), (1, RAW, 1), (CHUNK_SIZE, RAW, 1), (CHUNK_SIZE + 1, DAG_PB, 3),
    (1_000_000, DAG_PB, 5),
])
def test_layout(size: int, codec: int, n_blocks: int) -> None:
    data = data_of(size)
    root, blocks = chunk(data)
    assert root.codec == codec
    assert len(blocks) == n_blocks
    assert list(blocks)[-1] == str(root)
    for cid, block in blocks.items():
        Cid.parse(cid).verify(block)
    assert assemble(root, getter(blocks), max_size=size) == data


def test_multi_level_layout() -> None:
    n_leaves = MAX_LINKS + 2
    data = data_of(n_leaves * CHUNK_SIZE - 7, seed=3)
    root, blocks = chunk(data)
    top = decode_node(root, blocks[str(root)])
    assert len(top.links) == 2 and top.filesize == len(data)
    first = decode_node(top.links[0], blocks[str(top.links[0])])
    assert len(first.links) == MAX_LINKS and set(first.blocksizes) == {CHUNK_SIZE}
    second = decode_node(top.links[1], blocks[str(top.links[1])])
    assert second.blocksizes == (CHUNK_SIZE, CHUNK_SIZE - 7)
    assert assemble(root, getter(blocks), max_size=len(data)) == data


def test_repeated_chunks_share_leaves() -> None:
    data = bytes(3 * CHUNK_SIZE)
    root, blocks = chunk(data)
    assert len(blocks) == 2
    assert assemble(root, getter(blocks), max_size=len(data)) == data


@given(st.integers(min_value=0, max_value=4 * CHUNK_SIZE + 3), st.integers(0, 2**32))
def test_round_trip(size: int, seed: int) -> None:
    data = data_of(size, seed)
    root, blocks = chunk(data)
    assert (root.codec == RAW) == (size <= CHUNK_SIZE)
    assert chunk(data)[0] == root  # deterministic
    assert assemble(str(root), getter(blocks), max_size=size) == data
    for cid, block in blocks.items():
        parsed = Cid.parse(cid)
        if parsed.codec == DAG_PB:
            node = decode_node(parsed, block)
            assert node.filesize == sum(node.blocksizes)
            assert _encode_node([(c, 0) for c in node.links], list(node.blocksizes)) != b""


@given(st.lists(st.integers(min_value=1, max_value=2**40), min_size=1, max_size=MAX_LINKS),
       st.integers(0, 2**20))
def test_node_encoding_round_trips(sizes: list[int], tsize: int) -> None:
    links = [Cid.for_block(RAW, i.to_bytes(4, "big")) for i in range(len(sizes))]
    block = _encode_node([(c, tsize) for c in links], sizes)
    cid = Cid.for_block(DAG_PB, block)
    node = decode_node(cid, block)
    assert node.links == tuple(links) and node.blocksizes == tuple(sizes)
    assert node.filesize == sum(sizes)


# --- refusals ------------------------------------------------------------------------------
def test_tampered_leaf_is_refused() -> None:
    data = data_of(CHUNK_SIZE * 2)
    root, blocks = chunk(data)
    leaf = next(iter(blocks))
    blocks[leaf] = b"\x00" + blocks[leaf][1:]
    with pytest.raises(ContentMismatch, match=leaf):
        assemble(root, getter(blocks), max_size=len(data))


def test_tampered_root_is_refused() -> None:
    root, blocks = chunk(b"hello")
    blocks[str(root)] = b"hellO"
    with pytest.raises(ContentMismatch, match=str(root)):
        assemble(root, getter(blocks), max_size=10)


def test_missing_leaf_propagates() -> None:
    root, blocks = chunk(data_of(CHUNK_SIZE + 5))
    del blocks[next(iter(blocks))]
    with pytest.raises(ContentMissing):
        assemble(root, getter(blocks), max_size=CHUNK_SIZE * 2)


def test_size_cap_is_enforced_before_leaves_are_fetched() -> None:
    data = data_of(3 * CHUNK_SIZE)
    root, blocks = chunk(data)
    calls: list[Cid] = []
    with pytest.raises(ContentTooLarge, match=f"{root} is {len(data)} bytes, over the cap of 100"):
        assemble(root, getter(blocks, calls), max_size=100)
    assert calls == [root]
    assert assemble(root, getter(blocks), max_size=len(data)) == data


def test_size_cap_on_a_raw_root() -> None:
    root, blocks = chunk(b"x" * 50)
    with pytest.raises(ContentTooLarge, match=str(root)):
        assemble(root, getter(blocks), max_size=49)


def _node(links: bytes, data: bytes) -> bytes:
    return links + _bytes_field(1, data)


def _link(cid: Cid, name: bytes = b"", tsize: int = 1) -> bytes:
    return _bytes_field(2, _bytes_field(1, cid.to_bytes()) + _bytes_field(2, name)
                        + _varint_field(3, tsize))


LEAF = b"abc"
LEAF_CID = Cid.for_block(RAW, LEAF)
FILE = _varint_field(1, 2)


@pytest.mark.parametrize(("block", "reason"), [
    (_node(_link(LEAF_CID), _varint_field(1, 1) + _varint_field(3, 3) + _varint_field(4, 3)),
     "type 1 is not File"),
    (_bytes_field(1, FILE + _varint_field(3, 3) + _varint_field(4, 3)) + _link(LEAF_CID),
     "Links after Data"),
    (_link(LEAF_CID), "no Data"),
    (_node(_link(LEAF_CID), FILE + _varint_field(3, 3)), "1 links but 0 blocksizes"),
    (_node(b"", FILE + _varint_field(3, 0)), "no links"),
    (_node(_link(LEAF_CID), FILE + _varint_field(3, 4) + _varint_field(4, 3)),
     "filesize 4 is not the sum"),
    (_node(_link(LEAF_CID), FILE + _varint_field(4, 3)), "no filesize"),
    (_node(_link(LEAF_CID) + _link(LEAF_CID),
           FILE + _varint_field(3, 3) + _varint_field(4, 3) + _varint_field(4, 0)),
     "blocksize is zero"),
    (_node(_link(LEAF_CID), FILE + _bytes_field(2, b"inline") + _varint_field(3, 3)
           + _varint_field(4, 3)), "inline data"),
    (_node(_link(LEAF_CID), FILE + _varint_field(3, 3) + _varint_field(4, 3)
           + _varint_field(9, 1)), "unexpected field 9"),
    (_node(_link(LEAF_CID), FILE + _varint_field(3, 3) + _varint_field(4, 3))
     + _varint_field(5, 1), "PBNode has unexpected field 5"),
    (_node(_link(LEAF_CID), FILE + _varint_field(3, 3) + _varint_field(4, 3))[:-1],
     "malformed|runs past"),
    (_node(_bytes_field(2, _varint_field(3, 5)), FILE + _varint_field(3, 3)
           + _varint_field(4, 3)), "has no Hash"),
    (_node(_bytes_field(2, _bytes_field(1, b"\x01\x71\x12\x20" + bytes(32))),
           FILE + _varint_field(3, 3) + _varint_field(4, 3)), "codec 0x71"),
    (_node(_bytes_field(2, _varint_field(3, 5) + _bytes_field(1, LEAF_CID.to_bytes())),
           FILE + _varint_field(3, 3) + _varint_field(4, 3)), "out of order"),
    (b"\x0d\x00\x00\x00\x00", "wire type 5"),
])
def test_malformed_nodes_are_refused(block: bytes, reason: str) -> None:
    cid = Cid.for_block(DAG_PB, block)
    blocks = {str(cid): block, str(LEAF_CID): LEAF}
    with pytest.raises(ContentMalformed, match=reason) as info:
        assemble(cid, getter(blocks), max_size=1000)
    assert info.value.cid == str(cid)


def test_leaf_size_must_match_blocksize() -> None:
    block = _node(_link(LEAF_CID), FILE + _varint_field(3, 4) + _varint_field(4, 4))
    cid = Cid.for_block(DAG_PB, block)
    with pytest.raises(ContentMalformed, match="has 3 bytes, its parent says 4"):
        assemble(cid, getter({str(cid): block, str(LEAF_CID): LEAF}), max_size=1000)


def test_subtree_size_must_match_blocksize() -> None:
    inner = _node(_link(LEAF_CID), FILE + _varint_field(3, 3) + _varint_field(4, 3))
    inner_cid = Cid.for_block(DAG_PB, inner)
    outer = _node(_link(inner_cid), FILE + _varint_field(3, 5) + _varint_field(4, 5))
    cid = Cid.for_block(DAG_PB, outer)
    blocks = {str(cid): outer, str(inner_cid): inner, str(LEAF_CID): LEAF}
    with pytest.raises(ContentMalformed, match="holds 3 bytes, its parent says 5"):
        assemble(cid, getter(blocks), max_size=1000)


def test_depth_is_bounded() -> None:
    blocks = {str(LEAF_CID): LEAF}
    cid = LEAF_CID
    for _ in range(12):
        block = _node(_link(cid), FILE + _varint_field(3, 3) + _varint_field(4, 3))
        cid = Cid.for_block(DAG_PB, block)
        blocks[str(cid)] = block
    with pytest.raises(ContentMalformed, match="deeper than"):
        assemble(cid, getter(blocks), max_size=1000)


def test_mode_and_mtime_are_accepted() -> None:
    block = _node(_link(LEAF_CID), FILE + _varint_field(3, 3) + _varint_field(4, 3)
                  + _varint_field(7, 0o644) + _bytes_field(8, _varint_field(1, 5)))
    cid = Cid.for_block(DAG_PB, block)
    assert assemble(cid, getter({str(cid): block, str(LEAF_CID): LEAF}), max_size=3) == LEAF
