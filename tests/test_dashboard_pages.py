"""The dashboard's pages over a synthetic 50-trainer, 10-round job (client.dashboard.synthetic),
in headless Chromium: no devnet, a few seconds. What a user sees: exact wei figures that add up
to the notices, sorting, the trace and node pages, a hostile notice string shown as text (never
run), clear errors for unknown jobs and bad addresses, and nothing fetched from outside the
server (no CDN). The end-to-end test over a real market is tests/test_dashboard_e2e.py.

Without /usr/bin/chromium the browser tests fail, saying how to install it; they skip only when
TRIBUTARY_SKIP_BROWSER=1 is set as well. The API tests need no browser.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from client.dashboard import DashboardServer, Views
from client.dashboard.synthetic import SyntheticFeed
from tests.test_dashboard_e2e import open_page, pw, require_browser, rows, shot, units  # noqa: F401

STATIC = Path(__file__).resolve().parent.parent / "client" / "dashboard" / "static"
EVIL = '<img src=x onerror="document.body.dataset.pwned=1">'


@pytest.fixture(scope="module")
def feed() -> SyntheticFeed:
    f = SyntheticFeed(trainers=50, rounds=10)
    # a trainer-controlled string in a notice must be shown, never interpreted
    for o in f.outputs:
        if o.data.get("type") == "round_closed" and o.data["round"] == 0:
            for t in o.data["trainers"]:
                if t["verdict"] == "rejected":
                    t["reason"] = EVIL
                    break
    return f


@pytest.fixture(scope="module")
def server(feed: SyntheticFeed) -> Iterator[DashboardServer]:
    srv = DashboardServer(Views(feed)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_api_answers_and_refusals(server: DashboardServer, feed: SyntheticFeed) -> None:
    job = requests.get(server.url + "/api/job/1", timeout=10).json()
    assert len(job["rounds"]) == 10 and all(len(r["trainers"]) == 50 for r in job["rounds"])
    for r in job["rounds"]:  # what the round paid is the sum of its rewards, and nothing is lost
        assert sum(int(t["reward"]) for t in r["trainers"]) == int(r["paid"])
        assert int(r["budget"]) == int(r["paid"]) + int(r["carried"])
    jobs = requests.get(server.url + "/api/jobs", timeout=10).json()["jobs"]
    assert jobs[0]["paid"] == str(sum(int(r["paid"]) for r in job["rounds"]))
    assert jobs[0]["rule"] == "multi_krum → fedavg"
    bad = requests.get(server.url + "/api/job/7", timeout=10)
    assert bad.status_code == 404 and "no job 7" in bad.json()["error"]
    bad = requests.get(server.url + "/api/trainer/0x12", timeout=10)
    assert bad.status_code == 404 and "not an address" in bad.json()["error"]
    assert requests.get(server.url + "/static/../data.py", timeout=10).status_code == 404
    page = requests.get(server.url + "/", timeout=10)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_assets_ship_in_the_package_no_cdn() -> None:
    names = sorted(p.name for p in STATIC.iterdir())
    assert names == ["app.js", "index.html", "style.css"]
    for p in STATIC.iterdir():
        text = p.read_text()
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), p.name
    assert sum(p.stat().st_size for p in STATIC.iterdir()) < 64 * 1024


def test_pages_of_a_50_trainer_job(server: DashboardServer, feed: SyntheticFeed, pw: Any,
                                   tmp_path: Path) -> None:
    errors: list[str] = []
    page = open_page(pw, errors)
    page.goto(server.url + "/#/job/1")
    page.wait_for_selector('body[data-ready="job:1"]', state="attached")
    notices = {o.data["round"]: o.data for o in feed.outputs
               if o.data.get("type") == "round_closed"}
    trs = rows(page, "trainers-table")
    assert len(trs) == 500
    for r in trs:
        n = notices[int(r["round"]["text"])]
        (t,) = [t for t in n["trainers"] if t["address"] == r["address"]["title"]]
        assert r["reward"]["wei"] == t["reward"] and r["reward"]["text"] == f"{units(t['reward'])} ETH"
        assert r["verdict"]["text"] == t["verdict"]
    # the hostile reason is text on the page, and did nothing
    assert EVIL in page.inner_text("#trainers-table")
    assert page.get_attribute("body", "data-pwned") is None
    # sort by contribution (exact fractions), descending on the second click
    page.click("#trainers-table th[data-key=contribution]")
    page.click("#trainers-table th[data-key=contribution]")
    page.wait_for_selector("#trainers-table th.desc[data-key=contribution]")
    from fractions import Fraction

    vals = [Fraction(r["contribution"]["title"]) for r in rows(page, "trainers-table")]
    assert vals == sorted(vals, reverse=True)
    rej = rows(page, "rejected-table")
    assert len(rej) == 30 and all(r["where"]["text"] == "round notice" for r in rej)
    shot(page, tmp_path, "job")

    a = feed._trainers[0]
    page.goto(f"{server.url}/#/trace/1/4/{a}")
    page.wait_for_selector(f'body[data-ready="trace:1/4/{a}"]', state="attached")
    (t,) = [t for t in notices[4]["trainers"] if t["address"] == a]
    assert page.get_attribute("#trace-reward [data-wei]", "data-wei") == t["reward"]
    assert "matches the chain" in page.inner_text("li[data-step=claim]")

    page.goto(f"{server.url}/#/trainer/{a}")
    page.wait_for_selector(f'body[data-ready="trainer:{a}"]', state="attached")
    vs = rows(page, "trainer-vouchers")
    assert len(vs) == 1 and "executed" in vs[0]["state"]["text"]
    assert feed.executed[int(vs[0]["index"]["text"])]["tx"] in vs[0]["state"]["text"]

    page.goto(f"{server.url}/#/job/9")
    page.wait_for_selector('body[data-ready="job:9"]', state="attached")
    assert "no job 9" in page.inner_text("main")
    page.goto(f"{server.url}/#/node")
    page.wait_for_selector('body[data-ready="node:"]', state="attached")
    assert page.inner_text("#node-processed .v") == f"{len(feed.inputs)} / {len(feed.inputs)}"
    assert not [e for e in errors if "404" not in e], errors


@pytest.mark.parametrize("kind", ["embedded", pytest.param("ipfs", marks=pytest.mark.ipfs)])
def test_spec_and_initial_model_from_either_store(kind: str, tmp_path: Path) -> None:
    """The spec (rule, shard commitments) and the initial model come from the content store,
    embedded or IPFS, verified by content id; the model download checks the notice's keccak."""
    from dapp.hashing import keccak

    from client.storage import EmbeddedStore, open_store
    from tests.ipfs_daemon import ipfs_daemon

    with ipfs_daemon() if kind == "ipfs" else _nothing() as daemon:
        store = open_store(f"ipfs:{daemon.api}") if daemon else EmbeddedStore(tmp_path / "content")
        feed = SyntheticFeed(trainers=5, rounds=2, store=store)
        srv = DashboardServer(Views(feed)).start()
        try:
            (job,) = requests.get(srv.url + "/api/jobs", timeout=30).json()["jobs"]
            assert job["rule"] == "multi_krum → fedavg" and len(job["shard_commitments"]) == 2
            opened = next(o.data for o in feed.outputs if o.data.get("type") == "job_opened")
            data = requests.get(srv.url + "/api/model/1/initial", timeout=30)
            assert data.status_code == 200
            assert "0x" + keccak(data.content).hex() == opened["model_hash"]
        finally:
            srv.stop()


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield None


