"""Batched payouts in the backend (issue 15), in process: `payout(token)` turns every balance in
the token into one DelegateCallVoucher and a notice; a returned payout (a portal deposit whose
sender is the Application itself) credits the payee again; money is conserved throughout."""

from __future__ import annotations

from eth_abi import decode as abi_decode
from hypothesis import given, settings
from hypothesis import strategies as st

from dapp.market import payout
from dapp.market import protocol as p
from dapp.outputs import DelegateCallVoucher
from tests.market_harness import APP, TOKEN, TRAINERS, MarketSim

T = TRAINERS


def _entries(payload: bytes) -> tuple[str, list[tuple[str, int]]]:
    assert payload[:4] == payout.PAY
    token, entries = abi_decode(["address", "bytes32[]"], payload[4:])
    return token.lower(), [("0x" + e[:20].hex(), int.from_bytes(e[20:], "big")) for e in entries]


def test_payout_pays_every_balance_in_one_delegate_call_voucher() -> None:
    sim = MarketSim()
    for i, t in enumerate(T[:5]):
        assert sim.deposit_eth(t, 1000 + i).accepted
    assert sim.deposit_erc20(T[0], TOKEN, 77).accepted
    res = sim.call(T[9], p.Payout(p.ETH))           # anyone may ask
    assert res.accepted, res.reports
    [dcv] = [o for o in res.outputs.emitted if isinstance(o, DelegateCallVoucher)]
    assert dcv.destination == payout.BATCH_PAYOUT
    token, entries = _entries(dcv.payload)
    assert token == p.ETH and entries == sorted((t, 1000 + i) for i, t in enumerate(T[:5]))
    [notice] = res.notices
    assert notice == {"type": "payout", "token": p.ETH, "library": payout.BATCH_PAYOUT,
                      "total": str(sum(1000 + i for i in range(5))),
                      "payees": [{"account": a, "amount": str(v)} for a, v in entries]}
    for t in T[:5]:
        assert sim.inspect(f"balance/{t}")["balances"].get(p.ETH) is None
    assert sim.inspect(f"balance/{T[0]}")["balances"] == {TOKEN: "77"}   # other tokens stay
    assert sim.market.state.conserved()
    # nothing left to pay: refused, nothing changes
    before = sim.market.digest()
    res = sim.call(T[9], p.Payout(p.ETH))
    assert not res.accepted and "no balance" in " ".join(res.reports)
    assert sim.market.digest() == before
    _, entries = _entries([o for o in sim.call(T[9], p.Payout(TOKEN)).outputs.emitted
                           if isinstance(o, DelegateCallVoucher)][0].payload)
    assert entries == [(T[0], 77)]


def test_returned_payout_credits_the_payee_and_only_from_the_application() -> None:
    sim = MarketSim()
    assert sim.deposit_eth(T[0], 500).accepted
    assert sim.call(T[1], p.Payout(p.ETH)).accepted
    data = payout.RETURNED + bytes(12) + bytes.fromhex(T[0][2:])
    # the library's deposit back: sender is the Application
    res = sim.deposit_eth(APP, 500, data)
    assert res.accepted
    assert res.notices == [{"type": "payout_returned", "account": T[0], "token": p.ETH,
                            "amount": "500"}]
    assert sim.inspect(f"balance/{T[0]}")["balances"] == {p.ETH: "500"}
    # anyone else sending the same bytes only makes an ordinary deposit of their own
    res = sim.deposit_eth(T[2], 9, data)
    assert res.accepted and not any(n["type"] == "payout_returned" for n in res.notices)
    assert sim.inspect(f"balance/{T[0]}")["balances"] == {p.ETH: "500"}
    assert sim.inspect(f"balance/{T[2]}")["balances"] == {p.ETH: "9"}
    assert sim.market.state.conserved()
    # and the returned amount can be withdrawn (pull) as before
    [v] = sim.call(T[0], p.Withdraw(p.ETH, 500)).vouchers
    assert (v.destination, v.value) == (T[0], 500)


def test_payout_is_capped_and_skips_what_does_not_fit() -> None:
    sim = MarketSim()
    accounts = ["0x" + f"{i:040x}" for i in range(1, payout.MAX_PAYEES + 6)]
    for a in accounts:
        assert sim.deposit_eth(a, 3).accepted
    huge = "0x" + "ee" * 20
    assert sim.deposit_eth(huge, payout.MAX_AMOUNT + 1).accepted
    res = sim.call(T[0], p.Payout(p.ETH))
    [dcv] = [o for o in res.outputs.emitted if isinstance(o, DelegateCallVoucher)]
    _, entries = _entries(dcv.payload)
    assert [a for a, _ in entries] == accounts[:payout.MAX_PAYEES]
    res = sim.call(T[0], p.Payout(p.ETH))            # the next payout takes the rest
    [dcv] = [o for o in res.outputs.emitted if isinstance(o, DelegateCallVoucher)]
    assert [a for a, _ in _entries(dcv.payload)[1]] == accounts[payout.MAX_PAYEES:]
    assert not sim.call(T[0], p.Payout(p.ETH)).accepted   # 2**96 and more: `withdraw` only
    assert sim.inspect(f"balance/{huge}")["balances"] == {p.ETH: str(payout.MAX_AMOUNT + 1)}


@settings(max_examples=100, deadline=None)
@given(token=st.binary(min_size=20, max_size=20),
       entries=st.lists(st.tuples(st.binary(min_size=20, max_size=20),
                                  st.integers(1, payout.MAX_AMOUNT)), max_size=20))
def test_a_batched_payout_names_what_it_pays_each_payee(token, entries):
    """What `tributary vouchers` shows a payee: the payload decodes to the exact entries."""
    tok = "0x" + token.hex()
    payees = [("0x" + a.hex(), v) for a, v in entries]
    assert payout.payees_of(payout.pay_payload(tok, payees)) == (tok, payees)
    assert payout.payees_of(b"\x00" * 4 + payout.pay_payload(tok, payees)[4:]) is None


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 2000), st.integers(0, payout.MAX_AMOUNT + 5), max_size=450),
       st.sets(st.integers(1, 2000), max_size=30))
def test_a_payout_pays_the_lowest_addresses_first_whatever_the_balances(balances, excluded):
    """`plan` picks the MAX_PAYEES smallest addresses without sorting every account (anyone adds
    one with a deposit); it is the same list a full sort would give."""
    from dapp.market.ledger import Ledger
    led = Ledger()
    for k, v in balances.items():
        led.credit(p.ETH, f"0x{k:040x}", v)
    exclude = {f"0x{k:040x}" for k in excluded}
    full = [(a, v) for a, v in sorted(led.accounts(p.ETH).items())
            if a not in exclude and 0 < v <= payout.MAX_AMOUNT][:payout.MAX_PAYEES]
    assert payout.plan(led, p.ETH, exclude) == full
