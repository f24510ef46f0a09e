"""What a trainer does: find a job, join, and each round fetch, train, store, commit, reveal.

Commit-reveal: the commitment binds (sender, job, round, model id, data-card id, salt), so the
update stays hidden until every trainer has committed; the salt and ids are kept in local state
(`<home>/trainer/<address>/job-<id>.json`) between the two steps, so `run` survives a restart.

Crash safety: every file is written atomically (client.config.write_json), and what a later
step needs (the model and card ids, the salt, the commitment) is on disk before the transaction
that depends on it; `sync_round` reconciles local state with the chain after a restart.

`follow()` is the `tributary trainer run` loop: it looks at the job and the block time and does
whatever the round allows next (join, train + commit, reveal, wait), until the job ends or the
requested number of rounds is done. The demo calls the same steps, for honest trainers and for
its attackers (label flipping, scaled sign flipping) and its free rider (who copies).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dapp.hashing import keccak
from dapp.market import protocol as p
from dapp.ml.arch import ArchSpec
from dapp.ml.model_format import Model, decode_model, encode_model

from client.config import Context, read_json, state_file, write_json
from client.data import data_card
from client.node_api import InputRefusedByApp
from client.preflight import content_reachable, node_ready, round_phase, too_early
from client.uploads import post_content, spec_of, uses_inputs
from client.training import DPConfig, dp_card_fields, scaled_sign_flip, train_local


class TrainerError(Exception):
    """A trainer step cannot be done; the message says why and what to do."""


@dataclass
class Behaviour:
    """How this participant plays. Honest by default; the demo sets the others."""

    role: str = "honest"          # honest | label_flip | sign_flip | free_rider
    sign_flip_scale: float = 4.0
    dp: DPConfig | None = None
    seed: int = 0


@dataclass
class Prepared:
    job: int
    round: int
    model_cid: str
    data_cid: str
    salt: bytes
    timings: dict[str, float] = field(default_factory=dict)
    model_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"model_cid": self.model_cid, "data_cid": self.data_cid,
                "salt": "0x" + self.salt.hex(), "model_hash": self.model_hash}


def _state_path(ctx: Context, job: int) -> Path:
    return state_file(ctx.cfg.home, "trainer", ctx.signer.address.lower(), f"job-{job}.json")


def load_state(ctx: Context, job: int) -> dict[str, Any]:
    return read_json(_state_path(ctx, job), {"job": job, "rounds": {}})


def save_round(ctx: Context, job: int, round_: int, **fields: Any) -> None:
    st = load_state(ctx, job)
    st["rounds"].setdefault(str(round_), {}).update(fields)
    write_json(_state_path(ctx, job), st)


MAX_LISTED_PAGES = 100
"""Pages `list_jobs` reads at most (10,000 jobs): anyone can open jobs, a deposit each."""


def list_jobs(ctx: Context, everything: bool = False) -> list[dict[str, Any]]:
    """The open jobs (every job with `everything`), by id. The node answers a page at a time
    (p.PAGE a page); one page alone hid every job after the first 100 ever opened. Each page
    starts after the last id read (`/after/<id>`): by offset, a job closing between two pages
    shifted the next one and a job went missing."""
    base = "jobs" if everything else "jobs/open"
    out: list[dict[str, Any]] = []
    for _ in range(MAX_LISTED_PAGES):
        page = list(ctx.node.inspect(f"{base}/after/{out[-1]['job']}" if out else base))
        out.extend(page)
        if len(page) < p.PAGE:
            break
    return out


def job_info(ctx: Context, job: int) -> dict[str, Any]:
    try:
        return dict(ctx.node.inspect(f"job/{job}"))
    except Exception as exc:
        if "no job" in str(exc):
            raise TrainerError(f"there is no job {job}: list open jobs with `tributary trainer jobs`") from None
        raise


def job_spec(ctx: Context, info: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(ctx.store.get(info["spec_cid"], max_size=64 * 1024)))


def join(ctx: Context, job: int) -> dict[str, Any]:
    info = job_info(ctx, job)
    if ctx.signer.address.lower() in info["trainers"]:
        return {"job": job, "joined": True, "already": True}
    if ctx.relay_url:
        return {"job": job, "joined": True, **_relayed(ctx, p.Join(job))}
    sent = ctx.chain.add_input(ctx.signer, p.Join(job).encode())
    return {"job": job, "joined": True, "reports": ctx.node.result(sent.index), "input": sent.index}


def fetch_global(ctx: Context, job: int, info: dict[str, Any], arch: ArchSpec,
                 max_bytes: int = 64 << 20) -> Model:
    """The current global model: round 0's from the store (named by the job_opened notice),
    later ones from the previous round notice's ModelChunk reports; both verified by keccak
    against the hash the backend published."""
    want = info["global_model_hash"]
    r = int(info["rounds"][-1]["round"])
    if r == 0:
        data = ctx.store.get(info["global_model_cid"], max_size=max_bytes)
    else:
        notice = [n for n in ctx.node.round_notices(job) if n.data["round"] == r - 1]
        if not notice:
            raise TrainerError(f"no round_closed notice for round {r - 1} of job {job}")
        data = ctx.node.round_model(notice[-1])
    if "0x" + keccak(data).hex() != want:
        raise TrainerError(f"global model of job {job} round {r} does not hash to {want}")
    return decode_model(data, arch, max_bytes=max_bytes)


def prepare(ctx: Context, job: int, x: np.ndarray, y: np.ndarray, behaviour: Behaviour,
            info: dict[str, Any] | None = None, spec: dict[str, Any] | None = None) -> Prepared:
    """Fetch the global model, train locally (or attack, or copy), quantize, store the model and
    the data card. Nothing is sent yet."""
    t0 = time.perf_counter()
    info = info or job_info(ctx, job)
    spec = spec or job_spec(ctx, info)
    arch = ArchSpec.from_dict(spec["arch"])
    r = int(info["rounds"][-1]["round"])
    start = fetch_global(ctx, job, info, arch)
    t1 = time.perf_counter()
    hp = info.get("hparams") or spec["hparams"]
    dp_fields = None
    if behaviour.role == "free_rider":
        model_bytes = _copy_someone(ctx, job, r, info, arch, start)
        card, salt_card = data_card(np.zeros((1, *arch.input_shape), np.float32),
                                    np.zeros(1, np.int64), arch, claimed_samples=200)
    else:
        label_map = (np.arange(arch.num_classes)[::-1].copy()
                     if behaviour.role == "label_flip" else None)
        model, stats = train_local(arch, start, x, y, hp, dp=behaviour.dp,
                                   seed=behaviour.seed * 1000 + r, label_map=label_map)
        if behaviour.role == "sign_flip":
            model = scaled_sign_flip(start, model, arch, behaviour.sign_flip_scale)
        model_bytes = encode_model(model, arch)
        if behaviour.dp is not None:
            dp_fields = dp_card_fields(behaviour.dp, int(hp["local_epochs"]))
        card, salt_card = data_card(x, y, arch, dp=dp_fields)
    t2 = time.perf_counter()
    model_cid = ctx.store.put(model_bytes)
    data_cid = ctx.store.put(card)
    t3 = time.perf_counter()
    prep = Prepared(job, r, model_cid, data_cid, secrets.token_bytes(32),
                    {"fetch": t1 - t0, "train": t2 - t1, "store": t3 - t2},
                    "0x" + keccak(model_bytes).hex())
    save_round(ctx, job, r, **prep.to_json(), data_salt="0x" + salt_card.hex())
    return prep


def _copy_someone(ctx: Context, job: int, r: int, info: dict[str, Any], arch: ArchSpec,
                  start: Model) -> bytes:
    """The free rider: in round 0 the global model itself; later, an update another trainer
    revealed in the previous round (public by then)."""
    if r > 0:
        notice = [n for n in ctx.node.round_notices(job) if n.data["round"] == r - 1]
        for t in (notice[-1].data["trainers"] if notice else []):
            if t.get("model_cid") and t["address"] != ctx.signer.address.lower():
                return bytes(ctx.store.get(t["model_cid"], max_size=64 << 20))
    return encode_model(start, arch)


RELAY_WAIT_S = 180.0
"""How long a trainer waits for its relayed message to show in the market's round state."""


