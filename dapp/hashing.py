"""Hashes the backend uses: keccak-256 (Ethereum's) and sha2-256 (content ids).

Keccak comes from pycryptodome because it is a Debian package on riscv64, so the machine image
and the host run the same implementation.
"""

from __future__ import annotations

import hashlib

from Crypto.Hash import keccak as _keccak


def keccak(data: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=data).digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


MUHASH_PRIME = 2**3072 - 1103717
"""The largest 3072-bit safe prime below 2**3072, Bitcoin Core's MuHash3072 modulus."""


class MultisetHash:
    """An incremental hash of a multiset of byte strings (MuHash, as Bitcoin Core hashes its
    UTXO set): the product of each element's 3072-bit hash modulo a prime, so adding or
    removing one element is one multiplication, and the digest depends on the contents, not
    on the order they came in. Finding two different multisets with one digest is as hard as
    a discrete logarithm in that group. Written here: no Python package provides one."""

    def __init__(self) -> None:
        self._num = 1
        self._den = 1

    @staticmethod
    def _element(data: bytes) -> int:
        return int.from_bytes(hashlib.shake_256(data).digest(384), "big") % MUHASH_PRIME or 1

    def add(self, data: bytes) -> None:
        self._num = self._num * self._element(data) % MUHASH_PRIME

    def remove(self, data: bytes) -> None:
        """Remove one copy of `data` (it must have been added)."""
        self._den = self._den * self._element(data) % MUHASH_PRIME

    def digest(self) -> bytes:
        """keccak of the normalised product (one modular inverse)."""
        if self._den != 1:
            self._num = self._num * pow(self._den, -1, MUHASH_PRIME) % MUHASH_PRIME
            self._den = 1
        return keccak(self._num.to_bytes(384, "big"))
