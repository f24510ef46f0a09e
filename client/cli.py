"""`tributary`: the command line of owners, trainers and anyone, grouped by role.

Every command prints for humans by default and one JSON document with `--json`. User errors
(no node, unknown job, not enough funds, a store that does not answer, bytes that do not match
their id, a refused input) end with one line saying what went wrong and what to do, and exit 1;
no traceback. Keys come from `--keystore FILE` (password in $TRIBUTARY_KEYSTORE_PASSWORD) or
$TRIBUTARY_PRIVATE_KEY, never from the command line.

Paid steps check first (client/preflight.py): the node answers and has processed every input on
chain, the round's window is open (else "too early ... at 16:02:11 UTC (in 4 min)" and, on a
devnet, the `tributary dev advance-time N` that gets there), the account can pay value + gas, a
withdrawal is within the balance; nothing is sent when a check fails. A failure after a payment
says where the money is and which command gets it back. Amounts print in ETH (the zero address
is ETH) and stay in wei in --json; amount options need a unit (1eth, 5gwei, 7wei). `--json` and
`--wide` (no wrapping of addresses and CIDs) are accepted anywhere on the line.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from decimal import Decimal, InvalidOperation, localcontext
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
    from client.model_import import ImportError_
    from client.owner import OwnerError
    from client.preflight import PreflightError
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
            ChainError, VoucherError, PreflightError, ImportError_)


def _hint(exc: BaseException, st: "State | None" = None) -> str:
    from client.node_api import NodeUnavailable
    from client.storage.errors import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        return " (is the IPFS daemon running? check --store)"
    if isinstance(exc, NodeUnavailable) and st is not None and st._ctx is not None \
            and st._ctx.cfg.deployment_path is None:
        from client.config import default_deployment

        return (f" (and no deployment at {default_deployment()}: start a devnet, set "
                f"$TRIBUTARY_HOME to the folder holding devnet/deployment.json, or pass "
                f"--deployment FILE)")
    return ""


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body; print its result (human or JSON); turn known errors into one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        obj: State = click.get_current_context().find_object(State)  # type: ignore[assignment]
        try:
            result = fn(obj, *args, **kwargs)
        except _known_errors() as exc:
            msg = f"{exc}{_hint(exc, obj)}"
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
        self.wide: bool = opts.pop("wide")
        self.keystore = opts.pop("keystore")
        if self.wide:  # full identifiers on one line, whatever the terminal's width
            console.width = err_console.width = 1000
        self.opts = opts
        self._ctx: Context | None = None

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = Context(resolve(**self.opts), self.keystore)
        return self._ctx


def parse_amount(text: str, require_unit: bool = False) -> int:
    """'1.5eth', '2 ether', '1000wei', '3gwei' or a bare integer of wei.

    The CLI's amount options pass `require_unit=True`: a bare `--reward 1` used to lock 1 wei
    where the user meant 1 ETH, so a number without a unit is refused as ambiguous there."""
    t = text.strip().lower().replace(" ", "")
    units = {"ether": ETHER, "eth": ETHER, "gwei": 10**9, "wei": 1}
    for name, mult in units.items():
        if t.endswith(name):
            t, m = t[: -len(name)], mult
            break
    else:
        m = 1
        if require_unit:
            raise click.BadParameter(f"{text!r} has no unit: write {text.strip()}eth, "
                                     f"{text.strip()}gwei or {text.strip()}wei")
    try:
        with localcontext() as ctx:  # exact to 100 digits (uint256 has 78); no 1e999999 ints
            ctx.prec = 100
            value = Decimal(t) * m
        if not value.is_finite():
            raise InvalidOperation
    except ArithmeticError:  # InvalidOperation, or an exponent past Decimal's range
        raise click.BadParameter(f"{text!r} is not an amount (try 1eth, 0.5ether, 1000wei)") from None
    if value >= 2**256:
        raise click.BadParameter(f"{text!r} is more than a uint256 holds")
    if value != value.to_integral_value() or value < 0:
        raise click.BadParameter(f"{text!r} is not a whole, non-negative number of wei")
    return int(value)


def fmt_wei(v: int | str, token: str | None = None) -> str:
    """An amount for people: ETH with every significant digit (wei stay exact in --json)."""
    from client.preflight import fmt_amount

    return fmt_amount(v, token)


def amount_option(text: str | None) -> int | None:
    """Click callback body for amount options: units required (1eth, 0.5ether, 1000gwei, 7wei)."""
    return None if text is None else parse_amount(text, require_unit=True)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A table that never cuts an address or a CID: long cells wrap (fold) unless --wide."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


class TributaryGroup(click.Group):
    """The top-level group: `--json` and `--wide` are accepted anywhere on the line (before or
    after the subcommand), since users add them at the end."""

    FLAGS = ("--json", "--wide")

    def main(self, args: Any = None, *a: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        cut = argv.index("--") if "--" in argv else len(argv)
        flags = [x for x in argv[:cut] if x in self.FLAGS]
        rest = [x for x in argv[:cut] if x not in self.FLAGS] + argv[cut:]
        return super().main(list(dict.fromkeys(flags)) + rest, *a, **kw)


def _describe_json(uploads: list[dict[str, Any]]) -> str:
    """describe_uploads for uploads as their to_json() dicts (what the library steps return)."""
    return describe_uploads([UploadResult(**u) for u in uploads])


def _plan(st: "State", text: str) -> None:
    """Say what a paid command is about to do (stderr; silent with --json)."""
    if not st.json:
        err_console.print(text, soft_wrap=True, style="dim")


def fmt_frac(s: str | None) -> str:
    if not s:
        return "-"
    n, _, d = s.partition("/")
    return f"{int(n) / int(d or 1):+.2f}"


@click.group(cls=TributaryGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--node", default=None, metavar="URL",
              help="node API (JSON-RPC at /rpc, inspect at /inspect/<app>); default: the devnet's")
@click.option("--rpc-url", default=None, metavar="URL", help="Ethereum JSON-RPC of the base layer")
@click.option("--deployment", default=None, metavar="FILE",
              help="deployment JSON (default $TRIBUTARY_HOME/devnet/deployment.json; "
                   "home: $TRIBUTARY_HOME, else ./.run if it holds a devnet, else ~/.tributary)")
@click.option("--store", default=None, metavar="SPEC",
              help="content store: a directory (default <home>/content) or ipfs:/ip4/127.0.0.1/tcp/5001/http")
@click.option("--home", default=None, metavar="DIR",
              help="local client state: salts and shard secrets (default <home>/client)")
@click.option("--keystore", default=None, metavar="FILE",
              help="encrypted keystore; password in $TRIBUTARY_KEYSTORE_PASSWORD "
                   "(else the key comes from $TRIBUTARY_PRIVATE_KEY)")
@click.option("--json", "json_out", is_flag=True,
              help="print one JSON document instead of tables (amounts in wei); anywhere on the line")
@click.option("--wide", is_flag=True, help="never wrap tables: full addresses and CIDs on one line")
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
@click.option("--reward", required=True,
              help="reward to lock, with its unit: 1eth, 0.5ether, 2000gwei, 1000wei")
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
    try:
        amount = parse_amount(reward, require_unit=True)
    except click.BadParameter as exc:
        raise UserError(f"--reward: {exc.message}") from None
    if not st.json:
        err_console.print(f"will store the model, {len(shard_data)} validation shard(s) and the "
                          f"spec, check the node and your funds, then deposit "
                          f"{fmt_wei(amount, token)} as the job's escrow ({len(shard_data)} rounds)")
    with err_console.status("storing the model, the shards and the spec...") as status_:
        job = o.create_job(st.ctx, spec, model_bytes, shard_data, amount, token,
                           on_step=lambda m: status_.update(m + "..."))
    data = {"job": job.job, "spec_cid": job.spec_cid, "model_cid": job.model_cid,
            "budget": str(job.budget), "rounds": job.notice["rounds"], "input": job.input_index,
            "uploads": [u.to_json() for u in job.uploads]}
    posted = f"  content through inputs: {describe_uploads(job.uploads)}\n" if job.uploads else ""
    return data, lambda: console.print(
        f"job [bold]{job.job}[/] opened: {job.notice['rounds']} rounds, budget "
        f"{fmt_wei(job.budget, token)}\n  spec  {job.spec_cid}\n  model {job.model_cid}\n{posted}"
        f"next: trainers `tributary trainer run --job {job.job} --data FILE`; after the commit "
        f"window, `tributary owner reveal-validation --job {job.job}` "
        f"(`tributary owner phase --job {job.job}` says when)", soft_wrap=True)


@owner.command("reveal-validation")
@click.option("--job", type=int, required=True)
@click.option("--round", "round_", type=int, default=None, help="default: the current round")
@command
def reveal_validation(st: State, job: int, round_: int | None) -> Any:
    """Reveal a round's validation shard (allowed once its commit window has closed)."""
    from client import owner as o

    _plan(st, f"will check the round's validation window, then send the shard id and salt of "
              f"{'the current round' if round_ is None else f'round {round_}'} of job {job} (one input)")
    res = o.reveal_validation(st.ctx, job, round_)
    posted = ("\n  content through inputs: " + _describe_json(res["uploads"])
              if res["uploads"] else "")
    return res, lambda: console.print(f"round {res['round']} shard revealed: {res['shard_cid']}"
                                      + posted, soft_wrap=True)


