"""Gas per trainer per round, and per payout, on the real Cartesi v2.2.0 contracts (anvil).

In one run, for the same model sizes:
- Tributary over GIO: a trainer sends `commit` and `reveal` inputs (content ids only);
- Tributary over inputs (content_source "inputs", for the official node): the same two inputs
  plus the model and data card posted as `putContent` chunks;
- the OmniLytics-style baseline: the whole int32 update submitted to `OnChainAggregation`, which
  sums it into storage (the aggregation done by the contract).
And the payout: `executeOutput` of a withdrawal voucher (ETH), first and later in a tree.

Model sizes: the demo's digits CNN (1,370 parameters, ~5.6 KB) and 10 KB, 100 KB, 1 MB models.
The baseline is measured up to the largest model that fits the block gas limit; beyond it, the
row says so and gives the linear extrapolation from the measured gas per parameter.

Run: `.venv/bin/python -m bench.market_gas`; writes bench/results/market_gas.json.
"""

from __future__ import annotations

import random
from typing import Any

from dapp.content.inbox import UPLOAD_CHUNK
from dapp.content.unixfs import chunk as unixfs_chunk
from dapp.market import protocol as p
from bench import write_results
from rollup.anvil import DEV_ACCOUNTS, Anvil
from rollup.chain import ContractRevert, connect, contract, deploy_contract, send_tx
from rollup.deploy import deploy_devnet
from rollup.merkle import OutputsTree
from rollup.outputs import encode_voucher

MODELS = {"digits CNN (1,370 params)": 1370 * 4 + 200, "10 KB": 10_000, "100 KB": 100_000,
          "1 MB": 1_000_000}
BLOCK_GAS = 29_000_000
CARD_BYTES = 260


def _gas(rcpt: Any) -> int:
    return int(rcpt["gasUsed"])


