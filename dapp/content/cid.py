"""CIDv1 with sha2-256 multihash, codecs raw and dag-pb; binary and base32-lower string forms.

Hand-written (a few varints and a base32 call) because dapp/ runs in the riscv64 image with only
Debian packages and pure wheels, where py-cid/multiformats are not available; the tests
cross-check this module against py-cid.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from dapp.content.errors import CidError, ContentMismatch

CID_VERSION = 1
RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
DIGEST_LENGTH = 32
CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}
# Binary form: version, codec, hash function, digest length (each a one-byte varint here), digest.
BINARY_LENGTH = 4 + DIGEST_LENGTH
_MAX_STRING = 1 + (BINARY_LENGTH * 8 + 4) // 5


def encode_uvarint(value: int) -> bytes:
    """Unsigned LEB128, as multiformats and protobuf use."""
    if value < 0:
        raise ValueError(f"uvarint of a negative number {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(data: bytes, pos: int, *, what: str = "varint") -> tuple[int, int]:
    """Decode a minimal (non-overlong) uvarint of at most 9 bytes; return (value, next_pos).

    Raises ValueError: callers turn it into their own typed error with context.
    """
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(data):
            raise ValueError(f"truncated {what} at byte {start}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and pos - start > 1:
                raise ValueError(f"non-minimal {what} at byte {start}")
            return value, pos
        shift += 7
        if pos - start >= 9:
            raise ValueError(f"{what} at byte {start} is longer than 9 bytes")


@dataclass(frozen=True, slots=True)
class Cid:
    """A CIDv1 (sha2-256) naming a raw or dag-pb block; str() gives the base32 `b...` form."""

    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.codec not in CODEC_NAMES:
            raise CidError(f"unsupported codec 0x{self.codec:x} (want raw 0x55 or dag-pb 0x70)")
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_LENGTH:
            raise CidError(f"sha2-256 digest must be {DIGEST_LENGTH} bytes")

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def for_block(cls, codec: int, data: bytes) -> Cid:
        """The CID of a block's bytes under `codec`."""
        return cls(codec, hashlib.sha256(data).digest())

    @classmethod
    def parse(cls, value: str | bytes | Cid) -> Cid:
        """Parse the base32 string form (str) or the binary form (bytes), strictly."""
        if isinstance(value, Cid):
            return value
        if isinstance(value, str):
            return cls.from_string(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_bytes(bytes(value))
        raise CidError(f"a CID is a str or bytes, not {type(value).__name__}")

    @classmethod
    def from_string(cls, text: str) -> Cid:
        """Parse `b` + base32 lower (no padding); anything else is refused with the reason."""
        shown = text if len(text) <= 80 else text[:77] + "..."
        if not text:
            raise CidError("empty CID string")
        if text.startswith("Qm") and len(text) == 46:
            raise CidError(f"CIDv0 {shown!r} is not supported: use CIDv1 base32 ('b...')", shown)
        if text[0] != "b":
            raise CidError(
                f"unsupported multibase prefix {text[0]!r} in {shown!r}: want 'b' (base32 lower)",
                shown,
            )
        body = text[1:]
        if not body or body != body.lower() or not body.isascii() or "=" in body:
            raise CidError(f"invalid base32-lower body in {shown!r}", shown)
        if len(text) > _MAX_STRING:
            raise CidError(f"CID string too long ({len(text)} chars): {shown!r}", shown)
        try:
            raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        except (binascii.Error, ValueError) as exc:
            raise CidError(f"invalid base32 in {shown!r}: {exc}", shown) from exc
        cid = cls.from_bytes(raw, shown=shown)
        if str(cid) != text:  # non-zero trailing bits: not the canonical spelling
            raise CidError(f"non-canonical base32 in {shown!r}", shown)
        return cid

    @classmethod
    def from_bytes(cls, raw: bytes, *, shown: str | None = None) -> Cid:
        """Parse the binary form: <version 1><codec><0x12><0x20><32-byte digest>."""
        label = shown if shown is not None else "0x" + raw[:48].hex()
        try:
            version, pos = decode_uvarint(raw, 0, what="CID version")
            if version != CID_VERSION:
                hint = " (CIDv0 is not supported)" if raw[:2] == b"\x12\x20" else ""
                raise CidError(f"CID version {version} is not 1{hint}: {label}", shown)
            codec, pos = decode_uvarint(raw, pos, what="codec")
            if codec not in CODEC_NAMES:
                raise CidError(
                    f"unsupported codec 0x{codec:x} (want raw 0x55 or dag-pb 0x70): {label}",
                    shown,
                )
            hash_fn, pos = decode_uvarint(raw, pos, what="multihash function")
            if hash_fn != SHA2_256:
                raise CidError(
                    f"unsupported multihash function 0x{hash_fn:x} (want sha2-256 0x12): {label}",
                    shown,
                )
            length, pos = decode_uvarint(raw, pos, what="digest length")
        except ValueError as exc:
            raise CidError(f"malformed CID {label}: {exc}", shown) from exc
        if length != DIGEST_LENGTH:
            raise CidError(f"sha2-256 digest length {length} is not 32: {label}", shown)
        if len(raw) - pos != DIGEST_LENGTH:
            raise CidError(
                f"CID has {len(raw) - pos} digest bytes where 32 are declared: {label}", shown
            )
        return cls(codec, raw[pos:])

    # -- forms ------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return bytes((CID_VERSION, self.codec, SHA2_256, DIGEST_LENGTH)) + self.digest

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __str__(self) -> str:
        return "b" + base64.b32encode(self.to_bytes()).decode("ascii").lower().rstrip("=")

    def __repr__(self) -> str:
        return f"Cid({str(self)!r})"

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES[self.codec]

    # -- checks -----------------------------------------------------------------------------
    def matches(self, data: bytes) -> bool:
        return hashlib.sha256(data).digest() == self.digest

    def verify(self, data: bytes) -> None:
        """Refuse bytes that are not this CID's block: the source of bytes is never trusted."""
        if not self.matches(data):
            got = hashlib.sha256(data).hexdigest()
            raise ContentMismatch(
                f"block {self} does not match its bytes ({len(data)} bytes hash to sha256 {got})",
                str(self),
            )


def cid_for_block(codec: int, data: bytes) -> Cid:
    """Module-level alias of `Cid.for_block` (the name docs/ARCHITECTURE.md uses)."""
    return Cid.for_block(codec, data)
