"""Where every wei is: in-app balances, job escrows, or paid out by a voucher.

The invariant the whole market keeps, per token:
    deposited == sum(balances) + sum(job escrows) + withdrawn
Every movement is a transfer between two of these places, never a creation or a loss.

An input works on a `TrialLedger`: the balances it changes are kept aside and written back only
when the input succeeds. A deep copy of every balance per input (and a sum over all of them for
the invariant) made every input cost O(accounts): 50 ms at 100,000 accounts on x86-64, more
in the RISC-V machine, and every account is one deposit away (bench/state_growth.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from dapp import canonical
from dapp.hashing import MultisetHash, keccak


class InsufficientBalance(ValueError):
    pass


@dataclass
class Ledger:
    balances: dict[str, dict[str, int]] = field(default_factory=dict)
    """token -> account -> amount (accounts and tokens are lowercase 0x-hex)."""
    deposited: dict[str, int] = field(default_factory=dict)
    withdrawn: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Not fields: the JSON form stays the balances themselves.
        self._totals = {t: sum(per.values()) for t, per in self.balances.items()}
        self._set_hash = _ledger_hash(self)

    def balance(self, token: str, account: str) -> int:
        return self.balances.get(token, {}).get(account, 0)

    def credit(self, token: str, account: str, amount: int) -> None:
        if amount < 0:
            raise ValueError("negative credit")
        if amount:
            per = self.balances.setdefault(token, {})
            have = per.get(account, 0)
            per[account] = have + amount
            self._totals[token] = self._totals.get(token, 0) + amount
            if have:
                self._set_hash.remove(_entry(token, account, have))
            self._set_hash.add(_entry(token, account, have + amount))

    def debit(self, token: str, account: str, amount: int) -> None:
        have = self.balance(token, account)
        if amount > have:
            raise InsufficientBalance(
                f"balance of {account} is {have} of token {token}, less than {amount}")
        per = self.balances[token]
        if have == amount:
            del per[account]
            if not per:
                del self.balances[token]
        else:
            per[account] = have - amount
            self._set_hash.add(_entry(token, account, have - amount))
        self._set_hash.remove(_entry(token, account, have))
        self._totals[token] -= amount

    def record_deposit(self, token: str, amount: int) -> None:
        self._add_flow(self.deposited, token, amount)

    def record_withdrawal(self, token: str, amount: int) -> None:
        self._add_flow(self.withdrawn, token, amount)

    def _add_flow(self, totals: dict[str, int], token: str, amount: int) -> None:
        """`totals[token] += amount`, moving the token's entry in the multiset hash with it."""
        if token in self.deposited or token in self.withdrawn:
            self._set_hash.remove(_flow_entry(token, *self.flows(token)))
        totals[token] = totals.get(token, 0) + amount
        self._set_hash.add(_flow_entry(token, *self.flows(token)))

    def flows(self, token: str) -> tuple[int, int]:
        """(deposited, withdrawn) in `token` so far."""
        return self.deposited.get(token, 0), self.withdrawn.get(token, 0)

    def total_balances(self, token: str) -> int:
        """Kept as balances move (O(1)); `audit()` recomputes it."""
        return self._totals.get(token, 0)

    def audit(self) -> bool:
        """Every running total equals the sum of the balances it stands for (tests call it
        after every step; the market's own invariant check uses the running totals)."""
        tokens = set(self.balances) | {t for t, v in self._totals.items() if v}
        return all(self._totals.get(t, 0) == sum(self.balances.get(t, {}).values())
                   for t in tokens)

    def accounts(self, token: str) -> dict[str, int]:
        """Every positive balance in `token` (read it, never change it)."""
        return self.balances.get(token, {})

    def digest(self, cached: bool = False) -> bytes:
        """keccak over a multiset hash of the balances and of each token's deposited and
        withdrawn totals. `cached` takes the multiset hash kept up to date as balances and
        totals move (O(1) per move: the free `state` query re-hashed every balance, 443 ms at
        100,000 accounts, and dumped every token's totals, 197 ms at 100,000 tokens); the
        default rebuilds it from the ledger's own maps, trusting nothing kept aside."""
        kept = self._set_hash if cached else _ledger_hash(self)
        return keccak(canonical.dumps({"balances_and_flows": "0x" + kept.digest().hex()}))


