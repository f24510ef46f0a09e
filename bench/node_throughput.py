"""Node throughput: inputs per second end to end with the echo test backend.

Measured in one run, on one anvil:
- chain submission: N `addInput` transactions signed locally and sent back to back (automine);
- node processing of a backlog: a fresh node reads the N inputs already on chain and processes
  them (read logs, feed the backend, store outputs in SQLite, grow the outputs tree, claim);
- end to end: a node already running while N inputs are submitted (first send -> last processed);
- baseline: the same backend fed N requests through the rollup HTTP server alone (no chain, no
  store, no tree, no claims): what the HTTP round trips with the backend cost by themselves.

Run: `.venv/bin/python -m bench.node_throughput [--inputs N]`; writes bench/results/node_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from bench import write_results
from rollup.anvil import DEV_ACCOUNTS, Anvil
from rollup.chain import connect, contract
from rollup.deploy import Deployment, deploy_devnet
from rollup.node import Node
from rollup.server import ACCEPTED, MachineRequest, RollupHttpServer, RollupMachine
from rollup.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
ECHO = [sys.executable, str(ROOT / "tests" / "backends" / "echo.py")]
EPOCH_LENGTH = 64
SENDER = DEV_ACCOUNTS[1]


def submit_inputs(w3: Any, dep: Deployment, payloads: list[bytes], key: str) -> float:
    """Send addInput transactions back to back (local signing, explicit nonces); seconds taken
    until the last one is mined."""
    acct = Account.from_key(key)
    box = contract(w3, "InputBox", dep.contracts["InputBox"])
    app = to_checksum_address(dep.application)
    nonce = w3.eth.get_transaction_count(acct.address, "pending")
    chain_id = w3.eth.chain_id
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    gas = int(box.functions.addInput(app, max(payloads, key=len)).estimate_gas({"from": acct.address}) * 1.3)
    t0 = time.perf_counter()
    last = None
    for i, p in enumerate(payloads):
        tx = box.functions.addInput(app, p).build_transaction({
            "from": acct.address, "nonce": nonce + i, "gas": gas, "chainId": chain_id,
            "maxFeePerGas": 4 * base + 10**9, "maxPriorityFeePerGas": 10**9,
        })
        last = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    w3.eth.wait_for_transaction_receipt(last, timeout=300, poll_latency=0.05)
    return time.perf_counter() - t0


def baseline(payloads: list[bytes]) -> float:
    """The backend alone behind the rollup HTTP server: seconds for all advances."""
    machine = RollupMachine()
    server = RollupHttpServer(machine).start()
    sup = Supervisor(ECHO, server.url)
    sup.start()
    try:
        meta = {"chain_id": 31337, "app_contract": "0x" + "00" * 20, "msg_sender": SENDER.address.lower(),
                "block_number": 1, "block_timestamp": 1, "prev_randao": "0x" + "00" * 32, "input_index": 0}
        warm = MachineRequest("inspect", b"warm-up")
        machine.submit(warm)
        warm.done.wait(30)
        t0 = time.perf_counter()
        for i, p in enumerate(payloads):
            req = MachineRequest("advance", p, dict(meta, input_index=i))
            machine.submit(req)
            if not req.done.wait(30) or req.status != ACCEPTED:
                raise RuntimeError(f"baseline input {i}: {req.status}")
        return time.perf_counter() - t0
    finally:
        sup.stop()
        server.stop()


def wait_processed(node: Node, n: int, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while node.processed_count < n:
        node.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node.processed_count}/{n} processed")
        time.sleep(0.005)
    return time.perf_counter()


def rate(n: int, seconds: float) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "inputs_per_s": round(n / seconds, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=1000)
    args = ap.parse_args(argv)
    n = args.inputs
    payloads = [b"bench input %06d" % i for i in range(n)]

    with Anvil() as chain, tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        w3 = connect(chain.url)
        dep = deploy_devnet(w3, DEV_ACCOUNTS[0].private_key, epoch_length=EPOCH_LENGTH, rpc_url=chain.url)
        submit_s = submit_inputs(w3, dep, payloads, SENDER.private_key)
        print(f"chain submission: {n} addInput in {submit_s:.2f} s = {n / submit_s:.0f} inputs/s")

        node = Node(dep, ECHO, Path(tmp) / "backlog", poll_interval=0.05)
        t0 = time.perf_counter()
        node.start()
        node.wait_ready()
        t_ready = time.perf_counter()
        t_done = wait_processed(node, n)
        node.stop()
        backlog_s = t_done - t_ready
        print(f"node, backlog:    {n} inputs in {backlog_s:.2f} s = {n / backlog_s:.0f} inputs/s"
              f" (start-up {t_ready - t0:.2f} s not counted)")

        dep2 = deploy_devnet(w3, DEV_ACCOUNTS[0].private_key, epoch_length=EPOCH_LENGTH, rpc_url=chain.url)
        node2 = Node(dep2, ECHO, Path(tmp) / "live", poll_interval=0.05).start()
        node2.wait_ready()
        t0 = time.perf_counter()
        sender = threading.Thread(target=submit_inputs, args=(w3, dep2, payloads, DEV_ACCOUNTS[2].private_key))
        sender.start()
        t_done = wait_processed(node2, n)
        sender.join()
        node2.stop()
        e2e_s = t_done - t0
        print(f"end to end:       {n} inputs in {e2e_s:.2f} s = {n / e2e_s:.0f} inputs/s (node running while submitting)")

    base_s = baseline(payloads)
    print(f"baseline:         {n} advances through the rollup HTTP server alone in {base_s:.2f} s"
          f" = {n / base_s:.0f} inputs/s")
    print(f"node overhead over the bare HTTP round trips: x{backlog_s / base_s:.2f}")

    result = {
        "inputs": n,
        "backend": "tests/backends/echo.py (one notice per input)",
        "epoch_length": EPOCH_LENGTH,
        "chain_submission": rate(n, submit_s),
        "node_processing_backlog": rate(n, backlog_s),
        "end_to_end_concurrent": rate(n, e2e_s),
        "baseline_rollup_http_only": rate(n, base_s),
        "node_vs_baseline_time_ratio": round(backlog_s / base_s, 2),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform()},
    }
    write_results("node_throughput", result)
    return result


if __name__ == "__main__":
    main()