@owner.command("phase")
@click.option("--job", type=int, required=True)
@command
def phase_cmd(st: State, job: int) -> Any:
    """Where the job's current round stands, with its deadlines (local time and time left)."""
    return _phase(st, job)


@owner.command("recover")
@command
def recover(st: State) -> Any:
    """Record jobs whose creation this client did not see finish (killed, node down): each
    pending-<spec>.json in --home is matched to the job opened with that spec, so that
    reveal-validation finds its secrets; a refused deposit is pointed to `owner refund`."""
    from client import owner as o

    res = o.recover_pending(st.ctx)

    def human() -> None:
        if not res:
            console.print(f"nothing pending in {st.ctx.cfg.home / 'owner'}")
        for e in res:
            console.print(f"spec {e['spec_cid']}: " + (f"job {e['job']} recovered (secrets saved)"
                                                       if e["state"] == "recovered" else e["state"]),
                          soft_wrap=True)

    return res, human


@owner.command("cancel-job")
@click.option("--job", type=int, required=True)
@command
def cancel_job(st: State, job: int) -> Any:
    """Cancel a job before its first round starts: its whole escrow returns to your in-app
    balance (then `tributary owner refund`). Checked locally first: a job already running
    cannot be cancelled, and nothing is sent."""
    from client import owner as o

    _plan(st, f"will check that job {job} is yours and has not started, then send cancelJob "
              f"(one input)")
    res = o.cancel_job(st.ctx, job)
    return res, lambda: console.print(
        f"job {job} cancelled; {fmt_wei(res['refund'], res['token'])} credited to your in-app "
        f"balance: withdraw it with `tributary owner refund`")


