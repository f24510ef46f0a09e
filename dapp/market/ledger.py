"""Where every wei is: in-app balances, job escrows, or paid out by a voucher.

The invariant the whole market keeps, per token:
    deposited == sum(balances) + sum(job escrows) + withdrawn
Every movement is a transfer between two of these places, never a creation or a loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class InsufficientBalance(ValueError):
    pass


@dataclass
class Ledger:
    balances: dict[str, dict[str, int]] = field(default_factory=dict)
    """token -> account -> amount (accounts and tokens are lowercase 0x-hex)."""
    deposited: dict[str, int] = field(default_factory=dict)
    withdrawn: dict[str, int] = field(default_factory=dict)

    def balance(self, token: str, account: str) -> int:
        return self.balances.get(token, {}).get(account, 0)

    def credit(self, token: str, account: str, amount: int) -> None:
        if amount < 0:
            raise ValueError("negative credit")
        if amount:
            per = self.balances.setdefault(token, {})
            per[account] = per.get(account, 0) + amount

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

    def record_deposit(self, token: str, amount: int) -> None:
        self.deposited[token] = self.deposited.get(token, 0) + amount

    def record_withdrawal(self, token: str, amount: int) -> None:
        self.withdrawn[token] = self.withdrawn.get(token, 0) + amount

    def total_balances(self, token: str) -> int:
        return sum(self.balances.get(token, {}).values())
