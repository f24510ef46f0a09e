"""A job runs with its content in a real IPFS daemon instead of the embedded store.

The js-ipfs daemon (tests/ipfs_daemon.py) is started by the test; the client stores the spec,
the initial model, the shards, every trainer's model and data card there, and the node's GIO
resolver reads them back from the same daemon (`python -m rollup node --ipfs-api`). The demo's
own driver runs one round with three honest trainers, withdrawals and vouchers included, and
fails unless every wei matches the notices.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.data import DEMO_PROFILES
from client.demo import run_demo
from client.storage import open_store
from tests.ipfs_daemon import ipfs_daemon

pytestmark = [pytest.mark.chain, pytest.mark.ipfs, pytest.mark.slow]


def test_job_with_models_on_ipfs(tmp_path: Path) -> None:
    with ipfs_daemon() as daemon:
        spec = f"ipfs:{daemon.api}"
        state = tmp_path / "demo"
        status = run_demo(state, rounds=1, store=spec, profiles=DEMO_PROFILES[:3])
        assert status == 0
        assert not (state / "content").exists()  # nothing went to the embedded store
        summary = json.loads((state / "summary.json").read_text())
        assert summary["ok"]
        # the spec and the shards the node read over GIO are in IPFS
        store = open_store(spec)
        jobs_dir = state / "client" / "owner"
        owner_state = json.loads((jobs_dir / f"job-{summary['job']}.json").read_text())
        assert store.get(owner_state["spec_cid"], max_size=1 << 16)
        for shard in owner_state["shards"]:
            assert store.has(shard["cid"])
