"""Gas of the chain operations Tributary pays for, on the real Cartesi v2.2.0 contracts (anvil).

Measures (gasUsed from receipts, so intrinsic and calldata gas included):
- InputBox.addInput against payload size (random bytes: model-like data, nonzero calldata),
  up to the largest payload an input can carry (65,216 bytes);
- EtherPortal.depositEther, ERC20Portal.depositERC20Tokens;
- Authority.submitClaim;
- Application.executeOutput of an ETH voucher: the first execution in a tree and a later one in
  the same tree (the executed-outputs bitmap word is then warm/nonzero), plus one paying a fresh
  (empty) account, and an ERC-20 transfer voucher;
- baselines measured in the same run: a plain ETH transfer, and the OmniLytics-style
  OnChainAggregation.submitUpdate (whole int32 model on chain) for a few model sizes, against
  Tributary's way (an input carrying only content ids, ~200 bytes).

Run: ``.venv/bin/python -m bench.gas``; writes bench/results/gas.json.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
from typing import Any

from eth_account import Account

from bench import write_results
from rollup.anvil import DEV_ACCOUNTS, Anvil, anvil_binary
from rollup.chain import ContractRevert, connect, contract, deploy_contract, send_tx
from rollup.deploy import deploy_devnet
from rollup.merkle import OutputsTree
from rollup.outputs import encode_notice, encode_voucher, erc20_transfer_payload

PAYLOAD_SIZES = [0, 100, 1024, 4096, 16384, 32768, 65216]
MAX_PAYLOAD = 65216
AGG_DIMS = [100, 1000, 4000]
ETH = 10**18


def _gas(rcpt: Any) -> int:
    return int(rcpt["gasUsed"])


def measure() -> dict[str, Any]:
    owner, alice, bob = DEV_ACCOUNTS[0], DEV_ACCOUNTS[1], DEV_ACCOUNTS[2]
    rng = random.Random(7)
    with Anvil() as chain:
        w3 = connect(chain.url)
        dep = deploy_devnet(w3, owner.private_key, epoch_length=4)
        box = contract(w3, "InputBox", dep.contracts["InputBox"])
        res: dict[str, Any] = {}

        res["eth_transfer_baseline"] = _gas(send_tx(w3, alice.private_key, to=bob.address, value=1))

        # The app's first input also creates its input list in storage: measured apart, so the
        # size rows compare like with like.
        res["addInput_first_for_app_100_bytes"] = _gas(send_tx(
            w3, alice.private_key, box.functions.addInput(dep.application, rng.randbytes(100))))
        add_input: list[dict[str, Any]] = []
        for size in PAYLOAD_SIZES:
            payload = rng.randbytes(size)
            g = _gas(send_tx(w3, alice.private_key, box.functions.addInput(dep.application, payload)))
            add_input.append({"payload_bytes": size, "gas": g,
                              "gas_per_payload_byte": round((g - add_input[0]["gas"]) / size, 2) if size and add_input else None})
        res["addInput"] = add_input
        try:
            send_tx(w3, alice.private_key, box.functions.addInput(dep.application, b"\x01" * (MAX_PAYLOAD + 1)))
            res["addInput_over_limit"] = "accepted?!"
        except ContractRevert as exc:
            res["addInput_over_limit"] = exc.error

        eth_portal = contract(w3, "EtherPortal", dep.contracts["EtherPortal"])
        res["depositEther"] = _gas(send_tx(w3, alice.private_key, eth_portal.functions.depositEther(dep.application, b""),
                                           value=5 * ETH))
        token = deploy_contract(w3, owner.private_key, "TestToken", "Test Token", "TST")
        tok = contract(w3, "TestToken", token)
        send_tx(w3, alice.private_key, tok.functions.mint(alice.address, 10**6))
        send_tx(w3, alice.private_key, tok.functions.approve(dep.contracts["ERC20Portal"], 10**6))
        erc20_portal = contract(w3, "ERC20Portal", dep.contracts["ERC20Portal"])
        res["depositERC20Tokens"] = _gas(send_tx(w3, alice.private_key, erc20_portal.functions.depositERC20Tokens(
            token, dep.application, 10**6, b"")))

        # A tree of 64 outputs: notices and ETH vouchers to existing (funded) accounts.
        existing = [DEV_ACCOUNTS[3].address, DEV_ACCOUNTS[4].address, DEV_ACCOUNTS[5].address]
        fresh = Account.create().address
        outputs = [encode_notice(b"n%d" % i) for i in range(60)]
        outputs += [encode_voucher(existing[0], 10**15, b""), encode_voucher(existing[1], 10**15, b""),
                    encode_voucher(fresh, 10**15, b""),
                    encode_voucher(token, 0, erc20_transfer_payload(existing[2], 1000))]
        tree = OutputsTree()
        for o in outputs:
            tree.append_output(o)
        head = w3.eth.block_number
        last = head + (dep.epoch_length - 1 - head % dep.epoch_length)
        chain.mine(last + 1 - head)
        auth = contract(w3, "Authority", dep.authority)
        res["submitClaim"] = _gas(send_tx(w3, owner.private_key, auth.functions.submitClaim(dep.application, last, tree.root())))

        app = contract(w3, "Application", dep.application)

        def execute(i: int) -> int:
            return _gas(send_tx(w3, bob.private_key, app.functions.executeOutput(outputs[i], (i, tree.proof(i)))))

        res["executeOutput_eth_first_in_tree"] = execute(60)
        res["executeOutput_eth_later_in_tree"] = execute(61)
        res["executeOutput_eth_to_fresh_account"] = execute(62)
        res["executeOutput_erc20_transfer"] = execute(63)

        # Baseline: OmniLytics-style aggregation on chain vs Tributary's content-id input.
        agg = contract(w3, "OnChainAggregation", deploy_contract(w3, owner.private_key, "OnChainAggregation"))
        rows = []
        for job, dim in enumerate(AGG_DIMS):
            send_tx(w3, owner.private_key, agg.functions.createJob(dim, 10))
            gases = []
            for trainer in (alice, bob):
                weights = [rng.randint(-(2**31), 2**31 - 1) for _ in range(dim)]
                gases.append(_gas(send_tx(w3, trainer.private_key, agg.functions.submitUpdate(job, weights),
                                          gas=29_000_000)))
            rows.append({"parameters": dim, "first_update_gas": gases[0], "later_update_gas": gases[1],
                         "gas_per_parameter_later": round(gases[1] / dim, 1)})
        res["onchain_aggregation_submitUpdate"] = rows
        # Tributary's reveal carries two CIDs (~2 x 36 bytes) plus a salt, ABI-encoded: ~228 bytes.
        reveal_like = rng.randbytes(228)
        res["tributary_reveal_input_gas"] = _gas(send_tx(w3, alice.private_key,
                                                         box.functions.addInput(dep.application, reveal_like)))
        res["anvil"] = subprocess.run([str(anvil_binary()), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        res["contracts"] = "@cartesi/rollups 2.2.0"
    return res


def print_table(res: dict[str, Any]) -> None:
    print("Gas on anvil, Cartesi Rollups v2.2.0 contracts")
    print(f"  {'plain ETH transfer (baseline)':<44}{res['eth_transfer_baseline']:>10,}")
    print(f"  {'addInput, first input of the app (100 B)':<44}{res['addInput_first_for_app_100_bytes']:>10,}")
    print("  InputBox.addInput, later inputs (random payload)")
    for row in res["addInput"]:
        per = f"  ({row['gas_per_payload_byte']} gas/byte over empty)" if row["gas_per_payload_byte"] else ""
        print(f"    {row['payload_bytes']:>6,} bytes{'':<30}{row['gas']:>10,}{per}")
    print(f"    {MAX_PAYLOAD + 1:,} bytes: reverts with {res['addInput_over_limit']}")
    for key in ("depositEther", "depositERC20Tokens", "submitClaim", "executeOutput_eth_first_in_tree",
                "executeOutput_eth_later_in_tree", "executeOutput_eth_to_fresh_account", "executeOutput_erc20_transfer",
                "tributary_reveal_input_gas"):
        print(f"  {key:<44}{res[key]:>10,}")
    print("  OnChainAggregation.submitUpdate (baseline: whole int32 model on chain)")
    for row in res["onchain_aggregation_submitUpdate"]:
        ratio = row["later_update_gas"] / res["tributary_reveal_input_gas"]
        print(f"    {row['parameters']:>6,} params: first {row['first_update_gas']:>11,}  later {row['later_update_gas']:>11,}"
              f"  ({row['gas_per_parameter_later']} gas/param, {ratio:.0f}x a Tributary reveal input)")


def main() -> dict[str, Any]:
    res = measure()
    res["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    print_table(res)
    write_results("gas", res)
    return res


if __name__ == "__main__":
    main()
