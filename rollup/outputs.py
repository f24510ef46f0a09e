"""Encode and decode Cartesi v2 outputs (CARTESI_V2.md §3): the exact bytes that are hashed into
the outputs Merkle tree and passed to ``Application.executeOutput`` / ``validateOutput``.

Each output is an ABI call encoding, selector ++ abi.encode(fields):
- Notice              0xc258d6e5  (bytes payload)
- Voucher             0x237a816f  (address destination, uint256 value, bytes payload)
- DelegateCallVoucher 0x10321e8b  (address destination, bytes payload)

Public API::

    from rollup.outputs import encode_notice, encode_voucher, encode_delegate_call_voucher, decode_output
    raw = encode_voucher("0xabc...", 10**18, b"")
    out = decode_output(raw)     # Notice | Voucher | DelegateCallVoucher (frozen dataclasses)
    out.to_json()                # the node RPC's decoded_data, e.g.
        # {"type": "Voucher", "destination": "0x<40 lowercase hex>", "value": "0x<hex>", "payload": "0x.."}
        # {"type": "Notice", "payload": "0x.."}
        # {"type": "DelegateCallVoucher", "destination": "0x..", "payload": "0x.."}
    erc20_transfer_payload(to, amount)   # payload of a Voucher to a token: transfer(address,uint256)

Decoding is strict (``OutputDecodeError``): an unknown selector or bytes that do not re-encode
to the same output are refused, so a decoded output always round-trips to the hashed bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, is_address, to_checksum_address

NOTICE_SELECTOR = bytes.fromhex("c258d6e5")
VOUCHER_SELECTOR = bytes.fromhex("237a816f")
DELEGATE_CALL_VOUCHER_SELECTOR = bytes.fromhex("10321e8b")
ERC20_TRANSFER_SELECTOR = function_signature_to_4byte_selector("transfer(address,uint256)")
UINT256_MAX = (1 << 256) - 1


class OutputDecodeError(ValueError):
    """Bytes that are not a well-formed Cartesi v2 output."""


def _addr(destination: str | bytes) -> str:
    if isinstance(destination, (bytes, bytearray)):
        if len(destination) != 20:
            raise ValueError(f"an address is 20 bytes, got {len(destination)}")
        return to_checksum_address(bytes(destination))
    if not is_address(destination):
        raise ValueError(f"not an address: {destination!r}")
    return to_checksum_address(destination)


@dataclass(frozen=True)
class Notice:
    payload: bytes

    def encode(self) -> bytes:
        return encode_notice(self.payload)

    def to_json(self) -> dict[str, Any]:
        return {"type": "Notice", "payload": "0x" + self.payload.hex()}


@dataclass(frozen=True)
class Voucher:
    destination: str  # checksummed
    value: int
    payload: bytes

    def encode(self) -> bytes:
        return encode_voucher(self.destination, self.value, self.payload)

    def to_json(self) -> dict[str, Any]:
        return {"type": "Voucher", "destination": self.destination.lower(), "value": hex(self.value),
                "payload": "0x" + self.payload.hex()}


@dataclass(frozen=True)
class DelegateCallVoucher:
    destination: str
    payload: bytes

    def encode(self) -> bytes:
        return encode_delegate_call_voucher(self.destination, self.payload)

    def to_json(self) -> dict[str, Any]:
        return {"type": "DelegateCallVoucher", "destination": self.destination.lower(),
                "payload": "0x" + self.payload.hex()}


Output = Union[Notice, Voucher, DelegateCallVoucher]


def encode_notice(payload: bytes) -> bytes:
    return NOTICE_SELECTOR + abi_encode(["bytes"], [bytes(payload)])


def encode_voucher(destination: str | bytes, value: int, payload: bytes) -> bytes:
    if not 0 <= value <= UINT256_MAX:
        raise ValueError(f"voucher value {value} is not a uint256")
    return VOUCHER_SELECTOR + abi_encode(["address", "uint256", "bytes"], [_addr(destination), value, bytes(payload)])


def encode_delegate_call_voucher(destination: str | bytes, payload: bytes) -> bytes:
    return DELEGATE_CALL_VOUCHER_SELECTOR + abi_encode(["address", "bytes"], [_addr(destination), bytes(payload)])


def erc20_transfer_payload(to: str | bytes, amount: int) -> bytes:
    """Calldata of ERC-20 ``transfer(to, amount)``: the payload of a token-withdrawal voucher."""
    return ERC20_TRANSFER_SELECTOR + abi_encode(["address", "uint256"], [_addr(to), amount])


def output_type(raw: bytes) -> str:
    """"Notice" | "Voucher" | "DelegateCallVoucher" from the selector (OutputDecodeError else)."""
    sel = bytes(raw[:4])
    if sel == NOTICE_SELECTOR:
        return "Notice"
    if sel == VOUCHER_SELECTOR:
        return "Voucher"
    if sel == DELEGATE_CALL_VOUCHER_SELECTOR:
        return "DelegateCallVoucher"
    raise OutputDecodeError(f"unknown output selector 0x{sel.hex()}")


def decode_output(raw: bytes) -> Output:
    """Strictly decode an output; the result's ``encode()`` gives back exactly ``raw``."""
    raw = bytes(raw)
    kind = output_type(raw)
    body = raw[4:]
    out: Output
    try:
        if kind == "Notice":
            (payload,) = abi_decode(["bytes"], body, strict=True)
            out = Notice(payload)
        elif kind == "Voucher":
            dest, value, payload = abi_decode(["address", "uint256", "bytes"], body, strict=True)
            out = Voucher(to_checksum_address(dest), int(value), payload)
        else:
            dest, payload = abi_decode(["address", "bytes"], body, strict=True)
            out = DelegateCallVoucher(to_checksum_address(dest), payload)
    except Exception as exc:  # eth-abi raises several decoding error types
        raise OutputDecodeError(f"malformed {kind}: {exc}") from exc
    if out.encode() != raw:
        raise OutputDecodeError(f"{kind} is not in canonical ABI encoding (trailing or dirty bytes)")
    return out
