"""`tributary payout` and `tributary relay` through subprocesses, on a devnet with our node: a
payout input pays two depositors with one DelegateCallVoucher that `payout --execute` executes
once its epoch is claimed; the relayer takes a signed message over HTTP and posts it as a
`batch` input that the backend answers."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from client.relay import sign
from dapp.market import protocol as p
from rollup.anvil import DEV_ACCOUNTS
from rollup.chain import connect
from rollup.deploy import Deployment
from tests import chain_fixtures
from tests.test_cli_e2e import Net, _wait, net  # noqa: F401

pytestmark = [pytest.mark.chain, pytest.mark.slow]

A, B, ANYONE, RELAYER = DEV_ACCOUNTS[5], DEV_ACCOUNTS[6], DEV_ACCOUNTS[7], DEV_ACCOUNTS[8]


def _reports(net: Net) -> list[str]:
    app = json.loads(net.dep.read_text())["application"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "cartesi_listReports", "params": {"application": app, "limit": 1000}}
    answer = requests.post(net.node_url + "/rpc", json=body, timeout=10).json()
    assert "result" in answer, answer
    data = answer["result"]["data"]
    return [bytes.fromhex(r["raw_data"][2:]).decode("utf-8", "replace") for r in data]


def test_payout_and_relay_through_the_cli(net: Net) -> None:  # noqa: F811
    dep = Deployment.load(net.dep)
    w3 = connect(dep.rpc_url)
    amounts = {A.address: 3 * 10**15, B.address: 10**15 + 7}
    for acct, v in amounts.items():
        key = A.private_key if acct == A.address else B.private_key
        chain_fixtures.deposit_ether(w3, dep, key, v)
    sent = net.run("payout", key=ANYONE.private_key, json_out=False)
    assert json.loads(sent.stdout)["input"] >= 0
    before = {a: w3.eth.get_balance(a) for a in amounts}

    # a payee sees the batched payout among its vouchers, with its own amount, and executing it
    # there pays everyone in it
    mine = [r for r in net.run("vouchers", key=A.private_key) if r.get("kind") == "batched payout"]
    assert [(r["to"], int(r["amount"])) for r in mine] == [(A.address.lower(), amounts[A.address])]

    def executed() -> bool:
        net.run("dev", "mine", str(dep.epoch_length + 1), key=ANYONE.private_key)
        rows = [r for r in net.run("vouchers", "--execute", key=A.private_key)
                if r.get("kind") == "batched payout"]
        return bool(rows) and all(r["executed"] for r in rows)

    _wait(executed, 90, "the batched payout to be claimed and executed")
    assert w3.eth.get_balance(B.address) - before[B.address] == amounts[B.address]
    # A executed it and paid the gas: it got its amount less the fee
    assert 0 < w3.eth.get_balance(A.address) - before[A.address] <= amounts[A.address]
    rows = json.loads(net.run("payout", "--execute", key=ANYONE.private_key,
                              json_out=False).stdout)
    assert rows and all(r["executed"] for r in rows)      # already executed: nothing sent

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = net.popen("relay", "--every", "1", "--port", str(port), key=RELAYER.private_key)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _up(url), 60, "the relayer")
        msg = sign(p.Join(99), "0x" + "31" * 32, int(w3.eth.chain_id), dep.application)
        answer = requests.post(url + "/submit", data=msg, timeout=10)
        assert answer.status_code == 202, answer.text
        assert requests.post(url + "/submit", data=b"\x00\x01\x07", timeout=10).status_code == 400
        _wait(lambda: requests.get(url + "/status", timeout=5).json()["sent"], 30,
              "the relayer's batch")
        _wait(lambda: any('"type":"batch"' in r and "no job 99" in r for r in _reports(net)),
              60, "the backend's answer to the relayed batch")
    finally:
        relay.terminate()
        relay.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/status", timeout=2).status_code == 200
    except requests.RequestException:
        time.sleep(0.2)
        return False


def test_a_trainer_without_ether_plays_a_round_through_the_relay(net: Net, tmp_path) -> None:  # noqa: F811
    """`trainer join --relay` and `trainer run --relay`: an account that holds no ether joins,
    commits and reveals; the relayer posts its signed messages in batches and pays the gas."""
    import subprocess

    import numpy as np
    from eth_account import Account

    from client.data import demo_split

    owner = DEV_ACCOUNTS[1]
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(net.run("owner", "spec-template")))
    split = demo_split(1)
    np.savez(tmp_path / "shard0.npz", x=split.shards[0][0], y=split.shards[0][1])
    job = net.run("owner", "create-job", "--spec", str(spec_path), "--shard",
                  str(tmp_path / "shard0.npz"), "--reward", "1eth", key=owner.private_key)["job"]
    x, y = split.parts["alice"]
    np.savez(tmp_path / "alice.npz", x=x, y=y)
    poor = Account.create()
    w3 = connect(Deployment.load(net.dep).rpc_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = net.popen("relay", "--every", "1", "--port", str(port), key=RELAYER.private_key)
    url = f"http://127.0.0.1:{port}"
    runner = None
    try:
        _wait(lambda: _up(url), 60, "the relayer")
        key = "0x" + poor.key.hex().removeprefix("0x")
        joined = net.run("trainer", "join", "--job", str(job), "--relay", url, key=key)
        assert joined["joined"]
        runner = net.popen("trainer", "run", "--job", str(job), "--data",
                           str(tmp_path / "alice.npz"), "--rounds", "1", "--poll", "0.2",
                           "--timeout", "300", "--relay", url, key=key)
        from client.node_api import NodeClient

        node = NodeClient(net.node_url, json.loads(net.dep.read_text())["application"])
        _wait(lambda: node.inspect(f"job/{job}")["rounds"][0]["commits"] == 1, 180, "the commit")
        net.run("dev", "advance-time", "3600")
        _wait(lambda: node.inspect(f"job/{job}")["rounds"][0]["reveals"] == 1, 180, "the reveal")
        net.run("owner", "reveal-validation", "--job", str(job), key=owner.private_key)
        net.run("dev", "advance-time", "3600")
        net.run("close-round", "--job", str(job), key=owner.private_key)
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, err
        assert json.loads(out)["rounds_revealed"] == 1
        rnd = node.inspect(f"job/{job}/round/0")
        assert poor.address.lower() in rnd["reveals"]
        assert w3.eth.get_transaction_count(poor.address) == 0      # it never paid gas
        assert w3.eth.get_balance(poor.address) == 0
    finally:
        for proc in (runner, relay):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
