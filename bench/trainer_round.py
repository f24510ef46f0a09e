"""Wall time of one trainer's round (fetch, train, store, commit, reveal) and its share of the
round's latency, on a real devnet + node (subprocesses, embedded store).

A 2-round digits CNN job with 8 honest trainers (the demo's honest profiles). Round 1 is timed
(round 0 warms up; its global model comes from the reports, as in every later round): for the
measured trainer (alice, the largest dataset) each step; for the round, the time from the first
trainer starting to fetch until the round notice is out, i.e. every trainer's work, the owner's
shard, and close-round (aggregation, Shapley, rewards, model reports). The commit and reveal
windows (an hour each of block time) are skipped with evm_increaseTime, so this is the compute
and protocol latency, not the wall-clock schedule a real job would set.

Run: `.venv/bin/python -m bench.trainer_round`; writes bench/results/trainer_round.json.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import write_results


def main() -> dict[str, Any]:
    import torch

    from client import owner as o
    from client import trainer as tr
    from client.config import Context, resolve
    from client.data import DEMO_PROFILES, demo_split
    from client.demo import Processes, demo_signer, start_network
    from client.jobs import DIGITS_CNN, build_spec, deterministic_initial_model
    from dapp.ml.arch import ArchSpec

    torch.set_num_threads(1)
    honest = [p for p in DEMO_PROFILES if p.role == "honest"]
    with tempfile.TemporaryDirectory(prefix="tributary-bench-") as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        procs = Processes(root / "logs")
        try:
            dep, node_url = start_network(root, procs, ["--content-store", str(root / "content")])
            base = Context(resolve(deployment=str(dep), store=str(root / "content"),
                                   home=str(root / "client"), node=node_url))
            owner = base.with_signer(demo_signer("owner"))
            ctxs = {p.name: base.with_signer(demo_signer(p.name)) for p in honest}
            for c in [owner, *ctxs.values()]:
                base.chain.set_balance(c.signer.address, 10**19)
            split = demo_split(2)
            arch = ArchSpec.from_dict(DIGITS_CNN)
            spec = build_spec(name="bench", arch=DIGITS_CNN, initial_model_cid="", shards=[])
            job = o.create_job(owner, spec, deterministic_initial_model(arch), split.shards, 10**18).job
            for c in ctxs.values():
                tr.join(c, job)
            spec_json = tr.job_spec(owner, tr.job_info(owner, job))
            w = spec_json["windows"]
            rounds = []
            for r in range(2):
                t_round = time.perf_counter()
                info = tr.job_info(owner, job)
                preps = {}
                for i, p in enumerate(honest):
                    x, y = split.parts[p.name]
                    preps[p.name] = tr.prepare(ctxs[p.name], job, x, y, tr.Behaviour(seed=i + 1),
                                               info, spec_json)
                    tr.commit(ctxs[p.name], preps[p.name])
                base.chain.advance_time(w["commit"])
                for p in honest:
                    tr.reveal(ctxs[p.name], preps[p.name])
                o.reveal_validation(owner, job, r)
                base.chain.advance_time(w["reveal"])
                t_close = time.perf_counter()
                tr.close_round(owner, job, r)
                close_s = time.perf_counter() - t_close
                steps = dict(preps["alice"].timings)
                total = sum(steps.values())
                latency = time.perf_counter() - t_round
                rounds.append({"round": r, "trainer": "alice", "samples": int(len(split.parts["alice"][1])),
                               "steps_s": steps, "trainer_total_s": total,
                               "round_latency_s": latency, "close_round_s": close_s,
                               "trainer_share": total / latency, "trainers": len(honest)})
        finally:
            procs.stop()
    result = {"what": "one trainer's round vs the round's latency (windows skipped on a devnet)",
              "machine": platform.processor() or platform.machine(), "rounds": rounds,
              "measured_round": rounds[-1]}
    write_results("trainer_round", result)
    m = rounds[-1]
    print(json.dumps({"steps_s": {k: round(v, 3) for k, v in m["steps_s"].items()},
                      "trainer_total_s": round(m["trainer_total_s"], 3),
                      "round_latency_s": round(m["round_latency_s"], 3),
                      "close_round_s": round(m["close_round_s"], 3),
                      "trainer_share": round(m["trainer_share"], 3)}))
    return result


if __name__ == "__main__":
    main()
