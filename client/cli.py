"""`tributary`: the command line of owners, trainers and anyone, grouped by role.

Every command prints for humans by default and one JSON document with `--json`. User errors
(no node, unknown job, not enough funds, a store that does not answer, bytes that do not match
their id, a refused input) end with one line saying what went wrong and what to do, and exit 1;
no traceback. Keys come from `--keystore FILE` (password in $TRIBUTARY_KEYSTORE_PASSWORD) or
$TRIBUTARY_PRIVATE_KEY, never from the command line.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from client.uploads import UploadResult
from client.uploads import describe as describe_uploads
from client.config import ConfigError, Context, resolve

ETHER = 10**18
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


class UserError(Exception):
    """Raised by commands for a mistake the user can fix; printed without a traceback."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from client.chain import ClientChainError
    from client.data import DataError
    from client.keys import KeyError_
    from client.node_api import NodeError
    from client.owner import OwnerError
    from client.storage.errors import StorageError
    from client.trainer import TrainerError
    from client.training import TrainingError
    from dapp.content.errors import ContentError
    from dapp.market.spec import SpecError
    from dapp.ml.errors import MLError
    from rollup.chain import ChainError
    from rollup.vouchers import VoucherError

    return (UserError, ConfigError, ClientChainError, DataError, KeyError_, NodeError, OwnerError,
            StorageError, TrainerError, TrainingError, ContentError, SpecError, MLError,
            ChainError, VoucherError)


def _hint(exc: BaseException) -> str:
    from client.storage.errors import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        return " (is the IPFS daemon running? check --store)"
    return ""


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body; print its result (human or JSON); turn known errors into one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        obj: State = click.get_current_context().find_object(State)  # type: ignore[assignment]
        try:
            result = fn(obj, *args, **kwargs)
        except _known_errors() as exc:
            msg = f"{exc}{_hint(exc)}"
            if obj.json:
                click.echo(json.dumps({"ok": False, "error": type(exc).__name__, "message": msg}))
            else:
                err_console.print(f"[bold red]error:[/] {msg}", markup=True, soft_wrap=True)
            sys.exit(1)
        if result is None:
            return
        data, human = result if isinstance(result, tuple) else (result, None)
        if obj.json:
            click.echo(json.dumps(data, indent=1, default=str))
        elif human is not None:
            human()
        else:
            console.print_json(json.dumps(data, default=str))

    return wrapper


class State:
    def __init__(self, **opts: Any) -> None:
        self.json: bool = opts.pop("json_out")
        self.keystore = opts.pop("keystore")
        self.opts = opts
        self._ctx: Context | None = None

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = Context(resolve(**self.opts), self.keystore)
        return self._ctx


def parse_amount(text: str) -> int:
    """'1.5eth', '2 ether', '1000wei', '3gwei' or a bare integer of wei."""
    t = text.strip().lower().replace(" ", "")
    units = {"ether": ETHER, "eth": ETHER, "gwei": 10**9, "wei": 1}
    for name, mult in units.items():
        if t.endswith(name):
            t, m = t[: -len(name)], mult
            break
    else:
        m = 1
    try:
        value = Decimal(t) * m
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not an amount (try 1eth, 0.5ether, 1000wei)") from None
    if value != value.to_integral_value() or value < 0:
        raise click.BadParameter(f"{text!r} is not a whole, non-negative number of wei")
    return int(value)


def fmt_wei(v: int | str) -> str:
    v = int(v)
    return f"{Decimal(v) / ETHER:.6f} ETH" if v >= 10**12 else f"{v} wei"


def _describe_json(uploads: list[dict[str, Any]]) -> str:
    """describe_uploads for uploads as their to_json() dicts (what the library steps return)."""
    return describe_uploads([UploadResult(**u) for u in uploads])


def fmt_frac(s: str | None) -> str:
    if not s:
        return "-"
    n, _, d = s.partition("/")
    return f"{int(n) / int(d or 1):+.2f}"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--node", default=None, metavar="URL",
              help="node API (JSON-RPC at /rpc, inspect at /inspect/<app>); default: the devnet's")
