"""What cheap hostile requests cost the host-mode node, against a normal request in the same run.

One anvil, one node process (`python -m rollup node`, echo backend) holding N processed inputs
and their N notices. Measured, each as seconds, answer bytes and the node's peak RSS:
- baseline: one `cartesi_listOutputs` page of 50, as a client browsing outputs sends it;
- the reproduced amplification: a 90 KB batch of 1,000 `cartesi_listOutputs` with limit 10,000
  (before the fix: a 242 MB answer after 46 s, RSS 70 -> 1000 MiB);
- the largest batch allowed: 100 calls of 100 items;
- 200 KB of `[` (before the fix: the node died with SIGSEGV in json.loads);
- the depth check itself on a 5 MiB rollup-server body (hex payload) and on 5 MiB of brackets.

Run: `.venv/bin/python -m bench.node_hostile [--inputs N]`; writes bench/results/node_hostile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import write_results
from rollup.anvil import DEV_ACCOUNTS, Anvil, free_port
from rollup.chain import connect
from rollup.deploy import deploy_devnet
from rollup.server import JsonTooDeep, check_json_depth

ROOT = Path(__file__).resolve().parent.parent
ECHO_CMD = f"{sys.executable} {ROOT / 'tests' / 'backends' / 'echo.py'}"


def status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(url: str, body: bytes, timeout: float = 300) -> tuple[float, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data = resp.read()
    return time.perf_counter() - t0, data


def calls(n: int, limit: int, app: str) -> bytes:
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": "cartesi_listOutputs",
                        "params": {"application": app, "limit": limit}} for i in range(n)]).encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=50)
    args = ap.parse_args()
    results: dict[str, Any] = {"inputs": args.inputs}
    with Anvil() as chain, tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        w3 = connect(chain.url)
        dep = deploy_devnet(w3, DEV_ACCOUNTS[0].private_key, epoch_length=64, rpc_url=chain.url)
        from tests.chain_fixtures import add_input

        for i in range(args.inputs):
            add_input(w3, dep, DEV_ACCOUNTS[1].private_key, b"payload %d" % i)
        api_port, http_port = free_port(), free_port()
        api = f"http://127.0.0.1:{api_port}"
        node = subprocess.Popen(
            [sys.executable, "-m", "rollup", "node", "--deployment", str(dep.save(Path(tmp) / "dep.json")),
             "--backend", ECHO_CMD, "--state-dir", str(Path(tmp) / "state"), "--http-port", str(http_port),
             "--api-port", str(api_port), "--poll-interval", "0.05", "--no-claim"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(api + "/health", timeout=2) as resp:
                        if json.loads(resp.read())["processed_input_count"] >= args.inputs:
                            break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline or node.poll() is not None:
                    raise SystemExit("the node did not process the inputs")
                time.sleep(0.1)
            rss0 = status_mib(node.pid, "VmRSS")

            def measure(name: str, body: bytes) -> dict[str, Any]:
                seconds, data = post(api + "/rpc", body)
                answer = json.loads(data)
                first = answer[0] if isinstance(answer, list) else answer
                row = {"body_bytes": len(body), "seconds": round(seconds, 4), "answer_bytes": len(data),
                       "error": first.get("error", {}).get("code"), "peak_rss_mib": round(status_mib(node.pid, "VmHWM"), 1)}
                results[name] = row
                print(f"{name:<28} body {len(body):>7} B  answer {len(data):>9} B  {seconds * 1000:8.1f} ms"
                      f"  error {row['error']}  node peak RSS {row['peak_rss_mib']} MiB")
                return row

            base = measure("baseline_page_of_50", json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "cartesi_listOutputs",
                 "params": {"application": dep.application, "limit": 50}}).encode())
            attack = measure("batch_1000_x_limit_10000", calls(1000, 10_000, dep.application))
            measure("batch_100_x_limit_100", calls(100, 100, dep.application))
            deep = measure("deep_json_200kb", b"[" * 200_000)
            results["node_alive_after"] = node.poll() is None
            results["rss_before_mib"] = round(rss0, 1)
            print(f"node alive after all: {results['node_alive_after']}; RSS before {rss0:.1f} MiB")
            print(f"attack / baseline: {attack['seconds'] / base['seconds']:.2f}x time, "
                  f"{attack['answer_bytes'] / base['answer_bytes']:.3f}x answer bytes; "
                  f"deep JSON / baseline: {deep['seconds'] / base['seconds']:.2f}x time")
        finally:
            node.terminate()
            node.wait(15)

    hex_body = json.dumps({"payload": "0x" + "ab" * (5 * 1024 * 1024 // 2 - 20)}).encode()
    t0 = time.perf_counter()
    check_json_depth(hex_body)
    results["depth_check_5mib_hex_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    t0 = time.perf_counter()
    try:
        check_json_depth(b"[]" * (5 * 1024 * 1024 // 2))
    except JsonTooDeep:
        pass
    results["depth_check_5mib_brackets_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    t0 = time.perf_counter()
    json.loads(hex_body)
    results["json_loads_5mib_hex_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    print(f"depth check on 5 MiB: hex payload {results['depth_check_5mib_hex_ms']} ms "
          f"(json.loads itself {results['json_loads_5mib_hex_ms']} ms), "
          f"brackets {results['depth_check_5mib_brackets_ms']} ms")
    results["cpu"] = os.cpu_count()
    write_results("node_hostile", results)


if __name__ == "__main__":
    main()
