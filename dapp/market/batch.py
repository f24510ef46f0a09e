"""Batched, signed submissions: many trainers' `join`, `commit` and `reveal` in one input.

Why: an input costs a transaction (21,000 gas) plus the InputBox's storage write and event,
about 50,000 gas before a single byte of content; two per trainer per round made participation
cost ~118,000 gas. Here each trainer signs its message as EIP-712 typed data (dapp.market.eip712)
and anyone posts many of them in one `batch(bytes messages)` input: the fixed cost is shared
and each message costs only its bytes.

Wire format of `messages` (all integers big-endian), a sequence of frames::

    frame   := length:u16 ++ body                  (length = len(body))
    body    := kind:u8 ++ signature:65 ++ fields   (signature = r ++ s ++ v)
    kind 1 Join    fields := jobId:u64
    kind 2 Commit  fields := jobId:u64 ++ round:u32 ++ commitment:32
    kind 3 Reveal  fields := jobId:u64 ++ round:u32 ++ salt:32 ++ modelCid:36 ++ dataCid:36

CIDs travel in their 36-byte binary form (CIDv1, sha2-256) and are signed in their canonical
base32 text form (the form the commitment and every output use). The frames make each message
separable: a body that does not parse, a bad signature or a message the market refuses is
reported and skipped (the other messages stand), while bytes that cannot be cut into frames
refuse the whole input (there is no message boundary to trust).
"""

from __future__ import annotations

from dataclasses import dataclass

from dapp.content.cid import Cid
from dapp.market import eip712
from dapp.market import protocol as p

KIND_JOIN, KIND_COMMIT, KIND_REVEAL = 1, 2, 3
SIGNATURE_BYTES = 65
CID_BYTES = 36
MAX_MESSAGES = 512
"""Messages per batch input: bounds the backend's work per input (one signature recovery each)."""

_FIELDS = {KIND_JOIN: 8, KIND_COMMIT: 8 + 4 + 32, KIND_REVEAL: 8 + 4 + 32 + 2 * CID_BYTES}
_NAMES = {KIND_JOIN: "join", KIND_COMMIT: "commit", KIND_REVEAL: "reveal"}


class MessageError(ValueError):
    """One message of a batch that cannot be taken (malformed or badly signed)."""


@dataclass(frozen=True)
class SignedMessage:
    """A message with the account that signed it: handled exactly as if `signer` had sent
    `call` as its own input."""

    signer: str
    call: p.Join | p.Commit | p.Reveal


def split(messages: bytes) -> list[bytes]:
    """The message bodies of a batch; p.ProtocolError if the frames do not tile the bytes."""
    bodies: list[bytes] = []
    pos = 0
    while pos < len(messages):
        if pos + 2 > len(messages):
            raise p.ProtocolError(f"batch: truncated frame length at byte {pos}")
        length = int.from_bytes(messages[pos:pos + 2], "big")
        pos += 2
        if pos + length > len(messages):
            raise p.ProtocolError(f"batch: frame {len(bodies)} of {length} bytes runs past the "
                                  f"end ({len(messages) - pos} left)")
        bodies.append(messages[pos:pos + length])
        pos += length
        if len(bodies) > MAX_MESSAGES:
            raise p.ProtocolError(f"batch: more than {MAX_MESSAGES} messages")
    if not bodies:
        raise p.ProtocolError("batch: no messages")
    return bodies


def _cid(raw: bytes, what: str) -> str:
    try:
        return str(Cid.from_bytes(raw))
    except Exception as exc:
        raise MessageError(f"{what} is not a binary CIDv1: {exc}") from None


def parse(body: bytes, chain_id: int, app: str) -> SignedMessage:
    """Decode one message body and recover its signer under this chain's and Application's
    domain (the job comes from the message). Raises MessageError."""
    if not body:
        raise MessageError("empty message")
    kind = body[0]
    if kind not in _FIELDS:
        raise MessageError(f"unknown message kind {kind}")
    want = 1 + SIGNATURE_BYTES + _FIELDS[kind]
    if len(body) != want:
        raise MessageError(f"a {_NAMES[kind]} message is {want} bytes, got {len(body)}")
    signature = body[1:1 + SIGNATURE_BYTES]
    f = body[1 + SIGNATURE_BYTES:]
    job_id = int.from_bytes(f[:8], "big")
    call: p.Join | p.Commit | p.Reveal
    if kind == KIND_JOIN:
        call = p.Join(job_id)
        struct = eip712.join_hash(job_id)
    else:
        round_ = int.from_bytes(f[8:12], "big")
        if kind == KIND_COMMIT:
            call = p.Commit(job_id, round_, f[12:44])
            struct = eip712.commit_hash(job_id, round_, call.commitment)
        else:
            salt = f[12:44]
            model_cid = _cid(f[44:44 + CID_BYTES], "model cid")
            data_cid = _cid(f[44 + CID_BYTES:], "data cid")
            call = p.Reveal(job_id, round_, model_cid, data_cid, salt)
            struct = eip712.reveal_hash(job_id, round_, model_cid, data_cid, salt)
    try:
        signer = eip712.recover_address(
            eip712.typed_digest(chain_id, app, job_id, struct), signature)
    except eip712.SignatureError as exc:
        raise MessageError(f"bad signature: {exc}") from None
    return SignedMessage(signer, call)


# ---- building messages (the client and relayer side) --------------------------------------

def digest_of(call: p.Join | p.Commit | p.Reveal, chain_id: int, app: str) -> bytes:
    """The EIP-712 digest a trainer signs for `call`."""
    if isinstance(call, p.Join):
        struct = eip712.join_hash(call.job_id)
    elif isinstance(call, p.Commit):
        struct = eip712.commit_hash(call.job_id, call.round, call.commitment)
    else:
        struct = eip712.reveal_hash(call.job_id, call.round, call.model_cid, call.data_cid,
                                    call.salt)
    return eip712.typed_digest(chain_id, app, call.job_id, struct)


def encode(call: p.Join | p.Commit | p.Reveal, signature: bytes) -> bytes:
    """One framed message (length prefix included) carrying `call` and its signature."""
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError("a signature is 65 bytes (r, s, v)")
    head = call.job_id.to_bytes(8, "big")
    if isinstance(call, p.Join):
        body = bytes([KIND_JOIN]) + signature + head
    elif isinstance(call, p.Commit):
        body = (bytes([KIND_COMMIT]) + signature + head + call.round.to_bytes(4, "big")
                + call.commitment)
    else:
        body = (bytes([KIND_REVEAL]) + signature + head + call.round.to_bytes(4, "big")
                + call.salt + bytes(Cid.parse(call.model_cid)) + bytes(Cid.parse(call.data_cid)))
    return len(body).to_bytes(2, "big") + body


def batch_input(framed: list[bytes]) -> bytes:
    """The `batch(bytes)` input that carries these framed messages, in order."""
    return p.Batch(b"".join(framed)).encode()