@click.option("--rpc-url", default=None, metavar="URL", help="Ethereum JSON-RPC of the base layer")
@click.option("--deployment", default=None, metavar="FILE",
              help="deployment JSON (default .run/devnet/deployment.json)")
@click.option("--store", default=None, metavar="SPEC",
              help="content store: a directory (default .run/content) or ipfs:/ip4/127.0.0.1/tcp/5001/http")
@click.option("--home", default=None, metavar="DIR",
              help="local client state: salts and shard secrets (default .run/client)")
@click.option("--keystore", default=None, metavar="FILE",
              help="encrypted keystore; password in $TRIBUTARY_KEYSTORE_PASSWORD "
                   "(else the key comes from $TRIBUTARY_PRIVATE_KEY)")
@click.option("--json", "json_out", is_flag=True, help="print one JSON document instead of tables")
@click.pass_context
def main(ctx: click.Context, **opts: Any) -> None:
    """Tributary: a federated-learning data market on Cartesi Rollups.

    \b
    Owners post a job and pay for contributions:
      tributary owner create-job --spec spec.json --shard r0.npz ... --reward 1eth
      tributary owner reveal-validation --job 1      (after each round's commit window)
      tributary owner status --job 1
      tributary owner model --job 1 --out model.safetensors --torch model-float.safetensors
    Trainers train on their own data, which never leaves their machine:
      tributary trainer jobs
      tributary trainer run --job 1 --data mydata.npz
      tributary trainer withdraw
    Anyone:
      tributary close-round --job 1
      tributary vouchers --execute
      tributary verify
    On a devnet, block time moves with `tributary dev advance-time SECONDS`.
    """
    ctx.obj = State(**opts)


# ------------------------------------------------------------------------------- owner

@main.group()
def owner() -> None:
    """Post jobs, reveal validation shards, follow rounds, take the model, get refunds."""


@owner.command("spec-template")
@command
def spec_template(st: State) -> Any:
    """Print the demo's job spec template (a digits CNN): edit it and pass it to create-job.

    The template has no `initial_model`, `rounds` or `validation`: create-job fills them in
    from --model and the --shard files."""
    from client.jobs import DIGITS_CNN, build_spec

    spec = build_spec(name="digits-cnn", arch=DIGITS_CNN, initial_model_cid="", shards=[])
    for k in ("initial_model", "validation", "rounds"):
        spec.pop(k)
    return spec, lambda: click.echo(json.dumps(spec, indent=1))


@owner.command("create-job")
@click.option("--spec", "spec_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="job spec JSON (see `tributary owner spec-template`)")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              help="initial model, safetensors int32 fixed point; default: a deterministic "
                   "initial model drawn from the arch (no PyTorch needed)")
@click.option("--init-seed", default="tributary/initial", show_default=True,
              help="seed of the deterministic initial model")
@click.option("--shard", "shards", multiple=True, type=click.Path(exists=True),
              help="validation shard for one round (.npz with float x and int y, or a folder); "
                   "give one per round, in order")
@click.option("--demo-shards", type=click.IntRange(1, 10), default=None,
              help="instead of --shard: N rounds with held-out digits shards")
