"""`make demo` / `python -m client demo`: the whole market on one machine, end to end.

What runs: a devnet (`python -m rollup devnet --no-node`: anvil + the Cartesi v2.2.0 contracts +
our Application) and the host-mode node with the market backend (`python -m dapp`) whose GIO
resolver is the embedded content store, each a subprocess in its own process group. In this
process: an owner posts a digits CNN job with 5 rounds and 1 ETH; 8 honest trainers with
different data sizes, label skew and label noise, 2 attackers (label flipping; scaled sign
flipping) and 1 free rider (copies the global model, then others' earlier updates) play every
round through the same library calls the CLI uses; block time moves with anvil's
evm_increaseTime. Then every account withdraws, the node claims the epoch, every voucher is
executed with its proof, and each account's on-chain balance change is compared with what the
notices promised. Exit status 0 only if every wei matches.

Clean-up: the state folder is wiped at start (a second run starts clean) and both subprocess
groups are stopped on exit, on error and on Ctrl-C.

The demo's accounts are derived from public seeds (keccak of "tributary-demo/<name>") and funded
with anvil_setBalance: TEST KEYS ONLY.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from client.cli import fmt_frac
from client.config import Context, resolve, write_node_file
from client.data import DEMO_PROFILES, Profile, demo_split
from client.keys import Signer, from_private_key
from dapp.canonical import parse_fraction
from dapp.hashing import keccak
from dapp.ml.aggregation import BALANCED_UNIT

console = Console(highlight=False, width=max(shutil.get_terminal_size((150, 40)).columns, 150))
ETHER = 10**18
REWARD = 1 * ETHER
EPOCH_LENGTH = 10


class DemoError(Exception):
    """The demo could not run (a process did not start, a step failed)."""


@dataclass
class Actor:
    name: str
    role: str
    signer: Signer
    profile: Profile | None


def demo_signer(name: str) -> Signer:
    return from_private_key("0x" + keccak(f"tributary-demo/{name}".encode()).hex())


def _free_port() -> int:
    from rollup.anvil import free_port

    return free_port()


class Processes:
    """Subprocesses in their own process groups; `stop()` ends them all, whatever happened."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, **(env or {})))
        log.close()
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-1500:]
                raise DemoError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM each group (the devnet and the node shut down cleanly on it), SIGKILL after
        10 s; then SIGKILL any descendant that left its group (anvil runs in its own)."""
        for name, proc in reversed(self.procs):
            kids = _descendants(proc.pid)
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=5)
            for pid in kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.procs.clear()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first found, deepest last."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                out += [int(k) for k in kids]
                todo += [int(k) for k in kids]
        except OSError:
            continue
    return out


def _wait(cond: Any, timeout: float, what: str, procs: Processes) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        procs.check()
        try:
            value = cond()
            if value:
                return value
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def start_network(state: Path, procs: Processes, store_arg: list[str]) -> tuple[Path, str]:
    """Devnet (chain + contracts) and node as subprocesses; returns (deployment path, node url)."""
    py = sys.executable
    devnet_dir = state / "devnet"
    rpc_port = _free_port()
    procs.start("devnet", [py, "-m", "rollup", "devnet", "--port", str(rpc_port), "--no-node",
                           "--state-dir", str(devnet_dir), "--epoch-length", str(EPOCH_LENGTH)])
    dep_path = devnet_dir / "deployment.json"
    _wait(lambda: dep_path.exists() and json.loads(dep_path.read_text()).get("application"),
          90, "the devnet's deployment", procs)
    api_port = _free_port()
    procs.start("node", [py, "-m", "rollup", "node", "--deployment", str(dep_path),
                         "--backend", f"{py} -m dapp", "--state-dir", str(state / "node"),
                         "--api-port", str(api_port), "--http-port", str(_free_port()),
                         "--poll-interval", "0.1", *store_arg])
    node_url = f"http://127.0.0.1:{api_port}"
    _wait(lambda: requests.get(node_url + "/health", timeout=2).json().get("status") == "ok",
          90, "the node", procs)
    node_store = (str(Path(store_arg[1]).resolve()) if store_arg[:1] == ["--content-store"]
                  else "ipfs:" + store_arg[1] if store_arg[:1] == ["--ipfs-api"] else "none")
    write_node_file(dep_path, node_url, node_store)
    return dep_path, node_url


def _price(price: str, per_unit: int) -> str:
    """The job's price ("p/q" wei per unit of the raw utility) in ETH per displayed unit."""
    return f"{float(parse_fraction(price) * per_unit / ETHER):.6g}"


