"""UnixFS files as `ipfs add --cid-version=1 --raw-leaves --chunker=size-262144` builds them.

Layout (ipfs-unixfs-importer's balanced builder, which kubo shares): the bytes are cut into raw
leaves of 262,144 bytes; a file of one leaf is that raw leaf; otherwise leaves are grouped 174 at
a time under dag-pb nodes, and those nodes again, until one root is left. Each node is a PBNode
(Links, field 2, before Data, field 1) whose Data is UnixFS{Type=File, filesize, blocksizes}.

Hand-written because dapp/ runs in the riscv64 image with only Debian packages and pure wheels,
and dag-pb/UnixFS is a few dozen lines of protobuf; tests check it against js-ipfs itself.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dapp.content.cid import DAG_PB, RAW, Cid, decode_uvarint, encode_uvarint
from dapp.content.errors import (CidError, ContentError, ContentMalformed, ContentOverBudget,
                                 ContentTooLarge)

CHUNK_SIZE = 262_144
MAX_LINKS = 174
# Deep enough for any file we would accept (174**6 leaves is ~1.5e19 bytes); stops a hostile
# chain of single-link nodes from recursing without end.
MAX_DEPTH = 8
MIN_LEAF_BYTES = 16_384
"""Smallest average leaf a fetched file may have (see `leaf_budget`). Our layout and `ipfs add
--chunker=size-262144` use 262,144-byte leaves, 16 times more; a DAG of 1-byte leaves would
make one fetch cost one request per byte (a 1 MB file: a million GIO round trips; see
bench/content_budget.py)."""
MAX_NODE_BYTES = 65_536
"""Largest dag-pb block decoded. A full node of our layout (174 links) is about 9 KB; the cap
stops a huge block from costing a long decode before the block budget can refuse it."""
UNIXFS_FILE = 2

_WIRE_VARINT = 0
_WIRE_BYTES = 2


# --- protobuf, the few pieces dag-pb and UnixFS need ------------------------------------------
def _key(field: int, wire: int) -> bytes:
    return encode_uvarint(field << 3 | wire)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, _WIRE_BYTES) + encode_uvarint(len(value)) + value


def _varint_field(field: int, value: int) -> bytes:
    return _key(field, _WIRE_VARINT) + encode_uvarint(value)


def _fields(data: bytes, what: str, cid: Cid) -> list[tuple[int, int, int | bytes]]:
    """Split a protobuf message into (field, wire type, value); only varint and bytes wires."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    try:
        while pos < len(data):
            key, pos = decode_uvarint(data, pos, what=f"{what} field key")
            field, wire = key >> 3, key & 7
            if field == 0:
                raise ValueError(f"field number 0 at byte {pos}")
            if wire == _WIRE_VARINT:
                value, pos = decode_uvarint(data, pos, what=f"{what} field {field}")
                out.append((field, wire, value))
            elif wire == _WIRE_BYTES:
                length, pos = decode_uvarint(data, pos, what=f"{what} field {field} length")
                if pos + length > len(data):
                    raise ValueError(f"field {field} runs past the end ({length} bytes at {pos})")
                out.append((field, wire, data[pos:pos + length]))
                pos += length
            else:
                raise ValueError(f"field {field} has unsupported wire type {wire}")
    except ValueError as exc:
        raise ContentMalformed(f"block {cid}: malformed {what}: {exc}", str(cid)) from None
    return out


# --- dag-pb + UnixFS encode --------------------------------------------------------------------
def _encode_node(links: list[tuple[Cid, int]], blocksizes: list[int]) -> bytes:
    """PBNode{Links: [PBLink{Hash, Name: "", Tsize}], Data: UnixFS File}, links first."""
    unixfs = _varint_field(1, UNIXFS_FILE) + _varint_field(3, sum(blocksizes))
    unixfs += b"".join(_varint_field(4, size) for size in blocksizes)
    body = b"".join(
        _bytes_field(2, _bytes_field(1, cid.to_bytes()) + _bytes_field(2, b"") + _varint_field(3, tsize))
        for cid, tsize in links
    )
    return body + _bytes_field(1, unixfs)