@click.option("--reward", required=True, help="reward to lock, e.g. 1eth, 0.5ether, 1000wei")
@click.option("--token", default=None, help="ERC-20 token address (default: ether)")
@command
def create_job(st: State, spec_path: str, model_path: str | None, init_seed: str,
               shards: tuple[str, ...], demo_shards: int | None, reward: str, token: str | None) -> Any:
    """Store the model, the shards and the spec; lock the reward through the portal.

    The deposit's execLayerData is createJob(spec_cid): the deposit is the job's escrow.
    Shard ids and salts are kept in --home until you reveal them, round by round."""
    from client import owner as o
    from client.jobs import deterministic_initial_model, load_shard_files
    from dapp.ml.arch import ArchSpec

    try:
        spec = json.loads(Path(spec_path).read_text())
    except ValueError as exc:
        raise UserError(f"{spec_path} is not JSON: {exc}") from None
    if "arch" not in spec:
        raise UserError(f"{spec_path} has no 'arch' section")
    arch = ArchSpec.from_dict(spec["arch"])
    if model_path:
        model_bytes = Path(model_path).read_bytes()
    else:
        model_bytes = deterministic_initial_model(arch, init_seed.encode())
    if demo_shards:
        from client.data import demo_split

        shard_data = demo_split(demo_shards).shards
    elif shards:
        shard_data = load_shard_files([Path(s) for s in shards], arch)
    else:
        raise UserError("give one --shard file per round (or --demo-shards N)")
    amount = parse_amount(reward)
    with err_console.status("storing, depositing, waiting for the node..."):
        job = o.create_job(st.ctx, spec, model_bytes, shard_data, amount, token)
    data = {"job": job.job, "spec_cid": job.spec_cid, "model_cid": job.model_cid,
            "budget": str(job.budget), "rounds": job.notice["rounds"], "input": job.input_index,
            "uploads": [u.to_json() for u in job.uploads]}
    posted = f"  content through inputs: {describe_uploads(job.uploads)}\n" if job.uploads else ""
    return data, lambda: console.print(
        f"job [bold]{job.job}[/] opened: {job.notice['rounds']} rounds, budget "
        f"{fmt_wei(job.budget)}\n  spec  {job.spec_cid}\n  model {job.model_cid}\n{posted}"
        f"next: trainers `tributary trainer run --job {job.job} --data FILE`; after the commit "
        f"window, `tributary owner reveal-validation --job {job.job}`")


@owner.command("reveal-validation")
@click.option("--job", type=int, required=True)
@click.option("--round", "round_", type=int, default=None, help="default: the current round")
@command
def reveal_validation(st: State, job: int, round_: int | None) -> Any:
    """Reveal a round's validation shard (allowed once its commit window has closed)."""
    from client import owner as o

    res = o.reveal_validation(st.ctx, job, round_)
    posted = ("\n  content through inputs: " + _describe_json(res["uploads"])
              if res["uploads"] else "")
    return res, lambda: console.print(f"round {res['round']} shard revealed: {res['shard_cid']}"
                                      + posted)


def _rounds_table(status: dict[str, Any]) -> None:
    for r in status["rounds"]:
        acc = r["accuracy"]
        acc_s = f"{acc['correct']}/{acc['total']} = {acc['correct'] / acc['total']:.1%}" if acc else "n/a (no shard)"
        t = Table(title=f"job {status['job']} round {r['round']}: accuracy {acc_s}, paid "
                        f"{fmt_wei(r['paid'])}, carried {fmt_wei(r['carried'])}")
        for col in ("trainer", "verdict", "contribution", "reward", "reason"):
            t.add_column(col)
        for tr in r["trainers"]:
            t.add_row(tr["address"], tr["verdict"], fmt_frac(tr.get("contribution")),
                      fmt_wei(tr.get("reward", 0)), (tr.get("reason") or "")[:60])
        console.print(t)


@owner.command("status")
@click.option("--job", type=int, required=True)
@command
def status(st: State, job: int) -> Any:
    """Rounds, accuracy, contributions, verdicts and rewards, read from the notices."""
    from client import owner as o

    s = o.status(st.ctx, job)

    def human() -> None:
        console.print(f"job {job}: {s['status']}, owner {s['owner']}, budget {fmt_wei(s['budget'])}, "
                      f"escrow left {fmt_wei(s['escrow'])}, current round {s['current_round']}, "
                      f"{len(s['trainers'])} trainers")
        _rounds_table(s)

    return s, human


@owner.command("model")
@click.option("--job", type=int, required=True)
@click.option("--round", "round_", type=int, default=None, help="default: the latest closed round")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="where to write the model (safetensors int32, the market's format)")
@click.option("--torch", "torch_out", type=click.Path(dir_okay=False), default=None,
              help="also write a PyTorch float32 state_dict (safetensors)")
@command
def model(st: State, job: int, round_: int | None, out: str, torch_out: str | None) -> Any:
    """Download the global model from the reports, verify it against the notice's hash."""
    from client import owner as o

    data, meta = o.global_model(st.ctx, job, round_)
    Path(out).write_bytes(data)
    if torch_out:
        arch, _ = o.job_arch(st.ctx, job)
        o.export_torch(data, arch, Path(torch_out))
    res = dict(meta, out=out, torch=torch_out, bytes=len(data), verified=True)
    return res, lambda: console.print(
        f"model of job {job} after round {meta['round']} ({len(data)} bytes, hash "
        f"{meta['model_hash']} verified) -> {out}" + (f", PyTorch -> {torch_out}" if torch_out else ""))


