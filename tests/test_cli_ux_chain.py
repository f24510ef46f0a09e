"""The paid steps of the command line against a real devnet and node (subprocesses, the demo's
launcher): nothing is paid before what can be checked is checked, a step that is too early is
refused locally with the time left and the devnet hint, an interrupted job creation is recovered
from its pending secrets, a job is cancelled before it starts, a withdrawal beyond the balance
costs nothing, and a trainer killed between its commit and recording it resumes with the saved
salt and reports its contribution and reward.

"Nothing was sent" is checked on chain: the account's nonce and balance and the InputBox's
input count do not move.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from click.testing import CliRunner

from client.cli import main
from client.config import Context, resolve
from client.data import demo_split
from client.demo import Processes, start_network
from client.keys import from_private_key
from rollup.anvil import DEV_ACCOUNTS

pytestmark = [pytest.mark.chain, pytest.mark.slow]

OWNER, T1, OTHER = DEV_ACCOUNTS[2], DEV_ACCOUNTS[3], DEV_ACCOUNTS[4]
OWNER2 = DEV_ACCOUNTS[5]  # an owner with nothing in the app (OWNER gets refunds from other tests)
WINDOWS = {"start_delay": 0, "commit": 600, "reveal": 600, "validation": 600}


class Net:
    def __init__(self, root: Path, dep: Path, node_url: str) -> None:
        self.root, self.dep, self.node_url = root, dep, node_url
        self.store, self.home = root / "content", root / "client"

    def args(self, node: str | None = None, store: str | None = None) -> list[str]:
        return ["--deployment", str(self.dep), "--node", node or self.node_url,
                "--store", store or str(self.store), "--home", str(self.home)]

    def cli(self, *argv: str, key: str | None = None, ok: bool = True, node: str | None = None,
            store: str | None = None) -> Any:
        """One command in-process, `--json` at the end (as users type it); returns the JSON."""
        env = {k: None for k in os.environ if k.startswith("TRIBUTARY_")}
        if key:
            env["TRIBUTARY_PRIVATE_KEY"] = key
        res = CliRunner().invoke(main, [*self.args(node, store), *argv, "--json"], env=env,
                                 catch_exceptions=False)
        out = json.loads(res.output)
        if ok:
            assert res.exit_code == 0, out
        else:
            assert res.exit_code == 1 and out["ok"] is False, out
        return out

    def ctx(self, key: str) -> Context:
        c = Context(resolve(deployment=str(self.dep), node=self.node_url, store=str(self.store),
                            home=str(self.home)))
        c._signer = from_private_key(key)
        return c

    def nonce_balance_inputs(self, address: str) -> tuple[int, int, int]:
        c = self.ctx(OWNER.private_key)
        w3 = c.chain.w3
        n = int(c.chain.input_box.functions.getNumberOfInputs(c.chain.app).call())
        return w3.eth.get_transaction_count(address), int(w3.eth.get_balance(address)), n


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("cli-ux")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    try:
        dep, node_url = start_network(root, procs, ["--content-store", str(root / "content")])
        yield Net(root, dep, node_url)
    finally:
        procs.stop()


def _in_about(minutes: int, text: str) -> bool:
    """'(in 10 min)' or '(in 9 min 59 s)': a block mined in between moves time by a second."""
    return bool(re.search(rf"\(in ({minutes} min|{minutes - 1} min 5\d s)\)", text))


def _spec(net: Net, tmp: Path, **windows: int) -> Path:
    spec = net.cli("owner", "spec-template")
    spec["windows"] = dict(WINDOWS, **windows)
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _create(net: Net, spec: Path, key: str = OWNER.private_key, rounds: int = 1) -> dict[str, Any]:
    return net.cli("owner", "create-job", "--spec", str(spec), "--demo-shards", str(rounds),
                   "--reward", "1eth", key=key)


def test_create_job_checks_before_it_pays(net: Net, tmp_path: Path) -> None:
    spec = _spec(net, tmp_path)
    before = net.nonce_balance_inputs(OWNER.address)
    dead = net.cli("owner", "create-job", "--spec", str(spec), "--demo-shards", "1",
                   "--reward", "1eth", key=OWNER.private_key, ok=False, node="http://127.0.0.1:9")
    assert "no node answers at http://127.0.0.1:9" in dead["message"]
    assert "nothing was sent" in dead["message"]
    poor = from_private_key("0x" + "43" * 32)
    broke = net.cli("owner", "create-job", "--spec", str(spec), "--demo-shards", "1",
                    "--reward", "1eth", key=poor.private_key, ok=False)
    assert "less than" in broke["message"] and "nothing was sent" in broke["message"]
    assert "tributary dev fund" in broke["message"]
    # content the node cannot read (stored elsewhere) would leave the deposit undecided
    elsewhere = net.cli("owner", "create-job", "--spec", str(spec), "--demo-shards", "1",
                        "--reward", "1eth", key=OWNER.private_key, ok=False,
                        store=str(tmp_path / "other-store"))
    assert "the node reads content from" in elsewhere["message"]
    assert f"--store {net.store.resolve()}" in elsewhere["message"]
    assert "nothing was sent" in elsewhere["message"]
    assert net.nonce_balance_inputs(OWNER.address) == before
    assert net.nonce_balance_inputs(poor.address)[:2] == (0, 0)


def test_too_early_steps_are_refused_locally_with_the_time_left(net: Net, tmp_path: Path) -> None:
    job = _create(net, _spec(net, tmp_path))["job"]
    phase = net.cli("owner", "phase", "--job", str(job))
    assert phase["phase"] == "commit" and _in_about(10, phase["text"])
    assert re.search(r"tributary dev advance-time (599|600)`", phase["text"])
    before = net.nonce_balance_inputs(OWNER.address)
    early = net.cli("owner", "reveal-validation", "--job", str(job), key=OWNER.private_key, ok=False)
    assert early["message"].startswith("too early: the validation window of round 0 opens at")
    assert _in_about(10, early["message"]) and re.search(r"tributary dev advance-time (599|600)`", early["message"])
    assert "nothing was sent" in early["message"]
    assert not re.search(r"\b\d{10}\b", early["message"])  # no raw Unix time
    close = net.cli("close-round", "--job", str(job), key=OWNER.private_key, ok=False)
    assert "cannot close before" in close["message"] and _in_about(20, close["message"])
    assert net.nonce_balance_inputs(OWNER.address) == before
    net.cli("dev", "advance-time", "600")
    wait = net.cli("close-round", "--job", str(job), key=OWNER.private_key, ok=False)
    assert _in_about(10, wait["message"])
    net.cli("owner", "reveal-validation", "--job", str(job), key=OWNER.private_key)
    net.cli("dev", "advance-time", "600")
    closed = net.cli("close-round", "--job", str(job), key=OWNER.private_key)
    assert closed["notice"]["job_finished"]


def test_an_interrupted_job_creation_is_recovered(net: Net, tmp_path: Path) -> None:
    from client import owner as o
    from client.jobs import deterministic_initial_model
    from dapp.ml.arch import ArchSpec

    spec = json.loads(_spec(net, tmp_path).read_text())
    ctx = net.ctx(OWNER2.private_key)

    def killed(step: str) -> None:  # the process dies right after the deposit was sent
        if step.startswith("waiting for the node"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        o.create_job(ctx, spec, deterministic_initial_model(ArchSpec.from_dict(spec["arch"])),
                     demo_split(1).shards, 10**17, on_step=killed)
    pending = list((net.home / "owner").glob("pending-*.json"))
    assert len(pending) == 1 and "input" in json.loads(pending[0].read_text())
    nothing = net.cli("owner", "refund", key=OWNER2.private_key, ok=False)
    assert "escrow" in nothing["message"] and "owner recover" in nothing["message"]
    rec = net.cli("owner", "recover", key=OWNER2.private_key)
    [entry] = [e for e in rec if e["state"] == "recovered"]
    job = entry["job"]
    assert not pending[0].exists()
    net.cli("dev", "advance-time", "600")
    rv = net.cli("owner", "reveal-validation", "--job", str(job), key=OWNER2.private_key)
    assert rv["round"] == 0
    again = net.cli("owner", "reveal-validation", "--job", str(job), key=OWNER2.private_key)
    assert again["already"] and again["input"] is None  # a rerun is harmless and free


def test_cancel_job_before_it_starts_and_not_after(net: Net, tmp_path: Path) -> None:
    later = _create(net, _spec(net, tmp_path, start_delay=3600))["job"]
    other = net.cli("owner", "cancel-job", "--job", str(later), key=OTHER.private_key, ok=False)
    assert "only the job owner" in other["message"]
    bal0 = int(net.cli("trainer", "balance", key=OWNER.private_key)["balances"].get("0x" + "00" * 20, "0"))
    res = net.cli("owner", "cancel-job", "--job", str(later), key=OWNER.private_key)
    assert res["cancelled"] and int(res["refund"]) == 10**18
    bal1 = int(net.cli("trainer", "balance", key=OWNER.private_key)["balances"]["0x" + "00" * 20])
    assert bal1 - bal0 == 10**18
    running = _create(net, _spec(net, tmp_path))["job"]
    before = net.nonce_balance_inputs(OWNER.address)
    refused = net.cli("owner", "cancel-job", "--job", str(running), key=OWNER.private_key, ok=False)
    assert "cannot be cancelled" in refused["message"] and "first round started" in refused["message"]
    assert net.nonce_balance_inputs(OWNER.address) == before

    # a withdrawal beyond the in-app balance is refused before it is sent
    over = net.cli("trainer", "withdraw", "--amount", "100eth", key=OWNER.private_key, ok=False)
    assert "less than" in over["message"] and "nothing was sent" in over["message"]
    bare = net.cli("trainer", "withdraw", "--amount", "5", key=OWNER.private_key, ok=False)
    assert "no unit" in bare["message"]
    assert net.nonce_balance_inputs(OWNER.address) == before
    net.cli("trainer", "withdraw", "--amount", "0.5eth", key=OWNER.private_key)
    res = CliRunner().invoke(main, [*net.args(), "vouchers"], env={
        "TRIBUTARY_PRIVATE_KEY": OWNER.private_key}, catch_exceptions=False)
    assert "waiting for claim" in res.output and "tributary dev mine" in res.output
    assert "0.5 ETH" in res.output


def test_a_trainer_killed_after_committing_resumes_with_its_salt(net: Net, tmp_path: Path) -> None:
    from client import trainer as tr
    from dapp.market import protocol as p

    job = _create(net, _spec(net, tmp_path))["job"]
    ctx = net.ctx(T1.private_key)
    x, y = demo_split(1).parts["alice"]
    np.savez(tmp_path / "alice.npz", x=x, y=y)
    tr.join(ctx, job)
    prep = tr.prepare(ctx, job, x, y, tr.Behaviour())
    saved = tr.load_state(ctx, job)["rounds"]["0"]
    # what commit() sends, then the process dies before it records `committed`
    c = p.commitment(T1.address.lower(), job, 0, prep.model_cid, prep.data_cid, prep.salt)
    ctx.chain.add_input(ctx.signer, p.Commit(job, 0, c).encode())
    assert "committed" not in tr.load_state(ctx, job)["rounds"]["0"]

    cmd = [sys.executable, "-m", "client", *net.args(), "trainer", "run", "--job", str(job),
           "--data", str(tmp_path / "alice.npz"), "--rounds", "1", "--poll", "0.2",
           "--timeout", "240", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    runner = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(env, TRIBUTARY_PRIVATE_KEY=T1.private_key))
    try:
        node = ctx.node
        deadline = time.monotonic() + 60
        while "committed" not in tr.load_state(ctx, job)["rounds"]["0"]:
            assert time.monotonic() < deadline and runner.poll() is None, runner.communicate()
            time.sleep(0.3)
        net.cli("dev", "advance-time", "600")
        deadline = time.monotonic() + 120
        while node.inspect(f"job/{job}")["rounds"][0]["reveals"] < 1:
            assert time.monotonic() < deadline and runner.poll() is None, runner.communicate()
            time.sleep(0.3)
        net.cli("owner", "reveal-validation", "--job", str(job), key=OWNER.private_key)
        net.cli("dev", "advance-time", "600")
        net.cli("close-round", "--job", str(job), key=OWNER.private_key)
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, err
    res = json.loads(out)
    kinds = [e["event"] for e in res["events"]]
    assert "trained" not in kinds and "committed" not in kinds   # no retraining, no 2nd commit
    assert "revealed" in kinds and res["rounds_revealed_total"] == 1
    state = tr.load_state(ctx, job)["rounds"]["0"]
    assert state["salt"] == saved["salt"] and state["committed"] == "on chain"
    # the template settles: round 0 pays at most half its budget, the job's end the rest
    mine, end = res["contributions"]
    assert mine["round"] == 0 and mine["verdict"] == "accepted" and int(mine["reward"]) > 0
    assert end["round"] == "end" and int(end["reward"]) > 0
    assert int(res["reward_total"]) == int(mine["reward"]) + int(end["reward"])
    phases = [e for e in res["events"] if e["event"] == "phase"]
    assert phases and phases[0]["phase"] == "commit" and "until" in phases[0]["text"]

    # a rerun after the job ended reports the same totals (counted from state and notices)
    again = net.cli("trainer", "run", "--job", str(job), "--data", str(tmp_path / "alice.npz"),
                    key=T1.private_key)
    assert again["status"] == "finished" and again["rounds_revealed_total"] == 1
    assert again["reward_total"] == res["reward_total"]
    human = CliRunner().invoke(main, [*net.args(), "trainer", "rewards", "--job", str(job)],
                               env={"TRIBUTARY_PRIVATE_KEY": T1.private_key})
    assert "total reward" in human.output and " ETH" in human.output

    # full identifiers: --wide keeps CIDs and addresses on one line; wrapping never cuts them
    # (the job has finished: `trainer jobs` lists open jobs, `--all` every job)
    wide = CliRunner().invoke(main, [*net.args(), "--wide", "trainer", "jobs", "--all"])
    spec_cid = ctx.node.inspect(f"job/{job}")["spec_cid"]
    assert spec_cid in wide.output and OWNER.address.lower() in wide.output
    narrow = CliRunner().invoke(main, [*net.args(), "trainer", "jobs", "--all"])
    assert "…" not in narrow.output
    assert spec_cid not in CliRunner().invoke(main, [*net.args(), "--wide", "trainer",
                                                     "jobs"]).output


def test_a_commit_sent_twice_is_recognised_and_a_lost_salt_is_reported(net: Net, tmp_path: Path) -> None:
    from client import trainer as tr
    from dapp.market import protocol as p

    job = _create(net, _spec(net, tmp_path))["job"]
    x, y = demo_split(1).parts["bob"]
    ctx = net.ctx(DEV_ACCOUNTS[6].private_key)
    tr.join(ctx, job)
    prep = tr.prepare(ctx, job, x, y, tr.Behaviour())
    c = p.commitment(ctx.signer.address.lower(), job, 0, prep.model_cid, prep.data_cid, prep.salt)
    ctx.chain.add_input(ctx.signer, p.Commit(job, 0, c).encode())  # then killed
    res = tr.commit(ctx, prep)  # the rerun sends it again before the node processed the first
    assert "already committed (by an earlier run)" in res["reports"][0]
    assert "committed" in tr.load_state(ctx, job)["rounds"]["0"]

    # what the old client did: retrain over the saved salt after a kill; the chain's commitment
    # then matches nothing saved, and the trainer is told instead of being refused later
    lost = net.ctx(DEV_ACCOUNTS[7].private_key)
    tr.join(lost, job)
    first = tr.prepare(lost, job, x, y, tr.Behaviour(seed=1))
    c = p.commitment(lost.signer.address.lower(), job, 0, first.model_cid, first.data_cid, first.salt)
    lost.chain.add_input(lost.signer, p.Commit(job, 0, c).encode())
    tr.save_round(lost, job, 0, salt="0x" + "00" * 32)
    st = tr.sync_round(lost, job, 0)
    assert "committed" not in st and "cannot be revealed" in st["commit_lost"]