def _rounds_table(status: dict[str, Any]) -> None:
    from dapp.canonical import parse_fraction

    for r in status["rounds"]:
        acc = r["accuracy"]
        acc_s = f"{acc['correct']}/{acc['total']} = {acc['correct'] / acc['total']:.1%}" if acc else "n/a (no shard)"
        tok = status.get("token")
        price = ""
        if r.get("price"):
            price = f", price {float(parse_fraction(r['price'])):.4g} wei per unit of value"
            if r.get("advance"):
                price += f" (a round pays at most {r['advance']} of its budget before the job ends)"
        t = _table(f"job {status['job']} round {r['round']}: accuracy {acc_s}, paid "
                   f"{fmt_wei(r['paid'], tok)}, carried {fmt_wei(r['carried'], tok)}{price}",
                   ("trainer", "verdict", "contribution", "reward", "reason"))
        for tr in r["trainers"]:
            t.add_row(tr["address"], tr["verdict"], fmt_frac(tr.get("contribution")),
                      fmt_wei(tr.get("reward", 0), tok), tr.get("reason") or "")
        console.print(t)
        fin = r.get("job_finished")
        if fin:
            left = sum(int(v) for v in fin.get("leftover", {}).values())
            how = ("topped the earners up to their share of the value created over the whole "
                   "job" if fin.get("leftover_by") == "value" else
                   "went to the earners pro rata to what they earned")
            console.print(f"job finished: {fmt_wei(left, tok)} the rounds did not spend {how}; "
                          f"{fmt_wei(fin['refund'], tok)} back to the owner")