@owner.command("refund")
@click.option("--token", default=None, help="ERC-20 token (default: ether)")
@command
def refund(st: State, token: str | None) -> Any:
    """Withdraw the owner's in-app balance (unspent budget, refused deposits) as a voucher."""
    from client import owner as o
    from dapp.market.protocol import ETH

    res = o.withdraw_all(st.ctx, (token or ETH).lower())
    return res, lambda: console.print(
        f"voucher for {fmt_wei(res['amount'])} requested; execute it with `tributary vouchers "
        f"--execute` once its epoch is claimed")


# ------------------------------------------------------------------------------- trainer

@main.group()
def trainer() -> None:
    """Find jobs, join, train and submit each round, collect rewards."""


@trainer.command("jobs")
@command
def jobs(st: State) -> Any:
    """Job listings (inspect `jobs`)."""
    from client import trainer as tr

    items = tr.list_jobs(st.ctx)

    def human() -> None:
        t = Table(title="jobs")
        for c in ("job", "status", "round", "budget", "owner", "spec"):
            t.add_column(c)
        for j in items:
            t.add_row(str(j["job"]), j["status"], str(j["round"]), fmt_wei(j["budget"]), j["owner"],
                      j["spec_cid"])
        console.print(t)

    return items, human


@trainer.command("join")
@click.option("--job", type=int, required=True)
@command
def join(st: State, job: int) -> Any:
    """Join a job (once)."""
    from client import trainer as tr

    res = tr.join(st.ctx, job)
    return res, lambda: console.print(f"joined job {job}")


@trainer.command("run")
@click.option("--job", type=int, required=True)
@click.option("--data", "data_path", required=True, type=click.Path(exists=True),
              help=".npz with float32 x [N, *input_shape] and int y [N], or a folder with x.npy, y.npy")
