"""`rollup verify`: agrees with an honest node's claims, catches a claim forged with the Authority
owner's key, and says which epochs nobody claimed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rollup.node import Node
from rollup.verify import MISMATCH, OK, UNCLAIMED, verify
from tests.chain_fixtures import submit_claim
from tests.node_fixtures import ECHO, ECHO_CMD, Chain, chain, wait_claims  # noqa: F401

pytestmark = pytest.mark.chain


def run_cli(chain: Chain, app: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rollup", "verify", "--rpc-url", chain.url, "--app", app, "--backend", ECHO_CMD],
        capture_output=True, text=True, timeout=120,
    )


def test_verify_agrees_with_an_honest_node(chain: Chain, tmp_path: Path) -> None:
    dep = chain.deploy()
    with Node(dep, ECHO, tmp_path / "node", poll_interval=0.05) as node:
        for i, p in enumerate([b"a", b"reject:x", b"b", b"exception:y", b"count"]):
            chain.add_input(dep, p)
            if i == 2:
                chain.pass_epoch(dep)
        node.wait_processed(5, 30)
        wait_claims(node, chain, dep)
    report = verify(chain.url, dep.application, ECHO)
    assert report.processed_inputs == 5
    assert len(report.epochs) >= 2 and all(e.verdict == OK for e in report.epochs), report.epochs
    assert report.ok
    cli = run_cli(chain, dep.application)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "VERDICT: OK" in cli.stdout


def test_verify_catches_a_forged_claim(chain: Chain) -> None:
    dep = chain.deploy()  # no node runs for this app: the owner claims whatever it likes
    chain.add_input(dep, b"pay me")
    chain.add_input(dep, b"voucher:" + b"\x42" * 20 + (10**18).to_bytes(32, "big"))
    forged = b"\xee" * 32
    last = submit_claim(chain.w3, dep, forged)
    chain.add_input(dep, b"later")  # an epoch with an input that nobody claims
    chain.pass_epoch(dep)

    report = verify(chain.url, dep.application, ECHO)
    assert not report.ok
    verdicts = {e.epoch: e for e in report.epochs}
    bad = verdicts[last // dep.epoch_length]
    assert bad.verdict == MISMATCH and bad.claimed_root == forged and bad.computed_root != forged
    assert [e.verdict for e in report.epochs][-1] == UNCLAIMED
    cli = run_cli(chain, dep.application)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "MISMATCH" in cli.stdout and forged.hex() in cli.stdout and bad.computed_root.hex() in cli.stdout
