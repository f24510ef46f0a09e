"""A declared random stream: keccak-256 in counter mode.

NumPy's generators are not a protocol (their algorithms and seeding may change between
releases), so every random choice that decides an output comes from this stream instead.
Block ``i`` (i = 0, 1, ...) is ``keccak256(seed || i.to_bytes(8, "big"))``; bytes are consumed
in order and never reused. ``randbelow(n)`` draws ``n.bit_length()`` bits (big-endian from
``ceil(bits / 8)`` fresh bytes, high bits masked off) and rejects values ``>= n``, so it is
unbiased; ``randbelow(1)`` returns 0 without consuming anything.
"""

from __future__ import annotations

from typing import MutableSequence, TypeVar

from dapp.hashing import keccak

T = TypeVar("T")

SEED_DOMAIN = b"tributary/seed/v1"


def seed_from(*parts: bytes) -> bytes:
    """Derive a 32-byte seed from parts, length-prefixed so that no two part lists collide."""
    buf = bytearray(SEED_DOMAIN)
    for p in parts:
        if not isinstance(p, (bytes, bytearray)):
            raise TypeError(f"seed parts must be bytes, got {type(p).__name__}")
        buf += len(p).to_bytes(8, "big") + bytes(p)
    return keccak(bytes(buf))


class KeccakStream:
    """Deterministic byte stream; the same seed gives the same draws on every machine."""

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, (bytes, bytearray)):
            raise TypeError("seed must be bytes")
        self._seed = bytes(seed)
        self._counter = 0
        self._buf = b""

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if not self._buf:
                self._buf = keccak(self._seed + self._counter.to_bytes(8, "big"))
                self._counter += 1
            take = min(n - len(out), len(self._buf))
            out += self._buf[:take]
            self._buf = self._buf[take:]
        return bytes(out)

    def randbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("k must be >= 0")
        if k == 0:
            return 0
        v = int.from_bytes(self.read((k + 7) // 8), "big")
        return v & ((1 << k) - 1)

    def randbelow(self, n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"randbelow needs a positive integer, got {n!r}")
        if n == 1:
            return 0
        k = n.bit_length()
        while True:
            v = self.randbits(k)
            if v < n:
                return v

    def shuffle(self, items: MutableSequence[T]) -> MutableSequence[T]:
        """Fisher-Yates in place (i from the end down to 1, j = randbelow(i + 1)); returns items."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]
        return items
