"""The dashboard in a real headless browser (Debian's Chromium driven by Playwright) over a real
market: a devnet (anvil + the Cartesi v2.2.0 contracts), our node running `python -m dapp`, an
owner and four trainers (two honest, a label flipper, a free rider whose reveal is refused)
playing two rounds with real PyTorch training, withdrawals, the node's claim.

test_pages_show_the_notices_to_the_wei opens every page (jobs, a job, a trainer, a payout trace,
the node), checks each figure against the notices to the wei, watches a round close and the
epoch get claimed on an open page (live, no reload), and saves screenshots (tmp_path/screens;
with TRIBUTARY_UPDATE_SCREENSHOT=1 the job page also to docs/dashboard.png for the README).
test_wallet_executes_a_voucher_from_the_page injects an EIP-1193 provider (a JS shim forwarding
eth_requestAccounts / eth_chainId / eth_sendTransaction to anvil with an unlocked account) and
executes a voucher with the page's button; the chain then says wasOutputExecuted.

Without /usr/bin/chromium these tests fail, saying how to install it (scripts/setup-browser.sh);
they skip only when TRIBUTARY_SKIP_BROWSER=1 is set as well.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from client.dashboard import browser

pytestmark = [pytest.mark.chain, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ETH = "0x" + "00" * 20
REWARD = 10**18
ROUNDS = 2
NAMES = ("alice", "bob", "mallory", "trudy")


def require_browser() -> None:
    why = browser.missing()
    if why is None:
        return
    if os.environ.get("TRIBUTARY_SKIP_BROWSER") == "1":
        pytest.skip(f"TRIBUTARY_SKIP_BROWSER=1 and {why}")
    pytest.fail(f"{why}; or set TRIBUTARY_SKIP_BROWSER=1 to skip the browser tests", pytrace=False)


def units(wei: int | str) -> str:
    """What the page prints for an amount: the exact decimal in units of 10^18."""
    w = int(wei)
    i, f = divmod(abs(w), 10**18)
    frac = f"{f:018d}".rstrip("0")
    return ("-" if w < 0 else "") + str(i) + (f".{frac}" if frac else "")


class Market:
    """The devnet, the node, the actors and the job; each step as the demo plays it."""

    def __init__(self, root: Path) -> None:
        from client.config import Context, resolve
        from client.data import DEMO_PROFILES, demo_split
        from client.demo import Processes, demo_signer, start_network

        self.root = root
        (root / "logs").mkdir(parents=True)
        self.procs = Processes(root / "logs")
        dep, self.node_url = start_network(root, self.procs,
                                           ["--content-store", str(root / "content")])
        self.cfg = resolve(deployment=str(dep), store=str(root / "content"),
                           home=str(root / "client"), node=self.node_url)
        self.base = Context(self.cfg)
        self.profiles = tuple(p for p in DEMO_PROFILES if p.name in NAMES)
        self.split = demo_split(ROUNDS, profiles=self.profiles)
        self.owner = self.base.with_signer(demo_signer("owner"))
        self.ctxs = {p.name: self.base.with_signer(demo_signer(p.name)) for p in self.profiles}
        for c in [self.owner, *self.ctxs.values()]:
            self.base.chain.set_balance(c.signer.address, 10 * 10**18)
        self.addr = {n: c.signer.address.lower() for n, c in self.ctxs.items()}
        self.job = 0
        self.claimed = False

    def create(self) -> None:
        from client import owner as o
        from client import trainer as tr
        from client.jobs import DIGITS_CNN, build_spec, deterministic_initial_model
        from dapp.ml.arch import ArchSpec

        spec = build_spec(name="dashboard-e2e", arch=DIGITS_CNN, initial_model_cid="", shards=[])
        job = o.create_job(self.owner, spec, deterministic_initial_model(ArchSpec.from_dict(DIGITS_CNN)),
                           self.split.shards, REWARD)
        self.job = job.job
        for c in self.ctxs.values():
            tr.join(c, self.job)
        self.spec = tr.job_spec(self.owner, tr.job_info(self.owner, self.job))

    def play(self, r: int, close: bool = True) -> None:
        """Round r: train + commit, reveal, the owner's shard; close it if asked."""
        from client import owner as o
        from client import trainer as tr

        w = self.spec["windows"]
        info = tr.job_info(self.owner, self.job)
        preps = {}
        for i, p in enumerate(self.profiles):
            x, y = self.split.parts[p.name]
            preps[p.name] = tr.prepare(self.ctxs[p.name], self.job, x, y,
                                       tr.Behaviour(role=p.role, seed=i + 1), info, self.spec)
            tr.commit(self.ctxs[p.name], preps[p.name])
        self.base.chain.advance_time(w["commit"])
        for p in self.profiles:
            tr.reveal(self.ctxs[p.name], preps[p.name])
        o.reveal_validation(self.owner, self.job, r)
        self.base.chain.advance_time(w["reveal"])
        if close:
            self.close(r)

    def close(self, r: int) -> None:
        from client import trainer as tr

        tr.close_round(self.owner, self.job, r)

    def withdraw_and_claim(self) -> None:
        """Every trainer with a balance withdraws; the node claims the epoch (idempotent)."""
        from client import owner as o
        from client.demo import EPOCH_LENGTH

        if self.claimed:
            return
        for c in self.ctxs.values():
            bal = o.balance(c)["balances"].get(ETH, "0")
            if int(bal):
                o.withdraw_all(c)
        self.base.chain.mine(EPOCH_LENGTH + 1)
        deadline = time.monotonic() + 120
        while True:
            vs = self.base.node.vouchers()
            if vs and all(v.proof_ready for v in vs):
                break
            assert time.monotonic() < deadline, "the node did not claim the epoch"
            time.sleep(0.3)
        self.claimed = True

    def round_notices(self) -> list[dict[str, Any]]:
        return [n.data for n in self.base.node.round_notices(self.job)]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    require_browser()
    import torch

    torch.set_num_threads(1)
    m = Market(tmp_path_factory.mktemp("dashboard-e2e"))
    try:
        m.create()
        m.play(0)
        m.play(1, close=False)  # closable: the first test closes it with a page open
        yield m
    finally:
        m.procs.stop()


