"""The market's wire protocol: every input an account can send, as an ABI-encoded call.

One module defines the calls so that the backend (which decodes) and the client (which encodes)
speak one language. Decoding is strict: the payload must be exactly the canonical ABI encoding
of its arguments (re-encoding the decoded values must give the same bytes), so two different
byte strings never mean the same input.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from dapp.content.inbox import UPLOAD_CHUNK
from dapp.hashing import keccak

ETH = "0x" + "00" * 20
"""The token address that stands for ether in balances, withdrawals and job budgets."""
ETHER_PORTAL = "0xa632c5c05812c6a6149b7af5c56117d1d2603828"
ERC20_PORTAL = "0xaca6586a0cf05bd831f2501e7b4aea550da6562d"
"""Cartesi Rollups v2.2.0's portals (deterministic addresses): an input they send is a deposit,
its payload laid out by the portal, never a market call."""
PAGE = 100
"""Entries per listing answer (`jobs`, `jobs/open`, `tokens`): `<listing>/page/<k>` for the rest
(job lists also `<listing>/after/<id>`)."""


class ProtocolError(ValueError):
    """A payload that is not a well-formed market input."""


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


@dataclass(frozen=True)
class Call:
    """Base of every account input: a Solidity-style function call."""

    SIGNATURE: ClassVar[str] = ""
    TYPES: ClassVar[tuple[str, ...]] = ()

    def args(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def encode(self) -> bytes:
        return selector(self.SIGNATURE) + abi_encode(list(self.TYPES), list(self.args()))


@dataclass(frozen=True)
class CreateJob(Call):
    """Sent as a portal deposit's `execLayerData`: the deposit becomes the job's escrow."""

    spec_cid: str
    SIGNATURE: ClassVar[str] = "createJob(string)"
    TYPES: ClassVar[tuple[str, ...]] = ("string",)


@dataclass(frozen=True)
class Join(Call):
    job_id: int
    SIGNATURE: ClassVar[str] = "join(uint256)"
    TYPES: ClassVar[tuple[str, ...]] = ("uint256",)


@dataclass(frozen=True)
class Commit(Call):
    job_id: int
    round: int
    commitment: bytes
    SIGNATURE: ClassVar[str] = "commit(uint256,uint256,bytes32)"
    TYPES: ClassVar[tuple[str, ...]] = ("uint256", "uint256", "bytes32")


@dataclass(frozen=True)
class Reveal(Call):
    job_id: int
    round: int
    model_cid: str
    data_cid: str
    salt: bytes
    SIGNATURE: ClassVar[str] = "reveal(uint256,uint256,string,string,bytes32)"
    TYPES: ClassVar[tuple[str, ...]] = ("uint256", "uint256", "string", "string", "bytes32")


@dataclass(frozen=True)
class RevealValidation(Call):
    job_id: int
    round: int
    shard_cid: str
    salt: bytes
    SIGNATURE: ClassVar[str] = "revealValidation(uint256,uint256,string,bytes32)"
    TYPES: ClassVar[tuple[str, ...]] = ("uint256", "uint256", "string", "bytes32")


@dataclass(frozen=True)
class CloseRound(Call):
    job_id: int
    round: int
    SIGNATURE: ClassVar[str] = "closeRound(uint256,uint256)"
    TYPES: ClassVar[tuple[str, ...]] = ("uint256", "uint256")


@dataclass(frozen=True)
class Withdraw(Call):
    """`token` is ETH (the zero address) for ether, else an ERC-20 token address."""

    token: str
    amount: int
    SIGNATURE: ClassVar[str] = "withdraw(address,uint256)"
    TYPES: ClassVar[tuple[str, ...]] = ("address", "uint256")


@dataclass(frozen=True)
class CancelJob(Call):
    job_id: int
    SIGNATURE: ClassVar[str] = "cancelJob(uint256)"
    TYPES: ClassVar[tuple[str, ...]] = ("uint256",)


@dataclass(frozen=True)
class PutContent(Call):
    """One chunk of an object posted through inputs (jobs whose spec says content_source
    "inputs"); see dapp.content.inbox for the framing rules."""

    cid: str
    total_size: int
    index: int
    data: bytes
    SIGNATURE: ClassVar[str] = "putContent(string,uint64,uint32,bytes)"
    TYPES: ClassVar[tuple[str, ...]] = ("string", "uint64", "uint32", "bytes")

    @classmethod
    def chunks(cls, cid: str, data: bytes) -> list["PutContent"]:
        """Every input that posts `data` under `cid`, in index order."""
        count = max(1, -(-len(data) // UPLOAD_CHUNK))
        return [cls(cid, len(data), i, data[i * UPLOAD_CHUNK:(i + 1) * UPLOAD_CHUNK])
                for i in range(count)]


@dataclass(frozen=True)
class Batch(Call):
    """Many signed `join`/`commit`/`reveal` messages posted by anyone (dapp.market.batch)."""

    messages: bytes
    SIGNATURE: ClassVar[str] = "batch(bytes)"
    TYPES: ClassVar[tuple[str, ...]] = ("bytes",)


@dataclass(frozen=True)
class Payout(Call):
    """Anyone: pay every account's balance in `token` with one DelegateCallVoucher
    (dapp.market.payout)."""

    token: str
    SIGNATURE: ClassVar[str] = "payout(address)"
    TYPES: ClassVar[tuple[str, ...]] = ("address",)


ACCOUNT_CALLS: tuple[type[Call], ...] = (
    Join, Commit, Reveal, RevealValidation, CloseRound, Withdraw, CancelJob, PutContent,
    Batch, Payout)
_BY_SELECTOR: dict[bytes, type[Call]] = {selector(c.SIGNATURE): c for c in ACCOUNT_CALLS}


def _decode_call(payload: bytes, kinds: dict[bytes, type[Call]]) -> Call:
    if len(payload) < 4:
        raise ProtocolError(f"payload of {len(payload)} bytes is too short for a call selector")
    kind = kinds.get(payload[:4])
    if kind is None:
        raise ProtocolError(f"unknown selector 0x{payload[:4].hex()}")
    body = payload[4:]
    try:
        values = abi_decode(list(kind.TYPES), body, strict=True)
    except Exception as exc:  # eth-abi raises several unrelated types for bad input
        raise ProtocolError(f"malformed arguments for {kind.SIGNATURE}: {exc}") from exc
    values = tuple(v.lower() if isinstance(v, str) and t == "address" else v
                   for v, t in zip(values, kind.TYPES))
    call = kind(*values)
    if abi_encode(list(kind.TYPES), list(call.args())) != body:
        raise ProtocolError(f"non-canonical encoding of {kind.SIGNATURE}")
    return call


def decode_account_call(payload: bytes) -> Call:
    """Decode an input sent by an account (not by a portal)."""
    return _decode_call(payload, _BY_SELECTOR)


def decode_create_job(exec_layer_data: bytes) -> CreateJob:
    """Decode a deposit's `execLayerData` as a job creation."""
    call = _decode_call(exec_layer_data, {selector(CreateJob.SIGNATURE): CreateJob})
    assert isinstance(call, CreateJob)
    return call


