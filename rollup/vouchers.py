"""Execute or validate a Cartesi v2 output on its Application contract (library + CLI).

Why: vouchers are how money leaves the app (DESIGN.md: "anyone may execute"), and notices are
proven with ``validateOutput``. The contract's refusals are custom errors; this module turns them
into typed Python exceptions so callers (client CLI, tests) can tell "already executed" from
"bad proof" from "the app holds too little".

Public API::

    from rollup.vouchers import ProvableOutput, execute_output, validate_output, was_output_executed, fetch_output
    out = ProvableOutput.from_rpc(rpc_output)   # a cartesi_getOutput result (or its "data" member)
    out = ProvableOutput(index=3, raw=output_bytes, siblings=[b"..."] * 63)
    rcpt = execute_output(w3, app, out, private_key)   # raises OutputNotReexecutable, ...
    validate_output(w3, app, out)                      # eth_call; raises InvalidOutputsMerkleRoot, ...
    was_output_executed(w3, app, 3) -> bool
    fetch_output(node_url, app, 3) -> dict             # JSON-RPC cartesi_getOutput on <node_url>/rpc

Typed errors (all subclasses of ``OutputRejected``, itself an ``VoucherError``), named after the
Application's custom errors: ``OutputNotExecutable`` (a notice), ``OutputNotReexecutable``,
``InvalidOutputHashesSiblingsArrayLength``, ``InvalidOutputsMerkleRoot`` (no accepted claim
has this root: wrong proof, or epoch not claimed), ``InsufficientFunds``; any other revert (e.g.
the destination's own error, decoded against every known ABI) is ``OutputRejected`` with
``.error`` set. ``ProofNotReady`` means the node has no siblings yet (epoch not claimed).

CLI (the key comes from ``$TRIBUTARY_PRIVATE_KEY``, never from the command line)::

    python -m rollup execute --rpc-url URL --node-url http://127.0.0.1:PORT --app ADDR --index N [--validate-only]

prints one JSON object; exit 0 on success, 1 when the contract refuses, 2 on other errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import click
import requests
from eth_utils import to_checksum_address
from web3 import Web3
from web3.types import TxReceipt

from rollup.chain import ChainError, ContractRevert, call_fn, connect, contract, send_tx
from rollup.merkle import HEIGHT
from rollup.outputs import OutputDecodeError, decode_output

log = logging.getLogger(__name__)

PRIVATE_KEY_ENV = "TRIBUTARY_PRIVATE_KEY"


class VoucherError(RuntimeError):
    """Base of this module's errors."""


class NodeRpcError(VoucherError):
    """The node's JSON-RPC did not give the output (unreachable, error answer, bad shape)."""


class ProofNotReady(VoucherError):
    """The output exists but has no proof yet: its epoch has not been claimed."""


class OutputRejected(VoucherError):
    """The Application refused the output. ``error``: the Solidity error name (or None);
    ``args``: its decoded arguments; ``index``: the output index."""

    def __init__(self, error: str | None, args: tuple[Any, ...], index: int, detail: str) -> None:
        self.error = error
        self.error_args = args
        self.index = index
        super().__init__(detail)


class OutputNotExecutable(OutputRejected):
    """Only vouchers can be executed (this is a notice, or an unknown output kind)."""


class OutputNotReexecutable(OutputRejected):
    """This output was executed already."""


class InvalidOutputHashesSiblingsArrayLength(OutputRejected):
    """The proof does not have exactly 63 siblings."""


class InvalidOutputsMerkleRoot(OutputRejected):
    """The proof leads to a root the Authority never accepted (wrong proof or unclaimed epoch)."""


class InsufficientFunds(OutputRejected):
    """The Application holds less ETH than the voucher's value."""


_TYPED: dict[str, type[OutputRejected]] = {
    cls.__name__: cls
    for cls in (OutputNotExecutable, OutputNotReexecutable, InvalidOutputHashesSiblingsArrayLength,
                InvalidOutputsMerkleRoot, InsufficientFunds)
}


def _typed(rev: ContractRevert, index: int) -> OutputRejected:
    cls = _TYPED.get(rev.error or "", OutputRejected)
    return cls(rev.error, rev.args_decoded, index, str(rev))


