"""A job whose content travels through inputs, driven through the CLI against a node that serves
no GIO at all (as the official Cartesi node): create-job posts the spec and the initial model,
the trainer posts its model and data card before revealing, the owner posts each shard, and
each step says how many chunks it posted and what gas they cost; what the backend already holds
is not posted again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from client.data import demo_split
from client.demo import Processes, start_network
from tests.test_cli_e2e import OWNER, T1, Net, _wait

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@pytest.fixture(scope="module")
def net_without_gio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("cli-inputs")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    try:
        dep, node_url = start_network(root, procs, [])   # no --content-store: GIO answers errors
        yield Net(root, dep, node_url)
    finally:
        procs.stop()


def test_job_with_content_through_inputs(net_without_gio: Net, tmp_path: Path) -> None:
    net = net_without_gio
    spec = net.run("owner", "spec-template")
    spec["content_source"] = "inputs"
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    split = demo_split(1)
    x, y = split.shards[0]
    np.savez(tmp_path / "shard0.npz", x=x, y=y)
    created = net.run("owner", "create-job", "--spec", str(tmp_path / "spec.json"),
                      "--shard", str(tmp_path / "shard0.npz"), "--reward", "1eth",
                      key=OWNER.private_key)
    posted = {u["cid"]: u for u in created["uploads"]}
    from client.storage import EmbeddedStore

    stored_spec = json.loads(EmbeddedStore(net.store).get(created["spec_cid"]))
    public = {stored_spec["public_validation"]} if stored_spec.get("public_validation") else set()
    assert set(posted) == {created["spec_cid"], created["model_cid"]} | public
    assert all(u["chunks"] >= 1 and u["gas"] > 50_000 and not u["skipped"]
               for u in posted.values())
    job = created["job"]

    name = "alice"
    px, py = split.parts[name]
    np.savez(tmp_path / f"{name}.npz", x=px, y=py)
    runner = net.popen("trainer", "run", "--job", str(job), "--data", str(tmp_path / "alice.npz"),
                       "--rounds", "1", "--poll", "0.2", "--timeout", "240", key=T1.private_key)
    try:
        from client.node_api import NodeClient

        node = NodeClient(net.node_url, json.loads(net.dep.read_text())["application"])
        _wait(lambda: node.inspect(f"job/{job}")["rounds"][0]["commits"] == 1, 120, "the commit")
        net.run("dev", "advance-time", "3600")
        _wait(lambda: node.inspect(f"job/{job}")["rounds"][0]["reveals"] == 1, 120, "the reveal")
        rv = net.run("owner", "reveal-validation", "--job", str(job), key=OWNER.private_key)
        assert len(rv["uploads"]) == 1 and rv["uploads"][0]["sent"] >= 1
        net.run("dev", "advance-time", "3600")
        closed = net.run("close-round", "--job", str(job), key=T1.private_key)
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, err
    revealed = json.loads(out)
    assert revealed["rounds_revealed"] == 1
    # The node serves no GIO: the reveal below was accepted only because the trainer's client
    # posted its model and data card through inputs first.
    notice = closed["notice"]
    assert notice["job_finished"] and notice["accuracy"]["total"] == len(y)
    [entry] = notice["trainers"]
    assert entry["verdict"] == "accepted" and int(entry["reward"]) > 0
    state = node.inspect("state")
    assert state["inbox_bytes"] == 0
