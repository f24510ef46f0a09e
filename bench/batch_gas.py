"""Gas per trainer per round and per paid trainer, single vs batched, against the number of
trainers (1, 10, 50, 200), on the real Cartesi v2.2.0 contracts (anvil), with the on-chain
aggregation baseline measured in the same run.

Per trainer per round:
- single: the trainer's own `commit` and `reveal` inputs (today's protocol);
- batched: N trainers' EIP-712-signed commits in one `batch` input, their reveals in another
  (dapp/market/batch.py: real signatures, real binary CIDs), gas / N;
- baseline: the OmniLytics-style `OnChainAggregation.submitUpdate` of the demo's digits CNN
  (1,420 int32 parameters), a later update (storage slots already created: its cheaper figure).

Per paid trainer (including the claim's share: one `submitClaim` per epoch / N):
- single: one withdrawal `Voucher` per trainer, each executed with its proof;
- batched: one `DelegateCallVoucher` running BatchPayout for all N, executed once;
for ETH to accounts that already exist, ETH to fresh accounts (+25,000 gas of account creation
each, the EVM's price for a new account), and ERC-20 (TestToken) to existing holders.

Run: `.venv/bin/python -m bench.batch_gas`; writes bench/results/batch_gas.json.
"""

from __future__ import annotations

import random
from typing import Any

from eth_keys import keys
from eth_utils import to_checksum_address

from bench import write_results
from client.relay import sign
from dapp.content.unixfs import chunk as unixfs_chunk
from dapp.market import batch as b
from dapp.market import payout
from dapp.market import protocol as p
from rollup.anvil import DEV_ACCOUNTS, Anvil
from rollup.chain import connect, contract, deploy_contract, send_tx
from rollup.deploy import deploy_devnet
from rollup.merkle import OutputsTree
from rollup.outputs import encode_delegate_call_voucher, encode_voucher, erc20_transfer_payload

SIZES = (1, 10, 50, 200)
BLOCK_GAS = 29_000_000
DEMO_PARAMS = 1420
AMOUNT = 10**15
TARGET_SUBMIT = 15_000
TARGET_PAYOUT = 2 * 21_000


def _gas(rcpt: Any) -> int:
    return int(rcpt["gasUsed"])


class Bench:
    def __init__(self, chain: Anvil) -> None:
        self.chain = chain
        self.w3 = connect(chain.url)
        self.owner, self.relayer, self.executor = DEV_ACCOUNTS[0], DEV_ACCOUNTS[1], DEV_ACCOUNTS[2]
        self.dep = deploy_devnet(self.w3, self.owner.private_key, epoch_length=4)
        self.app = to_checksum_address(self.dep.application)
        self.box = contract(self.w3, "InputBox", self.dep.contracts["InputBox"])
        self.rng = random.Random(15)
        self.tree = OutputsTree()
        self.count = 0

    def add(self, payload: bytes, key: str | None = None) -> int:
        return _gas(send_tx(self.w3, key or self.relayer.private_key,
                            self.box.functions.addInput(self.app, payload), gas=BLOCK_GAS))

    def submissions(self, n: int) -> tuple[int, int, list[int]]:
        """(gas of the commits batch, of the reveals batch, single commit+reveal gas per
        trainer for the first min(n, 10) trainers) for n trainers of job 1, round 0."""
        chain_id = int(self.w3.eth.chain_id)
        commits, reveals, single = [], [], []
        for i in range(n):
            key = self.rng.randbytes(32)
            addr = keys.PrivateKey(key).public_key.to_checksum_address().lower()
            model_cid = str(unixfs_chunk(self.rng.randbytes(5680))[0])
            data_cid = str(unixfs_chunk(self.rng.randbytes(260))[0])
            salt = self.rng.randbytes(32)
            c = p.commitment(addr, 1, 0, model_cid, data_cid, salt)
            commits.append(sign(p.Commit(1, 0, c), key, chain_id, self.app))
            reveals.append(sign(p.Reveal(1, 0, model_cid, data_cid, salt), key, chain_id,
                                self.app))
            if i < 10:  # today's protocol: the trainer's own two inputs (from a funded account)
                acct = DEV_ACCOUNTS[3 + i % 7].private_key
                single.append(self.add(p.Commit(1, 0, c).encode(), acct)
                              + self.add(p.Reveal(1, 0, model_cid, data_cid, salt).encode(),
                                         acct))
        return self.add(b.batch_input(commits)), self.add(b.batch_input(reveals)), single

    def claim(self, outputs: list[bytes]) -> tuple[int, int]:
        """Append outputs to the app's one outputs tree (indices grow like a node's) and
        claim its root for a fresh epoch; returns (index of the first, claim gas)."""
        first = self.count
        for o in outputs:
            self.tree.append_output(o)
        self.count += len(outputs)
        head = self.w3.eth.block_number
        last = head + (self.dep.epoch_length - 1 - head % self.dep.epoch_length)
        self.chain.mine(last + 1 - head)
        auth = contract(self.w3, "Authority", self.dep.authority)
        gas = _gas(send_tx(self.w3, self.owner.private_key,
                           auth.functions.submitClaim(self.app, last, self.tree.root())))
        return first, gas

    def execute(self, first: int, outputs: list[bytes]) -> list[int]:
        app = contract(self.w3, "Application", self.app)
        return [_gas(send_tx(self.w3, self.executor.private_key,
                             app.functions.executeOutput(o, (first + i, self.tree.proof(first + i))),
                             gas=BLOCK_GAS))
                for i, o in enumerate(outputs)]

    def payees(self, n: int, existing: bool, token: str | None = None) -> list[str]:
        out = []
        for _ in range(n):
            a = to_checksum_address(self.rng.randbytes(20))
            if existing and token is None:
                self.chain.rpc("anvil_setBalance", [a, hex(1)])
            elif existing:
                send_tx(self.w3, self.owner.private_key,
                        contract(self.w3, "TestToken", token).functions.mint(a, 1))
            out.append(a)
        return out

    def payout(self, n: int, kind: str, token: str) -> dict[str, Any]:
        """Gas per paid trainer for n payees, single vouchers vs one batched voucher."""
        tok = None if kind.startswith("eth") else token
        row: dict[str, Any] = {"trainers": n, "kind": kind}
        for scheme in ("single", "batched"):
            who = self.payees(n, existing=kind != "eth_fresh", token=tok)
            if scheme == "single":
                outputs = [encode_voucher(a, AMOUNT, b"") if tok is None
                           else encode_voucher(tok, 0, erc20_transfer_payload(a, AMOUNT))
                           for a in who]
            else:
                entries = [(a.lower(), AMOUNT) for a in who]
                outputs = [encode_delegate_call_voucher(
                    payout.BATCH_PAYOUT, payout.pay_payload((tok or p.ETH).lower(), entries))]
            first, claim_gas = self.claim(outputs)
            executed = self.execute(first, outputs)
            row[scheme] = round((sum(executed) + claim_gas) / n)
            row[f"{scheme}_execute_gas"] = sum(executed)
            row[f"{scheme}_claim_gas"] = claim_gas
            paid = [self.w3.eth.get_balance(a) if tok is None else int(contract(
                self.w3, "TestToken", tok).functions.balanceOf(a).call()) for a in who]
            assert all(v == AMOUNT + (1 if kind != "eth_fresh" else 0) for v in paid), paid
        row["saving"] = round(row["single"] / row["batched"], 1)
        return row


