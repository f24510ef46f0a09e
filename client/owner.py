"""What a model owner does: post a job, reveal validation shards, follow it, take the model.

Each function is one step of the owner's walkthrough and returns plain data (the CLI prints
it as a table or as JSON; the demo calls these directly). Secrets that only the owner may know
until the right moment (each round's shard id and salt) live in the client's local state
(`<home>/owner/job-<id>.json`), never on chain until revealed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dapp.hashing import keccak
from dapp.market import protocol as p
from dapp.ml.arch import ArchSpec
from dapp.ml.model_format import decode_model, encode_model

from client.chain import SentInput
from client.config import ConfigError, Context, read_json, state_file, write_json
from client.jobs import (ShardSecret, carve_public_shard, needs_public_shard, spec_bytes,
                         store_shards, validation_commitments)
from client.node_api import InputRefusedByApp, NodeError, Notice
from client.preflight import (PreflightError, check_funds, content_reachable, fmt_amount,
                              fmt_when, node_ready, round_phase, too_early)
from client.uploads import UploadResult, post_content, spec_of, uses_inputs


class OwnerError(Exception):
    """An owner step cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class CreatedJob:
    job: int
    spec_cid: str
    model_cid: str
    budget: int
    input_index: int
    notice: dict[str, Any]
    uploads: list[UploadResult] = field(default_factory=list)


def _owner_file(ctx: Context, job: int) -> Path:
    return state_file(ctx.cfg.home, "owner", f"job-{job}.json")


def _pending_file(ctx: Context, spec_cid: str) -> Path:
    return state_file(ctx.cfg.home, "owner", f"pending-{spec_cid}.json")


def _money_note(amount: int, token: str | None, sent: SentInput) -> str:
    return (f"the deposit of {fmt_amount(amount, token)} was taken by the portal (tx "
            f"{sent.tx_hash}, input {sent.index}): it is held by the Application. Once the node "
            f"processes input {sent.index}, either the job is open (record it with `tributary "
            f"owner recover`) or the deposit is credited to your in-app balance (take it back "
            f"with `tributary owner refund`)")


def preflight_create(ctx: Context, reward: int, token: str | None, gas: int = 400_000
                     ) -> dict[str, Any]:
    """Before a deposit: the node answers and is caught up, the account can pay the reward and
    the gas. Raises PreflightError (nothing sent) otherwise."""
    ready = node_ready(ctx)
    if token is None:
        funds = check_funds(ctx, reward, gas, "depositEther")
    else:
        have = ctx.chain.balance(ctx.signer.address, token)
        if have < reward:
            raise PreflightError(f"depositERC20Tokens: {ctx.signer.address} holds "
                                 f"{fmt_amount(have, token)}, less than {fmt_amount(reward, token)}; "
                                 f"nothing was sent")
        funds = check_funds(ctx, 0, 2 * gas, "approve + depositERC20Tokens")
    return {"node": ready, "funds": {k: str(v) for k, v in funds.items()}}