class LedgerView(Protocol):
    """What an input may do to a ledger: a `Ledger` or a `TrialLedger` over one."""

    deposited: dict[str, int]
    withdrawn: dict[str, int]

    def balance(self, token: str, account: str) -> int: ...
    def credit(self, token: str, account: str, amount: int) -> None: ...
    def debit(self, token: str, account: str, amount: int) -> None: ...
    def record_deposit(self, token: str, amount: int) -> None: ...
    def record_withdrawal(self, token: str, amount: int) -> None: ...
    def total_balances(self, token: str) -> int: ...
    def flows(self, token: str) -> tuple[int, int]: ...
    def accounts(self, token: str) -> dict[str, int]: ...


class TrialLedger:
    """A ledger as one input sees it: the balances it changes live here, over the ledger it
    was taken from, until `commit` writes them there. Reading is O(1) per account; nothing is
    copied up front."""

    def __init__(self, base: LedgerView) -> None:
        self._base = base
        self._changed: dict[tuple[str, str], int] = {}
        self._moved: dict[str, int] = {}          # token -> change of its total balance
        self._deposited: dict[str, int] = {}      # token -> deposited during this input
        self._withdrawn: dict[str, int] = {}

    def balance(self, token: str, account: str) -> int:
        key = (token, account)
        return self._changed[key] if key in self._changed else self._base.balance(token, account)

    def _set(self, token: str, account: str, value: int) -> None:
        self._moved[token] = self._moved.get(token, 0) + value - self.balance(token, account)
        self._changed[(token, account)] = value

    def credit(self, token: str, account: str, amount: int) -> None:
        if amount < 0:
            raise ValueError("negative credit")
        if amount:
            self._set(token, account, self.balance(token, account) + amount)

    def debit(self, token: str, account: str, amount: int) -> None:
        have = self.balance(token, account)
        if amount > have:
            raise InsufficientBalance(
                f"balance of {account} is {have} of token {token}, less than {amount}")
        self._set(token, account, have - amount)

    def record_deposit(self, token: str, amount: int) -> None:
        self._deposited[token] = self._deposited.get(token, 0) + amount

    def record_withdrawal(self, token: str, amount: int) -> None:
        self._withdrawn[token] = self._withdrawn.get(token, 0) + amount

    @property
    def deposited(self) -> dict[str, int]:
        return _plus(self._base.deposited, self._deposited)

    @property
    def withdrawn(self) -> dict[str, int]:
        return _plus(self._base.withdrawn, self._withdrawn)

    def total_balances(self, token: str) -> int:
        return self._base.total_balances(token) + self._moved.get(token, 0)

    def flows(self, token: str) -> tuple[int, int]:
        dep, wd = self._base.flows(token)
        return dep + self._deposited.get(token, 0), wd + self._withdrawn.get(token, 0)

    def tokens_moved(self) -> set[str]:
        """The tokens whose balances, deposits or withdrawals this input changed."""
        return set(self._moved) | set(self._deposited) | set(self._withdrawn)

    def accounts(self, token: str) -> dict[str, int]:
        """Every positive balance in `token` (a payout's candidates): O(accounts), as paying
        them out is."""
        merged = dict(self._base.accounts(token))
        for (t, a), v in self._changed.items():
            if t == token:
                if v:
                    merged[a] = v
                else:
                    merged.pop(a, None)
        return merged

    def commit(self) -> LedgerView:
        """Write this input's changes into the ledger it was taken from, and return that."""
        base = self._base
        for (t, a), v in self._changed.items():
            have = base.balance(t, a)
            if v > have:
                base.credit(t, a, v - have)
            elif v < have:
                base.debit(t, a, have - v)
        for t, v in self._deposited.items():
            base.record_deposit(t, v)
        for t, v in self._withdrawn.items():
            base.record_withdrawal(t, v)
        return base


def _entry(token: str, account: str, amount: int) -> bytes:
    return f"{token}:{account}:{amount}".encode()


def _flow_entry(token: str, deposited: int, withdrawn: int) -> bytes:
    # "flow" is no 0x address, so no balance entry can equal a flow entry.
    return f"flow:{token}:{deposited}:{withdrawn}".encode()


def _ledger_hash(ledger: Ledger) -> MultisetHash:
    h = MultisetHash()
    for t, per in ledger.balances.items():
        for a, v in per.items():
            h.add(_entry(t, a, v))
    for t in set(ledger.deposited) | set(ledger.withdrawn):
        h.add(_flow_entry(t, *ledger.flows(t)))
    return h


def _plus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out
