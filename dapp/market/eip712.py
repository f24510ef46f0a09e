"""EIP-712 typed data for signed market messages, and secp256k1 public-key recovery in pure
Python integers.

Why: a trainer signs its `join`, `commit` and `reveal` off chain and anyone (the trainer, the
owner, a relayer) posts many of them in one input (dapp.market.batch); the backend must learn
who signed each. The recovery is written here with Python's arbitrary-precision integers only
(no float, no native code, no dependency), so it gives the same address on x86-64 and riscv64
by construction; tests cross-check it against eth-keys and eth-account on the host.

The domain binds a signature to one chain, one Application and one job:
``EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)``
with name "Tributary", version "1", salt = the job id as a uint256. The messages:

- ``Join(uint256 jobId)``
- ``Commit(uint256 jobId,uint256 round,bytes32 commitment)``
- ``Reveal(uint256 jobId,uint256 round,string modelCid,string dataCid,bytes32 salt)``

Signatures are (r, s, v) with v in {27, 28} and s in the lower half of the group order (EIP-2):
the high-s twin of a valid signature is refused, so each signed message has one encoding.
Replays need no nonce: every message names its job and round, and the market takes one join per
job, one commit and one reveal per trainer and round (a replay is refused as a repeat).
"""

from __future__ import annotations

from dapp.hashing import keccak

NAME = "Tributary"
VERSION = "1"
DOMAIN_TYPE = ("EIP712Domain(string name,string version,uint256 chainId,"
               "address verifyingContract,bytes32 salt)")
JOIN_TYPE = "Join(uint256 jobId)"
COMMIT_TYPE = "Commit(uint256 jobId,uint256 round,bytes32 commitment)"
REVEAL_TYPE = "Reveal(uint256 jobId,uint256 round,string modelCid,string dataCid,bytes32 salt)"

# secp256k1 (SEC 2, §2.4.1)
P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8


class SignatureError(ValueError):
    """A signature that is malformed, non-canonical, or recovers no key."""


def _u256(value: int) -> bytes:
    if not 0 <= value < 1 << 256:
        raise ValueError(f"{value} is not a uint256")
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    raw = bytes.fromhex(address[2:] if address.startswith("0x") else address)
    if len(raw) != 20:
        raise ValueError(f"{address!r} is not a 20-byte address")
    return b"\x00" * 12 + raw


def _b32(value: bytes) -> bytes:
    if len(value) != 32:
        raise ValueError("a bytes32 field must be 32 bytes")
    return value


def domain_separator(chain_id: int, app: str, job_id: int) -> bytes:
    """hashStruct(EIP712Domain) for one chain, Application and job."""
    return keccak(keccak(DOMAIN_TYPE.encode()) + keccak(NAME.encode()) + keccak(VERSION.encode())
                  + _u256(chain_id) + _address_word(app) + _u256(job_id))


def join_hash(job_id: int) -> bytes:
    return keccak(keccak(JOIN_TYPE.encode()) + _u256(job_id))


def commit_hash(job_id: int, round_: int, commitment: bytes) -> bytes:
    return keccak(keccak(COMMIT_TYPE.encode()) + _u256(job_id) + _u256(round_)
                  + _b32(commitment))


def reveal_hash(job_id: int, round_: int, model_cid: str, data_cid: str, salt: bytes) -> bytes:
    return keccak(keccak(REVEAL_TYPE.encode()) + _u256(job_id) + _u256(round_)
                  + keccak(model_cid.encode()) + keccak(data_cid.encode()) + _b32(salt))


def typed_digest(chain_id: int, app: str, job_id: int, struct_hash: bytes) -> bytes:
    """keccak(0x1901 ++ domainSeparator ++ hashStruct(message)): what is signed."""
    return keccak(b"\x19\x01" + domain_separator(chain_id, app, job_id) + struct_hash)


# ---- secp256k1 in Jacobian coordinates (a = 0); the point at infinity has Z = 0 --------------

_Jac = tuple[int, int, int]
_INF: _Jac = (0, 1, 0)


def _double(pt: _Jac) -> _Jac:
    x, y, z = pt
    if z == 0 or y == 0:
        return _INF
    yy = y * y % P
    s = 4 * x * yy % P
    m = 3 * x * x % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    return x3, y3, 2 * y * z % P


def _add(a: _Jac, b: _Jac) -> _Jac:
    if a[2] == 0:
        return b
    if b[2] == 0:
        return a
    x1, y1, z1 = a
    x2, y2, z2 = b
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(a) if s1 == s2 else _INF
    h, r = (u2 - u1) % P, (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    return x3, y3, h * z1 * z2 % P


def _affine(pt: _Jac) -> tuple[int, int] | None:
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def _shamir(k1: int, p1: _Jac, k2: int, p2: _Jac) -> _Jac:
    """k1*p1 + k2*p2 in one double-and-add pass (Shamir's trick)."""
    both = _add(p1, p2)
    acc = _INF
    for i in range(max(k1.bit_length(), k2.bit_length()) - 1, -1, -1):
        acc = _double(acc)
        b1, b2 = (k1 >> i) & 1, (k2 >> i) & 1
        if b1 and b2:
            acc = _add(acc, both)
        elif b1:
            acc = _add(acc, p1)
        elif b2:
            acc = _add(acc, p2)
    return acc


def recover_address(digest: bytes, signature: bytes) -> str:
    """The lowercase 0x address whose key signed the 32-byte `digest` with `signature`
    (r ++ s ++ v, 65 bytes, v in {27, 28}, low s). Raises SignatureError otherwise."""
    if len(digest) != 32:
        raise SignatureError("the signed digest must be 32 bytes")
    if len(signature) != 65:
        raise SignatureError(f"a signature is 65 bytes (r, s, v), got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise SignatureError(f"v must be 27 or 28, got {v}")
    if not 0 < r < N:
        raise SignatureError("r is out of range")
    if not 0 < s <= N // 2:
        raise SignatureError("s is zero or in the upper half of the group order (EIP-2)")
    # R = (r, y) with y's parity given by v (r < N < P; Ethereum never uses r + N).
    alpha = (pow(r, 3, P) + 7) % P
    y = pow(alpha, (P + 1) // 4, P)
    if y * y % P != alpha:
        raise SignatureError("r is not the x coordinate of a curve point")
    if y & 1 != v - 27:
        y = P - y
    e = int.from_bytes(digest, "big") % N
    r_inv = pow(r, -1, N)
    # Q = r^-1 (s R - e G)
    q = _affine(_shamir((-e * r_inv) % N, (GX, GY, 1), (s * r_inv) % N, (r, y, 1)))
    if q is None:
        raise SignatureError("the signature recovers the point at infinity")
    public = q[0].to_bytes(32, "big") + q[1].to_bytes(32, "big")
    return "0x" + keccak(public)[12:].hex()