@dataclass(frozen=True, slots=True)
class _Built:
    cid: Cid
    filesize: int  # bytes of file content under this node
    tsize: int  # encoded size of this block plus everything under it (PBLink.Tsize)


def chunk(data: bytes) -> tuple[Cid, dict[str, bytes]]:
    """Cut `data` into the blocks of its UnixFS file; return (root CID, {cid string: block}).

    The dict holds each distinct block once (a file of repeated chunks shares leaves), leaves
    first and the root last.
    """
    blocks: dict[str, bytes] = {}
    level: list[_Built] = []
    for offset in range(0, max(len(data), 1), CHUNK_SIZE):
        piece = bytes(data[offset:offset + CHUNK_SIZE])
        cid = Cid.for_block(RAW, piece)
        blocks[str(cid)] = piece
        level.append(_Built(cid, len(piece), len(piece)))
    if len(level) == 1:  # one leaf: the file is that raw block (reduceSingleLeafToSelf)
        return level[0].cid, blocks
    while True:
        parents: list[_Built] = []
        for start in range(0, len(level), MAX_LINKS):
            group = level[start:start + MAX_LINKS]
            node = _encode_node([(b.cid, b.tsize) for b in group], [b.filesize for b in group])
            cid = Cid.for_block(DAG_PB, node)
            blocks[str(cid)] = node
            parents.append(_Built(cid, sum(b.filesize for b in group),
                                  len(node) + sum(b.tsize for b in group)))
        if len(parents) == 1:
            root = parents[0].cid
            blocks[str(root)] = blocks.pop(str(root))  # keep the root last
            return root, blocks
        level = parents


# --- dag-pb + UnixFS decode --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FileNode:
    """A decoded dag-pb UnixFS File node: its children and the content size under each."""

    links: tuple[Cid, ...]
    blocksizes: tuple[int, ...]
    filesize: int


def decode_node(cid: Cid, block: bytes) -> FileNode:
    """Decode a dag-pb block strictly as a UnixFS File node with children and no inline data.

    Strict on purpose: the canonical dag-pb field order, every link with a CIDv1 we accept,
    blocksizes that are positive, one per link, summing to filesize.
    """
    def bad(reason: str) -> ContentMalformed:
        return ContentMalformed(f"block {cid}: {reason}", str(cid))

    if len(block) > MAX_NODE_BYTES:
        raise bad(f"dag-pb block of {len(block)} bytes is over the limit of {MAX_NODE_BYTES}")

    links: list[Cid] = []
    data: bytes | None = None
    for field, wire, value in _fields(block, "PBNode", cid):
        if field == 2 and wire == _WIRE_BYTES:
            if data is not None:
                raise bad("PBNode has Links after Data (non-canonical dag-pb)")
            assert isinstance(value, bytes)
            links.append(_decode_link(cid, value, len(links)))
        elif field == 1 and wire == _WIRE_BYTES:
            if data is not None:
                raise bad("PBNode has two Data fields")
            assert isinstance(value, bytes)
            data = value
        else:
            raise bad(f"PBNode has unexpected field {field} (wire type {wire})")
    if data is None:
        raise bad("PBNode has no Data: not a UnixFS node")

    kind: int | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for field, wire, value in _fields(data, "UnixFS Data", cid):
        if field == 1 and wire == _WIRE_VARINT:
            if kind is not None:
                raise bad("UnixFS Data has two Type fields")
            kind = int(value)  # type: ignore[arg-type]
        elif field == 2 and wire == _WIRE_BYTES:
            if value:
                raise bad("UnixFS node carries inline data; only raw leaves are accepted")
        elif field == 3 and wire == _WIRE_VARINT:
            if filesize is not None:
                raise bad("UnixFS Data has two filesize fields")
            filesize = int(value)  # type: ignore[arg-type]
        elif field == 4 and wire == _WIRE_VARINT:
            blocksizes.append(int(value))  # type: ignore[arg-type]
        elif field in (7, 8):  # mode, mtime: metadata that does not change the bytes
            continue
        else:
            raise bad(f"UnixFS Data has unexpected field {field} (wire type {wire})")
    if kind != UNIXFS_FILE:
        raise bad(f"UnixFS type {kind} is not File ({UNIXFS_FILE})")
    if not links:
        raise bad("UnixFS File node has no links")
    if len(blocksizes) != len(links):
        raise bad(f"{len(links)} links but {len(blocksizes)} blocksizes")
    if any(size <= 0 for size in blocksizes):
        raise bad("a blocksize is zero")
    if filesize is None:
        raise bad("UnixFS File node has no filesize")
    if filesize != sum(blocksizes):
        raise bad(f"filesize {filesize} is not the sum of blocksizes {sum(blocksizes)}")
    return FileNode(tuple(links), tuple(blocksizes), filesize)