@pytest.fixture(scope="module")
def dashboard(market: Market) -> Iterator[Any]:
    from client.dashboard import DashboardServer, make_views

    views = make_views(market.cfg.node_url, market.cfg.app, market.cfg.rpc_url, market.base.store)
    srv = DashboardServer(views).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def pw() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = browser.launch(p)
        try:
            yield b
        finally:
            b.close()


def open_page(b: Any, errors: list[str]) -> Any:
    ctx = b.new_context(viewport={"width": 1320, "height": 1000}, bypass_csp=True)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page


def goto(page: Any, url: str, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(f'body[data-ready="{ready}"]', state="attached", timeout=30_000)


def rows(page: Any, table: str) -> list[dict[str, Any]]:
    """Each row of a table: {column: {text, wei, title}} read from the DOM."""
    return page.eval_on_selector_all(f"#{table} tbody tr", """trs => trs.map(tr => {
        const o = {};
        tr.querySelectorAll('td[data-col]').forEach(td => {
            const w = td.querySelector('[data-wei]'), t = td.querySelector('[title]');
            o[td.dataset.col] = {text: td.innerText.trim(), wei: w ? w.dataset.wei : null,
                                 title: t ? t.getAttribute('title') : null};
        });
        return o; })""")


def shot(page: Any, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_pages_show_the_notices_to_the_wei(market: Market, dashboard: Any, pw: Any,
                                           tmp_path: Path) -> None:
    from dapp.hashing import keccak

    errors: list[str] = []
    page = open_page(pw, errors)
    screens = tmp_path / "screens"
    url, job = dashboard.url, market.job

    # ---- a job page stays open while round 1 closes: it redraws, it does not reload
    goto(page, f"{url}/#/job/{job}", f"job:{job}")
    assert len(rows(page, "rounds-table")) == 1
    renders = int(page.get_attribute("body", "data-renders") or 0)
    market.close(1)
    page.wait_for_function("() => document.querySelectorAll('#rounds-table tbody tr').length === 2",
                           timeout=30_000)
    assert page.evaluate("window.__loads") == 1, "the page reloaded instead of redrawing"
    assert int(page.get_attribute("body", "data-renders") or 0) > renders

    notices = market.round_notices()
    assert [n["round"] for n in notices] == [0, 1]
    tok = notices[0]["token"]
    assert tok == ETH

    # rounds table and plots against the notices
    by_round = {int(r["round"]["text"]): r for r in rows(page, "rounds-table")}
    for n in notices:
        r = by_round[n["round"]]
        for k in ("budget", "paid", "carried"):
            assert r[k]["wei"] == n[k], (k, r[k], n[k])
            assert r[k]["text"] == f"{units(n[k])} ETH"
        acc = n["accuracy"]
        assert r["accuracy"]["text"].startswith(f"{acc['correct']}/{acc['total']} = ")
        lr = n["hparams"]["learning_rate"]
        assert r["learning_rate"]["title"] == f"{lr[0]}/{lr[1]}"
        for kind in ("paid", "carried"):
            bar = page.get_attribute(f"#plot-budget rect[data-kind={kind}][data-round='{n['round']}']",
                                     "data-wei")
            assert bar == n[kind]
        dot = page.text_content(f"#plot-accuracy circle[data-round='{n['round']}'] title")
        assert f"{acc['correct']}/{acc['total']}" in (dot or "")

    # trainers per round: verdict, contribution, reward (exact), reason
    seen = {(int(r["round"]["text"]), r["address"]["title"]): r for r in rows(page, "trainers-table")}
    assert len(seen) == sum(len(n["trainers"]) for n in notices)
    for n in notices:
        for t in n["trainers"]:
            r = seen[(n["round"], t["address"])]
            assert r["verdict"]["text"] == t["verdict"]
            assert r["reward"]["wei"] == str(t.get("reward", "0"))
            assert r["reward"]["text"] == f"{units(t.get('reward', '0'))} ETH"
            assert r["contribution"]["title"] == (t.get("contribution") or "")
            assert r["reason"]["text"] == (t.get("reason") or "")
            assert r["note"]["text"] == (t.get("note") or "")

    # sorting by reward: ascending, then descending, exact integers
    page.click("#trainers-table th[data-key=reward]")
    page.wait_for_selector("#trainers-table th.asc[data-key=reward]")
    asc = [int(r["reward"]["wei"]) for r in rows(page, "trainers-table")]
    assert asc == sorted(asc)
    page.click("#trainers-table th[data-key=reward]")
    page.wait_for_selector("#trainers-table th.desc[data-key=reward]")
    desc = [int(r["reward"]["wei"]) for r in rows(page, "trainers-table")]
    assert desc == sorted(asc, reverse=True)

    # rejected updates: every rejected notice entry, and the free rider's refused reveals
    rej = rows(page, "rejected-table")
    want_rej = {(n["round"], t["address"]) for n in notices for t in n["trainers"]
                if t["verdict"] == "rejected"}
    got_notice = {(int(r["round"]["text"]), r["address"]["title"]) for r in rej
                  if r["where"]["text"] == "round notice"}
    assert got_notice == want_rej
    refused = [r for r in rej if r["where"]["text"] == "refused input"]
    assert any(r["address"]["title"] == market.addr["trudy"] and r["reason"]["text"]
               for r in refused), rej

    # model hash chain and download of each round's model, verified by keccak
    chain_text = page.inner_text("#hash-chain")
    for n in notices:
        assert n["model_hash"] in chain_text
        data = requests.get(f"{url}/api/model/{job}/{n['round']}", timeout=30).content
        assert "0x" + keccak(data).hex() == n["model_hash"]
    init = requests.get(f"{url}/api/model/{job}/initial", timeout=30).content
    opened = market.base.node.job_opened(job).data
    assert "0x" + keccak(init).hex() == opened["model_hash"] and opened["model_hash"] in chain_text
    job_shot = shot(page, screens, "job")
    if os.environ.get("TRIBUTARY_UPDATE_SCREENSHOT") == "1":   # the README's picture, on demand
        shutil.copyfile(job_shot, REPO / "docs" / "dashboard.png")

    # ---- jobs page
    goto(page, f"{url}/#/jobs", "jobs:")
    (jr,) = [r for r in rows(page, "jobs-table") if r["job"]["text"] == str(job)]
    fin = notices[-1]["job_finished"]
    paid = sum(int(n["paid"]) for n in notices) + sum(int(v) for v in fin["leftover"].values())
    assert jr["budget"]["wei"] == str(REWARD) and jr["paid"]["wei"] == str(paid)
    assert jr["carried"]["wei"] == notices[-1]["carried"]
    assert jr["rounds_done"]["text"] == f"{ROUNDS} / {ROUNDS}"
    assert jr["state"]["text"] == "finished"
    from client.dashboard.data import rule_chain

    agg = market.spec["aggregation"]  # the spec as stored (and committed to by its id)
    assert jr["rule"]["text"] == rule_chain(agg) and str(agg["rule"]) in jr["rule"]["text"]
    assert jr["owner"]["title"] == market.owner.signer.address.lower()
    shot(page, screens, "jobs")

    # ---- a trainer before and after withdrawing: balance, earned, vouchers' states
    earner = max(market.addr.values(), key=lambda a: sum(
        int(t.get("reward", 0)) for n in notices for t in n["trainers"] if t["address"] == a))
    earned = sum(int(t.get("reward", 0)) for n in notices for t in n["trainers"]
                 if t["address"] == earner) + int(fin["leftover"].get(earner, 0))
    assert earned > 0
    goto(page, f"{url}/#/trainer/{earner}", f"trainer:{earner}")
    assert page.get_attribute("#trainer-balance [data-wei]", "data-wei") == str(earned)
    assert page.get_attribute("#trainer-earned [data-wei]", "data-wei") == str(earned)
    tr_rows = rows(page, "trainer-rounds")
    assert [(int(r["job"]["text"]), int(r["round"]["text"])) for r in tr_rows] == [(job, 0), (job, 1)]
    for r, n in zip(tr_rows, notices):
        (t,) = [t for t in n["trainers"] if t["address"] == earner]
        assert r["reward"]["wei"] == str(t.get("reward", "0"))
        assert "input" in r["commit"]["text"] and "input" in r["reveal"]["text"]
    market.withdraw_and_claim()
    page.wait_for_function("() => [...document.querySelectorAll('#trainer-vouchers td[data-col=state]')]"
                           ".some(td => td.innerText.includes('executable'))", timeout=30_000)
    assert page.get_attribute("#trainer-balance [data-wei]", "data-wei") == "0"
    (wd,) = rows(page, "trainer-withdrawals")
    assert wd["amount"]["wei"] == str(earned)
    (vc,) = rows(page, "trainer-vouchers")
    assert vc["amount"]["wei"] == str(earned) and "executable" in vc["state"]["text"]
    assert "execute with wallet" not in vc["state"]["text"]  # no wallet: read-only
    assert page.evaluate("window.__loads") == 1
    shot(page, screens, "trainer")

    # ---- the payout trace of the earner's round-0 reward
    n0 = notices[0]
    (t0,) = [t for t in n0["trainers"] if t["address"] == earner]
    goto(page, f"{url}/#/trace/{job}/0/{earner}", f"trace:{job}/0/{earner}")
    assert page.get_attribute("#trace-reward [data-wei]", "data-wei") == str(t0["reward"])
    ins = {i["index"]: i for i in market.base.node._paged("cartesi_listInputs", {})}
    steps = {s: page.inner_text(f"li[data-step={s}]") for s in
             ("commit", "reveal", "notice", "claim", "voucher")}
    notice_out = [x for x in market.base.node.round_notices(job) if x.data["round"] == 0][0]
    assert page.inner_text("#trace-output-index") == str(notice_out.index)
    close_tx = ins[hex(notice_out.input_index)]["transaction_reference"]
    assert close_tx in steps["notice"] and "63 siblings" in steps["notice"]
    for step in ("commit", "reveal"):
        mine = [i for i in ins.values() if i["decoded_data"]["sender"].lower() == earner
                and i["status"] == "ACCEPTED" and i["transaction_reference"] in steps[step]]
        assert mine, f"the {step} transaction is not on the trace"
    assert "equals the commitment" in steps["reveal"] and t0["model_cid"] in steps["reveal"]
    claims = market_claims(market)
    assert claims[notice_out.epoch] in steps["claim"] and "matches the chain" in steps["claim"]
    assert "executable" in steps["voucher"]
    shot(page, screens, "trace")

    # ---- the node: inputs processed, epochs, claims with their on-chain status
    goto(page, f"{url}/#/node", "node:")
    count = market.base.node.processed_count()
    assert page.inner_text("#node-processed [class=v]") == f"{count} / {count}"
    ep_rows = rows(page, "epochs-table")
    for e, root in claims.items():
        (er,) = [r for r in ep_rows if r["index"]["text"] == str(e)]
        assert "ClaimAccepted" in er["claim"]["text"] and "root matches" in er["claim"]["text"]
    assert {int(r["epoch"]["text"]) for r in rows(page, "claims-table")} == set(claims)
    shot(page, screens, "node")
    assert not errors, errors


def market_claims(market: Market) -> dict[int, str]:
    """epoch -> accepted root, from the Authority's ClaimAccepted events (the chain's word)."""
    from eth_utils import to_checksum_address

    from rollup.chain import contract

    app = market.base.node.rpc("cartesi_getApplication", {})["data"]
    auth = contract(market.base.chain.w3, "Authority", app["iconsensus_address"])
    length = int(app["epoch_length"], 16)
    out = {}
    for ev in auth.events.ClaimAccepted().get_logs(
            from_block=0, argument_filters={"appContract": to_checksum_address(market.cfg.app)}):
        out[int(ev["args"]["lastProcessedBlockNumber"]) // length] = "0x" + bytes(ev["transactionHash"]).hex()
    return out


SHIM = """
(() => {
  const account = %(account)s;
  window.ethereum = {
    isTributaryTestShim: true,
    async request({ method, params }) {
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [account];
      if (method !== "eth_chainId" && method !== "eth_sendTransaction")
        throw Object.assign(new Error("unsupported method " + method), { code: 4200 });
      const answer = JSON.parse(await window.__anvil(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: params || [] })));
      if (answer.error) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
      return answer.result;
    },
  };
})();
"""


def test_wallet_executes_a_voucher_from_the_page(market: Market, dashboard: Any, pw: Any,
                                                 tmp_path: Path) -> None:
    from rollup.anvil import DEV_ACCOUNTS
    from rollup.vouchers import was_output_executed

    market.withdraw_and_claim()
    w3 = market.base.chain.w3
    vouchers = [v for v in market.base.node.vouchers()
                if not was_output_executed(w3, market.cfg.app, v.index)]
    assert vouchers, "no voucher left to execute"
    v = vouchers[0]
    who = v.beneficiary()
    before = market.base.chain.balance(who)
    executor = DEV_ACCOUNTS[7].address  # an unlocked anvil account, not the node's claimer
    rpc_url = market.cfg.rpc_url
    sent: list[str] = []

    def anvil(body: str) -> str:
        msg = json.loads(body)
        sent.append(msg["method"])
        return requests.post(rpc_url, json=msg, timeout=30).text

    errors: list[str] = []
    page = open_page(pw, errors)
    page.expose_function("__anvil", anvil)
    page.add_init_script(SHIM % {"account": json.dumps(executor)})
    goto(page, f"{dashboard.url}/#/trainer/{who}", f"trainer:{who}")
    button = page.locator(f"button.exec[data-index='{v.index}']")
    button.click()
    page.wait_for_selector("body[data-last-tx]", state="attached", timeout=30_000)
    tx = page.get_attribute("body", "data-last-tx")
    assert sent == ["eth_chainId", "eth_sendTransaction"]
    rcpt = w3.eth.wait_for_transaction_receipt(tx, timeout=30)
    assert rcpt["status"] == 1
    assert was_output_executed(w3, market.cfg.app, v.index)
    assert market.base.chain.balance(who) - before == v.amount()
    # the page turns the voucher to "executed" with the transaction, by itself
    page.wait_for_function(
        "tx => [...document.querySelectorAll('#trainer-vouchers td[data-col=state]')]"
        ".some(td => td.innerText.includes('executed') && td.innerText.includes(tx))",
        arg=tx, timeout=30_000)
    assert page.evaluate("window.__loads") == 1
    shot(page, tmp_path / "screens", "trainer-executed")
    assert not errors, errors


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_cli_serves_the_dashboard(market: Market, sigint: str) -> None:
    """`tributary dashboard --port 0` as a user runs it: one line with the URL, then the API
    answers what the notices say, until Ctrl-C; also when started with SIGINT ignored (a
    background job of a non-interactive shell), which once left it running until killed."""
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "client", "--deployment", str(market.cfg.deployment_path),
           "--node", market.node_url, "--store", str(market.root / "content"),
           "dashboard", "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(
                                signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL))
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("dashboard on http://127.0.0.1:"), (line, proc.stderr and proc.stderr.read())
        url = line.split()[2]
        jobs = requests.get(url + "/api/jobs", timeout=30).json()["jobs"]
        opened = market.base.node.job_opened(market.job).data
        (j,) = [j for j in jobs if j["job"] == market.job]
        assert (j["budget"], j["owner"], j["spec_cid"]) == (opened["budget"], opened["owner"],
                                                            opened["spec_cid"])
        assert "<title>Tributary dashboard</title>" in requests.get(url + "/", timeout=10).text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
