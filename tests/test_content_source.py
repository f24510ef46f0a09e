"""GioSource: content over GIO domain 0x10 with every block verified, errors naming the CID."""
from __future__ import annotations

import random

import pytest

from dapp.content.cid import Cid
from dapp.content.errors import CidError, ContentMismatch, ContentMissing, ContentTooLarge
from dapp.content.source import GIO_DOMAIN_BLOCK, ContentSource, GioSource
from dapp.content.unixfs import CHUNK_SIZE, chunk


class FakeNode:
    """Answers domain 0x10 from a dict of blocks, as the host-mode node does."""

    def __init__(self, blocks: dict[str, bytes]) -> None:
        self.blocks = {Cid.parse(k).to_bytes(): v for k, v in blocks.items()}
        self.calls: list[tuple[int, bytes]] = []

    def __call__(self, domain: int, ident: bytes) -> tuple[int, bytes]:
        self.calls.append((domain, ident))
        if domain != GIO_DOMAIN_BLOCK:
            return 2, b""
        block = self.blocks.get(ident)
        return (1, b"") if block is None else (0, block)


DATA = random.Random(7).randbytes(2 * CHUNK_SIZE + 10)
ROOT, BLOCKS = chunk(DATA)


def test_gets_a_multi_block_object() -> None:
    node = FakeNode(BLOCKS)
    source = GioSource(node)
    assert isinstance(source, ContentSource)
    assert source.get(str(ROOT), max_size=len(DATA)) == DATA
    assert [d for d, _ in node.calls] == [0x10] * 4
    assert node.calls[0][1] == ROOT.to_bytes()
    assert source.requests == 4


def test_missing_block_names_the_object() -> None:
    blocks = dict(BLOCKS)
    leaf = next(iter(blocks))
    del blocks[leaf]
    with pytest.raises(ContentMissing, match=f"content {ROOT}: block {leaf}.*code 1") as info:
        GioSource(FakeNode(blocks)).get(str(ROOT), max_size=len(DATA))
    assert info.value.cid == str(ROOT)


def test_lying_node_is_caught() -> None:
    node = FakeNode(BLOCKS)
    leaf = Cid.parse(next(iter(BLOCKS))).to_bytes()
    node.blocks[leaf] = b"\x00" * CHUNK_SIZE
    with pytest.raises(ContentMismatch, match=str(ROOT)):
        GioSource(node).get(str(ROOT), max_size=len(DATA))


def test_too_large_costs_one_request() -> None:
    node = FakeNode(BLOCKS)
    with pytest.raises(ContentTooLarge, match=str(ROOT)):
        GioSource(node).get(str(ROOT), max_size=CHUNK_SIZE)
    assert len(node.calls) == 1


def test_bad_cid_string() -> None:
    with pytest.raises(CidError):
        GioSource(FakeNode({})).get("Qmnope", max_size=10)


def test_error_codes_other_than_not_found() -> None:
    with pytest.raises(ContentMissing, match="code 3 \\(error\\)"):
        GioSource(lambda d, i: (3, b"")).get(str(ROOT), max_size=len(DATA))
