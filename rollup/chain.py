"""Small web3 helpers shared by deploy, vouchers, tests and benches: connect, send, decode reverts.

Why: web3 8 reports a custom-error revert as an opaque hex string; every caller here wants to
know *which* Cartesi error it was (``OutputNotReexecutable``, ``NotEpochFinalBlock``, ...). So
sending goes through ``send_tx``, which estimates gas first (that is where a revert shows up with
its data), decodes the revert against the ABIs of every Cartesi contract and ours, and raises
``ContractRevert`` carrying the error name and arguments.

Public API::

    w3 = connect("http://127.0.0.1:8545")
    c = contract(w3, "Application", app_address)          # web3 Contract from the artifact ABI
    rcpt = send_tx(w3, private_key, c.functions.executeOutput(out, proof), value=0)
    call_fn(c.functions.validateOutput(out, proof))        # eth_call; raises ContractRevert
    decode_revert(data) -> (name, args)                     # e.g. ("OutputNotExecutable", (b"..",))

``send_tx`` signs locally with the given key (works on any chain, not only anvil). Transactions
are sent one at a time and waited for; nonces come from the node's pending count.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError, Web3RPCError
from web3.types import TxReceipt

from rollup.artifacts import cartesi_out_dir, contracts_build_dir, load_artifact

log = logging.getLogger(__name__)


class ChainError(RuntimeError):
    """A chain interaction failed for a reason other than a decoded contract revert."""


class ContractRevert(ChainError):
    """A call or transaction reverted. ``error`` is the Solidity error name when it could be
    decoded (custom errors, ``Error`` for require-strings, ``Panic``), else None; ``args`` its
    decoded arguments; ``data`` the raw revert data; ``context`` what we were doing."""

    def __init__(self, error: str | None, args: tuple[Any, ...], data: bytes, context: str) -> None:
        self.error = error
        self.args_decoded = args
        self.data = data
        self.context = context
        shown = error or f"unknown revert 0x{data.hex()}"
        super().__init__(f"{context}: reverted with {shown}{_fmt_args(args)}")


def _fmt_args(args: tuple[Any, ...]) -> str:
    if not args:
        return ""
    parts = ["0x" + a.hex() if isinstance(a, (bytes, bytearray)) else repr(a) for a in args]
    return "(" + ", ".join(parts) + ")"


def connect(url: str, timeout: float = 60.0) -> Web3:
    """A Web3 on an HTTP RPC URL; raises ChainError if nothing answers."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id
    except Exception as exc:  # requests' connection errors vary; any failure here means "no chain"
        raise ChainError(f"no Ethereum JSON-RPC answers at {url}: {exc}") from exc
    return w3


def contract(w3: Web3, name: str, address: str) -> Contract:
    return w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name).abi)


# ---------------------------------------------------------------------------------- revert data