def create_job(ctx: Context, spec: dict[str, Any], model_bytes: bytes,
               shards: list[tuple[Any, Any]], reward: int, token: str | None = None, *,
               on_step: Callable[[str], None] = lambda msg: None,
               public_shard: tuple[Any, Any] | None = None) -> CreatedJob:
    """Store the model, the shards and the spec, deposit the reward naming the spec, and wait
    for the backend's `job_opened` notice (or its refusal: the deposit is then credited to the
    owner's in-app balance, and `refund` takes it back).

    Order matters: everything that can be checked locally is checked before the deposit (arch,
    spec, node caught up, funds), and the shard secrets are written durably to
    `pending-<spec_cid>.json` before the deposit, so a crash at any later point leaves a job
    that `recover_pending` can match to its `job_opened` notice."""
    arch = ArchSpec.from_dict(spec["arch"])
    try:  # refuse a model that does not fit the arch before paying anything
        model = decode_model(model_bytes, arch, max_bytes=spec.get("limits", {}).get(
            "max_model_bytes", 8 << 20))
    except Exception as exc:
        raise OwnerError(f"the initial model does not fit the job's arch: {exc}") from None
    canonical = encode_model(model, arch)
    rounds = len(shards)
    if rounds < 1:
        raise OwnerError("a job needs one validation shard per round (at least one)")
    if reward < rounds:
        raise OwnerError(f"a reward of {reward} wei cannot fund {rounds} rounds (the market "
                         f"refuses a budget smaller than the number of rounds)")
    spec = dict(spec, rounds=rounds)
    model_cid = ctx.store.put(canonical)
    public_bytes = None
    if needs_public_shard(spec) or public_shard is not None:
        # The job's public validation shard (issue 10): given, or carved from the round shards.
        if public_shard is None:
            public_shard, shards = carve_public_shard(shards)
        [pub] = store_shards(ctx.store, [public_shard], arch)
        spec["public_validation"] = pub.cid
        public_bytes = ctx.store.get(pub.cid, max_size=64 << 20)
    secrets_ = store_shards(ctx.store, shards, arch)
    spec["initial_model"] = model_cid
    spec["validation"] = validation_commitments(secrets_)
    try:
        data = spec_bytes(spec)
    except Exception as exc:
        raise OwnerError(f"the job spec is not valid: {exc}") from None
    spec_cid = ctx.store.put(data)
    on_step("checking the node, the content and the account's funds")
    preflight_create(ctx, reward, token)
    content_reachable(ctx, spec, [spec_cid, model_cid] + (
        [spec["public_validation"]] if spec.get("public_validation") else []))
    pending = _pending_file(ctx, spec_cid)
    record: dict[str, Any] = {"spec_cid": spec_cid, "shards": [s.to_json() for s in secrets_],
                              "owner": ctx.signer.address.lower(), "reward": str(reward),
                              "token": token}
    write_json(pending, record)
    uploads: list[UploadResult] = []
    if uses_inputs(spec):  # the backend reads nothing over GIO: post what opening the job needs
        on_step("posting the spec and the initial model through inputs")
        uploads = [post_content(ctx, spec_cid, data), post_content(ctx, model_cid, canonical)]
        if public_bytes is not None:
            uploads.append(post_content(ctx, spec["public_validation"], public_bytes))
    call = p.CreateJob(spec_cid).encode()
    on_step(f"depositing {fmt_amount(reward, token)} (the job's escrow)")
    if token is None:
        sent = ctx.chain.deposit_ether(ctx.signer, reward, call)
    else:
        sent = ctx.chain.deposit_erc20(ctx.signer, token, reward, call)
    write_json(pending, dict(record, input=sent.index, tx=sent.tx_hash))
    on_step(f"waiting for the node to process input {sent.index}")
    try:
        reports = ctx.node.result(sent.index)
        opened = [n for n in ctx.node.notices("job_opened") if n.input_index == sent.index]
    except InputRefusedByApp as exc:
        raise OwnerError(f"the deposit was refused ({exc.reason}); "
                         + _money_note(reward, token, sent)) from None
    except NodeError as exc:
        raise OwnerError(f"{exc}. Nothing is lost: " + _money_note(reward, token, sent)) from None
    if not opened:
        raise OwnerError("the deposit was taken but the job was not opened: "
                         + "; ".join(reports) + ". It is credited to your in-app balance: "
                         "`tributary owner refund` withdraws it.")
    job = int(opened[0].data["job"])
    write_json(_owner_file(ctx, job), {"job": job, "spec_cid": spec_cid,
                                       "shards": [s.to_json() for s in secrets_],
                                       "owner": ctx.signer.address.lower()})
    pending.unlink(missing_ok=True)
    return CreatedJob(job, spec_cid, model_cid, reward, sent.index, opened[0].data, uploads)


def recover_pending(ctx: Context) -> list[dict[str, Any]]:
    """Match each `pending-<spec_cid>.json` (written before a deposit whose answer this client
    never saw) to the job opened with that spec by this owner (from the `job_opened` notices),
    and keep its secrets as `job-<id>.json` so `reveal-validation` works. Returns one entry per
    pending file: recovered (job), refused (credited to the balance), or still waiting."""
    folder = ctx.cfg.home / "owner"
    me = ctx.signer.address.lower()
    out: list[dict[str, Any]] = []
    files = sorted(folder.glob("pending-*.json")) if folder.exists() else []
    if not files:
        return out
    node_ready(ctx)  # the deposit may be the last input on chain: let the node process it
    opened = ctx.node.notices("job_opened")
    for f in files:
        rec = read_json(f)
        cid = rec["spec_cid"]
        if rec.get("owner", me) != me:
            out.append({"spec_cid": cid, "state": "other owner", "owner": rec.get("owner")})
            continue
        mine = [n for n in opened if n.data.get("spec_cid") == cid and n.data.get("owner") == me
                and not _owner_file(ctx, int(n.data["job"])).exists()]
        if "input" in rec:
            mine = [n for n in mine if n.input_index == rec["input"]] or mine
        if mine:
            job = int(mine[0].data["job"])
            write_json(_owner_file(ctx, job), {"job": job, "spec_cid": cid,
                                               "shards": rec["shards"], "owner": me})
            f.unlink(missing_ok=True)
            out.append({"spec_cid": cid, "state": "recovered", "job": job,
                        "input": mine[0].input_index})
            continue
        entry: dict[str, Any] = {"spec_cid": cid, "state": "no job opened with this spec"}
        if "input" in rec:
            idx = int(rec["input"])
            if ctx.node.processed_count() <= idx:
                entry["state"] = f"deposit input {idx} not processed yet"
            else:
                entry["state"] = (f"deposit input {idx} did not open a job: it is credited to "
                                  f"your in-app balance (`tributary owner refund`)")
                f.unlink(missing_ok=True)
        else:
            entry["state"] = ("no deposit recorded for this spec (the command stopped before "
                              "paying, or while depositing: if your wallet shows the deposit, "
                              "rerun this once the node has processed it)")
        out.append(entry)
    return out


