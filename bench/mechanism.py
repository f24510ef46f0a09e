"""Issue 10's guarantees, measured: what a dishonest owner or a splitting trainer gets, against
the same scenario played honestly, under the market's default rule (``validated``, with the
job's public shard) and, as the in-run baseline, under the old template rule (norm clip ->
Multi-Krum -> FedAvg) where it applies.

The in-run baseline reproduces the issue: one round, a spec without a public shard (so a
withheld shard falls back to the equal split per distinct update), the old template rule and
plain FedAvg, each against the honest owner of the same setting. The template settles (``pay:
"settle"``: each round pays at the job's price, at most half its budget, and the end tops every
earner up to its share of the value created over the whole job); the same rule paying at the
price with no settlement (``pay: "value"``) and paying each round's budget by that round's shares
(``pay: "round"``) are the in-run baselines of the owner's identities, of every splitting row
and of the late joiners: one trainer (100 samples) works alone in round 0 and three (250 each)
join from round 1, so later rounds create more value than round 0's price pays for; each
trainer's pay against its share of the value the notices declare.

Whole jobs through the market backend with real training on scikit-learn's digits
(tests/mechanism_scenarios.py: a linear model; the owner's initial model trained on 100 of its
own samples; 150-sample public shard; one 100-sample secret shard per round; 400-sample test set
nobody trains or scores on). Owner side: 4 honest trainers with 200 samples each, 3 rounds, a
budget of 1 ETH. Trainer side: trainers with 150, 250 and 300 samples, 2 rounds; the middle one
splits its work over k identities.

Columns: honest payout (sum over the honest trainers) as a share of the budget and relative to
the honest-owner run; the owner's identities' share; what returned to the owner; what was paid
only when the job finished (the rest of the escrow: under ``pay: "settle"`` what tops each
earner up to its value share, under ``"value"`` pro rata to what each earned); test accuracy after the last round. Run: ``.venv/bin/python -m bench.mechanism``; writes
bench/results/mechanism.json. MNIST is not used (not in bench/ yet); digits is the data here.
"""

from __future__ import annotations

import time
from typing import Any

from bench import write_results
from dapp.ml.aggregation import CLIPS
from tests.mechanism_scenarios import (IDENTITIES, VALIDATED, JobRun, Trainer, run_job, split_pool)

BUDGET = 10**18
LEGACY = {"rule": "norm_clip", "mode": "reject", "max_norm_ratio": [3, 1],
          "then": {"rule": "multi_krum", "f": 1, "m": 8, "then": "fedavg"}}
OWNER_ROWS = ["honest", "near_copies", "near_copies_withheld", "withhold", "withhold_some",
              "useless_shard", "mislabeled_shard", "train_little", "train_little_one", "train_secret",
              "stale_global", "cancel_late"]
LEGACY_ROWS = ["honest", "near_copies", "near_copies_withheld"]
SPLITS = ["split_noise", "duplicate_data", "subsample", "split_data"]


def _owner_row(name: str, run: JobRun, honest: list[str], ref: int, rule: str) -> dict[str, Any]:
    got = run.total(honest)
    idents = IDENTITIES if name not in ("train_little_one", "train_secret") else IDENTITIES[:1]
    return {"scenario": name, "rule": rule, "honest_payout_share": got / BUDGET,
            "vs_honest_owner": got / ref if ref else None,
            "identities_share": run.total(idents) / BUDGET,
            "owner_refund_share": run.refund / BUDGET, "accuracy": run.accuracy[-1],
            # what trainers wait for until the job ends (what the rounds did not pay)
            "paid_at_end_share": sum(int(v) for v in run.notices[-1].get(
                "job_finished", {}).get("leftover", {}).values()) / BUDGET if run.notices else 0.0}


