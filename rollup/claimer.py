"""Closes epochs and submits their outputs roots to the Authority.

An epoch e covers blocks [e*L, e*L+L-1]. It can be closed once the reader has scanned a block
after its last one (so no input of it can still appear) and every one of its inputs is processed; its
root is the outputs tree's root at that point (it covers every output so far, not only this
epoch's). Like Cartesi's node we only claim epochs that have inputs. A claim that is already on
chain (NotFirstClaim, e.g. we crashed after sending it) is looked up and recorded, and a root
that differs from ours is a loud error: someone else claimed something we cannot vouch for.
"""

from __future__ import annotations

import logging
import os

from eth_account import Account
from eth_utils import to_checksum_address
from web3 import Web3

from rollup.anvil import DEV_ACCOUNTS
from rollup.chain import ContractRevert, contract, send_tx
from rollup.merkle import OutputsTree
from rollup.store import EPOCH_CLAIM_ACCEPTED, EPOCH_CLOSED, EPOCH_OPEN, Store

log = logging.getLogger(__name__)

CLAIMER_KEY_ENV = "TRIBUTARY_CLAIMER_KEY"


class ClaimConflictError(Exception):
    """The chain holds a different claim for an epoch than the root this node computed."""


def claimer_key(explicit: str | None = None) -> str:
    """The owner key: explicit, else $TRIBUTARY_CLAIMER_KEY, else anvil's (public) account 0."""
    return explicit or os.environ.get(CLAIMER_KEY_ENV) or DEV_ACCOUNTS[0].private_key


def close_ready_epochs(store: Store, tree: OutputsTree) -> list[int]:
    """Close every OPEN epoch whose inputs are all read and processed; returns their indices."""
    closed = []
    epochs, _ = store.list_epochs(status=EPOCH_OPEN)
    scanned = store.scanned_block
    processed = store.processed_count
    for ep in epochs:
        # strictly past: submitClaim needs lastProcessedBlockNumber < block.number, and gas is
        # estimated against the latest block
        if ep.last_block >= scanned:
            break
        last_input = store.last_input_of_epoch(ep.index)
        if last_input is not None and processed <= last_input:
            break
        count = store.output_count_through_epoch(ep.index)
        if count > len(tree):
            raise AssertionError(f"epoch {ep.index}: {count} outputs stored but the tree has {len(tree)}")
        store.update_epoch(ep.index, status=EPOCH_CLOSED, root=tree.root(count), output_count=count)
        closed.append(ep.index)
    return closed


class Claimer:
    def __init__(self, w3: Web3, authority: str, app: str, store: Store, private_key: str | None = None) -> None:
        self.w3 = w3
        self.app = to_checksum_address(app)
        self.store = store
        self.key = claimer_key(private_key)
        self.sender = Account.from_key(self.key).address
        self.authority = contract(w3, "Authority", authority)

    def submit_closed(self) -> list[int]:
        """Claim every CLOSED epoch in order; returns the epochs now recorded as accepted."""
        done = []
        epochs, _ = self.store.list_epochs(status=EPOCH_CLOSED)
        for ep in epochs:
            assert ep.root is not None
            fn = self.authority.functions.submitClaim(self.app, ep.last_block, ep.root)
            try:
                receipt = send_tx(self.w3, self.key, fn)
                tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
            except ContractRevert as exc:
                if exc.error != "NotFirstClaim":
                    raise
                tx_hash = self._existing_claim(ep.index, ep.last_block, ep.root)
            self.store.update_epoch(ep.index, status=EPOCH_CLAIM_ACCEPTED, claim_tx=tx_hash)
            log.info("epoch %d claimed: root 0x%s (tx %s)", ep.index, ep.root.hex(), tx_hash)
            done.append(ep.index)
        return done

    def _existing_claim(self, epoch: int, last_block: int, root: bytes) -> str:
        for ev in self.authority.events.ClaimAccepted().get_logs(
            from_block=0, argument_filters={"appContract": self.app}
        ):
            if int(ev["args"]["lastProcessedBlockNumber"]) == last_block:
                onchain = bytes(ev["args"]["outputsMerkleRoot"])
                if onchain != root:
                    raise ClaimConflictError(
                        f"epoch {epoch}: chain holds root 0x{onchain.hex()}, node computed 0x{root.hex()}"
                    )
                return "0x" + bytes(ev["transactionHash"]).hex()
        raise ClaimConflictError(f"epoch {epoch}: NotFirstClaim but no ClaimAccepted event found")


__all__ = ["Claimer", "ClaimConflictError", "close_ready_epochs", "claimer_key"]