def _secrets(ctx: Context, job: int, spec_cid: str) -> dict[str, Any]:
    state = read_json(_owner_file(ctx, job))
    if state is None:
        pending = _pending_file(ctx, spec_cid)
        if pending.exists():
            recover_pending(ctx)
            state = read_json(_owner_file(ctx, job))
    if state is None:
        raise OwnerError(f"no local secrets for job {job} in {ctx.cfg.home}/owner (neither "
                         f"job-{job}.json nor pending-{spec_cid}.json): only the client that "
                         f"created the job (same --home) can reveal its shards")
    return dict(state)


def cancel_job(ctx: Context, job: int) -> dict[str, Any]:
    """Cancel a job before its first round starts (the market's rule): the whole escrow goes
    back to the owner's in-app balance. Checked locally first, so a doomed cancel costs nothing."""
    node_ready(ctx)
    info = ctx.node.inspect(f"job/{job}")
    me = ctx.signer.address.lower()
    if info["owner"] != me:
        raise OwnerError(f"only the job owner {info['owner']} can cancel job {job} (you are {me})")
    if info["status"] != "open":
        raise OwnerError(f"job {job} is {info['status']}: nothing to cancel")
    r0 = info["rounds"][0]
    now = ctx.chain.block_timestamp()
    if len(info["rounds"]) > 1 or now >= int(r0["start"]) or int(r0["commits"]):
        raise OwnerError(
            f"job {job} cannot be cancelled: its first round started at "
            f"{fmt_when(int(r0['start']), now)} (the market allows cancelling only before "
            f"then). The unspent budget comes back when the job ends: each round pays only "
            f"accepted updates, and `tributary owner refund` withdraws what is left")
    check_funds(ctx, 0, 200_000, "cancelJob")
    sent = ctx.chain.add_input(ctx.signer, p.CancelJob(job).encode())
    reports = ctx.node.result(sent.index)
    notes = [n.data for n in ctx.node.notices("job_cancelled", job) if n.input_index == sent.index]
    return {"job": job, "input": sent.index, "cancelled": bool(notes),
            "refund": notes[0]["refund"] if notes else "0", "token": info["token"],
            "reports": reports}


def reveal_validation(ctx: Context, job: int, round_: int | None = None) -> dict[str, Any]:
    """Reveal round `round_`'s shard (default: the current round). Refused locally, with the
    time left, before the validation window opens or after it closes."""
    info = ctx.node.inspect(f"job/{job}")
    r = int(info["rounds"][-1]["round"]) if round_ is None else round_
    state = _secrets(ctx, job, info["spec_cid"])
    shards = [ShardSecret.from_json(s) for s in state["shards"]]
    if not 0 <= r < len(shards):
        raise OwnerError(f"job {job} has {len(shards)} rounds; there is no round {r}")
    if info["status"] != "open":
        raise OwnerError(f"job {job} is {info['status']}: no shard to reveal")
    cur = int(info["rounds"][-1]["round"])
    if r != cur:
        raise OwnerError(f"round {r} of job {job} is not open: the current round is {cur}")
    spec = spec_of(ctx, job)
    rnd = ctx.node.inspect(f"job/{job}/round/{r}")
    if rnd.get("validation_cid"):
        if rnd["validation_cid"] == shards[r].cid:  # a rerun after a kill: it went through
            return {"job": job, "round": r, "shard_cid": shards[r].cid, "input": None,
                    "reports": ["already revealed"], "uploads": [], "already": True}
        raise OwnerError(f"the validation shard of round {r} is already revealed")
    ph = round_phase(info, spec["windows"], ctx.chain.block_timestamp(), False)
    if ph.name in ("waiting", "commit"):
        raise too_early(ctx, f"the validation window of round {r} opens", ph.commit_end, ph.now)
    if ph.name == "closable":
        raise OwnerError(f"too late: the validation window of round {r} closed at "
                         f"{fmt_when(ph.validation_end, ph.now)}; the round closes without "
                         f"a shard (`tributary close-round --job {job}`)")
    s = shards[r]
    content_reachable(ctx, spec, [s.cid])
    uploads = [post_content(ctx, s.cid).to_json()] if uses_inputs(spec) else []
    sent = ctx.chain.add_input(ctx.signer, p.RevealValidation(job, r, s.cid, s.salt).encode())
    return {"job": job, "round": r, "shard_cid": s.cid, "input": sent.index,
            "reports": ctx.node.result(sent.index), "uploads": uploads}