def _relayed(ctx: Context, call: p.Join | p.Commit | p.Reveal) -> dict[str, Any]:
    """Sign `call` (EIP-712), hand it to the relayer and wait until the market shows it (the
    job's trainers, or the round's commits or reveals): the relayer pays the gas and can delay
    or drop a message, never forge or alter it."""
    from client import relay

    me = ctx.signer.address.lower()

    def shown() -> bool:
        if isinstance(call, p.Join):
            return me in job_info(ctx, call.job_id)["trainers"]
        rnd = ctx.node.inspect(f"job/{call.job_id}/round/{call.round}")
        return me in rnd.get("commits" if isinstance(call, p.Commit) else "reveals", {})

    framed = relay.sign(call, ctx.signer.private_key, int(ctx.chain.w3.eth.chain_id),
                        ctx.chain.app)
    answer = relay.submit(str(ctx.relay_url), framed)
    deadline = time.monotonic() + RELAY_WAIT_S
    while time.monotonic() < deadline:
        if shown():
            return {"input": f"relayed ({answer.get('queued', '?')} queued)", "reports": []}
        time.sleep(1.0)
    raise TrainerError(f"the relayer at {ctx.relay_url} took the {type(call).__name__.lower()} "
                       f"but the market does not show it after {RELAY_WAIT_S:.0f} s: it may "
                       f"not have posted it yet, or the market refused it (GET "
                       f"{ctx.relay_url}/status lists its batch inputs; their reports say why). "
                       f"Rerun without --relay to send it yourself.")


