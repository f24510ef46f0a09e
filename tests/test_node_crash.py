"""Crash safety: SIGKILL the node process (`python -m rollup node`) mid-stream several times; after
the last restart every input is processed exactly once and the outputs, reports and on-chain
claims equal those of a node that was never killed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from rollup.anvil import free_port
from rollup.deploy import Deployment
from rollup.node import Node
from tests.node_fixtures import ECHO, ECHO_CMD, Chain, chain, marked_processes, rpc, result  # noqa: F401

pytestmark = pytest.mark.chain


def health(api: str) -> dict | None:
    try:
        with urllib.request.urlopen(api + "/health", timeout=2) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def processed(api: str) -> int | None:
    h = health(api)
    return None if h is None else int(h["processed_input_count"])


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def payload(i: int) -> bytes:
    kind = i % 6
    if kind == 1:
        return b"reject:report %d" % i
    if kind == 2:
        return b"voucher:" + bytes([i]) * 20 + i.to_bytes(32, "big")
    if kind == 3:
        return b"exception:%d" % i
    if kind == 4:
        return b"count %d" % i
    if kind == 5:
        return b"report %d" % i
    return b"n%d" % i


def test_sigkill_loses_and_duplicates_nothing(chain: Chain, tmp_path: Path) -> None:
    dep: Deployment = chain.deploy()
    dep_path = dep.save(tmp_path / "deployment.json")
    rng = random.Random(20260121)
    total = 36
    for i in range(18):
        chain.add_input(dep, payload(i))
        if i % 7 == 6:
            chain.pass_epoch(dep)
    fed = 18

    http_port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    marker = "TRIBUTARY_CRASH_TEST_" + uuid.uuid4().hex
    env = dict(os.environ, ECHO_DELAY="0.02", **{marker: "1"})
    cmd = [sys.executable, "-m", "rollup", "node", "--deployment", str(dep_path), "--backend", ECHO_CMD,
           "--state-dir", str(tmp_path / "state"), "--http-port", str(http_port), "--api-port", str(api_port),
           "--poll-interval", "0.05"]
    log = open(tmp_path / "node.log", "ab")

    def launch() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for(lambda: health(api) is not None or proc.poll() is not None, 60, "node start")
        assert proc.poll() is None, (tmp_path / "node.log").read_text()[-3000:]
        return proc

    kills = mid_stream = 0
    proc: subprocess.Popen | None = None
    try:
        for round_ in range(5):
            proc = launch()
            if round_ == 2:
                time.sleep(rng.uniform(0.0, 0.2))  # likely during the replay of accepted inputs
            else:
                start = processed(api) or 0
                target = min(fed, start + rng.randint(2, 5))
                wait_for(lambda: (processed(api) or 0) >= target, 60, f"{target} processed")
                time.sleep(rng.uniform(0.0, 0.03))
            seen = processed(api)
            proc.kill()
            proc.wait()
            kills += 1
            if seen is not None and seen < fed:
                mid_stream += 1
            wait_for(lambda: not marked_processes(marker), 10, "the backend to die with its node")
            for _ in range(4):
                if fed < total:
                    chain.add_input(dep, payload(fed))
                    fed += 1
            if round_ % 2:
                chain.pass_epoch(dep)
        while fed < total:
            chain.add_input(dep, payload(fed))
            fed += 1
        proc = launch()
        chain.pass_epoch(dep)

        def all_claimed() -> bool:
            if (processed(api) or 0) < total:
                return False
            epochs = result(rpc(api, "cartesi_listEpochs", {}))["data"]
            return bool(epochs) and all(e["status"] == "CLAIM_ACCEPTED" for e in epochs)

        wait_for(all_claimed, 90, "every input processed and every epoch claimed")
        outs = result(rpc(api, "cartesi_listOutputs", {"limit": 1000}))["data"]
        reps = result(rpc(api, "cartesi_listReports", {"limit": 1000}))["data"]
        inputs = result(rpc(api, "cartesi_listInputs", {"limit": 1000}))["data"]
        proc.terminate()
        proc.wait(10)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        log.close()
    assert kills == 5 and mid_stream >= 3, mid_stream  # killed with inputs still to process
    wait_for(lambda: not marked_processes(marker), 10, "no backend left behind")

    # a node that was never killed, replaying the same chain
    with Node(dep, ECHO, tmp_path / "reference", claim=False, poll_interval=0.05) as ref:
        ref.wait_caught_up(90)
        ref_outs = result(rpc(ref.api_url, "cartesi_listOutputs", {"limit": 1000}))["data"]
        ref_reps = result(rpc(ref.api_url, "cartesi_listReports", {"limit": 1000}))["data"]
        ref_inputs = result(rpc(ref.api_url, "cartesi_listInputs", {"limit": 1000}))["data"]
        ref_roots = {e.index: e.root for e in ref.store.list_epochs()[0]}  # type: ignore[union-attr]

    assert len(inputs) == total and [int(i["index"], 16) for i in inputs] == list(range(total))
    assert [i["status"] for i in inputs] == [i["status"] for i in ref_inputs]
    assert "NONE" not in {i["status"] for i in inputs}

    def strip(items: list[dict]) -> list[dict]:
        return [{k: v for k, v in o.items() if k not in ("output_hashes_siblings", "execution_transaction_hash")}
                for o in items]

    assert strip(outs) == strip(ref_outs)
    assert reps == ref_reps
    assert len({(r["input_index"], r["raw_data"]) for r in reps}) == len(reps)  # no report twice
    assert chain.claims(dep) == ref_roots  # one accepted claim per epoch with inputs, same roots
