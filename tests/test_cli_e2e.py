"""The `tributary` command line end to end, through subprocesses, as a new user would run it.

One devnet + node (subprocesses, the demo's launcher) serves the module. A two-round job:
the owner creates it from the spec template and held-out digits shards; two trainers follow it
with `trainer run` in the background; the owner reveals the shard, anyone closes the round;
status and model (verified, exported to PyTorch); round 1 closes without updates and ends the
job; balances, withdrawals, refunds and vouchers executed with proofs; `verify`. Error paths:
no node, wrong job id, not enough funds, unreachable IPFS, a stored model whose bytes do not
match its id.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from client.data import demo_split
from client.demo import Processes, start_network
from rollup.anvil import DEV_ACCOUNTS

pytestmark = [pytest.mark.chain, pytest.mark.slow]

OWNER, T1, T2 = DEV_ACCOUNTS[2], DEV_ACCOUNTS[3], DEV_ACCOUNTS[4]
POOR_KEY = "0x" + "42" * 32  # an account nobody funded


class Net:
    def __init__(self, root: Path, dep: Path, node_url: str) -> None:
        self.root, self.dep, self.node_url = root, dep, node_url
        self.store = root / "content"
        self.home = root / "client"

    def env(self, key: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TRIBUTARY_")}
        if key:
            env["TRIBUTARY_PRIVATE_KEY"] = key
        return env

    def args(self, store: str | None = None, node: str | None = None) -> list[str]:
        return ["--deployment", str(self.dep), "--node", node or self.node_url,
                "--store", store or str(self.store), "--home", str(self.home)]

    def run(self, *argv: str, key: str | None = None, ok: bool = True, json_out: bool = True,
            store: str | None = None, node: str | None = None, timeout: float = 120) -> Any:
        cmd = [sys.executable, "-m", "client", *self.args(store, node),
               *(["--json"] if json_out else []), *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env(key), timeout=timeout)
        if ok and proc.returncode != 0:
            raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        if not ok:
            assert proc.returncode != 0, f"{argv} should have failed:\n{proc.stdout}"
            assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
            return proc
        return json.loads(proc.stdout) if json_out else proc

    def popen(self, *argv: str, key: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "client", *self.args(), "--json", *argv]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(key))


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("cli-e2e")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    try:
        dep, node_url = start_network(root, procs, ["--content-store", str(root / "content")])
        yield Net(root, dep, node_url)
    finally:
        procs.stop()


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_no_node_running_is_a_clear_error(net: Net) -> None:
    proc = net.run("trainer", "jobs", ok=False, json_out=False, node="http://127.0.0.1:9")
    assert "no node answers at http://127.0.0.1:9" in proc.stderr


def test_whole_job_through_the_cli(net: Net, tmp_path: Path) -> None:
    spec = net.run("owner", "spec-template")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    split = demo_split(2)
    shard_paths = []
    for i, (x, y) in enumerate(split.shards):
        np.savez(tmp_path / f"shard{i}.npz", x=x, y=y)
        shard_paths += ["--shard", str(tmp_path / f"shard{i}.npz")]

    # error path: an account without funds cannot lock a reward
    poor = net.run("owner", "create-job", "--spec", str(spec_path), *shard_paths,
                   "--reward", "1eth", key=POOR_KEY, ok=False, json_out=False)
    assert "less than" in poor.stderr and "Fund the account" in poor.stderr

    created = net.run("owner", "create-job", "--spec", str(spec_path), *shard_paths,
                      "--reward", "1eth", key=OWNER.private_key)
    job = created["job"]
    assert created["rounds"] == 2
    listed = net.run("trainer", "jobs")
    assert any(j["job"] == job and j["status"] == "open" for j in listed)

    # error paths: wrong job id; a model in the store whose bytes do not match its id
    wrong = net.run("trainer", "join", "--job", "999", key=T1.private_key, ok=False, json_out=False)
    assert "no job 999" in wrong.stderr
    bad_store = tmp_path / "tampered"
    shutil.copytree(net.store, bad_store)
    from client.storage import EmbeddedStore

    path = EmbeddedStore(bad_store).path_of(created["model_cid"])
    path.write_bytes(b"\x00" + path.read_bytes()[1:])
    bad = net.run("owner", "model", "--job", str(job), "--out", str(tmp_path / "m.st"),
                  store=str(bad_store), ok=False, json_out=False)
    assert "corrupt" in bad.stderr or "does not match" in bad.stderr

    # two trainers follow round 0 in the background
    datas = []
    for name in ("alice", "bob"):
        x, y = split.parts[name]
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        datas.append(tmp_path / f"{name}.npz")
    runners = [net.popen("trainer", "run", "--job", str(job), "--data", str(d), "--rounds", "1",
                         "--poll", "0.2", "--timeout", "240", key=k.private_key)
               for d, k in zip(datas, (T1, T2))]
    try:
        def round0() -> dict[str, Any]:
            return net.run("owner", "status", "--job", str(job))
        from client.node_api import NodeClient

        node = NodeClient(net.node_url, json.loads(net.dep.read_text())["application"])
        _wait(lambda: node.inspect(f"job/{job}")["rounds"][0]["commits"] == 2, 120, "2 commits")
        net.run("dev", "advance-time", "3600")
        _wait(lambda: node.inspect(f"job/{job}")["rounds"][0]["reveals"] == 2, 120, "2 reveals")
        rv = net.run("owner", "reveal-validation", "--job", str(job), key=OWNER.private_key)
        assert rv["round"] == 0
        early = net.run("close-round", "--job", str(job), key=T1.private_key, ok=False, json_out=False)
        assert "cannot close before" in early.stderr
        net.run("dev", "advance-time", "3600")
        closed = net.run("close-round", "--job", str(job), key=T1.private_key)
        assert closed["notice"]["round"] == 0
        outs = [r.communicate(timeout=120) for r in runners]
    finally:
        for r in runners:
            if r.poll() is None:
                r.kill()
                r.wait()
    for r, (out, err) in zip(runners, outs):
        assert r.returncode == 0, err
        assert json.loads(out)["rounds_revealed"] == 1

    st = round0()
    r0 = st["rounds"][0]
    assert {t["verdict"] for t in r0["trainers"]} <= {"accepted", "rejected"}
    assert len(r0["trainers"]) == 2
    # scored on the round's secret shard plus the job's public shard, when the spec has one
    from client.storage import EmbeddedStore
    from dapp.ml.arch import ArchSpec
    from dapp.ml.model_format import decode_dataset

    store = EmbeddedStore(net.store)
    stored_spec = json.loads(store.get(created["spec_cid"]))
    arch = ArchSpec.from_dict(stored_spec["arch"])

    def samples(cid: str) -> int:
        return len(decode_dataset(store.get(cid), arch, max_samples=10**6)[1])

    public = stored_spec.get("public_validation")
    assert r0["accuracy"]["total"] == samples(r0["validation_cid"]) + (samples(public) if public else 0)
    human = net.run("owner", "status", "--job", str(job), json_out=False)
    assert "round 0" in human.stdout and "accuracy" in human.stdout

    m = net.run("owner", "model", "--job", str(job), "--out", str(tmp_path / "g.safetensors"),
                "--torch", str(tmp_path / "g-float.safetensors"))
    assert m["round"] == 0 and m["verified"]
    from safetensors.torch import load_file

    sd = load_file(str(tmp_path / "g-float.safetensors"))
    assert set(sd) == {"conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias"}
    assert str(sd["fc1.weight"].dtype) == "torch.float32"

    # round 1: nobody trains; the owner reveals, anyone closes; the job finishes
    net.run("dev", "advance-time", "3600")
    net.run("owner", "reveal-validation", "--job", str(job), key=OWNER.private_key)
    net.run("dev", "advance-time", "3600")
    last = net.run("close-round", "--job", str(job), key=T2.private_key)
    assert last["notice"]["job_finished"]
    human = net.run("owner", "status", "--job", str(job), json_out=False)
    # the template settles (pay "settle"): the end tops earners up to their value share
    assert "job finished:" in human.stdout and "topped the earners up" in human.stdout
    assert "a round pays at most 1/2 of its budget" in human.stdout

    # money: balances, withdrawals, refund, vouchers with proofs
    # the market's declared rule: the last round paid nobody, so what is left of the escrow
    # goes to the job's earners pro rata (the job_finished notice's `leftover`), not the owner
    fin = last["notice"]["job_finished"]
    leftover = {a: int(v) for a, v in fin.get("leftover", {}).items()}
    paid = {t["address"]: int(t["reward"]) + leftover.get(t["address"], 0) for t in r0["trainers"]}
    for k in (T1, T2):
        bal = net.run("trainer", "balance", key=k.private_key)
        want = paid[k.address.lower()]
        assert int(bal["balances"].get("0x" + "00" * 20, "0")) == want
    assert sum(paid.values()) + int(fin["refund"]) == 10**18
    if int(fin["refund"]) == 0:   # nothing for the owner: refund says so and sends nothing
        none = net.run("owner", "refund", key=OWNER.private_key, ok=False, json_out=False)
        assert "no in-app balance" in none.stderr
        refund = {"amount": "0"}
    else:
        refund = net.run("owner", "refund", key=OWNER.private_key)
        assert int(refund["amount"]) == int(fin["refund"])
    earners = [k for k in (T1, T2) if paid[k.address.lower()] > 0]
    for k in earners:
        net.run("trainer", "withdraw", key=k.private_key)
    net.run("dev", "mine", "11")
    if int(refund["amount"]):
        before = net.run("trainer", "balance", key=OWNER.private_key)["onchain_wei"]
        ex = net.run("vouchers", "--execute", "--wait", "60", key=OWNER.private_key)
        assert len(ex) == 1 and ex[0]["executed"]
        after = net.run("trainer", "balance", key=OWNER.private_key)["onchain_wei"]
        # the owner paid gas for executing its own voucher: the change is the refund minus the fee
        assert 0 < int(after) - int(before) <= int(refund["amount"])
    for k in earners:
        before = net.run("trainer", "balance", key=k.private_key)["onchain_wei"]
        rows = net.run("vouchers", "--execute", "--wait", "60", key=k.private_key)
        assert len(rows) == 1 and all(r["executed"] for r in rows)
        after = net.run("trainer", "balance", key=k.private_key)["onchain_wei"]
        assert 0 < int(after) - int(before) <= paid[k.address.lower()]
    again = net.run("vouchers", "--all")
    assert all(r["executed"] for r in again)

    v = net.run("verify", timeout=300)
    assert v["ok"]


def test_unreachable_ipfs_is_a_clear_error(net: Net, tmp_path: Path) -> None:
    spec = net.run("owner", "spec-template")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = net.run("owner", "create-job", "--spec", str(tmp_path / "spec.json"),
                   "--demo-shards", "1", "--reward", "1000wei", store="ipfs:/ip4/127.0.0.1/tcp/9/http",
                   key=OWNER.private_key, ok=False, json_out=False)
    assert "IPFS" in proc.stderr
