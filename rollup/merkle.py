"""The Cartesi v2 outputs Merkle tree (height 63, keccak256), kept incrementally, with proofs.

Rules (CARTESI_V2.md §4): leaf = keccak256(output bytes); parent = keccak256(left ++ right);
an empty leaf is 32 zero bytes; the tree has 2**63 leaf slots; one tree over every accepted output
since genesis, by global output index. The empty tree's root is ``EMPTY_ROOT`` (0x0a16...e1c6).

Why hand-written: no maintained Python library implements this sparse, fixed-height tree with
historical-size proofs, and the node needs O(63) appends and proofs over ~1e5+ leaves.

How: ``levels[i]`` holds the hashes of the *complete* subtrees of height i, left to right
(``levels[0]`` are the leaves). A node at level i, position p is then either stored (its range is
fully inside the first n leaves), the zero-subtree hash ``ZERO_HASHES[i]`` (its range is past n),
or the single partial node on the path of leaf n-1, computed bottom-up in 63 hashes. That gives,
for any size n <= len(tree): ``root(n)`` in <= 63 hashes and ``proof(index, n)`` in 63 lookups
plus <= 63 hashes, and memory of about 2 * n hashes.

Public API::

    from rollup.merkle import OutputsTree, leaf_hash, EMPTY_ROOT, HEIGHT, verify_proof
    t = OutputsTree()                         # or OutputsTree.from_leaves(leaves_from_sqlite)
    idx = t.append(leaf_hash(output_bytes))   # -> global output index
    t.append_output(output_bytes)             # same, hashing for you
    t.root()                                  # bytes32 of the current tree
    t.root(size=n)                            # root as it stood with n leaves (a claim's root)
    t.proof(idx, size=n)                      # 63 siblings, bottom-up, for the tree of n leaves
    t.truncate(n)                             # drop leaves >= n (e.g. a rejected input's outputs)
    verify_proof(leaf, idx, siblings) == t.root(n)

A claim for an epoch is ``root(size=number of outputs after the epoch's last input)``; proofs
served for outputs of that epoch must use that same ``size``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from dapp.hashing import keccak as keccak256

HEIGHT = 63
LEAF_SIZE = 32
EMPTY_LEAF = b"\x00" * 32


class MerkleError(ValueError):
    """A bad index, size or proof shape."""


def leaf_hash(output: bytes) -> bytes:
    """The leaf for an output: keccak256 of its full ABI encoding."""
    return keccak256(output)


def _zero_hashes() -> list[bytes]:
    z = [EMPTY_LEAF]
    for _ in range(HEIGHT):
        z.append(keccak256(z[-1] + z[-1]))
    return z


# ZERO_HASHES[i] = root of an empty subtree of height i; ZERO_HASHES[63] = EMPTY_ROOT.
ZERO_HASHES: list[bytes] = _zero_hashes()
EMPTY_ROOT: bytes = ZERO_HASHES[HEIGHT]
MAX_LEAVES = 1 << HEIGHT


class OutputsTree:
    """Append-only (with truncate) height-63 Merkle tree over output leaf hashes."""

    __slots__ = ("levels",)

    def __init__(self) -> None:
        # levels[i][p] = hash of the complete subtree at height i, position p.
        self.levels: list[list[bytes]] = [[] for _ in range(HEIGHT + 1)]

    # ------------------------------------------------------------------ building

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> "OutputsTree":
        """Rebuild from stored leaf hashes (e.g. a SQLite column) level by level: n-1 hashes."""
        tree = cls()
        lvl = [bytes(x) for x in leaves]
        for x in lvl:
            if len(x) != LEAF_SIZE:
                raise MerkleError(f"a leaf must be 32 bytes, got {len(x)}")
        for i in range(HEIGHT + 1):
            tree.levels[i] = lvl
            if len(lvl) < 2:
                # Higher levels: lvl has 0 or 1 complete node; a single one is complete only at
                # its own level, so nothing propagates further.
                break
            lvl = [keccak256(lvl[j] + lvl[j + 1]) for j in range(0, len(lvl) - 1, 2)]
        return tree

    def __len__(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; returns its index. O(1) amortised, at most 63 hashes."""
        if len(leaf) != LEAF_SIZE:
            raise MerkleError(f"a leaf must be 32 bytes, got {len(leaf)}")
        index = len(self.levels[0])
        if index >= MAX_LEAVES:
            raise MerkleError("the outputs tree is full")
        self.levels[0].append(bytes(leaf))
        node, pos = bytes(leaf), index
        for i in range(HEIGHT):
            if pos & 1 == 0:
                break
            node = keccak256(self.levels[i][pos - 1] + node)
            pos >>= 1
            self.levels[i + 1].append(node)
        return index

    def append_output(self, output: bytes) -> int:
        return self.append(leaf_hash(output))

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def truncate(self, size: int) -> None:
        """Forget every leaf at index >= size (and the complete nodes that covered them)."""
        if not 0 <= size <= len(self):
            raise MerkleError(f"cannot truncate a tree of {len(self)} leaves to {size}")
        for i in range(HEIGHT + 1):
            del self.levels[i][size >> i:]

    # ------------------------------------------------------------------ reading

    def _check_size(self, size: int | None) -> int:
        n = len(self) if size is None else size
        if not 0 <= n <= len(self):
            raise MerkleError(f"size {n} is outside 0..{len(self)}")
        return n

    def _partial_path(self, n: int) -> list[bytes | None]:
        """For a tree of n leaves: entry i is the value of the node at level i on the path of
        leaf n-1 *if that node is partial* (covers leaves both below and at/after n), else None."""
        path: list[bytes | None] = [None] * (HEIGHT + 1)
        if n == 0:
            return path
        last = n - 1
        cur: bytes | None = None  # value of the path node at level i-1 if partial
        for i in range(1, HEIGHT + 1):
            pos = last >> i
            if (pos + 1) << i <= n:
                cur = None  # complete: stored at levels[i][pos]
                continue
            child = last >> (i - 1)
            if cur is None:
                child_val = self.levels[i - 1][child] if (child + 1) << (i - 1) <= n else None
            else:
                child_val = cur
            if child_val is None:  # cannot happen: the child holding leaf n-1 is non-empty
                raise AssertionError("merkle invariant broken")
            if child & 1:
                cur = keccak256(self.levels[i - 1][child - 1] + child_val)
            else:
                cur = keccak256(child_val + ZERO_HASHES[i - 1])
            path[i] = cur
        return path

    def _node(self, level: int, pos: int, n: int, path: list[bytes | None]) -> bytes:
        if (pos + 1) << level <= n:
            return self.levels[level][pos]
        if pos << level >= n:
            return ZERO_HASHES[level]
        val = path[level]
        assert val is not None
        return val

    def root(self, size: int | None = None) -> bytes:
        """Root of the tree as it stood with ``size`` leaves (default: all)."""
        n = self._check_size(size)
        if n == 0:
            return EMPTY_ROOT
        if n == MAX_LEAVES:
            return self.levels[HEIGHT][0]
        return self._node(HEIGHT, 0, n, self._partial_path(n))

    def proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The 63 siblings of leaf ``index`` bottom-up, in the tree of ``size`` leaves:
        sibling i is the node at position (index >> i) ^ 1 on level i."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise MerkleError(f"output index {index} is not in a tree of {n} leaves")
        path = self._partial_path(n)
        return [self._node(i, (index >> i) ^ 1, n, path) for i in range(HEIGHT)]


def verify_proof(leaf: bytes, index: int, siblings: Sequence[bytes]) -> bytes:
    """The root implied by ``leaf`` at ``index`` and its siblings (compare with a claimed root)."""
    if len(siblings) != HEIGHT:
        raise MerkleError(f"a proof has {HEIGHT} siblings, got {len(siblings)}")
    node = bytes(leaf)
    for i, sib in enumerate(siblings):
        node = keccak256(sib + node) if (index >> i) & 1 else keccak256(node + sib)
    return node


def _naive_node(leaves: Sequence[bytes], level: int, start: int) -> bytes:
    """The node at `level` whose subtree starts at leaf `start`, recomputed from the leaves."""
    if start >= len(leaves):
        return ZERO_HASHES[level]
    if level == 0:
        return leaves[start]
    half = 1 << (level - 1)
    return keccak256(_naive_node(leaves, level - 1, start)
                     + _naive_node(leaves, level - 1, start + half))


def naive_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Reference proof: recomputes each sibling subtree from the leaves (O(n) hashes)."""
    return [_naive_node(leaves, i, ((index >> i) ^ 1) << i) for i in range(HEIGHT)]