def commitment(sender: str, job_id: int, round_: int, model_cid: str, data_cid: str,
               salt: bytes) -> bytes:
    """The hash a trainer commits to before revealing; binds sender, job and round so that a
    commitment cannot be replayed by someone else or in another round."""
    return keccak(abi_encode(
        ["address", "uint256", "uint256", "string", "string", "bytes32"],
        [sender, job_id, round_, model_cid, data_cid, salt]))


def validation_commitment(shard_cid: str, salt: bytes) -> bytes:
    """The owner's commitment, in the job spec, to one round's validation shard."""
    return keccak(abi_encode(["string", "bytes32"], [shard_cid, salt]))


# --- portal deposits (packed encodings, CARTESI_V2.md §6) -----------------------------------

@dataclass(frozen=True)
class EtherDeposit:
    sender: str
    value: int
    exec_layer_data: bytes


@dataclass(frozen=True)
class Erc20Deposit:
    token: str
    sender: str
    value: int
    exec_layer_data: bytes


def _addr(raw: bytes) -> str:
    return "0x" + raw.hex()


def decode_ether_deposit(payload: bytes) -> EtherDeposit:
    if len(payload) < 52:
        raise ProtocolError(f"EtherPortal payload of {len(payload)} bytes is shorter than 52")
    return EtherDeposit(_addr(payload[:20]), int.from_bytes(payload[20:52], "big"), payload[52:])


def decode_erc20_deposit(payload: bytes) -> Erc20Deposit:
    if len(payload) < 72:
        raise ProtocolError(f"ERC20Portal payload of {len(payload)} bytes is shorter than 72")
    return Erc20Deposit(_addr(payload[:20]), _addr(payload[20:40]),
                        int.from_bytes(payload[40:72], "big"), payload[72:])


# --- outputs the market emits --------------------------------------------------------------

TRANSFER = selector("transfer(address,uint256)")


def erc20_transfer_payload(to: str, amount: int) -> bytes:
    return TRANSFER + abi_encode(["address", "uint256"], [to, amount])


MODEL_CHUNK_SIGNATURE = "ModelChunk(uint256,uint256,bytes32,uint32,uint32,bytes)"
MODEL_CHUNK = selector(MODEL_CHUNK_SIGNATURE)
_MODEL_CHUNK_TYPES = ["uint256", "uint256", "bytes32", "uint32", "uint32", "bytes"]


@dataclass(frozen=True)
class ModelChunk:
    """One report carrying a slice of a round's new global model; the round notice commits to
    the whole by `model_hash` (keccak of the model file)."""

    job_id: int
    round: int
    model_hash: bytes
    index: int
    count: int
    data: bytes

    def encode(self) -> bytes:
        return MODEL_CHUNK + abi_encode(_MODEL_CHUNK_TYPES, [
            self.job_id, self.round, self.model_hash, self.index, self.count, self.data])

    @classmethod
    def decode(cls, payload: bytes) -> "ModelChunk":
        if payload[:4] != MODEL_CHUNK:
            raise ProtocolError("not a model chunk report")
        return cls(*abi_decode(_MODEL_CHUNK_TYPES, payload[4:]))

    @classmethod
    def split(cls, job_id: int, round_: int, model: bytes, size: int) -> list["ModelChunk"]:
        """The reports that carry `model`, `size` bytes each (the last shorter)."""
        count = max(1, -(-len(model) // size))
        digest = keccak(model)
        return [cls(job_id, round_, digest, i, count, model[i * size:(i + 1) * size])
                for i in range(count)]

    @staticmethod
    def join(chunks: list["ModelChunk"], model_hash: bytes) -> bytes:
        """Reassemble one model from its reports; refuses missing chunks and a wrong hash."""
        mine = sorted((c for c in chunks if c.model_hash == model_hash), key=lambda c: c.index)
        if not mine or [c.index for c in mine] != list(range(mine[0].count)):
            raise ProtocolError(f"model 0x{model_hash.hex()}: chunks missing or repeated")
        data = b"".join(c.data for c in mine)
        if keccak(data) != model_hash:
            raise ProtocolError(f"model chunks do not hash to 0x{model_hash.hex()}")
        return data
