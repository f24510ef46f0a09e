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