@owner.command("status")
@click.option("--job", type=int, required=True)
@command
def status(st: State, job: int) -> Any:
    """Rounds, accuracy, contributions, verdicts and rewards, read from the notices."""
    from client import owner as o

    s = o.status(st.ctx, job)

    def human() -> None:
        tok = s["token"]
        console.print(f"job {job}: {s['status']}, owner {s['owner']}, budget "
                      f"{fmt_wei(s['budget'], tok)}, escrow left {fmt_wei(s['escrow'], tok)}, "
                      f"current round {s['current_round']}, {len(s['trainers'])} trainers",
                      soft_wrap=True)
        if s["status"] == "open":
            console.print(_phase(st, job)[0]["text"], soft_wrap=True)
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

    tok = (token or ETH).lower()
    bal = o.balance(st.ctx)
    if int(bal["balances"].get(tok, "0")) == 0:
        pending = sorted((st.ctx.cfg.home / "owner").glob("pending-*.json")) \
            if (st.ctx.cfg.home / "owner").exists() else []
        raise UserError(
            f"{st.ctx.signer.address} has no in-app balance of {fmt_wei(0, tok).split()[-1]} to "
            f"refund. A deposit that opened a job is that job's escrow: it comes back when the "
            f"job ends (or `tributary owner cancel-job --job N` before its first round)"
            + (f"; {len(pending)} job creation(s) unfinished here: `tributary owner recover`"
               if pending else ""))
    res = o.withdraw_all(st.ctx, tok)
    return res, lambda: console.print(
        f"voucher for {fmt_wei(res['amount'], tok)} requested; execute it with `tributary "
        f"vouchers --execute` once its epoch is claimed" + _claim_hint(st))


# ------------------------------------------------------------------------------- trainer

@main.group()
def trainer() -> None:
    """Find jobs, join, train and submit each round, collect rewards."""


@trainer.command("jobs")
@click.option("--all", "everything", is_flag=True,
              help="Every job, finished and cancelled ones too (default: the open ones).")
@command
def jobs(st: State, everything: bool) -> Any:
    """The jobs you can join (inspect `jobs/open`, every page); --all lists every job."""
    from client import trainer as tr

    items = tr.list_jobs(st.ctx, everything=everything)

    def human() -> None:
        t = _table("jobs" if everything else "open jobs",
                   ("job", "status", "round", "budget", "owner", "spec"))
        for j in items:
            t.add_row(str(j["job"]), j["status"], str(j["round"]), fmt_wei(j["budget"], j.get("token")),
                      j["owner"], j["spec_cid"])
        console.print(t)

    return items, human


@trainer.command("join")
@click.option("--job", type=int, required=True)
@click.option("--relay", "relay_url", default=None, metavar="URL",
              help="sign the join (EIP-712) and hand it to this relayer, which pays the gas")
@command
def join(st: State, job: int, relay_url: str | None) -> Any:
    """Join a job (once)."""
    from client import trainer as tr

    st.ctx.relay_url = relay_url
    res = tr.join(st.ctx, job)
    return res, lambda: console.print(f"joined job {job}")


@trainer.command("run")
@click.option("--job", type=int, required=True)
@click.option("--data", "data_path", required=True, type=click.Path(exists=True),
              help="your data: .npz with x [N, *input_shape] and int y [N]; a folder with x.npy "
                   "and y.npy, or one subfolder of images per class; or a .csv (label column + "
                   "features). Floats in the model's units (pixels: divide by 255)")
@click.option("--rounds", type=int, default=None, help="stop after revealing in this many rounds")
@click.option("--dp-clip", type=float, default=None, help="local DP: per-sample gradient L2 clip")
@click.option("--dp-noise", type=float, default=None, help="local DP: noise multiplier sigma")
@click.option("--dp-delta", type=float, default=1e-5, show_default=True)
@click.option("--poll", type=float, default=1.0, show_default=True, help="seconds between checks")
@click.option("--timeout", type=float, default=None, help="give up after this many seconds")
@click.option("--seed", type=int, default=0, help="training seed")
@click.option("--relay", "relay_url", default=None, metavar="URL",
              help="sign commits and reveals (EIP-712) and hand them to this relayer "
                   "(`tributary relay`), which posts them in batches and pays the gas")