def status(ctx: Context, job: int) -> dict[str, Any]:
    """Everything the notices say about a job, plus its live state from inspect."""
    opened = ctx.node.job_opened(job)
    info = ctx.node.inspect(f"job/{job}")
    rounds = []
    for n in ctx.node.round_notices(job):
        d = n.data
        acc = d.get("accuracy")
        rounds.append({"round": d["round"], "accuracy": acc, "paid": d["paid"],
                       "carried": d["carried"], "price": d.get("price"),
                       "advance": d.get("advance"),
                       "model_hash": d["model_hash"],
                       "fallback": d.get("fallback"), "trainers": d["trainers"],
                       "validation_cid": d.get("validation_cid"),
                       "job_finished": d.get("job_finished"), "notice_index": n.index})
    return {"job": job, "status": info["status"], "owner": info["owner"], "token": info["token"],
            "budget": info["budget"], "escrow": info["escrow"], "spec_cid": info["spec_cid"],
            "current_round": info["rounds"][-1]["round"], "trainers": info["trainers"],
            "hparams": info.get("hparams"), "opened": opened.data, "rounds": rounds}


def global_model(ctx: Context, job: int, round_: int | None = None) -> tuple[bytes, dict[str, Any]]:
    """The global model after `round_` (default: the latest closed round; before any round
    closes, the initial model from the store), verified against the notice's model_hash."""
    notices = ctx.node.round_notices(job)
    if round_ is not None:
        notices = [n for n in notices if n.data["round"] == round_]
        if not notices:
            raise OwnerError(f"round {round_} of job {job} has not closed yet")
    if notices:
        n = notices[-1]
        return ctx.node.round_model(n), {"round": n.data["round"], "model_hash": n.data["model_hash"],
                                         "model_cid": n.data["model_cid"], "source": "reports"}
    opened = ctx.node.job_opened(job)
    data = ctx.store.get(opened.data["model_cid"], max_size=64 << 20)
    if "0x" + keccak(data).hex() != opened.data["model_hash"]:
        raise OwnerError("the stored initial model does not match the job_opened notice's hash")
    return data, {"round": None, "model_hash": opened.data["model_hash"],
                  "model_cid": opened.data["model_cid"], "source": "store"}


def job_arch(ctx: Context, job: int) -> tuple[ArchSpec, dict[str, Any]]:
    spec = spec_of(ctx, job)
    return ArchSpec.from_dict(spec["arch"]), spec


def export_torch(model_bytes: bytes, arch: ArchSpec, path: Path) -> None:
    """Write a float32 PyTorch state_dict as safetensors (load with safetensors.torch.load_file)."""
    from safetensors.torch import save_file

    from dapp.ml.fixedpoint import to_torch_state_dict

    model = decode_model(model_bytes, arch, max_bytes=len(model_bytes))
    save_file({k: v.contiguous() for k, v in to_torch_state_dict(model, arch).items()}, str(path))


def withdraw_all(ctx: Context, token: str = p.ETH) -> dict[str, Any]:
    """Turn the caller's whole in-app balance of `token` into a voucher."""
    bal = balance(ctx)
    amount = int(bal["balances"].get(token.lower(), "0"))
    if amount == 0:
        raise OwnerError(f"{ctx.signer.address} has no in-app balance of {token} to withdraw")
    return withdraw(ctx, amount, token)


def withdraw(ctx: Context, amount: int, token: str = p.ETH) -> dict[str, Any]:
    """Turn `amount` of in-app balance into a voucher; refused locally (nothing sent) when the
    balance is smaller, since the backend would refuse it after the gas is paid."""
    token = token.lower()
    have = int(balance(ctx)["balances"].get(token, "0"))
    if amount <= 0:
        raise OwnerError("the amount to withdraw must be positive")
    if amount > have:
        raise OwnerError(f"{ctx.signer.address} has {fmt_amount(have, token)} in the app, less "
                         f"than the {fmt_amount(amount, token)} asked; nothing was sent")
    sent: SentInput = ctx.chain.add_input(ctx.signer, p.Withdraw(token, amount).encode())
    ctx.node.result(sent.index)
    return {"account": ctx.signer.address.lower(), "token": token, "amount": str(amount),
            "input": sent.index}


def balance(ctx: Context, address: str | None = None) -> dict[str, Any]:
    addr = (address or ctx.signer.address).lower()
    return ctx.node.inspect(f"balance/{addr}")


__all__ = ["create_job", "recover_pending", "cancel_job", "preflight_create",
           "PreflightError", "reveal_validation", "status", "global_model", "export_torch",
           "withdraw", "withdraw_all", "balance", "OwnerError", "ConfigError", "NodeError",
           "Notice"]