def commit(ctx: Context, prep: Prepared) -> dict[str, Any]:
    t0 = time.perf_counter()
    c = p.commitment(ctx.signer.address.lower(), prep.job, prep.round, prep.model_cid,
                     prep.data_cid, prep.salt)
    save_round(ctx, prep.job, prep.round, commitment="0x" + c.hex())  # before sending
    if ctx.relay_url:
        done = _relayed(ctx, p.Commit(prep.job, prep.round, c))
        save_round(ctx, prep.job, prep.round, committed=done["input"])
        prep.timings["commit"] = time.perf_counter() - t0
        return {"job": prep.job, "round": prep.round, "commitment": "0x" + c.hex(), **done}
    sent = ctx.chain.add_input(ctx.signer, p.Commit(prep.job, prep.round, c).encode())
    try:
        reports = ctx.node.result(sent.index)
    except InputRefusedByApp as exc:
        # an earlier run's commit landed after all (it was killed before recording it): if the
        # chain holds exactly this commitment, the round goes on with the saved salt
        if "already committed" in exc.reason and "committed" in sync_round(ctx, prep.job, prep.round):
            reports = [f"already committed (by an earlier run): {exc.reason}"]
        else:
            raise
    save_round(ctx, prep.job, prep.round, committed=sent.index)
    prep.timings["commit"] = time.perf_counter() - t0
    return {"job": prep.job, "round": prep.round, "commitment": "0x" + c.hex(),
            "input": sent.index, "reports": reports}


def reveal(ctx: Context, prep: Prepared) -> dict[str, Any]:
    """Send the reveal; a refusal (e.g. a copied model) is returned, not raised, with its reason."""
    t0 = time.perf_counter()
    spec = spec_of(ctx, prep.job)
    content_reachable(ctx, spec, [prep.model_cid, prep.data_cid])
    uploads = ([post_content(ctx, prep.model_cid).to_json(), post_content(ctx, prep.data_cid).to_json()]
               if uses_inputs(spec) else [])
    if ctx.relay_url:
        done = _relayed(ctx, p.Reveal(prep.job, prep.round, prep.model_cid, prep.data_cid,
                                      prep.salt))
        save_round(ctx, prep.job, prep.round, revealed=done["input"], reveal_accepted=True)
        prep.timings["reveal"] = time.perf_counter() - t0
        return {"job": prep.job, "round": prep.round, "model_cid": prep.model_cid,
                "data_cid": prep.data_cid, "uploads": uploads, "accepted": True, **done}
    sent = ctx.chain.add_input(ctx.signer, p.Reveal(prep.job, prep.round, prep.model_cid,
                                                    prep.data_cid, prep.salt).encode())
    out: dict[str, Any] = {"job": prep.job, "round": prep.round, "input": sent.index,
                           "model_cid": prep.model_cid, "data_cid": prep.data_cid,
                           "uploads": uploads}
    try:
        out["reports"] = ctx.node.result(sent.index)
        out["accepted"] = True
    except InputRefusedByApp as exc:
        out["accepted"], out["reason"] = False, exc.reason
    save_round(ctx, prep.job, prep.round, revealed=sent.index, reveal_accepted=out["accepted"])
    prep.timings["reveal"] = time.perf_counter() - t0
    return out


