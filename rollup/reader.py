"""Reads the application's `InputAdded` events from the InputBox into the store, in index order.

Why polling `eth_getLogs` rather than a subscription: it works on any HTTP RPC (anvil, a public
node), restarts from the stored cursor after a crash, and the store checks that indices come
strictly in order, so a missed or doubled log is a loud error instead of a silent divergence.
Reorgs are not handled (local devnets do not reorg); a production reader would wait for finality.
"""

from __future__ import annotations

import logging
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from rollup.store import InputRecord, Store

log = logging.getLogger(__name__)

EVM_ADVANCE_SELECTOR = bytes.fromhex("415bf363")
EVM_ADVANCE_TYPES = ["uint256", "address", "address", "uint256", "uint256", "uint256", "uint256", "bytes"]
INPUT_ADDED_TOPIC = keccak(text="InputAdded(address,uint256,bytes)")
OUTPUT_EXECUTED_TOPIC = keccak(text="OutputExecuted(uint64,bytes)")


class InputDecodeError(Exception):
    """An InputAdded log whose input is not an EvmAdvance encoding."""


def decode_evm_advance(raw: bytes) -> dict[str, Any]:
    if raw[:4] != EVM_ADVANCE_SELECTOR:
        raise InputDecodeError(f"input does not start with EvmAdvance's selector: 0x{raw[:4].hex()}")
    try:
        (chain_id, app, sender, block_number, timestamp, prev_randao, index, payload) = abi_decode(
            EVM_ADVANCE_TYPES, raw[4:]
        )
    except Exception as exc:
        raise InputDecodeError(f"malformed EvmAdvance input: {exc}") from exc
    return {
        "chain_id": chain_id,
        "app_contract": app.lower(),
        "msg_sender": sender.lower(),
        "block_number": block_number,
        "block_timestamp": timestamp,
        "prev_randao": "0x" + prev_randao.to_bytes(32, "big").hex(),
        "index": index,
        "payload": bytes(payload),
    }


def input_record(raw: bytes, epoch_length: int, tx_hash: str | None, log_block: int) -> InputRecord:
    """The stored form of one input; its epoch comes from the block the log is in."""
    d = decode_evm_advance(raw)
    return InputRecord(
        index=d["index"], epoch=log_block // epoch_length, block_number=d["block_number"],
        block_timestamp=d["block_timestamp"], chain_id=d["chain_id"], app_contract=d["app_contract"],
        msg_sender=d["msg_sender"], prev_randao=d["prev_randao"], payload=d["payload"], raw=raw,
        tx_hash=tx_hash,
    )


def fetch_input_logs(w3: Web3, input_box: str, app: str, from_block: int, to_block: int) -> list[dict]:
    app_topic = b"\x00" * 12 + bytes.fromhex(app[2:])
    logs = w3.eth.get_logs({
        "address": to_checksum_address(input_box),
        "fromBlock": from_block,
        "toBlock": to_block,
        "topics": ["0x" + INPUT_ADDED_TOPIC.hex(), "0x" + app_topic.hex()],
    })
    return sorted(logs, key=lambda lg: (lg["blockNumber"], lg["logIndex"]))


class InputReader:
    """Moves the store's cursor up to the chain head, storing every new input of the app."""

    def __init__(self, w3: Web3, input_box: str, app: str, deploy_block: int, epoch_length: int,
                 store: Store, chunk: int = 10_000) -> None:
        self.w3 = w3
        self.input_box = input_box
        self.app = app.lower()
        self.deploy_block = deploy_block
        self.epoch_length = epoch_length
        self.store = store
        self.chunk = chunk

    def poll(self, head: int | None = None) -> int:
        """Read up to `head` (default: the latest block); returns how many inputs were added."""
        if head is None:
            head = self.w3.eth.block_number
        start = max(self.store.scanned_block + 1, self.deploy_block)
        added = 0
        while start <= head:
            end = min(head, start + self.chunk - 1)
            records = []
            for lg in fetch_input_logs(self.w3, self.input_box, self.app, start, end):
                (raw,) = abi_decode(["bytes"], bytes(lg["data"]))
                rec = input_record(bytes(raw), self.epoch_length, "0x" + bytes(lg["transactionHash"]).hex(),
                                   int(lg["blockNumber"]))
                if rec.app_contract != self.app:
                    raise InputDecodeError(f"input {rec.index} names app {rec.app_contract}, not {self.app}")
                records.append(rec)
            self.store.add_inputs(records, end, self.epoch_length)
            added += len(records)
            start = end + 1
        return added

    def poll_executions(self, head: int) -> int:
        """Record the app's OutputExecuted events up to `head`, for execution_transaction_hash."""
        start = max(self.store.executions_scanned_block + 1, self.deploy_block)
        found = 0
        while start <= head:
            end = min(head, start + self.chunk - 1)
            logs = self.w3.eth.get_logs({
                "address": to_checksum_address(self.app), "fromBlock": start, "toBlock": end,
                "topics": ["0x" + OUTPUT_EXECUTED_TOPIC.hex()],
            })
            rows = []
            for lg in logs:
                index, _output = abi_decode(["uint64", "bytes"], bytes(lg["data"]))
                rows.append((int(index), "0x" + bytes(lg["transactionHash"]).hex()))
            self.store.add_executions(rows, end)
            found += len(rows)
            start = end + 1
        return found