def main() -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    parts = split_pool([200, 200, 200, 200])
    trainers = [Trainer(i, parts[i]) for i in range(4)]
    honest = [a for t in trainers for a in t.addresses()]
    rows: list[dict[str, Any]] = []
    ref: dict[str, int] = {}
    # the new rules (3 rounds), then the in-run baseline: the setting, one round, a
    # spec without a public shard (the old withheld-shard fallback), the old template rule and
    # plain FedAvg
    for rule, config, names, rounds, public in (
            ("validated", None, OWNER_ROWS, 3, True),
            # the same rule valuing work in correct predictions (``score_utility``), which the
            # template does not do: what it would cost against identities that train a little
            ("validated, valued in correct predictions", dict(VALIDATED, score_utility="correct"),
             ["honest", "train_little"], 3, True),
            # the same rule paying at the price with no settlement (``pay: "value"``) and each
            # round's budget by that round's shares (``pay: "round"``): the in-run baselines
            ("validated, paid at a price", dict(VALIDATED, pay="value"),
             ["honest", "train_little", "train_little_one"], 3, True),
            ("validated, paid per round", dict(VALIDATED, pay="round"),
             ["honest", "train_little", "train_little_one"], 3, True),
            ("old template, no public shard", LEGACY, LEGACY_ROWS, 1, False),
            ("fedavg, no public shard", {"rule": "fedavg"}, LEGACY_ROWS, 1, False)):
        for name in names:
            run = run_job(trainers, name, rounds=rounds, aggregation=config, public=public)
            if name == "honest":
                ref[rule] = run.total(honest)
            rows.append(_owner_row(name, run, honest, ref[rule], rule))

    tparts = split_pool([150, 250, 300])
    split_rows = []
    # the template (pay "settle"), then the same rule paying at the price and per round as the
    # in-run baselines
    for pay in ("settle", "value", "round"):
        rule = dict(VALIDATED, pay=pay)
        base = run_job([Trainer(i, tparts[i]) for i in range(3)], aggregation=rule)
        single = base.total(Trainer(1, tparts[1]).addresses())
        for mode in SPLITS + ["overreport"]:
            for k in ((2, 4, 8) if mode != "overreport" else (1,)):
                tr = [Trainer(i, tparts[i]) for i in range(3)]
                tr[1] = Trainer(1, tparts[1], mode, k)
                run = run_job(tr, aggregation=rule)
                split_rows.append({"mode": mode, "k": k, "pay": pay,
                                   "ratio_vs_single": run.total(tr[1].addresses()) / single,
                                   "accuracy": run.accuracy[-1]})

    # late joiners: later rounds create more value than round 0's price pays for
    lparts = split_pool([100, 250, 250, 250])
    cast = [Trainer(0, lparts[0])] + [Trainer(i, lparts[i], "late") for i in (1, 2, 3)]
    late_rows = []
    for pay in ("settle", "value", "round"):
        run = run_job(cast, rounds=3, aggregation=dict(VALIDATED, pay=pay))
        share = run.value_shares()
        gap = {t.addresses()[0]: run.balances.get(t.addresses()[0], 0) / BUDGET
               - float(share.get(t.addresses()[0], 0)) for t in cast}
        early = cast[0].addresses()[0]
        late_rows.append({"pay": pay, "early_pay_share": run.balances.get(early, 0) / BUDGET,
                          "early_value_share": float(share.get(early, 0)),
                          "max_abs_gap": max(abs(g) for g in gap.values()),
                          "paid_at_end_share": sum(int(v) for v in run.notices[-1][
                              "job_finished"]["leftover"].values()) / BUDGET})

    # stretching one's own step (delta x k/10, under the 2x boosted-update threshold) is not
    # more data: what it earns under each of the validated rule's clip modes
    stretch_rows = []
    for clip in CLIPS:
        rule = dict(VALIDATED, clip=clip)
        honest_run = run_job([Trainer(i, tparts[i]) for i in range(3)], aggregation=rule)
        alone = honest_run.total(Trainer(1, tparts[1]).addresses())
        for k in (15, 19):
            tr = [Trainer(i, tparts[i]) for i in range(3)]
            tr[1] = Trainer(1, tparts[1], "stretch", k)
            run = run_job(tr, aggregation=rule)
            stretch_rows.append({"clip": clip, "factor": k / 10,
                                 "ratio_vs_own_step": run.total(tr[1].addresses()) / alone,
                                 "accuracy": run.accuracy[-1]})

    print("owner side (4 honest trainers x 200 samples, 3 rounds, 1 ETH)")
    print("| scenario | rule | honest payout | vs honest owner | identities | owner refund "
          "| paid at the end | accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        vs = f"{r['vs_honest_owner']:.3f}" if r["vs_honest_owner"] is not None else "-"
        print(f"| {r['scenario']} | {r['rule']} | {r['honest_payout_share']:.3f} | {vs} | "
              f"{r['identities_share']:.4f} | {r['owner_refund_share']:.3f} | "
              f"{r['paid_at_end_share']:.3f} | {r['accuracy']:.3f} |")
    print("\ntrainer side (trainers of 150 / 250 / 300 samples; the 250 one splits)")
    print("| mode | k | pay | payout vs single identity | accuracy |")
    print("|---|---|---|---|---|")
    for r in split_rows:
        print(f"| {r['mode']} | {r['k']} | {r['pay']} | {r['ratio_vs_single']:.3f} | "
              f"{r['accuracy']:.3f} |")
    print("\nlate joiners (100 samples alone in round 0; 3 x 250 from round 1; 3 rounds)")
    print("| pay | early trainer's pay | its value share | largest gap, pay - value share | paid at the end |")
    print("|---|---|---|---|---|")
    for r in late_rows:
        print(f"| {r['pay']} | {r['early_pay_share']:.4f} | {r['early_value_share']:.4f} | "
              f"{r['max_abs_gap']:.4f} | {r['paid_at_end_share']:.3f} |")
    print("\nstretching one's step (the 250 one sends its delta x factor), per clip mode")
    print("| clip | factor | payout vs its own step | accuracy |")
    print("|---|---|---|---|")
    for r in stretch_rows:
        print(f"| {r['clip']} | {r['factor']} | {r['ratio_vs_own_step']:.3f} | {r['accuracy']:.3f} |")
    result = {"what": "issue 10 guarantees: payouts under owner and trainer strategies",
              "data": "scikit-learn digits (linear model, integer inference)",
              "owner": rows, "trainer": split_rows, "stretch": stretch_rows,
              "late_joiners": late_rows,
              "elapsed_s": time.perf_counter() - t0}
    write_results("mechanism", result)
    return result


if __name__ == "__main__":
    main()
