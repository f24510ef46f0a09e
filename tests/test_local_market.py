"""Issue 13, finding 1 (and 4/5 end to end): `tributary dev up` brings up a working local market.

As a user runs it: `tributary dev up` in a fresh $TRIBUTARY_HOME (free ports), then the client
with nothing but the environment the command prints: an owner opens a job, which needs the node
to fetch the spec, model and shards over GIO from the content store the command set up. Ctrl-C
(SIGINT) stops everything, leaving no process behind; a second `dev up` resumes the same market.
With `--ipfs` the bundled js-ipfs daemon serves content; a node restarted on it (an empty IPFS
repo) instead of the store that served the job stops with a message naming the CID instead of
diverging (the crash of finding 5 was a NonDeterministicBackendError).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from rollup.anvil import DEV_ACCOUNTS

pytestmark = [pytest.mark.chain, pytest.mark.slow]

TRIBUTARY = str(Path(sys.executable).with_name("tributary"))
READY = "Ctrl-C stops everything."


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    env.update(extra)
    return env


def descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.update(kids)
            todo += kids
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Market:
    """One `dev up` subprocess; `stop()` is Ctrl-C and checks that nothing outlives it."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> None:
        self.log = log
        self.out = open(log, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd)
        self.kids: set[int] = set()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while READY not in self.text():
            if self.proc.poll() is not None:
                raise AssertionError(f"dev up exited ({self.proc.returncode}):\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dev up not ready in {timeout} s:\n{self.text()[-3000:]}")
            time.sleep(0.3)
        self.kids = descendants(self.proc.pid)
        return self.text()

    def exports(self) -> dict[str, str]:
        return dict(re.findall(r"^\s+export (TRIBUTARY_\w+)=(\S+)", self.text(), re.M))

    def stop(self, timeout: float = 60) -> int:
        self.kids |= descendants(self.proc.pid) if self.proc.poll() is None else set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.out.close()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in self.kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in self.kids if alive(p)]
        for p in left:  # never leave them behind, even when the test fails
            os.kill(p, signal.SIGKILL)
        assert not left, f"processes outlived dev up: {left}"
        return code


@pytest.fixture
def markets() -> Iterator[list[Market]]:
    started: list[Market] = []
    yield started
    for m in started:
        if m.proc.poll() is None:
            m.stop()


def dev_up(markets: list[Market], tmp: Path, name: str, *extra: str, env: dict[str, str]) -> Market:
    m = Market([TRIBUTARY, "dev", "up", "--port", "0", "--http-port", "0", "--api-port", "0", *extra],
               env, tmp / f"{name}.log")
    markets.append(m)
    return m


def client(env: dict[str, str], *argv: str, ok: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([TRIBUTARY, *argv], env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{argv}: {proc.stdout}\n{proc.stderr}"
    return proc


def open_job(env: dict[str, str], tmp: Path) -> dict:
    spec = tmp / "spec.json"
    doc = json.loads(client(env, "owner", "spec-template").stdout)
    # a small job: this test is about the market coming up, not about the template's limits
    doc["max_trainers"] = 4
    doc["limits"]["max_shard_samples"] = 100
    spec.write_text(json.dumps(doc))
    created = json.loads(client(env, "--json", "owner", "create-job", "--spec", str(spec),
                                "--demo-shards", "2", "--reward", "1eth").stdout)
    jobs = json.loads(client(env, "--json", "trainer", "jobs").stdout)
    assert any(j["job"] == created["job"] and j["status"] == "open" for j in jobs), jobs
    return created


def test_dev_up_is_a_working_market_and_ctrl_c_stops_everything(tmp_path: Path, markets: list[Market]) -> None:
    home = tmp_path / "home"
    env = clean_env(TRIBUTARY_HOME=str(home))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dash_port = sock.getsockname()[1]
    m = dev_up(markets, tmp_path, "first", "--dashboard-port", str(dash_port), env=env)
    out = m.wait_ready()
    for what in ("anvil", "node API", "content", "Application", "deployment", "PUBLIC TEST KEYS",
                 f"http://127.0.0.1:{dash_port}"):
        assert what in out
    assert str(home / "content") in out
    for acc in DEV_ACCOUNTS[1:]:  # funded accounts, with their keys
        assert re.search(rf"{acc.address}\s+10000 ETH\s+key {acc.private_key}", out), out
    names = {Path(f"/proc/{p}/comm").read_text().strip() for p in m.kids}
    assert "anvil" in names and len(m.kids) >= 2, names  # the chain and the backend

    user = dict(env, **m.exports())  # exactly what the command told the user to set
    assert user["TRIBUTARY_PRIVATE_KEY"] == DEV_ACCOUNTS[1].private_key
    created = open_job(user, tmp_path)
    assert created["job"] == 1 and created["rounds"] == 2
    # the market's dashboard reads the same node: the job is there
    with urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/api/jobs", timeout=30) as resp:
        assert [j["job"] for j in json.loads(resp.read())["jobs"]] == [1]
    assert m.stop() == 0

    # a second run resumes the same chain and node (replaying the recorded GIO answers)
    again = dev_up(markets, tmp_path, "again", env=env)
    assert "[resumed]" in again.wait_ready()
    jobs = json.loads(client(dict(env, **again.exports()), "--json", "trainer", "jobs").stdout)
    assert [j["job"] for j in jobs] == [1]
    assert again.stop() == 0


@pytest.mark.ipfs
def test_ipfs_flag_and_a_changed_content_source_never_diverges(tmp_path: Path, markets: list[Market]) -> None:
    home = tmp_path / "home"
    env = clean_env(TRIBUTARY_HOME=str(home), TRIBUTARY_GIO_RETRY_S="1")
    m = dev_up(markets, tmp_path, "embedded", env=env)
    m.wait_ready()
    created = open_job(dict(env, **m.exports()), tmp_path)
    assert m.stop() == 0

    # the same node restarted on the bundled (empty) IPFS daemon: the job's content is not there
    ipfs = dev_up(markets, tmp_path, "ipfs", "--ipfs", "--ipfs-port", "0", env=env)
    try:
        ipfs.proc.wait(240)
    finally:
        code = ipfs.stop()
    text = ipfs.text()
    assert "bundled js-ipfs" in text, text  # it did start the daemon and serve from it
    assert code != 0, text
    assert "the node stopped: cannot replay" in text, text
    assert "input 0 (replay) needs" in text and "was found when input 0 was first processed" in text, text
    cids = set(re.findall(r"bafk\w+", text.split("the node stopped: cannot replay")[1]))
    assert cids & {created["spec_cid"], created["model_cid"]}, (cids, created)
    assert "NonDeterministicBackendError" not in text and "Traceback" not in text, text
