"""Batched payouts: one DelegateCallVoucher pays every account with a balance in a token.

Why: a withdrawal voucher pays one account and costs one `executeOutput` (a proof of 63 hashes
in calldata, the executed-bit write, the transfer): 106,000-138,000 gas each. One voucher that
runs our library `BatchPayout` (contracts/src/BatchPayout.sol) with the Application's balance
shares that fixed cost among all payees, so each pays little more than the transfer itself.

The library is deployed like Cartesi's own contracts, through the CREATE2 deployer with salt 0,
so its address is the constant below on every chain (rollup.deploy.deploy_batch_payout deploys
it; a test checks the constant against the compiled artifact).

Failure without loss (the backend cannot see L1 results): a payee the library cannot pay has
its amount deposited back into this Application through Cartesi's EtherPortal / ERC20Portal
with `execLayerData = payoutReturned(payee)`. That deposit is an ordinary input whose sender is
the Application itself (only a voucher run by the Application can make it one); the backend
then credits the amount back to the payee's in-app balance with a notice (`returned`), from
where `withdraw` or a later payout can take it. Pull `withdraw` is unchanged.
"""

from __future__ import annotations

import heapq

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from dapp.market import protocol as p
from dapp.market.ledger import LedgerView

BATCH_PAYOUT = "0x9a46ce24570a9768405a0b82f9295278c01941e3"
"""BatchPayout's CREATE2 address (deployer 0x4e59b448..., salt 0, solc 0.8.30 build)."""
PAY = p.selector("pay(address,bytes32[])")
RETURNED = p.selector("payoutReturned(address)")
MAX_PAYEES = 200
"""Payees per voucher: keeps one voucher's execution under ~8M gas even if every payee burns
its whole gas allowance; accounts beyond it (by address order) wait for the next payout."""
MAX_AMOUNT = (1 << 96) - 1
"""An entry packs the amount in 96 bits; a larger balance is left for `withdraw`."""


def plan(ledger: LedgerView, token: str, exclude: set[str]) -> list[tuple[str, int]]:
    """Who is paid and how much: every positive balance in `token` (all of it), ascending by
    address, at most MAX_PAYEES, amounts that fit 96 bits, accounts in `exclude` skipped."""
    # The MAX_PAYEES smallest, not a sort of every account: anyone adds an account with one
    # deposit, and anyone may ask for a payout (bench/state_growth.py: at 100,000 accounts).
    return heapq.nsmallest(MAX_PAYEES, ((a, v) for a, v in ledger.accounts(token).items()
                                        if a not in exclude and 0 < v <= MAX_AMOUNT))


def pay_payload(token: str, payees: list[tuple[str, int]]) -> bytes:
    """Calldata of `BatchPayout.pay(token, entries)`, entry = payee << 96 | amount."""
    entries = [((int(a, 16) << 96) | amount).to_bytes(32, "big") for a, amount in payees]
    return PAY + abi_encode(["address", "bytes32[]"], [token, entries])


def payees_of(payload: bytes) -> tuple[str, list[tuple[str, int]]] | None:
    """(token, [(payee, amount)]) of a `pay_payload`, for clients listing what a batched payout
    pays them; None if the bytes are anything else."""
    if payload[:4] != PAY:
        return None
    try:
        token, entries = abi_decode(["address", "bytes32[]"], payload[4:])
    except Exception:
        return None
    out = []
    for e in entries:
        v = int.from_bytes(e, "big")
        out.append((f"0x{v >> 96:040x}", v & MAX_AMOUNT))
    return str(token).lower(), out


def returned_payee(exec_layer_data: bytes) -> str | None:
    """The payee named by a returned payout's execLayerData (`payoutReturned(address)`), or
    None if the bytes are anything else."""
    if len(exec_layer_data) != 36 or exec_layer_data[:4] != RETURNED:
        return None
    try:
        (payee,) = abi_decode(["address"], exec_layer_data[4:], strict=True)
    except Exception:
        return None
    if abi_encode(["address"], [payee]) != exec_layer_data[4:]:
        return None
    return str(payee).lower()