def prepared_from_state(ctx: Context, job: int, r: int) -> Prepared | None:
    st = load_state(ctx, job)["rounds"].get(str(r))
    if not st or "model_cid" not in st:
        return None
    return Prepared(job, r, st["model_cid"], st["data_cid"], bytes.fromhex(st["salt"][2:]),
                    model_hash=st.get("model_hash", ""))


def sync_round(ctx: Context, job: int, r: int) -> dict[str, Any]:
    """Reconcile round `r`'s local state with the market's (inspect `job/<id>/round/<r>`), for a
    run that restarts after a kill: a commit or a reveal that reached the chain but was never
    recorded locally is recorded now (a commit only if it matches the saved model, card and
    salt, which were written before it was sent). Returns the updated local round state."""
    me = ctx.signer.address.lower()
    st = load_state(ctx, job)["rounds"].get(str(r), {})
    try:
        node_ready(ctx)  # an input sent just before the kill may still be in the node's queue
        rnd = ctx.node.inspect(f"job/{job}/round/{r}")
    except Exception:
        return st
    fields: dict[str, Any] = {}
    if me in rnd.get("commits", {}) and "committed" not in st:
        prep = prepared_from_state(ctx, job, r)
        want = None if prep is None else "0x" + p.commitment(
            me, job, r, prep.model_cid, prep.data_cid, prep.salt).hex()
        if want is not None and rnd["commits"][me].lower() == want:
            fields["committed"] = "on chain"
        else:
            fields["commit_lost"] = ("the chain holds a commitment of ours that no saved salt "
                                     "matches: this round cannot be revealed")
    if me in rnd.get("reveals", {}) and "revealed" not in st:
        fields.update(revealed="on chain", reveal_accepted=True)
    if fields:
        save_round(ctx, job, r, **fields)
        st = dict(st, **fields)
    return st


def contributions(ctx: Context, job: int, address: str | None = None) -> list[dict[str, Any]]:
    """This trainer's verdict, contribution and reward in each closed round (round notices),
    then, once the job finished, a row with round "end": its share of what the rounds did not
    spend (the job_finished notice's `leftover`: pro rata to what it earned, or, in a job that
    settles (`pay: "settle"`, the template's), what tops it up to its share of the value it
    created). Jobs paying at a price pay part of every trainer's reward there, so a total
    without it was short."""
    me = (address or ctx.signer.address).lower()
    out: list[dict[str, Any]] = []
    for n in ctx.node.round_notices(job):
        for t in n.data["trainers"]:
            if t["address"] == me:
                out.append({"round": n.data["round"], "verdict": t["verdict"],
                            "contribution": t.get("contribution"),
                            "reward": str(t.get("reward", 0)), "reason": t.get("reason"),
                            "token": n.data.get("token")})
        fin = n.data.get("job_finished") or {}
        share = int(fin.get("leftover", {}).get(me, 0))
        if share:
            out.append({"round": "end", "verdict": "job finished", "contribution": None,
                        "reward": str(share), "token": n.data.get("token"),
                        "reason": ("the rest of the escrow, up to your share of the value you "
                                   "created over the whole job"
                                   if fin.get("leftover_by") == "value" else
                                   "the rest of the escrow, pro rata to what you earned")})
    return out


def revealed_rounds(ctx: Context, job: int) -> list[int]:
    """Rounds this account revealed in, from local state (kept across restarts)."""
    return sorted(int(r) for r, st in load_state(ctx, job)["rounds"].items()
                  if "revealed" in st and st.get("reveal_accepted", True))


