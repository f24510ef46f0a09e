"""BatchPayout on the real Cartesi v2.2.0 Application (anvil): one DelegateCallVoucher pays many
accounts in ETH or ERC-20; a payee that reverts or burns its gas allowance gets nothing and its
amount comes back into the Application as a portal deposit naming it (the backend's cue to
credit it again), so the others are paid and no wei is lost; an executor who gives too little
gas makes the whole voucher revert (re-executable), never pushes payees into the fallback."""

from __future__ import annotations

import pytest
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import to_checksum_address
from web3.logs import DISCARD

from dapp.market import payout
from dapp.market import protocol as p
from rollup.artifacts import load_artifact
from rollup.chain import ContractRevert, contract, send_tx
from rollup.deploy import create2_address
from rollup.merkle import OutputsTree
from rollup.outputs import encode_delegate_call_voucher
from rollup.vouchers import ProvableOutput, execute_output
from tests.chain_fixtures import (ALICE, BOB, anvil_chain, core, deposit_erc20,  # noqa: F401
                                  deposit_ether, make_app, mint, submit_claim, test_token,
                                  token_balance, w3)

pytestmark = [pytest.mark.chain]

REVERTER = bytes.fromhex("60006000fd")        # REVERT(0, 0) on any call
BURNER = bytes.fromhex("5b600056")            # JUMPDEST; JUMP(0): loops until out of gas


def test_library_address_is_the_deterministic_create2_one() -> None:
    assert create2_address(load_artifact("BatchPayout").initcode()).lower() == payout.BATCH_PAYOUT


def _claim_and_execute(w3, dep, raw: bytes, gas: int | None = None):
    tree = OutputsTree()
    tree.append_output(raw)
    submit_claim(w3, dep, tree.root())
    out = ProvableOutput(0, raw, tree.proof(0))
    if gas is None:
        return execute_output(w3, to_checksum_address(dep.application), out, BOB.private_key)
    app = contract(w3, "Application", dep.application)
    return send_tx(w3, BOB.private_key, app.functions.executeOutput(raw, out.proof_arg()), gas=gas)


def _returned_inputs(w3, dep, receipt) -> list[tuple[str, str, int]]:
    """(token, payee, amount) of each returned payout the receipt added as an input."""
    box = contract(w3, "InputBox", dep.contracts["InputBox"])
    out = []
    for ev in box.events.InputAdded().process_receipt(receipt, errors=DISCARD):
        raw = bytes(ev["args"]["input"])
        # EvmAdvance(chainId, app, msgSender, blockNumber, blockTimestamp, prevRandao, index, payload)
        fields = abi_decode(["uint256", "address", "address", "uint256", "uint256", "uint256",
                         "uint256", "bytes"], raw[4:])
        sender, payload = fields[2].lower(), fields[7]
        if sender == dep.contracts["EtherPortal"].lower():
            d = p.decode_ether_deposit(payload)
            assert d.sender == dep.application.lower()
            out.append((p.ETH, payout.returned_payee(d.exec_layer_data), d.value))
        else:
            assert sender == dep.contracts["ERC20Portal"].lower()
            d20 = p.decode_erc20_deposit(payload)
            assert d20.sender == dep.application.lower()
            out.append((d20.token, payout.returned_payee(d20.exec_layer_data), d20.value))
    return out


def test_ether_payout_with_a_reverting_and_a_gas_burning_payee(w3, core, anvil_chain):
    dep = make_app(w3, core)
    deposit_ether(w3, dep, ALICE.private_key, 10**18)
    good = [Account.create().address for _ in range(5)]
    bad, burner = Account.create().address, Account.create().address
    anvil_chain.rpc("anvil_setCode", [bad, "0x" + REVERTER.hex()])
    anvil_chain.rpc("anvil_setCode", [burner, "0x" + BURNER.hex()])
    payees = [(a.lower(), 10**15 + i) for i, a in enumerate(good[:2] + [bad] + good[2:]
                                                             + [burner])]
    raw = encode_delegate_call_voucher(payout.BATCH_PAYOUT, payout.pay_payload(p.ETH, payees))
    app_before = w3.eth.get_balance(dep.application)

    # Too little gas: the library refuses to start a payee it could not give its allowance.
    with pytest.raises(ContractRevert):
        _claim_and_execute(w3, dep, raw, gas=150_000)
    rcpt = _claim_and_execute(w3, dep, raw)

    amounts = dict(payees)
    for a in good:
        assert w3.eth.get_balance(a) == amounts[a.lower()]
    assert w3.eth.get_balance(bad) == 0 and w3.eth.get_balance(burner) == 0
    returned = _returned_inputs(w3, dep, rcpt)
    assert returned == [(p.ETH, bad.lower(), amounts[bad.lower()]),
                        (p.ETH, burner.lower(), amounts[burner.lower()])]
    paid = sum(amounts[a.lower()] for a in good)
    assert w3.eth.get_balance(dep.application) == app_before - paid   # the rest is still here


def test_erc20_payout_and_a_refused_transfer(w3, core, test_token):
    dep = make_app(w3, core)
    mint(w3, test_token, ALICE.private_key, ALICE.address, 10**20)
    deposit_erc20(w3, dep, ALICE.private_key, test_token, 10**19)
    good = [Account.create().address for _ in range(3)]
    zero = "0x" + "00" * 20                       # TestToken refuses a transfer to 0x0
    payees = [(good[0].lower(), 7), (zero, 11), (good[1].lower(), 10**18),
              (good[2].lower(), 5)]
    raw = encode_delegate_call_voucher(payout.BATCH_PAYOUT,
                                       payout.pay_payload(test_token.lower(), payees))
    with pytest.raises(ContractRevert):   # not enough for a refused transfer's deposit back
        _claim_and_execute(w3, dep, raw, gas=450_000)
    rcpt = _claim_and_execute(w3, dep, raw)
    assert [token_balance(w3, test_token, a) for a in good] == [7, 10**18, 5]
    assert _returned_inputs(w3, dep, rcpt) == [(test_token.lower(), zero, 11)]
    assert token_balance(w3, test_token, dep.application) == 10**19 - 7 - 10**18 - 5


def test_library_called_directly_moves_nothing(w3, core):
    lib = contract(w3, "BatchPayout", to_checksum_address(payout.BATCH_PAYOUT))
    assert w3.eth.get_balance(lib.address) == 0
    victim = Account.create().address
    # It holds nothing: the payment fails, so does the deposit back; it only logs PayoutStuck.
    send_tx(w3, BOB.private_key, lib.functions.pay(
        "0x" + "00" * 20, [((int(victim, 16) << 96) | 1).to_bytes(32, "big")]))
    assert w3.eth.get_balance(victim) == 0