def _share(fraction: str) -> str:
    """A "p/q" share in words ("half", else "p/q")."""
    return "half" if fraction == "1/2" else fraction


def _table(notice: dict[str, Any], names: dict[str, Actor], refusals: dict[str, str],
           unit: tuple[str, int] = ("correct predictions", 1)) -> Table:
    """One round's table; `unit`: what a contribution counts, and the divisor that shows it in
    that unit (2**scale_bits for a fixed-point margin)."""
    unit_text, per_unit = unit
    acc = notice.get("accuracy")
    acc_s = f"{acc['correct']}/{acc['total']} = {acc['correct'] / acc['total']:.1%}" if acc else "n/a"
    t = Table(title=f"round {notice['round']}: accuracy on the validation shard {acc_s}; paid "
                    f"{int(notice['paid']) / ETHER:.6f} ETH, carried {int(notice['carried']) / ETHER:.6f} ETH",
              caption=f"contribution: each trainer's Shapley value for the job's utility on the "
                      f"{notice.get('scoring', 'validation')} shards, in {unit_text}; "
                      + (f"each positive one is paid at the job's price, {_price(notice['price'], per_unit)} "
                         f"ETH per unit, set by the first round (its budget over its total value)"
                         + (f", at most {_share(notice['advance'])} of the round's budget in all; "
                            f"what a round does not pay waits for the end of the job, which tops "
                            f"every earner up to its share of the value created over the whole job"
                            if notice.get("advance") else
                            ", so pay follows value over the whole job; what a round does not "
                            "spend carries, and after the last round goes to the earners pro rata")
                         if notice.get("price") else
                         "the round's budget is split pro rata over the positive ones"))
    for col, just in (("trainer", "left"), ("role", "left"), ("verdict", "left"),
                      ("contribution", "right"), ("reward (ETH)", "right")):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    t.add_column("why", justify="left", overflow="fold", ratio=1)
    for tr in notice["trainers"]:
        actor = names.get(tr["address"])
        why = tr.get("reason") or refusals.get(tr["address"], "") or tr.get("note") or ""
        if tr["verdict"] == "accepted" and not int(tr.get("reward", 0)):
            why = (why + "; " if why else "") + "contribution not positive: paid nothing this round"
        contrib = tr.get("contribution")
        if contrib:
            n, _, d = contrib.partition("/")
            contrib = f"{int(n)}/{int(d or 1) * per_unit}"
        style = {"accepted": "green", "rejected": "red"}.get(tr["verdict"], "yellow")
        t.add_row(actor.name if actor else tr["address"], actor.role if actor else "?",
                  f"[{style}]{tr['verdict']}[/]", fmt_frac(contrib),
                  f"{int(tr.get('reward', 0)) / ETHER:.6f}", why)
    return t


def _utility_unit(spec: dict[str, Any]) -> tuple[str, int]:
    """What a contribution counts, in words, and the divisor that shows it in that unit."""
    agg, con = spec.get("aggregation", {}), spec.get("contribution", {})
    utility = agg.get("utility") if agg.get("rule") == "validated" else con.get("utility")
    bits = int(spec.get("arch", {}).get("scale_bits", 16))
    if agg.get("rule") == "validated" and agg.get("score_utility") == "balanced":
        return ("class-weighted logits (per class, the mean over its samples of the margin plus "
                "twice the margin clipped to one logit; summed over the classes)",
                1 << (bits + BALANCED_UNIT.bit_length() - 1))
    if (utility or "correct") == "margin":
        return ("logits of margin (the true class's logit minus the best other, clipped, summed "
                "over the samples)", 1 << bits)
    return "correct predictions", 1


