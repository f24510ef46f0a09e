"""The dashboard's job page for a 50-trainer, 10-round job: time to "ready" in headless Chromium
and page weight (target: under 1 s on this machine).

What runs: the dashboard's own server and data layer (client.dashboard) over a synthetic feed
(client.dashboard.synthetic: the inputs, notices, vouchers, epochs and claims of a finished
50 x 10 job, 1,021 inputs, as a node would list them), and Debian's Chromium driven by
Playwright. Each sample is a cold load in a fresh browser context (no cache): HTML, CSS, JS, the
API call, the render of 3 SVG plots and 500 table rows. "Ready" is the page's own marker
(`body[data-ready]`), stamped with `performance.now()` (ms since navigation start) when the
render is done; page weight is the sum of the response bodies of every request of the load.

Baselines in the same run: the jobs page (one row) loaded the same way; the raw JSON of the
job's notices as the node serves them in `cartesi_listOutputs` (what a page without our server
would have to download before drawing anything); the server's time to answer /api/job/1.

Run: ``.venv/bin/python -m bench.dashboard [--trainers 50] [--rounds 10] [--samples 7]``;
writes bench/results/dashboard.json. Needs /usr/bin/chromium (scripts/setup-browser.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import requests

from bench import write_results

TARGET_MS = 1000.0


def _load(browser: Any, url: str, ready: str) -> dict[str, Any]:
    """One cold load: ms to the page's ready marker (in-page clock and wall clock), bytes."""
    ctx = browser.new_context(viewport={"width": 1320, "height": 1000})
    page = ctx.new_page()
    sizes: list[tuple[str, int]] = []
    page.on("requestfinished", lambda req: sizes.append((req.url, req.sizes()["responseBodySize"])))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(f'body[data-ready="{ready}"]', state="attached", timeout=30_000)
    wall_ms = (time.perf_counter() - t0) * 1e3
    in_page = float(page.get_attribute("body", "data-ready-at") or "nan")
    rows = page.locator("tr").count()
    ctx.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    api = sum(n for u, n in sizes if "/api/" in u)
    return {"ready_ms": in_page, "wall_ms": wall_ms, "bytes": sum(n for _, n in sizes),
            "api_bytes": api, "requests": len(sizes), "rows": rows}


def _stats(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {"median": round(statistics.median(s), 1), "min": round(s[0], 1),
            "max": round(s[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trainers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--samples", type=int, default=7)
    args = ap.parse_args(argv)

    from client.dashboard import browser as chromium
    from client.dashboard.data import Views
    from client.dashboard.server import DashboardServer
    from client.dashboard.synthetic import SyntheticFeed

    why = chromium.missing()
    if why:
        print(f"bench.dashboard: {why}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    t0 = time.perf_counter()
    feed = SyntheticFeed(trainers=args.trainers, rounds=args.rounds)
    build_s = time.perf_counter() - t0
    views = Views(feed)
    srv = DashboardServer(views).start()
    try:
        # baselines without a browser: the raw notices a page would need, the server's answer
        notices = [o for o in feed.outputs if o.kind == "notice" and o.data.get("job") == 1]
        raw_notice_json = sum(len(json.dumps({
            "index": hex(o.index), "input_index": hex(o.input_index),
            "raw_data": "0x" + "00" * (68 + len(json.dumps(o.data, separators=(",", ":")))),
            "decoded_data": {"payload": "0x" + json.dumps(o.data, separators=(",", ":")).encode().hex()},
            "output_hashes_siblings": ["0x" + "00" * 32] * 63})) for o in notices)
        api_ms = []
        for _ in range(args.samples):
            t = time.perf_counter()
            r = requests.get(srv.url + "/api/job/1", timeout=30)
            api_ms.append((time.perf_counter() - t) * 1e3)
        api_bytes = len(r.content)

        with sync_playwright() as pw:
            b = chromium.launch(pw)
            try:
                _load(b, srv.url + "/#/job/1", "job:1")  # warm the browser process itself
                job = [_load(b, srv.url + "/#/job/1", "job:1") for _ in range(args.samples)]
                jobs = [_load(b, srv.url + "/#/jobs", "jobs:") for _ in range(args.samples)]
            finally:
                b.close()
    finally:
        srv.stop()

    ready = _stats([s["ready_ms"] for s in job])
    res = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "job": {"trainers": args.trainers, "rounds": args.rounds, "inputs": len(feed.inputs),
                "outputs": len(feed.outputs), "table_rows": job[0]["rows"]},
        "target_ms": TARGET_MS,
        "job_page": {"ready_ms": ready, "wall_ms": _stats([s["wall_ms"] for s in job]),
                     "page_bytes": job[0]["bytes"], "api_bytes": job[0]["api_bytes"],
                     "static_bytes": job[0]["bytes"] - job[0]["api_bytes"],
                     "requests": job[0]["requests"]},
        "baseline_jobs_page": {"ready_ms": _stats([s["ready_ms"] for s in jobs]),
                               "page_bytes": jobs[0]["bytes"]},
        "baseline_raw_notices_bytes": raw_notice_json,
        "server_api_job_ms": _stats(api_ms), "server_api_job_bytes": api_bytes,
        "synthetic_feed_build_s": round(build_s, 3),
        "samples": args.samples,
        "under_target": ready["median"] < TARGET_MS,
    }
    print(f"job page, {args.trainers} trainers x {args.rounds} rounds ({job[0]['rows']} table rows): "
          f"ready in {ready['median']} ms median (min {ready['min']}, max {ready['max']}; "
          f"target < {TARGET_MS:.0f} ms) -> {'OK' if res['under_target'] else 'OVER'}")
    print(f"  page weight {job[0]['bytes']:,} B in {job[0]['requests']} requests "
          f"(static {job[0]['bytes'] - job[0]['api_bytes']:,} B, API JSON {job[0]['api_bytes']:,} B)")
    print(f"  baseline: jobs page ready in {res['baseline_jobs_page']['ready_ms']['median']} ms, "
          f"{jobs[0]['bytes']:,} B; the job's raw notices from cartesi_listOutputs "
          f"{raw_notice_json:,} B; server /api/job/1 in {res['server_api_job_ms']['median']} ms")
    write_results("dashboard", res)
    return 0 if res["under_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