@command
def run(st: State, job: int, data_path: str, rounds: int | None, dp_clip: float | None,
        dp_noise: float | None, dp_delta: float, poll: float, timeout: float | None, seed: int,
        relay_url: str | None) -> Any:
    """Follow a job: each round fetch the global model, train on your data, quantize, store
    the model and data card, commit, then reveal in the reveal window; until the job ends.

    Shows each round's phase and deadline; safe to stop and rerun at any point (the update and
    its salt are saved before the commit is sent, and a rerun picks up where it stopped)."""
    from client import trainer as tr
    from client.data import load_trainer_data
    from client.training import DPConfig
    from dapp.ml.arch import ArchSpec

    st.ctx.relay_url = relay_url
    info = tr.job_info(st.ctx, job)
    if info["status"] != "open":  # a rerun after the end: say what this account got from it
        revealed = tr.revealed_rounds(st.ctx, job)
        contrib = tr.contributions(st.ctx, job)
        data0 = {"job": job, "status": info["status"], "rounds_revealed": 0,
                 "rounds_revealed_total": len(revealed), "revealed_rounds": revealed,
                 "contributions": contrib,
                 "reward_total": str(sum(int(c["reward"]) for c in contrib)), "events": []}

        def ended() -> None:
            console.print(f"job {job} is {info['status']}: nothing left to do; you revealed in "
                          f"{len(revealed)} round(s)")
            _contrib_table(job, contrib, info.get("token"))

        return data0, ended
    spec = tr.job_spec(st.ctx, info)
    notes: list[str] = []
    x, y = load_trainer_data(data_path, ArchSpec.from_dict(spec["arch"]), notes=notes)
    dp = None
    if (dp_clip is None) != (dp_noise is None):
        raise UserError("local DP needs both --dp-clip and --dp-noise")
    if dp_clip is not None and dp_noise is not None:
        dp = DPConfig(dp_clip, dp_noise, dp_delta)
    events: list[dict[str, Any]] = []
    devnet = None
    say = (lambda *a, **k: None) if st.json else err_console.print
    for n in notes:
        say(f"note: {n}", soft_wrap=True)
    say(f"{len(y)} samples from {data_path}; following job {job}")

    def on_event(kind: str, data: dict[str, Any]) -> None:
        nonlocal devnet
        events.append({"event": kind, **data})
        if kind == "phase":
            status_.update(data["text"] + " (Ctrl-C to stop; rerun resumes)")
            waiting = (data["phase"] == "waiting" or (data["phase"] == "commit" and data["committed"])
                       or (data["phase"] == "reveal" and data["revealed"]))
            hint = ""
            if waiting or data["phase"] in ("validation", "closable"):
                if devnet is None:
                    from client.preflight import is_devnet

                    devnet = is_devnet(st.ctx)
                if data["phase"] == "closable":
                    hint = f"; anyone can close it: `tributary close-round --job {job}`"
                elif devnet:
                    nxt = {"waiting": data["commit_opens"], "commit": data["commit_closes"],
                           "reveal": data["reveal_closes"],
                           "validation": data["validation_closes"]}[data["phase"]]
                    hint = (f"; devnet: `tributary dev advance-time "
                            f"{max(nxt - data['block_time'], 1)}` to get there now")
            from client.preflight import fmt_when

            text = data["text"]
            if data["phase"] == "commit" and data["committed"]:
                text = (f"round {data['round']}: committed; the reveal window opens at "
                        f"{fmt_when(data['commit_closes'], data['block_time'])}")
            elif data["phase"] == "reveal" and data["revealed"]:
                text = (f"round {data['round']}: revealed; the round can close after "
                        f"{fmt_when(data['reveal_closes'], data['block_time'])}")
            say(text + hint, soft_wrap=True)
        elif kind == "training":
            status_.update(f"round {data['round']}: fetching the global model, training on "
                           f"{data['samples']} samples, storing the update...")
        elif kind == "trained":
            say(f"round {data['round']}: fetched in {data['fetch']:.2f} s, trained in "
                f"{data['train']:.2f} s, stored in {data['store']:.2f} s")
        elif kind == "warning":
            say(f"round {data['round']}: {data['text']}", style="yellow")
        elif kind == "resumed":
            say(f"round {data['round']}: reusing the update saved by an earlier run")
        elif kind == "committed":
            say(f"round {data['round']}: committed (input {data['input']})")
        elif kind == "revealed":
            msg = "accepted" if data["accepted"] else f"REFUSED: {data.get('reason')}"
            if data.get("uploads"):
                msg += "; content through inputs: " + _describe_json(data["uploads"])
            say(f"round {data['round']}: revealed, {msg}")
        elif kind == "join":
            say(f"joined job {job}")
        elif kind == "finished":
            say(f"job {job} is {data['status']}")

    with err_console.status(f"following job {job} (Ctrl-C to stop; rerun resumes)") as status_:
        if st.json:
            status_.stop()
        n = tr.follow(st.ctx, job, x, y, tr.Behaviour(dp=dp, seed=seed), max_rounds=rounds,
                      poll=poll, timeout=timeout, on_event=on_event)
    revealed = tr.revealed_rounds(st.ctx, job)
    contrib = tr.contributions(st.ctx, job)
    total = sum(int(c["reward"]) for c in contrib)
    tok = info.get("token")
    data = {"job": job, "rounds_revealed": n, "rounds_revealed_total": len(revealed),
            "revealed_rounds": revealed, "contributions": contrib, "reward_total": str(total),
            "events": events}

    def human() -> None:
        console.print(f"done: revealed in {n} round(s) in this run, {len(revealed)} in all "
                      f"(rounds {', '.join(map(str, revealed)) or '-'}) of job {job}")
        _contrib_table(job, contrib, tok)

    return data, human