@functools.lru_cache(maxsize=1)
def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    """selector -> (name, input types) over every Cartesi artifact and our own contracts."""
    table: dict[bytes, tuple[str, list[str]]] = {
        bytes.fromhex("08c379a0"): ("Error", ["string"]),
        bytes.fromhex("4e487b71"): ("Panic", ["uint256"]),
    }
    files: list[Any] = []
    if cartesi_out_dir().is_dir():
        files += sorted(cartesi_out_dir().glob("*.sol/*.json"))
    if contracts_build_dir().is_dir():
        files += sorted(contracts_build_dir().glob("*.json"))
    for path in files:
        try:
            abi = json.loads(path.read_text()).get("abi", [])
        except (OSError, ValueError):
            continue
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [_abi_type(i) for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            table.setdefault(function_signature_to_4byte_selector(sig), (item["name"], types))
    return table


def _abi_type(item: dict[str, Any]) -> str:
    t = item["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + t[len("tuple"):]
    return t


def decode_revert(data: bytes) -> tuple[str | None, tuple[Any, ...]]:
    """Name and arguments of a revert, or (None, ()) if the selector is unknown."""
    if len(data) < 4:
        return None, ()
    entry = _error_table().get(bytes(data[:4]))
    if entry is None:
        return None, ()
    name, types = entry
    try:
        values = abi_decode(types, bytes(data[4:]))
    except Exception:  # malformed args: keep the name, it is still the useful part
        return name, ()
    return name, tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(types, values))


def _revert_bytes(exc: BaseException) -> bytes | None:
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if isinstance(exc, Web3RPCError):
        rpc = getattr(exc, "rpc_response", None) or {}
        err = rpc.get("error", {}) if isinstance(rpc, dict) else {}
        d = err.get("data") if isinstance(err, dict) else None
        if isinstance(d, str) and d.startswith("0x"):
            return bytes.fromhex(d[2:])
    return None


def revert_from_exception(exc: BaseException, context: str) -> ContractRevert | None:
    """A ContractRevert built from a web3 exception, or None if ``exc`` is not a revert."""
    if not isinstance(exc, (ContractCustomError, ContractLogicError, ContractPanicError, Web3RPCError)):
        return None
    data = _revert_bytes(exc)
    if data is None:
        if isinstance(exc, ContractLogicError):
            # require-string reverts come pre-decoded by web3 as "execution reverted: <msg>"
            return ContractRevert("Error", (str(exc.message or exc),), b"", context)
        if isinstance(exc, Web3RPCError) and "revert" not in str(exc).lower():
            return None
        return ContractRevert(None, (), b"", context + f" ({exc})")
    name, args = decode_revert(data)
    return ContractRevert(name, args, data, context)


# ---------------------------------------------------------------------------------- calls, txs

def _describe(fn: Any) -> str:
    try:
        return f"{fn.fn_name} on {fn.address}"
    except AttributeError:
        return "transaction"


def call_fn(fn: Any, *, sender: str | None = None, value: int = 0, block: Any = "latest") -> Any:
    """eth_call a contract function; a revert raises ContractRevert with the decoded error."""
    tx: dict[str, Any] = {"value": value}
    if sender:
        tx["from"] = to_checksum_address(sender)
    try:
        return fn.call(tx, block_identifier=block)
    except Exception as exc:
        rev = revert_from_exception(exc, f"call {_describe(fn)}")
        if rev is not None:
            raise rev from exc
        raise


def send_tx(
    w3: Web3,
    private_key: str | bytes,
    fn: Any = None,
    *,
    to: str | None = None,
    data: bytes = b"",
    value: int = 0,
    gas: int | None = None,
    timeout: float = 120.0,
) -> TxReceipt:
    """Sign with ``private_key`` and send either a contract function call ``fn`` or a raw
    transaction (``to``/``data``/``value``); wait for the receipt. A revert (at gas estimation or
    on chain) raises ContractRevert with the decoded error."""
    acct = Account.from_key(private_key)
    context = _describe(fn) if fn is not None else f"transaction to {to}"
    base: dict[str, Any] = {
        "from": acct.address,
        "value": value,
        "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
        "chainId": w3.eth.chain_id,
    }
    if gas is not None:
        base["gas"] = gas
    try:
        if fn is not None:
            tx = fn.build_transaction(base)
        else:
            tx = dict(base, data=data)
            if to is not None:
                tx["to"] = to_checksum_address(to)
            if gas is None:
                tx["gas"] = w3.eth.estimate_gas(tx)
            fees = _fees(w3)
            tx.update(fees)
    except Exception as exc:
        rev = revert_from_exception(exc, context)
        if rev is not None:
            raise rev from exc
        raise ChainError(f"{context}: could not build the transaction: {exc}") from exc
    signed = acct.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        # Replay at the failing block to recover the revert data for the message.
        replay = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        try:
            w3.eth.call(replay, block_identifier=receipt["blockNumber"] - 1)
        except Exception as exc:
            rev = revert_from_exception(exc, context + f" (tx 0x{bytes(tx_hash).hex()})")
            if rev is not None:
                raise rev from exc
        raise ContractRevert(None, (), b"", context + f" (tx 0x{bytes(tx_hash).hex()} failed on chain)")
    return receipt


def _fees(w3: Web3) -> dict[str, int]:
    block = w3.eth.get_block("latest")
    base_fee = block.get("baseFeePerGas")
    if base_fee is None:
        return {"gasPrice": w3.eth.gas_price}
    tip = w3.eth.max_priority_fee
    return {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}


def deploy_contract(w3: Web3, private_key: str, name: str, *ctor_args: Any) -> str:
    """Deploy an artifact with plain CREATE (used for our own test contracts); returns its address."""
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = send_tx(w3, private_key, factory.constructor(*ctor_args))
    addr = receipt["contractAddress"]
    if not addr:
        raise ChainError(f"deploying {name} gave no contract address")
    return str(addr)