def measure() -> dict[str, Any]:
    rng = random.Random(11)
    owner, trainer, other = DEV_ACCOUNTS[0], DEV_ACCOUNTS[1], DEV_ACCOUNTS[2]
    rows = []
    with Anvil() as chain:
        w3 = connect(chain.url)
        dep = deploy_devnet(w3, owner.private_key, epoch_length=4)
        box = contract(w3, "InputBox", dep.contracts["InputBox"])

        def add(payload: bytes, key: str = trainer.private_key) -> int:
            return _gas(send_tx(w3, key, box.functions.addInput(dep.application, payload),
                                gas=BLOCK_GAS))

        add(b"warm-up")  # the app's first input creates its list: not a trainer's cost
        agg = contract(w3, "OnChainAggregation",
                       deploy_contract(w3, owner.private_key, "OnChainAggregation"))
        baseline_per_param: float | None = None
        for job, (label, size) in enumerate(MODELS.items()):
            model = rng.randbytes(size)
            card = rng.randbytes(CARD_BYTES)
            model_cid, card_cid = str(unixfs_chunk(model)[0]), str(unixfs_chunk(card)[0])
            salt = rng.randbytes(32)
            commit = p.Commit(1, 0, p.commitment(trainer.address, 1, 0, model_cid, card_cid,
                                                  salt)).encode()
            reveal = p.Reveal(1, 0, model_cid, card_cid, salt).encode()
            gio_gas = add(commit) + add(reveal)
            upload_gas, chunks = 0, 0
            for cid, data in ((model_cid, model), (card_cid, card)):
                for i in range(0, len(data), UPLOAD_CHUNK):
                    upload_gas += add(p.PutContent(cid, len(data), i // UPLOAD_CHUNK,
                                                   data[i:i + UPLOAD_CHUNK]).encode())
                    chunks += 1
            params = size // 4
            send_tx(w3, owner.private_key, agg.functions.createJob(params, 10))
            weights = [rng.randint(-(2**31), 2**31 - 1) for _ in range(params)]
            baseline: int | None
            baseline_note = "measured (first update of the job: storage slots created)"
            later: int | None = None
            try:
                baseline = _gas(send_tx(w3, other.private_key,
                                        agg.functions.submitUpdate(job, weights), gas=BLOCK_GAS))
                baseline_per_param = baseline / params
                later = _gas(send_tx(w3, trainer.private_key,
                                     agg.functions.submitUpdate(job, weights), gas=BLOCK_GAS))
            except (ContractRevert, Exception) as exc:  # out of gas beyond the block limit
                baseline = None
                baseline_note = (f"does not fit one block ({BLOCK_GAS:,} gas): "
                                 f"{type(exc).__name__}")
            extrapolated = (round(baseline_per_param * params) if baseline is None
                            and baseline_per_param else None)
            rows.append({
                "model": label, "model_bytes": size, "parameters": params,
                "gio_commit_reveal_gas": gio_gas,
                "inputs_upload_gas": upload_gas, "inputs_chunks": chunks,
                "inputs_total_gas": gio_gas + upload_gas,
                "onchain_baseline_gas": baseline, "onchain_baseline_note": baseline_note,
                "onchain_baseline_later_update_gas": later,
                "later_over_gio": round(later / gio_gas, 1) if later else None,
                "onchain_baseline_extrapolated_gas": extrapolated,
                "baseline_over_gio": round((baseline or extrapolated or 0) / gio_gas, 1),
                "baseline_over_inputs": round((baseline or extrapolated or 0)
                                              / (gio_gas + upload_gas), 2),
            })

        # Payout: the market's withdrawal voucher, executed with a proof against a claim.
        outputs = [encode_voucher(DEV_ACCOUNTS[3 + i].address, 10**15, b"") for i in range(2)]
        tree = OutputsTree()
        for o in outputs:
            tree.append_output(o)
        eth_portal = contract(w3, "EtherPortal", dep.contracts["EtherPortal"])
        send_tx(w3, owner.private_key, eth_portal.functions.depositEther(dep.application, b""),
                value=10**16)
        head = w3.eth.block_number
        last = head + (dep.epoch_length - 1 - head % dep.epoch_length)
        chain.mine(last + 1 - head)
        auth = contract(w3, "Authority", dep.authority)
        send_tx(w3, owner.private_key, auth.functions.submitClaim(dep.application, last,
                                                                   tree.root()))
        app = contract(w3, "Application", dep.application)
        payouts = [_gas(send_tx(w3, other.private_key,
                                app.functions.executeOutput(outputs[i], (i, tree.proof(i)))))
                   for i in range(2)]
    # Where the baseline costs 100x our commit + reveal: from the largest measured later update
    # (the cheaper of the two baseline figures, storage slots already created).
    measured = [r for r in rows if r["onchain_baseline_later_update_gas"]]
    per_param = (measured[-1]["onchain_baseline_later_update_gas"] / measured[-1]["parameters"]
                 if measured else None)
    crossover = round(100 * rows[0]["gio_commit_reveal_gas"] / per_param) if per_param else None
    return {"per_trainer_per_round": rows, "crossover_100x_parameters": crossover,
            "payout_voucher_gas": {"first_in_tree": payouts[0], "later_in_tree": payouts[1]},
            "block_gas_limit_used": BLOCK_GAS}


def main() -> dict[str, Any]:
    res = measure()
    print("Gas per trainer per round (commit + reveal), Cartesi v2.2.0 contracts on anvil")
    print(f"  {'model':<28}{'GIO':>10}{'inputs':>12}{'chunks':>8}{'on-chain baseline':>20}"
          f"{'baseline/GIO':>14}{'baseline/inputs':>17}")
    for r in res["per_trainer_per_round"]:
        base = (f"{r['onchain_baseline_gas']:,}" if r["onchain_baseline_gas"]
                else f"~{r['onchain_baseline_extrapolated_gas']:,}*")
        print(f"  {r['model']:<28}{r['gio_commit_reveal_gas']:>10,}{r['inputs_total_gas']:>12,}"
              f"{r['inputs_chunks']:>8}{base:>20}{r['baseline_over_gio']:>13}x"
              f"{r['baseline_over_inputs']:>16}x")
    print("  * does not fit one block; extrapolated from the measured gas per parameter")
    for r in res["per_trainer_per_round"]:
        if r["onchain_baseline_later_update_gas"]:
            print(f"  baseline, a later trainer's update ({r['model']}): "
                  f"{r['onchain_baseline_later_update_gas']:,} gas = {r['later_over_gio']}x GIO")
    if res["crossover_100x_parameters"]:
        n = res["crossover_100x_parameters"]
        print(f"  100x crossover (later baseline updates): {n:,} parameters = {4 * n / 1000:.0f} KB")
    pv = res["payout_voucher_gas"]
    print(f"Payout (executeOutput of an ETH voucher): first {pv['first_in_tree']:,}, "
          f"later {pv['later_in_tree']:,}")
    write_results("market_gas", res)
    return res


if __name__ == "__main__":
    main()