@click.option("--rounds", type=int, default=None, help="stop after revealing in this many rounds")
@click.option("--dp-clip", type=float, default=None, help="local DP: per-sample gradient L2 clip")
@click.option("--dp-noise", type=float, default=None, help="local DP: noise multiplier sigma")
@click.option("--dp-delta", type=float, default=1e-5, show_default=True)
@click.option("--poll", type=float, default=1.0, show_default=True, help="seconds between checks")
@click.option("--timeout", type=float, default=None, help="give up after this many seconds")
@click.option("--seed", type=int, default=0, help="training seed")
@command
def run(st: State, job: int, data_path: str, rounds: int | None, dp_clip: float | None,
        dp_noise: float | None, dp_delta: float, poll: float, timeout: float | None, seed: int) -> Any:
    """Follow a job: each round fetch the global model, train on your data, quantize, store
    the model and data card, commit, then reveal in the reveal window; until the job ends."""
    from client import trainer as tr
    from client.data import load_trainer_data
    from client.training import DPConfig
    from dapp.ml.arch import ArchSpec

    info = tr.job_info(st.ctx, job)
    spec = tr.job_spec(st.ctx, info)
    x, y = load_trainer_data(data_path, ArchSpec.from_dict(spec["arch"]))
    dp = None
    if (dp_clip is None) != (dp_noise is None):
        raise UserError("local DP needs both --dp-clip and --dp-noise")
    if dp_clip is not None and dp_noise is not None:
        dp = DPConfig(dp_clip, dp_noise, dp_delta)
    events: list[dict[str, Any]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        events.append({"event": kind, **data})
        if st.json:
            return
        if kind == "trained":
            err_console.print(f"round {data['round']}: fetched in {data['fetch']:.2f} s, trained in "
                              f"{data['train']:.2f} s, stored in {data['store']:.2f} s")
        elif kind == "committed":
            err_console.print(f"round {data['round']}: committed (input {data['input']})")
        elif kind == "revealed":
            msg = "accepted" if data["accepted"] else f"REFUSED: {data.get('reason')}"
            if data.get("uploads"):
                msg += "; content through inputs: " + _describe_json(data["uploads"])
            err_console.print(f"round {data['round']}: revealed, {msg}")
        elif kind == "join":
            err_console.print(f"joined job {job}")
        elif kind == "finished":
            err_console.print(f"job {job} is {data['status']}")

    with err_console.status(f"following job {job} (Ctrl-C to stop; state is saved)"):
        n = tr.follow(st.ctx, job, x, y, tr.Behaviour(dp=dp, seed=seed), max_rounds=rounds,
                      poll=poll, timeout=timeout, on_event=on_event)
    return {"job": job, "rounds_revealed": n, "events": events}, \
        lambda: console.print(f"done: revealed in {n} round(s) of job {job}")


def _balance(st: State, address: str | None) -> Any:
    from client import owner as o

    b = o.balance(st.ctx, address)
    onchain = st.ctx.chain.balance(b["account"])
    data = dict(b, onchain_wei=str(onchain))
    return data, lambda: console.print(
        f"{b['account']}: in-app " + (", ".join(f"{fmt_wei(v)} ({t})" for t, v in b["balances"].items())
                                      or "nothing") + f"; on chain {fmt_wei(onchain)}")


@trainer.command("balance")
@click.option("--address", default=None, help="default: your own")
@command
def trainer_balance(st: State, address: str | None) -> Any:
    """In-app balance (rewards not yet withdrawn) and on-chain ether balance."""
    return _balance(st, address)


@trainer.command("withdraw")
@click.option("--amount", default=None, help="default: the whole balance")
@click.option("--token", default=None, help="ERC-20 token (default: ether)")
@command
def withdraw(st: State, amount: str | None, token: str | None) -> Any:
    """Turn in-app balance into a voucher (then `tributary vouchers --execute`)."""
    from client import owner as o
    from dapp.market.protocol import ETH

    tok = (token or ETH).lower()
    res = o.withdraw(st.ctx, parse_amount(amount), tok) if amount else o.withdraw_all(st.ctx, tok)
    return res, lambda: console.print(f"voucher for {fmt_wei(res['amount'])} requested")


# ------------------------------------------------------------------------------- anyone

@main.command("close-round")
@click.option("--job", type=int, required=True)
@click.option("--round", "round_", type=int, default=None, help="default: the current round")
@command
def close_round(st: State, job: int, round_: int | None) -> Any:
    """Close a round once its reveal window (and the owner's validation window) has passed."""
    from client import trainer as tr

    res = tr.close_round(st.ctx, job, round_)

    def human() -> None:
        n = res["notice"]
        acc = n.get("accuracy") if n else None
        console.print(f"round {res['round']} of job {job} closed; accuracy "
                      + (f"{acc['correct']}/{acc['total']}" if acc else "n/a"))

    return res, human


@main.command("vouchers")
@click.option("--execute", is_flag=True, help="execute every ready voucher that pays you")
@click.option("--all", "all_", is_flag=True, help="list every voucher, not only yours")
@click.option("--wait", type=float, default=0.0, help="wait up to this many seconds for proofs")
@command
def vouchers(st: State, execute: bool, all_: bool, wait: float) -> Any:
    """List your vouchers (ready once their epoch is claimed) and execute them with proofs."""
    from rollup.vouchers import OutputNotReexecutable, ProvableOutput, execute_output, was_output_executed

    ctx = st.ctx
    me = None if all_ else ctx.signer.address.lower()
    deadline = time.monotonic() + wait
    while True:
        vs = ctx.node.vouchers(me)
        if all(v.proof_ready for v in vs) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    rows = []
    for v in vs:
        executed = was_output_executed(ctx.chain.w3, ctx.chain.app, v.index)
        row = {"index": v.index, "to": v.beneficiary(), "amount": str(v.amount()),
               "destination": v.destination, "proof_ready": v.proof_ready, "executed": executed}
        if execute and not executed and v.proof_ready and (all_ or v.beneficiary() == me):
            try:
                rcpt = execute_output(ctx.chain.w3, ctx.chain.app, ProvableOutput.from_rpc(v.raw),
                                      ctx.signer.private_key)
                row.update(executed=True, tx="0x" + bytes(rcpt["transactionHash"]).hex())
            except OutputNotReexecutable:
                row["executed"] = True
        rows.append(row)

    def human() -> None:
        t = Table(title="vouchers")
        for c in ("index", "pays", "amount", "proof", "executed"):
            t.add_column(c)
        for r in rows:
            t.add_row(str(r["index"]), r["to"], fmt_wei(r["amount"]),
                      "ready" if r["proof_ready"] else "waiting for claim", "yes" if r["executed"] else "no")
        console.print(t)

    return rows, human


@main.command("verify")
@click.option("--timeout", type=float, default=600.0, show_default=True)
@command
def verify(st: State, timeout: float) -> Any:
    """Replay every input through a fresh backend and check each claimed outputs root
    (runs `python -m rollup verify`, serving content from --store)."""
    cfg = st.ctx.cfg
    cmd = [sys.executable, "-m", "rollup", "verify", "--rpc-url", cfg.require_rpc(),
           "--app", cfg.require_app(), "--backend", f"{sys.executable} -m dapp",
           "--timeout", str(timeout)]
    spec = cfg.store_spec
    cmd += (["--ipfs-api", spec[len("ipfs:"):]] if spec.startswith("ipfs:")
            else ["--content-store", spec])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise UserError(f"verify failed (exit {proc.returncode}): {out[-2000:]}")
    return {"ok": True, "output": out}, lambda: console.print(out)


# ------------------------------------------------------------------------------- keys, dev

@main.group()
def keys() -> None:
    """Create a keystore; show the address of the configured key."""


@keys.command("new")
@click.argument("path", type=click.Path(dir_okay=False))
@command
def keys_new(st: State, path: str) -> Any:
    """Create an account in an encrypted keystore (password from $TRIBUTARY_KEYSTORE_PASSWORD)."""
    from client.keys import PASSWORD_ENV, new_keystore

    pw = os.environ.get(PASSWORD_ENV)
    if not pw:
        raise UserError(f"set ${PASSWORD_ENV} to the password for the new keystore")
    addr = new_keystore(Path(path), pw)
    return {"address": addr, "keystore": path}, lambda: console.print(f"{addr} -> {path}")


@keys.command("address")
@command
def keys_address(st: State) -> Any:
    """The address the client signs as."""
    a = st.ctx.signer.address
    return {"address": a}, lambda: console.print(a)


@main.group()
def dev() -> None:
    """DEVNET ONLY (anvil): move block time, mine blocks, fund accounts."""


@dev.command("advance-time")
@click.argument("seconds", type=click.IntRange(min=0))
@command
def advance_time(st: State, seconds: int) -> Any:
    """DEVNET ONLY: evm_increaseTime SECONDS + evm_mine (the market's windows use block time)."""
    ts = st.ctx.chain.advance_time(seconds)
    return {"block_timestamp": ts}, lambda: console.print(f"block time is now {ts}")


@dev.command("mine")
@click.argument("blocks", type=click.IntRange(min=1), default=1)
@command
def mine(st: State, blocks: int) -> Any:
    """DEVNET ONLY: mine BLOCKS empty blocks (e.g. to end an epoch so the node claims it)."""
    st.ctx.chain.mine(blocks)
    n = st.ctx.chain.block_number()
    return {"block_number": n}, lambda: console.print(f"block {n}")


@dev.command("fund")
@click.argument("address")
@click.argument("amount")
@command
def fund(st: State, address: str, amount: str) -> Any:
    """DEVNET ONLY: set ADDRESS's ether balance to AMOUNT (anvil_setBalance)."""
    wei = parse_amount(amount)
    st.ctx.chain.set_balance(address, wei)
    return {"address": address, "balance": str(wei)}, lambda: console.print(f"{address}: {fmt_wei(wei)}")


@main.command("demo")
@click.option("--state-dir", default=".run/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1, 10))
def demo_cmd(state_dir: str, rounds: int) -> None:
    """The whole market on one machine: devnet, node, an owner, 8 honest trainers, 2 attackers
    and a free rider; 5 rounds; then every voucher executed and every balance checked."""
    from client.demo import run_demo

    sys.exit(run_demo(Path(state_dir), rounds=rounds))


if __name__ == "__main__":
    main()
