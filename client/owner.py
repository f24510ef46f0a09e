"""What a model owner does: post a job, reveal validation shards, follow it, take the model.

Each function is one step of the owner's walkthrough and returns plain data (the CLI prints
it as a table or as JSON; the demo calls these directly). Secrets that only the owner may know
until the right moment (each round's shard id and salt) live in the client's local state
(`<home>/owner/job-<id>.json`), never on chain until revealed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapp.hashing import keccak
from dapp.market import protocol as p
from dapp.ml.arch import ArchSpec
from dapp.ml.model_format import decode_model, encode_model

from client.chain import SentInput
from client.config import ConfigError, Context, read_json, state_file, write_json
from client.jobs import ShardSecret, spec_bytes, store_shards, validation_commitments
from client.node_api import NodeError, Notice
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


def create_job(ctx: Context, spec: dict[str, Any], model_bytes: bytes,
               shards: list[tuple[Any, Any]], reward: int, token: str | None = None
               ) -> CreatedJob:
    """Store the model, the shards and the spec, deposit the reward naming the spec, and wait
    for the backend's `job_opened` notice (or its refusal: the deposit is then credited to the
    owner's in-app balance, and `refund` takes it back)."""
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
    spec = dict(spec, rounds=rounds)
    model_cid = ctx.store.put(canonical)
    secrets_ = store_shards(ctx.store, shards, arch)
    spec["initial_model"] = model_cid
    spec["validation"] = validation_commitments(secrets_)
    try:
        data = spec_bytes(spec)
    except Exception as exc:
        raise OwnerError(f"the job spec is not valid: {exc}") from None
    spec_cid = ctx.store.put(data)
    pending = state_file(ctx.cfg.home, "owner", f"pending-{spec_cid}.json")
    write_json(pending, {"spec_cid": spec_cid, "shards": [s.to_json() for s in secrets_]})
    uploads: list[UploadResult] = []
    if uses_inputs(spec):  # the backend reads nothing over GIO: post what opening the job needs
        uploads = [post_content(ctx, spec_cid, data), post_content(ctx, model_cid, canonical)]
    call = p.CreateJob(spec_cid).encode()
    if token is None:
        sent = ctx.chain.deposit_ether(ctx.signer, reward, call)
    else:
        sent = ctx.chain.deposit_erc20(ctx.signer, token, reward, call)
    reports = ctx.node.result(sent.index)
    opened = [n for n in ctx.node.notices("job_opened") if n.input_index == sent.index]
    if not opened:
        raise OwnerError("the deposit was taken but the job was not opened: "
                         + "; ".join(reports) + ". Use `tributary owner refund` to withdraw it.")
    job = int(opened[0].data["job"])
    write_json(_owner_file(ctx, job), {"job": job, "spec_cid": spec_cid,
                                       "shards": [s.to_json() for s in secrets_],
                                       "owner": ctx.signer.address.lower()})
    pending.unlink(missing_ok=True)
    return CreatedJob(job, spec_cid, model_cid, reward, sent.index, opened[0].data, uploads)


def reveal_validation(ctx: Context, job: int, round_: int | None = None) -> dict[str, Any]:
    info = ctx.node.inspect(f"job/{job}")
    r = int(info["rounds"][-1]["round"]) if round_ is None else round_
    state = read_json(_owner_file(ctx, job))
    if state is None:
        raise OwnerError(f"no local secrets for job {job} in {ctx.cfg.home}/owner: only the "
                         f"client that created the job (same --home) can reveal its shards")
    shards = [ShardSecret.from_json(s) for s in state["shards"]]
    if not 0 <= r < len(shards):
        raise OwnerError(f"job {job} has {len(shards)} rounds; there is no round {r}")
    s = shards[r]
    uploads = [post_content(ctx, s.cid).to_json()] if uses_inputs(spec_of(ctx, job)) else []
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
                       "carried": d["carried"], "model_hash": d["model_hash"],
                       "fallback": d.get("fallback"), "trainers": d["trainers"],
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
    sent: SentInput = ctx.chain.add_input(ctx.signer, p.Withdraw(token, amount).encode())
    ctx.node.result(sent.index)
    return {"account": ctx.signer.address.lower(), "token": token, "amount": str(amount),
            "input": sent.index}


def balance(ctx: Context, address: str | None = None) -> dict[str, Any]:
    addr = (address or ctx.signer.address).lower()
    return ctx.node.inspect(f"balance/{addr}")


__all__ = ["create_job", "reveal_validation", "status", "global_model", "export_torch",
           "withdraw", "withdraw_all", "balance", "OwnerError", "ConfigError", "NodeError",
           "Notice"]