def test_an_erc20_deposit_is_shown_as_one() -> None:
    """A deposit is told by the portal that sent it: an ERC-20 deposit's bytes also parse as an
    ether deposit (from the wrong sender, of a nonsense amount), which the dashboard showed."""
    from client.dashboard.data import _describe_call
    from dapp.market import protocol as p

    token, who = "0x" + "7e" * 20, "0x" + "a1" * 20
    erc20 = bytes.fromhex(token[2:]) + bytes.fromhex(who[2:]) + (5 * 10**18).to_bytes(32, "big")
    assert _describe_call(erc20, p.ERC20_PORTAL) == (
        "ERC-20 deposit", {"value": str(5 * 10**18), "token": token}, who)
    job = erc20 + p.CreateJob("bafkreitest").encode()
    method, args, sender = _describe_call(job, p.ERC20_PORTAL.upper().replace("0X", "0x"))
    assert (method, args["spec_cid"], args["token"], sender) == (
        "createJob (ERC-20 deposit)", "bafkreitest", token, who)
    ether = bytes.fromhex(who[2:]) + (7).to_bytes(32, "big")
    assert _describe_call(ether, p.ETHER_PORTAL) == (
        "ether deposit", {"value": "7", "token": p.ETH}, who)
    assert _describe_call(b"\x01" * 10, p.ERC20_PORTAL)[0] == "malformed ERC-20 deposit"
    assert _describe_call(erc20, who)[0] == "unknown"    # the same bytes from an account