def _decode_link(parent: Cid, data: bytes, index: int) -> Cid:
    seen: list[int] = []
    target: Cid | None = None
    for field, wire, value in _fields(data, f"PBLink {index}", parent):
        if field in seen or (seen and field < seen[-1]):
            raise ContentMalformed(
                f"block {parent}: PBLink {index} has field {field} repeated or out of order",
                str(parent))
        seen.append(field)
        if field == 1 and wire == _WIRE_BYTES:
            assert isinstance(value, bytes)
            try:
                target = Cid.from_bytes(value)
            except CidError as exc:
                raise ContentMalformed(f"block {parent}: PBLink {index}: {exc}",
                                       str(parent)) from None
        elif field == 2 and wire == _WIRE_BYTES:
            pass  # Name: "" in files; not used to find the bytes
        elif field == 3 and wire == _WIRE_VARINT:
            pass  # Tsize: a hint about the subtree's encoded size; decides nothing (sizes and
            # budgets come from blocksizes, each checked against its child), so not trusted
        else:
            raise ContentMalformed(
                f"block {parent}: PBLink {index} has unexpected field {field} (wire type {wire})",
                str(parent))
    if target is None:
        raise ContentMalformed(f"block {parent}: PBLink {index} has no Hash", str(parent))
    return target


