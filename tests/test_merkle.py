"""The incremental outputs tree equals a naive explicit one, and its proofs hold on chain."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from rollup.merkle import (EMPTY_ROOT, HEIGHT, MerkleError, OutputsTree, ZERO_HASHES, keccak256, leaf_hash,
                           verify_proof)
from rollup.outputs import encode_notice, encode_voucher
from rollup.vouchers import InvalidOutputsMerkleRoot, ProvableOutput, validate_output
from tests.chain_fixtures import anvil_chain, core, make_app, submit_claim, w3  # noqa: F401


# ------------------------------------------------------------------ an independent naive tree
# Written without rollup.merkle: explicit levels up to the smallest power of two covering the
# leaves, padded with zero leaves, then the 63-level tower finished with zero-subtree hashes.

def _naive_zero(level: int) -> bytes:
    z = b"\x00" * 32
    for _ in range(level):
        z = keccak256(z + z)
    return z


def naive_levels(leaves: list[bytes]) -> list[list[bytes]]:
    width = 1
    while width < len(leaves):
        width *= 2
    levels = [list(leaves) + [b"\x00" * 32] * (width - len(leaves))]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([keccak256(prev[i] + prev[i + 1]) for i in range(0, len(prev), 2)])
    # finish the tower: each level above pairs the single node with an empty subtree
    while len(levels) <= HEIGHT:
        levels.append([keccak256(levels[-1][0] + _naive_zero(len(levels) - 1))])
    return levels


def naive_root(leaves: list[bytes]) -> bytes:
    return naive_levels(leaves)[HEIGHT][0]


def naive_proof(leaves: list[bytes], index: int) -> list[bytes]:
    levels = naive_levels(leaves)
    out = []
    for i in range(HEIGHT):
        pos = (index >> i) ^ 1
        out.append(levels[i][pos] if pos < len(levels[i]) else _naive_zero(i))
    return out


def leaves_for(n: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(encode_notice(b"%d-%d" % (salt, i))) for i in range(n)]


# ------------------------------------------------------------------------------------- tests

def test_empty_tree_root_is_cartesis() -> None:
    assert EMPTY_ROOT.hex() == "0a162946e56158bac0673e6dd3bdfdc1e4a0e7744a120fdb640050c8d7abe1c6"
    assert OutputsTree().root() == EMPTY_ROOT == naive_root([])
    assert ZERO_HASHES[HEIGHT] == EMPTY_ROOT


@given(n=st.integers(min_value=0, max_value=300), data=st.data())
def test_incremental_equals_naive(n: int, data: Any) -> None:
    leaves = leaves_for(n)
    inc = OutputsTree()
    inc.extend(leaves)
    rebuilt = OutputsTree.from_leaves(leaves)
    assert inc.root() == rebuilt.root() == naive_root(leaves)
    if n:
        for index in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4)):
            proof = inc.proof(index)
            assert proof == rebuilt.proof(index) == naive_proof(leaves, index)
            assert len(proof) == HEIGHT
            assert verify_proof(leaves[index], index, proof) == inc.root()


@given(n=st.integers(min_value=1, max_value=200), data=st.data())
def test_historical_size_roots_and_proofs(n: int, data: Any) -> None:
    """A claim's root is the root at the epoch's last output: proofs must be against that size
    even after the tree grew."""
    leaves = leaves_for(n, salt=1)
    tree = OutputsTree.from_leaves(leaves)
    size = data.draw(st.integers(0, n))
    assert tree.root(size) == naive_root(leaves[:size])
    if size:
        index = data.draw(st.integers(0, size - 1))
        assert tree.proof(index, size) == naive_proof(leaves[:size], index)


@given(n=st.integers(min_value=0, max_value=120), data=st.data())
def test_truncate_is_as_if_never_appended(n: int, data: Any) -> None:
    leaves = leaves_for(n, salt=2)
    tree = OutputsTree.from_leaves(leaves)
    k = data.draw(st.integers(0, n))
    tree.truncate(k)
    extra = leaves_for(3, salt=3)
    tree.extend(extra)
    assert tree.levels == OutputsTree.from_leaves(leaves[:k] + extra).levels


def test_bad_arguments_are_refused() -> None:
    tree = OutputsTree.from_leaves(leaves_for(5))
    with pytest.raises(MerkleError):
        tree.proof(5)
    with pytest.raises(MerkleError):
        tree.proof(3, size=3)
    with pytest.raises(MerkleError):
        tree.root(6)
    with pytest.raises(MerkleError):
        tree.append(b"short")
    with pytest.raises(MerkleError):
        verify_proof(leaves_for(1)[0], 0, [b"\x00" * 32] * 62)


def test_proofs_in_a_100k_tree_hold() -> None:
    # Proof speed on this tree is measured in bench/proofs.py, not asserted here.
    leaves = [keccak256(i.to_bytes(8, "big")) for i in range(100_000)]
    tree = OutputsTree.from_leaves(leaves)
    older = tree.root(99_999)
    for index in range(0, 99_999, 997):
        assert verify_proof(leaves[index], index, tree.proof(index, size=99_999)) == older
    assert verify_proof(leaves[54321], 54321, tree.proof(54321)) == tree.root()


# ------------------------------------------------------------------------------ on chain

@pytest.fixture(scope="module")
def claim_app(w3: Web3, core: Any) -> Any:
    # Epoch length 1: every block ends an epoch, so each example gets its own claim cheaply.
    return make_app(w3, core, epoch_length=1)


@pytest.mark.chain
@settings(max_examples=12)
@given(n=st.integers(min_value=1, max_value=70), data=st.data())
def test_proofs_validate_on_chain(w3: Web3, claim_app: Any, n: int, data: Any) -> None:
    salt = data.draw(st.integers(0, 2**32))
    outputs = [encode_notice(b"n%d-%d" % (salt, i)) if i % 3 else
               encode_voucher("0x" + "22" * 20, i, b"v%d" % salt) for i in range(n)]
    tree = OutputsTree()
    for o in outputs:
        tree.append_output(o)
    submit_claim(w3, claim_app, tree.root())
    index = data.draw(st.integers(0, n - 1))
    proof = tree.proof(index)
    validate_output(w3, claim_app.application, ProvableOutput(index, outputs[index], proof))
    level = data.draw(st.integers(0, HEIGHT - 1))
    wrong = list(proof)
    wrong[level] = keccak256(wrong[level])
    with pytest.raises(InvalidOutputsMerkleRoot):
        validate_output(w3, claim_app.application, ProvableOutput(index, outputs[index], wrong))