def measure() -> dict[str, Any]:
    with Anvil() as chain:
        bench = Bench(chain)
        bench.add(b"warm-up")  # the app's first input creates its list: not a trainer's cost
        token = deploy_contract(bench.w3, bench.owner.private_key, "TestToken", "Test", "TST")
        portal = contract(bench.w3, "EtherPortal", bench.dep.contracts["EtherPortal"])
        send_tx(bench.w3, bench.owner.private_key, portal.functions.depositEther(bench.app, b""),
                value=10**21)
        send_tx(bench.w3, bench.owner.private_key,
                contract(bench.w3, "TestToken", token).functions.mint(bench.app, 10**24))

        agg = contract(bench.w3, "OnChainAggregation",
                       deploy_contract(bench.w3, bench.owner.private_key, "OnChainAggregation"))
        send_tx(bench.w3, bench.owner.private_key, agg.functions.createJob(DEMO_PARAMS, 10))
        weights = [bench.rng.randint(-(2**31), 2**31 - 1) for _ in range(DEMO_PARAMS)]
        send_tx(bench.w3, DEV_ACCOUNTS[8].private_key, agg.functions.submitUpdate(0, weights),
                gas=BLOCK_GAS)
        baseline = _gas(send_tx(bench.w3, DEV_ACCOUNTS[9].private_key,
                                agg.functions.submitUpdate(0, weights), gas=BLOCK_GAS))

        rounds, single_all = [], []
        for n in SIZES:
            commit_gas, reveal_gas, single = bench.submissions(n)
            single_all += single
            batched = round((commit_gas + reveal_gas) / n)
            rounds.append({"trainers": n, "batched": batched, "commit_batch_gas": commit_gas,
                           "reveal_batch_gas": reveal_gas,
                           "baseline_over_batched": round(baseline / batched, 1)})
        single_round = round(sum(single_all) / len(single_all))
        for r in rounds:
            r["single"] = single_round
            r["saving"] = round(single_round / r["batched"], 1)
        bench.claim([])  # the Authority's first claim writes fresh storage: not a payout's cost
        payouts = [bench.payout(n, kind, token) for kind in ("eth_existing", "eth_fresh", "erc20")
                   for n in SIZES]
    return {"per_trainer_per_round": rounds, "onchain_baseline_later_update_gas": baseline,
            "baseline_over_single": round(baseline / single_round, 1),
            "per_paid_trainer": payouts, "targets": {"submit": TARGET_SUBMIT,
                                                     "payout": TARGET_PAYOUT}}


def main() -> dict[str, Any]:
    res = measure()
    base = res["onchain_baseline_later_update_gas"]
    print("Gas per trainer per round (commit + reveal), Cartesi v2.2.0 contracts on anvil")
    print(f"  on-chain aggregation baseline (digits CNN, later update): {base:,} gas "
          f"= {res['baseline_over_single']}x single")
    print(f"  {'trainers':>8}{'single':>10}{'batched':>10}{'saving':>8}{'baseline/batched':>18}")
    for r in res["per_trainer_per_round"]:
        print(f"  {r['trainers']:>8}{r['single']:>10,}{r['batched']:>10,}{r['saving']:>7}x"
              f"{r['baseline_over_batched']:>17}x")
    print("Gas per paid trainer (execution + the claim's share)")
    print(f"  {'kind':<14}{'trainers':>8}{'single':>10}{'batched':>10}{'saving':>8}")
    for r in res["per_paid_trainer"]:
        print(f"  {r['kind']:<14}{r['trainers']:>8}{r['single']:>10,}{r['batched']:>10,}"
              f"{r['saving']:>7}x")
    print(f"  targets at 50 trainers: submit <= {TARGET_SUBMIT:,}, payout <= {TARGET_PAYOUT:,}")
    write_results("batch_gas", res)
    return res


if __name__ == "__main__":
    main()