# --- assemble ------------------------------------------------------------------------------------
def leaf_budget(filesize: int) -> int:
    """Most leaves (raw-block visits, repeats included) a file of `filesize` bytes may have:
    one per MIN_LEAF_BYTES, rounded up, at least one. Our layout needs one per CHUNK_SIZE."""
    return max(1, -(-filesize // MIN_LEAF_BYTES))


def inner_budget(filesize: int) -> int:
    """Most inner dag-pb nodes (visits, repeats included) under the root: the leaf budget plus
    one per level. A tree whose inner nodes have two or more links (all but one per level, the
    tail) has fewer inner nodes than leaves; chains of one-link nodes are what this stops."""
    return leaf_budget(filesize) + MAX_DEPTH


def assemble(root: Cid | str | bytes, get_block: Callable[[Cid], bytes], *, max_size: int) -> bytes:
    """Rebuild a file from its blocks, verifying each block's hash before using it.

    `get_block` raises (e.g. ContentMissing) when it cannot supply a block. Every cost is bounded
    before it is paid, from what the blocks already fetched declare:
    - the size cap, from the root's filesize, before any other block is fetched (an oversized
      object costs one block);
    - the block budget: at most `leaf_budget(filesize)` leaves and `inner_budget(filesize)`
      inner nodes, counted from each node's links before its children are fetched, so a DAG of
      tiny leaves is refused (ContentOverBudget) after a few fetches instead of one per byte;
    - the depth, MAX_DEPTH, checked before fetching the next level;
    - each distinct block is fetched and verified once per call (a DAG that repeats a block,
      like a file of zeros, costs one request for it).
    """
    root_cid = Cid.parse(root)
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    walk = _Walk(root_cid, get_block)
    block = walk.block(root_cid)
    if root_cid.codec == RAW:
        if len(block) > max_size:
            raise ContentTooLarge(
                f"{root_cid} is {len(block)} bytes, over the cap of {max_size}", str(root_cid))
        return block
    node = walk.node(root_cid, block)
    if node.filesize > max_size:
        raise ContentTooLarge(
            f"{root_cid} is {node.filesize} bytes, over the cap of {max_size}", str(root_cid))
    walk.set_budget(node.filesize)
    out = bytearray()
    walk.append_children(root_cid, node, out, depth=1)
    if len(out) != node.filesize:  # unreachable when every level checks; kept as a guard
        raise ContentMalformed(f"{root_cid}: assembled {len(out)} bytes, filesize says "
                               f"{node.filesize}", str(root_cid))
    return bytes(out)


def assemble_object(root: Cid | str | bytes, get_block: Callable[[Cid], bytes], *,
                    max_size: int) -> bytes:
    """`assemble` for a caller that asked for `root`: an error about an inner block is raised
    again (same type) naming the object, so a report says which object could not be had."""
    root_cid = Cid.parse(root)
    try:
        return assemble(root_cid, get_block, max_size=max_size)
    except ContentError as exc:
        if exc.cid == str(root_cid):
            raise
        raise type(exc)(f"content {root_cid}: {exc}", str(root_cid)) from exc


class _Walk:
    """One assembly: what was fetched so far (each distinct CID fetched and verified once: inner
    nodes kept decoded, leaves kept as their place in the output, so nothing is held twice) and
    the leaves and inner nodes declared so far against the budget of the root's size."""

    def __init__(self, root: Cid, get_block: Callable[[Cid], bytes]) -> None:
        self.root = root
        self._get_block = get_block
        self._nodes: dict[Cid, FileNode] = {}
        self._leaves: dict[Cid, tuple[int, int]] = {}  # leaf -> (offset in out, length)
        self.filesize = 0
        self.max_leaves = self.max_inner = 0
        self.leaves = self.inner = 0

    def set_budget(self, filesize: int) -> None:
        self.filesize = filesize
        self.max_leaves, self.max_inner = leaf_budget(filesize), inner_budget(filesize)

    def block(self, cid: Cid) -> bytes:
        block = self._get_block(cid)
        cid.verify(block)
        return block

    def node(self, cid: Cid, block: bytes | None = None) -> FileNode:
        node = self._nodes.get(cid)
        if node is None:
            node = self._nodes[cid] = decode_node(cid, self.block(cid) if block is None
                                                  else block)
        return node

    def _over(self, what: str, count: int, limit: int, rule: str) -> ContentOverBudget:
        return ContentOverBudget(
            f"{self.root}: its DAG declares more than {limit} {what} ({count} so far) for a "
            f"file of {self.filesize} bytes; the limit is {rule}. Add it with "
            f"{CHUNK_SIZE}-byte leaves (ipfs add --cid-version=1 --raw-leaves "
            f"--chunker=size-{CHUNK_SIZE})", str(self.root))

    def append_children(self, parent: Cid, node: FileNode, out: bytearray, depth: int) -> None:
        raw = sum(1 for child in node.links if child.codec == RAW)
        inner = len(node.links) - raw
        if inner and depth >= MAX_DEPTH:
            raise ContentMalformed(f"{parent}: UnixFS tree deeper than {MAX_DEPTH}", str(parent))
        self.leaves += raw
        self.inner += inner
        if self.leaves > self.max_leaves:
            raise self._over("leaves", self.leaves, self.max_leaves,
                             f"one leaf per {MIN_LEAF_BYTES} bytes, rounded up")
        if self.inner > self.max_inner:
            raise self._over("inner nodes", self.inner, self.max_inner,
                             f"one per {MIN_LEAF_BYTES} bytes, rounded up, plus {MAX_DEPTH}")
        for child, size in zip(node.links, node.blocksizes):
            if child.codec == RAW:
                seen = self._leaves.get(child)
                if seen is None:
                    block = self.block(child)
                    seen = self._leaves[child] = (len(out), len(block))
                    out += block
                else:
                    out += out[seen[0]:seen[0] + seen[1]]
                if seen[1] != size:
                    raise ContentMalformed(
                        f"{parent}: leaf {child} has {seen[1]} bytes, its parent says {size}",
                        str(parent))
            else:
                sub = self.node(child)
                if sub.filesize != size:
                    raise ContentMalformed(
                        f"{parent}: node {child} holds {sub.filesize} bytes, its parent says "
                        f"{size}", str(parent))
                self.append_children(child, sub, out, depth + 1)
