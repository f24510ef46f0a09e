"""The round-close budget against the clock: the worst spec the market accepts, timed.

`dapp/market/cost.py` refuses, when a job is created, any spec whose worst round would cost
more than MAX_CLOSE_OPS declared operations or MAX_CLOSE_BYTES of memory. This bench builds the
most expensive specs that still pass (the shard as large as the budget allows, every trainer
revealing a distinct update, no truncation) and closes a real round of each through the market
backend, on this machine and under qemu-riscv64 (Debian's own numpy, as in the determinism
tests). Each case runs in a fresh process, so its peak RSS is its own.

Baseline in the same run: the refused spec of issue 9 (a 100,000-sample shard, exact Shapley over
12 players), whose time is predicted from the ops rate measured here; and the same close at the
declared budget, to show how pessimistic the model is.

Under qemu the cases run at ~1/10 of the budget (fewer players for exact Shapley, fewer
permutations for sampling) and the figure is scaled; qemu is not the Cartesi machine, whose
guest runs ~65x slower than the host (TOOLCHAIN.md), which is what the budget is sized for.

Run: `.venv/bin/python -m bench.close_budget [--no-riscv]`; writes bench/results/close_budget.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from bench import write_results
from dapp.market.cost import MAX_CLOSE_BYTES, MAX_CLOSE_OPS, close_cost
from dapp.ml.arch import ArchSpec

CNN = {"input_shape": [1, 8, 8], "num_classes": 10, "scale_bits": 10,
       "layers": [{"type": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 8,
                   "kernel_size": 3, "stride": 1, "padding": 1},
                  {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                  {"type": "linear", "name": "fc1", "in_features": 128, "out_features": 10}]}

# (name, players, contribution); the shard is the largest the budget admits for each.
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    "exact-12": (12, {"method": "shapley", "exact_max_players": 12, "permutations": 64,
                      "truncation": None}),
    "sampled-50x64": (50, {"method": "shapley", "exact_max_players": 10, "permutations": 64,
                           "truncation": None}),
}
# The same shapes at ~1/10 of the budget, for qemu.
SMALL: dict[str, tuple[int, dict[str, Any]]] = {
    "exact-12": (8, {"method": "shapley", "exact_max_players": 8, "permutations": 64,
                     "truncation": None}),
    "sampled-50x64": (50, {"method": "shapley", "exact_max_players": 2, "permutations": 4,
                           "truncation": None}),
}


def max_samples(arch: ArchSpec, players: int, method: dict[str, Any]) -> int:
    """The largest shard the budget admits for this shape."""
    lo, hi = 1, 100_000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        c = close_cost(arch, method, players, mid)
        if c.ops <= MAX_CLOSE_OPS and c.peak_bytes <= MAX_CLOSE_BYTES:
            lo = mid
        else:
            hi = mid - 1
    return lo


def worker(case: str, small: bool) -> dict[str, Any]:
    """One close in this process; prints its figures as JSON."""
    from bench.round_close import one_round
    arch = ArchSpec.from_dict(CNN)
    full_players, full_method = CASES[case]
    samples = max_samples(arch, full_players, full_method)
    players, method = (SMALL if small else CASES)[case]
    row = one_round(CNN, players, method, samples=samples)
    cost = close_cost(arch, method, players, samples)
    row.update(case=case, samples=samples, declared_ops=cost.ops,
               declared_peak_bytes=cost.peak_bytes,
               peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               ops_per_second=round(cost.ops / row["seconds"]))
    return row


def _run(args: list[str], riscv: bool) -> dict[str, Any]:
    if riscv:
        from tests.riscv import REPO_ROOT, run_riscv_python
        proc = run_riscv_python(["-m", "bench.close_budget", *args], cwd=str(REPO_ROOT),
                                timeout=1800)
    else:
        proc = subprocess.run([sys.executable, "-m", "bench.close_budget", *args],
                              capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-riscv", action="store_true", help="skip the qemu-riscv64 runs")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.small)))
        return {}

    print(f"budget: {MAX_CLOSE_OPS:,} declared operations, {MAX_CLOSE_BYTES >> 20} MiB")
    rows = []
    for case in CASES:
        host = _run(["--worker", case], riscv=False)
        print(f"  host    {case:<14} shard {host['samples']:>5}  close {host['seconds']:>7.2f} s"
              f"  ({host['ops_per_second'] / 1e6:,.0f} M declared ops/s)  peak RSS "
              f"{host['peak_rss_bytes'] >> 20} MiB (declared {host['declared_peak_bytes'] >> 20}"
              f" MiB + the interpreter)")
        row: dict[str, Any] = {"case": case, "host": host}
        if not args.no_riscv:
            try:
                rv = _run(["--worker", case, "--small"], riscv=True)
            except Exception as exc:  # no userland: say so, keep the host figures
                print(f"  riscv64 {case:<14} skipped: {exc}")
            else:
                scaled = host["declared_ops"] / rv["ops_per_second"]
                rv["scaled_seconds_at_budget"] = round(scaled, 1)
                print(f"  riscv64 {case:<14} 1/{host['declared_ops'] // rv['declared_ops']} of "
                      f"the budget in {rv['seconds']:.1f} s ({rv['ops_per_second'] / 1e6:,.1f} M "
                      f"ops/s): the worst accepted close would take ~{scaled:,.0f} s under qemu")
                row["riscv64_qemu"] = rv
        rows.append(row)

    rate = min(r["host"]["ops_per_second"] for r in rows)
    arch = ArchSpec.from_dict(CNN)
    refused = close_cost(arch, {"method": "shapley", "exact_max_players": 12,
                                "permutations": 64}, 12, 100_000)
    baseline = {"spec": "100,000-sample shard, exact Shapley over 12 players (issue 9)",
                "declared_ops": refused.ops, "declared_peak_bytes": refused.peak_bytes,
                "predicted_host_seconds": round(refused.ops / rate)}
    print(f"  refused baseline: {baseline['spec']}: {refused.ops:,} ops, "
          f"~{refused.ops / rate / 3600:.1f} h on this host at the measured rate "
          f"({refused.ops / MAX_CLOSE_OPS:.0f}x the budget), "
          f"{refused.peak_bytes >> 20} MiB declared")
    write_results("close_budget", {"max_close_ops": MAX_CLOSE_OPS,
                                   "max_close_bytes": MAX_CLOSE_BYTES, "rows": rows,
                                   "refused_baseline": baseline})
    return {"rows": rows, "refused_baseline": baseline}


if __name__ == "__main__":
    main()