def _hex_to_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise NodeRpcError(f"{what} is not a 0x-hex string: {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise NodeRpcError(f"{what} is not valid hex") from exc


def _int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.startswith("0x") else int(value)
        except ValueError:
            pass
    raise NodeRpcError(f"{what} is not an integer: {value!r}")


@dataclass(frozen=True)
class ProvableOutput:
    """An output with what the contract needs to check it: its global index, its raw bytes
    and the 63 sibling hashes (bottom-up) against an accepted outputs root."""

    index: int
    raw: bytes
    siblings: tuple[bytes, ...]

    def __init__(self, index: int, raw: bytes, siblings: Sequence[bytes]) -> None:
        object.__setattr__(self, "index", int(index))
        object.__setattr__(self, "raw", bytes(raw))
        object.__setattr__(self, "siblings", tuple(bytes(s) for s in siblings))

    @classmethod
    def from_rpc(cls, obj: dict[str, Any]) -> "ProvableOutput":
        """From a ``cartesi_getOutput`` result: fields ``index`` (hex string or number),
        ``raw_data`` (0x hex), ``output_hashes_siblings`` (63 x 0x hex, or null before the
        epoch's claim). A ``{"data": {...}}`` wrapper is accepted too."""
        if isinstance(obj, dict) and "data" in obj and isinstance(obj["data"], dict):
            obj = obj["data"]
        if not isinstance(obj, dict):
            raise NodeRpcError(f"an output must be a JSON object, got {type(obj).__name__}")
        index = _int(obj.get("index"), "index")
        raw = _hex_to_bytes(obj.get("raw_data"), "raw_data")
        sibs = obj.get("output_hashes_siblings")
        if not sibs:
            raise ProofNotReady(f"output {index} has no proof yet (its epoch is not claimed)")
        if not isinstance(sibs, list):
            raise NodeRpcError("output_hashes_siblings must be a list")
        return cls(index, raw, [_hex_to_bytes(s, f"sibling {i}") for i, s in enumerate(sibs)])

    def proof_arg(self) -> tuple[int, list[bytes]]:
        """The ``OutputValidityProof`` tuple (uint64 outputIndex, bytes32[] siblings)."""
        return (self.index, list(self.siblings))


def execute_output(w3: Web3, app: str, output: ProvableOutput, private_key: str) -> TxReceipt:
    """Send ``Application.executeOutput``; returns the receipt or raises a typed OutputRejected."""
    c = contract(w3, "Application", app)
    try:
        return send_tx(w3, private_key, c.functions.executeOutput(output.raw, output.proof_arg()))
    except ContractRevert as rev:
        raise _typed(rev, output.index) from rev


def validate_output(w3: Web3, app: str, output: ProvableOutput) -> None:
    """``Application.validateOutput`` by eth_call (free): returns if the proof holds for an
    accepted root, raises a typed OutputRejected otherwise. Works for notices and vouchers."""
    c = contract(w3, "Application", app)
    try:
        call_fn(c.functions.validateOutput(output.raw, output.proof_arg()))
    except ContractRevert as rev:
        raise _typed(rev, output.index) from rev


def was_output_executed(w3: Web3, app: str, index: int) -> bool:
    return bool(call_fn(contract(w3, "Application", app).functions.wasOutputExecuted(int(index))))


def rpc_endpoint(node_url: str) -> str:
    node_url = node_url.rstrip("/")
    return node_url if node_url.endswith("/rpc") else node_url + "/rpc"


def fetch_output(node_url: str, app: str, index: int, timeout: float = 10.0) -> dict[str, Any]:
    """``cartesi_getOutput`` with params ``{"application": app, "output_index": hex(index)}``
    (the official node's shape); returns the output object (unwrapping ``{"data": ...}``)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "cartesi_getOutput",
            "params": {"application": app, "output_index": hex(index)}}
    url = rpc_endpoint(node_url)
    try:
        r = requests.post(url, json=body, timeout=timeout)
        answer = r.json()
    except (requests.RequestException, ValueError) as exc:
        raise NodeRpcError(f"no JSON-RPC answer from {url}: {exc}") from exc
    if not isinstance(answer, dict):
        raise NodeRpcError(f"{url} answered a non-object")
    if answer.get("error"):
        raise NodeRpcError(f"cartesi_getOutput({index}) failed: {answer['error']}")
    result = answer.get("result")
    if isinstance(result, dict) and isinstance(result.get("data"), dict):
        result = result["data"]
    if not isinstance(result, dict):
        raise NodeRpcError(f"cartesi_getOutput({index}) gave no output object")
    return result


# ------------------------------------------------------------------------------------------ CLI

@click.command("execute")
@click.option("--rpc-url", required=True, help="Ethereum JSON-RPC URL of the base layer")
@click.option("--node-url", required=True, help="the rollup node's base URL (its JSON-RPC is at /rpc)")
@click.option("--app", "app", required=True, help="Application contract address")
@click.option("--index", "index", required=True, type=click.IntRange(min=0), help="global output index")
@click.option("--validate-only", is_flag=True, help="only check the proof (eth_call; no key, no gas)")
def execute_command(rpc_url: str, node_url: str, app: str, index: int, validate_only: bool) -> None:
    """Execute (or validate) output INDEX of APP using the proof served by the node.

    The signing key is read from $TRIBUTARY_PRIVATE_KEY."""
    report: dict[str, Any] = {"index": index, "app": app}
    try:
        app = to_checksum_address(app)
        key = os.environ.get(PRIVATE_KEY_ENV)
        if not validate_only and not key:
            raise VoucherError(f"set {PRIVATE_KEY_ENV} to the executing account's private key")
        raw_out = fetch_output(node_url, app, index)
        out = ProvableOutput.from_rpc(raw_out)
        if out.index != index:
            raise NodeRpcError(f"asked the node for output {index}, it gave {out.index}")
        if len(out.siblings) != HEIGHT:
            log.warning("node gave %d siblings, not %d", len(out.siblings), HEIGHT)
        try:
            report["type"] = type(decode_output(out.raw)).__name__
        except OutputDecodeError:
            report["type"] = "unknown"
        w3 = connect(rpc_url)
        if validate_only:
            validate_output(w3, app, out)
            report.update(valid=True)
        else:
            assert key is not None
            rcpt = execute_output(w3, app, out, key)
            report.update(executed=True, transaction_hash="0x" + bytes(rcpt["transactionHash"]).hex(),
                          gas_used=int(rcpt["gasUsed"]))
        report["was_output_executed"] = was_output_executed(w3, app, index)
        click.echo(json.dumps(report))
    except OutputRejected as exc:
        report.update(ok=False, error=exc.error or "revert", detail=str(exc))
        click.echo(json.dumps(report))
        sys.exit(1)
    except (VoucherError, ChainError, ValueError) as exc:
        report.update(ok=False, error=type(exc).__name__, detail=str(exc))
        click.echo(json.dumps(report))
        sys.exit(2)