def _contrib_table(job: int, contrib: list[dict[str, Any]], token: str | None) -> None:
    if not contrib:
        console.print("no closed round names you yet")
        return
    t = _table(f"job {job}: your contribution and reward per closed round",
               ("round", "verdict", "contribution", "reward", "reason"))
    for c in contrib:
        t.add_row(str(c["round"]), c["verdict"], fmt_frac(c.get("contribution")),
                  fmt_wei(c["reward"], token), c.get("reason") or "")
    console.print(t)
    console.print(f"total reward: {fmt_wei(sum(int(c['reward']) for c in contrib), token)} "
                  f"(in your in-app balance until `tributary trainer withdraw`)")


@trainer.command("rewards")
@click.option("--job", type=int, required=True)
@click.option("--address", default=None, help="default: your own")
@command
def rewards(st: State, job: int, address: str | None) -> Any:
    """Your verdict, contribution and reward in each closed round of a job (round notices)."""
    from client import trainer as tr

    contrib = tr.contributions(st.ctx, job, address)
    tok = st.ctx.node.inspect(f"job/{job}").get("token")
    total = sum(int(c["reward"]) for c in contrib)
    return ({"job": job, "rounds": contrib, "reward_total": str(total)},
            lambda: _contrib_table(job, contrib, tok))


def _phase(st: State, job: int) -> Any:
    from client import trainer as tr
    from client.preflight import round_phase, time_hint

    info = tr.job_info(st.ctx, job)
    spec = tr.job_spec(st.ctx, info)
    r = int(info["rounds"][-1]["round"])
    shard = bool(st.ctx.node.inspect(f"job/{job}/round/{r}").get("validation_cid")) \
        if info["status"] == "open" else None
    ph = round_phase(info, spec["windows"], st.ctx.chain.block_timestamp(), shard)
    nxt = {"waiting": ph.start, "commit": ph.commit_end, "reveal": ph.reveal_end,
           "validation": ph.validation_end}.get(ph.name)
    hint = time_hint(st.ctx, nxt - ph.now) if nxt else ""
    data = dict(ph.to_json(), text=ph.describe() + ("." + hint if hint else ""),
                validation_revealed=shard)
    return data, lambda: console.print(data["text"], soft_wrap=True)


@trainer.command("phase")
@click.option("--job", type=int, required=True)
@command
def trainer_phase(st: State, job: int) -> Any:
    """Where the job's current round stands, with its deadlines (local time and time left)."""
    return _phase(st, job)


def _balance(st: State, address: str | None) -> Any:
    from client import owner as o

    b = o.balance(st.ctx, address)
    onchain = st.ctx.chain.balance(b["account"])
    data = dict(b, onchain_wei=str(onchain))
    return data, lambda: console.print(
        f"{b['account']}: in-app " + (", ".join(fmt_wei(v, t) for t, v in b["balances"].items())
                                      or "nothing") + f"; on chain {fmt_wei(onchain)}",
        soft_wrap=True)


@trainer.command("balance")
@click.option("--address", default=None, help="default: your own")
@command
def trainer_balance(st: State, address: str | None) -> Any:
    """In-app balance (rewards not yet withdrawn) and on-chain ether balance."""
    return _balance(st, address)


@trainer.command("withdraw")
@click.option("--amount", default=None, help="with its unit (0.1eth, 5000gwei, 7wei); "
              "default: the whole balance")
@click.option("--token", default=None, help="ERC-20 token (default: ether)")
@command
def withdraw(st: State, amount: str | None, token: str | None) -> Any:
    """Turn in-app balance into a voucher (then `tributary vouchers --execute`)."""
    from client import owner as o
    from dapp.market.protocol import ETH

    tok = (token or ETH).lower()
    try:
        wei = parse_amount(amount, require_unit=True) if amount else None
    except click.BadParameter as exc:
        raise UserError(f"--amount: {exc.message}") from None
    res = o.withdraw(st.ctx, wei, tok) if wei is not None else o.withdraw_all(st.ctx, tok)
    return res, lambda: console.print(
        f"voucher for {fmt_wei(res['amount'], tok)} requested; execute it with `tributary "
        f"vouchers --execute` once its epoch is claimed" + _claim_hint(st))