def follow(ctx: Context, job: int, x: np.ndarray, y: np.ndarray, behaviour: Behaviour, *,
           max_rounds: int | None = None, poll: float = 1.0, timeout: float | None = None,
           on_event: Callable[[str, dict[str, Any]], None] = lambda kind, data: None) -> int:
    """Play job `job` until it ends (or `max_rounds` rounds were revealed in this run); returns
    the number of rounds revealed in this run. Windows are judged by the chain's block time.

    Restart-safe: the model, card and salt of a round are saved before its commit is sent; a
    rerun after a kill at any point reuses them (no retraining, no new salt), records a commit
    or reveal the chain already holds, and goes on from there. Emits a "phase" event whenever
    the round's phase changes (with its deadline)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done, last_revealed = 0, -1
    info = job_info(ctx, job)
    if info["status"] != "open":
        raise TrainerError(f"job {job} is {info['status']}: nothing to do")
    spec = job_spec(ctx, info)
    w = spec["windows"]
    node_ready(ctx)  # what inspect says below must include every input already on chain
    if ctx.signer.address.lower() not in info["trainers"]:
        on_event("join", join(ctx, job))
    synced: set[int] = set()
    last_phase: tuple[int, str] | None = None
    while True:
        info = job_info(ctx, job)
        if info["status"] != "open":
            on_event("finished", {"job": job, "status": info["status"]})
            return done
        rnd = info["rounds"][-1]
        r, start = int(rnd["round"]), int(rnd["start"])
        now = ctx.chain.block_timestamp()
        if r not in synced:
            st = sync_round(ctx, job, r)
            synced.add(r)
            if "commit_lost" in st:
                on_event("warning", {"round": r, "text": st["commit_lost"]})
        else:
            st = load_state(ctx, job)["rounds"].get(str(r), {})
        ph = round_phase(dict(info, id=job), w, now)
        if (r, ph.name) != last_phase:
            last_phase = (r, ph.name)
            on_event("phase", {**ph.to_json(), "text": ph.describe(),
                               "committed": "committed" in st, "revealed": "revealed" in st})
        commit_end, reveal_end = start + w["commit"], start + w["commit"] + w["reveal"]
        more = max_rounds is None or done < max_rounds  # never commit to a round we would abandon
        if more and "committed" not in st and "commit_lost" not in st and start <= now < commit_end:
            prep = prepared_from_state(ctx, job, r)
            if prep is None:  # train only once per round: a rerun reuses the saved update
                on_event("training", {"round": r, "samples": int(len(y))})
                prep = prepare(ctx, job, x, y, behaviour, info, spec)
                on_event("trained", {"round": r, **prep.timings})
            else:
                on_event("resumed", {"round": r, "model_cid": prep.model_cid})
            on_event("committed", commit(ctx, prep))
            last_phase = None  # say again where the round stands, now that we wait
            continue
        if "committed" in st and "revealed" not in st and commit_end <= now < reveal_end:
            prep = prepared_from_state(ctx, job, r)
            assert prep is not None
            on_event("revealed", reveal(ctx, prep))
            done += 1
            last_revealed = r
            last_phase = None
            continue
        if max_rounds is not None and done >= max_rounds and _closed(ctx, job, last_revealed):
            return done
        if deadline is not None and time.monotonic() > deadline:
            raise TrainerError(f"timed out following job {job}: {ph.describe()}")
        time.sleep(poll)


def _closed(ctx: Context, job: int, r: int) -> bool:
    return r < 0 or any(n.data["round"] == r for n in ctx.node.round_notices(job))


def close_round(ctx: Context, job: int, round_: int | None = None) -> dict[str, Any]:
    """Close a round; refused locally (nothing sent), with the time left, while its reveal
    window (or the owner's validation window, before the shard is revealed) is still open."""
    info = job_info(ctx, job)
    if info["status"] != "open":
        raise TrainerError(f"job {job} is {info['status']}: no round to close")
    cur = int(info["rounds"][-1]["round"])
    r = cur if round_ is None else round_
    if r != cur:
        raise TrainerError(f"round {r} of job {job} is not open: the current round is {cur}")
    spec = job_spec(ctx, info)
    rnd = ctx.node.inspect(f"job/{job}/round/{r}")
    ph = round_phase(dict(info, id=job), spec["windows"], ctx.chain.block_timestamp(),
                     bool(rnd.get("validation_cid")))
    if ph.name in ("waiting", "commit", "reveal"):
        raise too_early(ctx, f"round {r} cannot close before its reveal window ends; that is",
                        ph.reveal_end, ph.now)
    if ph.name == "validation":
        raise too_early(ctx, f"round {r} waits for the owner's validation shard (the owner: "
                        f"`tributary owner reveal-validation --job {job}`); without it, it can "
                        f"close", ph.validation_end, ph.now)
    sent = ctx.chain.add_input(ctx.signer, p.CloseRound(job, r).encode())
    ctx.node.result(sent.index)
    notice = [n for n in ctx.node.round_notices(job) if n.input_index == sent.index]
    return {"job": job, "round": r, "input": sent.index,
            "notice": notice[0].data if notice else None}