def run_demo(state: Path, rounds: int = 5, store: str | None = None,
             profiles: tuple[Profile, ...] = DEMO_PROFILES) -> int:
    """Run the demo; returns the exit status (0: every balance matched its notices)."""
    import torch

    from client import owner as o
    from client import trainer as tr
    from client.jobs import DIGITS_CNN, build_spec, deterministic_initial_model
    from dapp.ml.arch import ArchSpec
    from rollup.anvil import DEV_ACCOUNTS
    from rollup.vouchers import ProvableOutput, execute_output

    torch.set_num_threads(1)
    t_start = time.monotonic()
    if state.exists():
        shutil.rmtree(state)
    (state / "logs").mkdir(parents=True)
    procs = Processes(state / "logs")
    content = state / "content"
    store_spec = store or str(content)
    store_arg = (["--ipfs-api", store_spec[len("ipfs:"):]] if store_spec.startswith("ipfs:")
                 else ["--content-store", str(content)])
    old_term, old_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        with console.status("starting the devnet and the node..."):
            dep_path, node_url = start_network(state, procs, store_arg)
        cfg = resolve(deployment=str(dep_path), store=store_spec, home=str(state / "client"),
                      node=node_url)
        base = Context(cfg)
        console.print(f"devnet {cfg.rpc_url}, Application {cfg.app}, node {node_url} "
                      f"[dim](logs in {state / 'logs'})[/]")

        owner_actor = Actor("owner", "owner", demo_signer("owner"), None)
        actors = [Actor(p.name, p.role, demo_signer(p.name), p) for p in profiles]
        executor = from_private_key(DEV_ACCOUNTS[1].private_key)
        for a in [owner_actor, *actors]:
            base.chain.set_balance(a.signer.address, 10 * ETHER)
        names = {a.signer.address.lower(): a for a in [owner_actor, *actors]}

        # ---- the owner posts the job --------------------------------------------------------
        split = demo_split(rounds)
        arch = ArchSpec.from_dict(DIGITS_CNN)
        octx = base.with_signer(owner_actor.signer)
        spec = build_spec(name="digits-cnn-demo", arch=DIGITS_CNN, initial_model_cid="",
                          shards=[])
        with console.status("owner: storing the model, shards and spec; depositing 1 ETH..."):
            job = o.create_job(octx, spec, deterministic_initial_model(arch), split.shards, REWARD)
        console.print(f"[bold]job {job.job}[/] opened by the owner: {rounds} rounds, budget 1 ETH, "
                      f"spec {job.spec_cid}")
        ctxs = {a.name: base.with_signer(a.signer) for a in actors}
        for a in actors:
            tr.join(ctxs[a.name], job.job)
        console.print(f"{len(actors)} participants joined: " + ", ".join(
            f"{a.name} ({a.role}, {len(split.parts[a.name][1])} samples)" for a in actors))

        promised: dict[str, int] = {}
        spec_json = tr.job_spec(octx, tr.job_info(octx, job.job))
        w = spec_json["windows"]
        round_times: list[float] = []
        for r in range(rounds):
            t0 = time.monotonic()
            info = tr.job_info(octx, job.job)
            preps = {}
            with console.status(f"round {r}: training and committing..."):
                for i, a in enumerate(actors):
                    x, y = split.parts[a.name]
                    beh = tr.Behaviour(role=a.role, seed=i + 1)
                    preps[a.name] = tr.prepare(ctxs[a.name], job.job, x, y, beh, info, spec_json)
                    tr.commit(ctxs[a.name], preps[a.name])
            base.chain.advance_time(w["commit"])
            refusals: dict[str, str] = {}
            with console.status(f"round {r}: revealing..."):
                for a in actors:
                    res = tr.reveal(ctxs[a.name], preps[a.name])
                    if not res["accepted"]:
                        refusals[a.signer.address.lower()] = "reveal refused: " + res["reason"]
                o.reveal_validation(octx, job.job, r)
            base.chain.advance_time(w["reveal"])
            with console.status(f"round {r}: closing (aggregation, Shapley values, rewards)..."):
                closed = tr.close_round(octx, job.job, r)
            notice = closed["notice"]
            round_times.append(time.monotonic() - t0)
            console.print(_table(notice, names, refusals, _utility_unit(spec_json)))
            for t in notice["trainers"]:
                promised[t["address"]] = promised.get(t["address"], 0) + int(t.get("reward", 0))
            if "job_finished" in notice:
                fin = notice["job_finished"]
                promised[fin["owner"]] = promised.get(fin["owner"], 0) + int(fin["refund"])
                leftover = {a: int(v) for a, v in fin.get("leftover", {}).items()}
                for a, v in leftover.items():
                    promised[a] = promised.get(a, 0) + v
                if leftover:
                    # in wei when it is rounding dust (every round could afford its value at
                    # the price, so each paid its whole budget)
                    amount = (lambda v: f"{v / ETHER:.6f} ETH" if v >= 10**12 else f"{v} wei")
                    how = ("tops the earners up to their share of the value created over the "
                           "whole job" if fin.get("leftover_by") == "value" else
                           "goes to the earners pro rata to what they earned")
                    console.print(
                        f"job finished: the {amount(sum(leftover.values()))} the rounds did not "
                        f"spend {how}: "
                        + ", ".join(f"{names[a].name if a in names else a} {amount(v)}"
                                    for a, v in sorted(leftover.items(), key=lambda kv: -kv[1])))

        # ---- withdrawals, claim, vouchers, balances -------------------------------------------
        promised = {k: v for k, v in promised.items() if v}
        with console.status("every account withdraws its balance..."):
            for addr in promised:
                o.withdraw_all(base.with_signer(names[addr].signer))
        notes = base.node.notices("withdrawal")
        noticed = {}
        for n in notes:
            noticed[n.data["account"]] = noticed.get(n.data["account"], 0) + int(n.data["amount"])
        before = {addr: base.chain.balance(addr) for addr in promised}
        console.print(f"{len(notes)} withdrawal vouchers emitted; mining past the epoch's end so "
                      f"the node claims it on the Authority...")
        with console.status("waiting for the node to claim the epoch..."):
            base.chain.mine(EPOCH_LENGTH + 1)
            vs = _wait(lambda: (lambda v: v if v and all(x.proof_ready for x in v) else None)(
                base.node.vouchers()), 120, "voucher proofs (the epoch's claim)", procs)
        console.print(f"epoch claimed: {len(vs)} vouchers provable; a third account executes "
                      f"each on the Application with its proof (and pays the gas)")
        with console.status(f"executing {len(vs)} vouchers (executor pays the gas)..."):
            for v in vs:
                receipt = execute_output(base.chain.w3, base.chain.app,
                                         ProvableOutput.from_rpc(v.raw), executor.private_key)
                who = names.get(v.beneficiary())
                console.print(f"  voucher {v.index} ({v.value / ETHER:.6f} ETH to "
                              f"{who.name if who else v.beneficiary()}): executed in block "
                              f"{receipt['blockNumber']}")
        after = {addr: base.chain.balance(addr) for addr in promised}

        t = Table(title="money: what the notices promised vs what arrived on chain")
        for col in ("account", "role", "promised by notices (wei)", "withdrawal notice (wei)",
                    "on-chain change (wei)", "match"):
            t.add_column(col, justify="left" if col in ("account", "role") else "right")
        ok = True
        # everyone who played is listed, attackers too: they were promised 0 and got 0
        everyone = dict(promised)
        for a in actors:
            everyone.setdefault(a.signer.address.lower(), 0)
        for addr in everyone:
            if addr not in after:
                before[addr] = after[addr] = base.chain.balance(addr)
        for addr, want in sorted(everyone.items(), key=lambda kv: -kv[1]):
            got = after[addr] - before[addr]
            match = want == got == noticed.get(addr, 0)
            ok &= match
            a = names[addr]
            t.add_row(a.name, a.role, str(want), str(noticed.get(addr, 0)), str(got),
                      "[green]yes[/]" if match else "[red]NO[/]")
        total = sum(promised.values())
        t.add_row("total", "", str(total), str(sum(noticed.values())),
                  str(sum(after[a] - before[a] for a in everyone)), "")
        console.print(t)
        if total != REWARD:
            console.print(f"[red]paid out {total} wei, the deposit was {REWARD}[/]")
            ok = False
        elapsed = time.monotonic() - t_start
        console.print(f"rounds took {', '.join(f'{x:.1f}' for x in round_times)} s; whole demo "
                      f"{elapsed:.0f} s. " + ("[bold green]every wei accounted for[/]" if ok
                                             else "[bold red]MISMATCH[/]"))
        (state / "summary.json").write_text(json.dumps(
            {"ok": ok, "elapsed_s": elapsed, "round_s": round_times, "job": job.job,
             "promised": {k: str(v) for k, v in promised.items()}}, indent=1))
        return 0 if ok else 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping the node and the devnet[/]")
        return 130
    except Exception as exc:
        console.print(f"[bold red]demo failed:[/] {type(exc).__name__}: {exc}")
        console.print(f"logs: {state / 'logs'}")
        return 1
    finally:
        procs.stop()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
