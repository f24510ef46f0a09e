"""CIDv1 encoding/parsing, cross-checked against py-cid (tests only: dapp/ cannot use it)."""
from __future__ import annotations

import base64
import hashlib

import cid as pycid
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dapp.content.cid import DAG_PB, RAW, Cid, cid_for_block, decode_uvarint, encode_uvarint
from dapp.content.errors import CidError, ContentError, ContentMismatch

EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # sha256 of b""


def b32(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def test_known_empty_raw_block() -> None:
    assert str(Cid.for_block(RAW, b"")) == EMPTY_RAW
    assert Cid.parse(EMPTY_RAW) == Cid(RAW, hashlib.sha256(b"").digest())


@given(st.binary(max_size=2048), st.sampled_from([RAW, DAG_PB]))
def test_matches_py_cid(data: bytes, codec: int) -> None:
    ours = cid_for_block(codec, data)
    theirs = pycid.make_cid(1, {RAW: "raw", DAG_PB: "dag-pb"}[codec],
                            bytes([0x12, 0x20]) + hashlib.sha256(data).digest())
    assert ours.to_bytes() == theirs.buffer
    assert str(ours) == theirs.encode("base32").decode()
    assert Cid.parse(str(ours)) == ours == Cid.parse(ours.to_bytes()) == Cid.parse(ours)
    assert bytes(ours) == ours.to_bytes()
    assert ours.matches(data)
    ours.verify(data)


@given(st.binary(min_size=1, max_size=64))
def test_verify_refuses_other_bytes(data: bytes) -> None:
    cid = Cid.for_block(RAW, data)
    with pytest.raises(ContentMismatch, match=str(cid)) as info:
        cid.verify(data + b"x")
    assert info.value.cid == str(cid)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_uvarint_round_trip(value: int) -> None:
    enc = encode_uvarint(value)
    assert decode_uvarint(enc + b"\xff", 0) == (value, len(enc))


def test_uvarint_rejects_overlong_and_truncated() -> None:
    with pytest.raises(ValueError, match="non-minimal"):
        decode_uvarint(b"\x81\x00", 0)
    with pytest.raises(ValueError, match="truncated"):
        decode_uvarint(b"\x81", 0)
    with pytest.raises(ValueError, match="longer than 9"):
        decode_uvarint(b"\xff" * 10, 0)


DIGEST = hashlib.sha256(b"x").digest()


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "CIDv0"),
    ("zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA", "multibase prefix 'z'"),
    ("B" + b32(bytes([1, RAW, 0x12, 0x20]) + DIGEST)[1:].upper(), "multibase prefix 'B'"),
    ("b" + b32(bytes([1, RAW, 0x12, 0x20]) + DIGEST)[1:].upper(), "base32-lower"),
    (b32(bytes([1, RAW, 0x12, 0x20]) + DIGEST) + "=", "base32-lower"),
    ("b!!!!", "base32"),
    (b32(bytes([2, RAW, 0x12, 0x20]) + DIGEST), "version 2"),
    (b32(bytes([1, 0x71, 0x12, 0x20]) + DIGEST), "codec 0x71"),
    (b32(bytes([1, RAW, 0x13, 0x20]) + DIGEST), "function 0x13"),
    (b32(bytes([1, RAW, 0x12, 0x10]) + DIGEST[:16]), "length 16"),
    (b32(bytes([1, RAW, 0x12, 0x20]) + DIGEST[:31]), "31 digest bytes"),
    (b32(bytes([1, RAW, 0x12, 0x20]) + DIGEST + b"\0"), "too long|33 digest bytes"),
    ("b" + "a" * 200, "too long"),
])
def test_parse_string_refuses(text: str, reason: str) -> None:
    with pytest.raises(CidError, match=reason):
        Cid.parse(text)


def test_parse_refuses_non_canonical_trailing_bits() -> None:
    good = str(Cid.for_block(RAW, b"x"))
    last = "abcdefghijklmnopqrstuvwxyz234567".index(good[-1])
    bad = good[:-1] + "abcdefghijklmnopqrstuvwxyz234567"[last | 1]
    assert bad != good
    with pytest.raises(CidError, match="non-canonical"):
        Cid.parse(bad)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "truncated CID version"),
    (bytes([0x12, 0x20]) + DIGEST, "CIDv0 is not supported"),
    (bytes([1, 0x80, 0x01, 0x12, 0x20]) + DIGEST, "codec 0x80"),
    (bytes([1, RAW, 0x12]), "truncated digest length"),
])
def test_parse_bytes_refuses(raw: bytes, reason: str) -> None:
    with pytest.raises(CidError, match=reason):
        Cid.parse(raw)


def test_errors_are_typed() -> None:
    with pytest.raises(ContentError):
        Cid.parse("nope")
    with pytest.raises(ValueError):  # CidError is also a ValueError
        Cid.parse("nope")
    with pytest.raises(CidError):
        Cid.parse(123)  # type: ignore[arg-type]
    with pytest.raises(CidError):
        Cid(0x71, DIGEST)
    with pytest.raises(CidError):
        Cid(RAW, DIGEST[:5])