def _claim_hint(st: State) -> str:
    """How vouchers become executable: the node claims an epoch once it ends; on a devnet
    blocks come only with transactions, so someone has to mine."""
    from client.preflight import is_devnet

    if not is_devnet(st.ctx):
        return ""
    n = int(st.ctx.cfg.deployment.get("epoch_length") or 10)
    return f" (devnet: end the epoch with `tributary dev mine {n + 1}`)"


# ------------------------------------------------------------------------------- anyone

@main.command("close-round")
@click.option("--job", type=int, required=True)
@click.option("--round", "round_", type=int, default=None, help="default: the current round")
@command
def close_round(st: State, job: int, round_: int | None) -> Any:
    """Close a round once its reveal window (and the owner's validation window) has passed."""
    from client import trainer as tr

    _plan(st, f"will check the round's windows, then send closeRound for job {job} (one input)")
    res = tr.close_round(st.ctx, job, round_)

    def human() -> None:
        n = res["notice"]
        acc = n.get("accuracy") if n else None
        console.print(f"round {res['round']} of job {job} closed; accuracy "
                      + (f"{acc['correct']}/{acc['total']}" if acc else "n/a")
                      + (f"; paid {fmt_wei(n['paid'], n.get('token'))}" if n else ""))

    return res, human


@main.command("vouchers")
@click.option("--execute", is_flag=True, help="execute every ready voucher that pays you")
@click.option("--all", "all_", is_flag=True, help="list every voucher, not only yours")
@click.option("--wait", type=float, default=0.0, help="wait up to this many seconds for proofs")
@command
def vouchers(st: State, execute: bool, all_: bool, wait: float) -> Any:
    """List your vouchers (ready once their epoch is claimed) and the batched payouts that pay
    you, and execute them with proofs."""
    from dapp.market.protocol import ETH
    from rollup.vouchers import OutputNotReexecutable, ProvableOutput, execute_output, was_output_executed

    ctx = st.ctx
    me = None if all_ else ctx.signer.address.lower()
    deadline = time.monotonic() + wait
    with err_console.status("waiting for voucher proofs (the epoch's claim)...") as status_:
        if st.json or wait <= 0:
            status_.stop()
        while True:
            vs, bs = ctx.node.vouchers(me), ctx.node.payouts(me)
            if all(v.proof_ready for v in [*vs, *bs]) or time.monotonic() >= deadline:
                break
            left = deadline - time.monotonic()
            status_.update(f"waiting for voucher proofs (the epoch's claim), {left:.0f} s left...")
            time.sleep(0.5)
    def run_it(raw: dict[str, Any], row: dict[str, Any]) -> None:
        """Execute one output with its proof; already executed (by anyone) counts as done."""
        try:
            rcpt = execute_output(ctx.chain.w3, ctx.chain.app, ProvableOutput.from_rpc(raw),
                                  ctx.signer.private_key)
            row.update(executed=True, tx="0x" + bytes(rcpt["transactionHash"]).hex())
        except OutputNotReexecutable:
            row["executed"] = True

    rows = []
    for v in vs:
        executed = was_output_executed(ctx.chain.w3, ctx.chain.app, v.index)
        row = {"index": v.index, "to": v.beneficiary(), "amount": str(v.amount()),
               "destination": v.destination, "proof_ready": v.proof_ready, "executed": executed}
        if execute and not executed and v.proof_ready and (all_ or v.beneficiary() == me):
            run_it(v.raw, row)
        rows.append(row)
    # Batched payouts (`tributary payout`) that pay this account: executing one pays everyone in it.
    for b in bs:
        executed = was_output_executed(ctx.chain.w3, ctx.chain.app, b.index)
        row = {"index": b.index, "to": me or f"{len(b.entries)} payees",
               "amount": str(b.amount_for(me)), "destination": b.raw["decoded_data"]["destination"],
               "token": b.token, "kind": "batched payout", "proof_ready": b.proof_ready,
               "executed": executed}
        if execute and not executed and b.proof_ready:
            run_it(b.raw, row)
        rows.append(row)

    def human() -> None:
        t = _table("vouchers", ("index", "pays", "amount", "proof", "executed"))
        for r in rows:
            if "token" in r:
                tok = None if r["token"] == ETH else r["token"]
            else:
                tok = None if r["destination"].lower() == r["to"] else r["destination"]
            pays = r["to"] + (" (batched payout)" if r.get("kind") == "batched payout" else "")
            t.add_row(str(r["index"]), pays, fmt_wei(r["amount"], tok),
                      "ready" if r["proof_ready"] else "waiting for claim", "yes" if r["executed"] else "no")
        console.print(t)
        if any(not r["proof_ready"] for r in rows):
            console.print("vouchers become executable once the node claims their epoch, after "
                          "the epoch's last block" + (_claim_hint(st) or "") + "; `--wait 60` "
                          "waits for the proofs", soft_wrap=True)

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
    """DEVNET ONLY (anvil): run a local market, move block time, mine blocks, fund accounts."""


def _register_dev_up() -> None:
    """`tributary dev up` is `python -m rollup devnet` (chain + node + content store)."""
    from rollup.devnet import devnet_command

    dev.add_command(devnet_command, "up")


_register_dev_up()


def _register_batching() -> None:
    """`tributary relay` (batches signed messages) and `tributary payout` (one voucher pays
    every balance): issue 15, in client/relay.py."""
    from client.relay import payout_command, relay_command

    main.add_command(relay_command, "relay")
    main.add_command(payout_command, "payout")


_register_batching()


@dev.command("advance-time")
@click.argument("seconds", type=click.IntRange(min=0))
@command
def advance_time(st: State, seconds: int) -> Any:
    """DEVNET ONLY: evm_increaseTime SECONDS + evm_mine (the market's windows use block time)."""
    from client.preflight import fmt_when

    ts = st.ctx.chain.advance_time(seconds)
    return {"block_timestamp": ts}, lambda: console.print(
        f"block time is now {ts} = {fmt_when(ts, ts).rsplit(' (', 1)[0]}")


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
    try:
        wei = parse_amount(amount, require_unit=True)
    except click.BadParameter as exc:
        raise UserError(f"AMOUNT: {exc.message}") from None
    st.ctx.chain.set_balance(address, wei)
    return {"address": address, "balance": str(wei)}, lambda: console.print(f"{address}: {fmt_wei(wei)}")


@main.group("model")
def model_group() -> None:
    """Bring a model trained in PyTorch to the market."""


@model_group.command("import")
@click.option("--state-dict", "state_dict", required=True, type=click.Path(exists=True, dir_okay=False),
              help="PyTorch float state dict as safetensors "
                   "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors'))")
@click.option("--arch", "arch_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="the market's arch JSON (or a job spec holding one under 'arch')")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="where to write the job's initial model (int32 fixed point safetensors)")
@click.option("--spec-out", type=click.Path(dir_okay=False), default=None,
              help="also write a job spec template with this arch (edit, then create-job --spec)")
@command
def model_import(st: State, state_dict: str, arch_path: str, out: str, spec_out: str | None) -> Any:
    """Turn a PyTorch state dict + arch JSON into a job's initial model, refusing (with the
    reason) what the market's fixed-point backend cannot run. Pickles (.pt/.pth) are refused:
    loading one runs code."""
    from client.jobs import build_spec
    from client.model_import import import_model

    data, rep_ = import_model(Path(state_dict), Path(arch_path))
    Path(out).write_bytes(data)
    res = dict(rep_, out=out, spec_out=spec_out)
    if spec_out:
        spec = build_spec(name=Path(state_dict).stem, arch=rep_["arch"], initial_model_cid="",
                          shards=[])
        for k in ("initial_model", "validation", "rounds"):
            spec.pop(k)
        Path(spec_out).write_text(json.dumps(spec, indent=1) + "\n")

    def human() -> None:
        for n in rep_["notes"]:
            err_console.print(f"note: {n}", soft_wrap=True)
        console.print(f"{rep_['tensors']} tensors, {rep_['params']:,} parameters, "
                      f"{rep_['bytes']:,} bytes at scale 2^-{rep_['scale_bits']} (largest rounding "
                      f"{rep_['max_rounding_error']:.2g}) -> {out}", soft_wrap=True)
        console.print(f"next: `tributary owner create-job --spec {spec_out or 'SPEC'} --model {out} "
                      f"--shard ... --reward 1eth`", soft_wrap=True)

    return res, human


@main.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8765, show_default=True, type=int, help="port (0: any free one)")
def dashboard_cmd(host: str, port: int) -> None:
    """Serve the web dashboard (jobs, rounds, trainers, payout traces, the node's claims) on
    http://HOST:PORT, read-only, from the node, the chain and the content store only."""
    from client.dashboard.cli import serve

    serve(click.get_current_context().find_object(State), host, port)  # type: ignore[arg-type]


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
