"""Checks that run before any paid step, and the words the CLI uses for time and money.

Why a module of its own: a transaction costs gas (and a deposit moves the reward) whether or
not the backend accepts it. Every command that sends one first checks locally what it can
(the node answers and has processed every input the chain holds, the round's window is open,
the account can pay value + gas), refuses with the time left or the amount missing, and only
then pays. What it cannot check (content the node fetches over GIO, for instance) is said so.

Times are block times (the market's windows are measured in input block timestamps), printed as
local wall-clock times and as "in 4 min"; on a devnet block time moves only when blocks are
mined, so the hints name `tributary dev advance-time` and `tributary dev mine`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

ETHER = 10**18
ZERO_ADDRESS = "0x" + "00" * 20
ANVIL_CHAIN_ID = 31337


class PreflightError(Exception):
    """A step would fail (or waste a transaction) if sent now; the message says why and when."""


# --- money -----------------------------------------------------------------------------------

def token_name(token: str | None) -> str:
    """'ETH' for ether (the zero address stands for it in the market's ledger), else the address."""
    if token is None or int(token, 16) == 0:
        return "ETH"
    return token.lower()


def fmt_amount(wei: int | str, token: str | None = None) -> str:
    """Ether amounts in ETH with every significant digit (1 wei is 0.000000000000000001 ETH);
    ERC-20 amounts in the token's base units, named by the token address."""
    v = int(wei)
    if token_name(token) != "ETH":
        return f"{v:,} units of {token_name(token)}"
    d = (Decimal(v) / ETHER).normalize()
    text = f"{d:f}"
    return f"{text} ETH"


# --- time ------------------------------------------------------------------------------------

def fmt_duration(seconds: int | float) -> str:
    s = int(abs(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min" + (f" {r} s" if r and m < 10 else "")
    h, r = divmod(s, 3600)
    return f"{h} h" + (f" {r // 60} min" if r // 60 else "")


def fmt_when(ts: int, now: int) -> str:
    """'16:02:11 (in 4 min)' / '15:40:00 (3 min ago)': local clock time of a block timestamp,
    and its distance from the current block time `now`."""
    dt = datetime.fromtimestamp(int(ts)).astimezone()
    today = datetime.fromtimestamp(int(now)).astimezone().date()
    clock = dt.strftime("%H:%M:%S") if dt.date() == today else dt.strftime("%Y-%m-%d %H:%M:%S")
    zone = dt.strftime("%Z")
    d = int(ts) - int(now)
    rel = "now" if d == 0 else (f"in {fmt_duration(d)}" if d > 0 else f"{fmt_duration(d)} ago")
    return f"{clock} {zone} ({rel})".replace("  ", " ")


# --- a round's phase -------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """Where a job's current round stands at block time `now`.

    `name`: waiting (commit window not open yet) | commit | reveal (trainers reveal; the owner
    may already reveal the shard) | validation (reveals over; the round closes once the owner
    reveals or the validation window ends) | closable | finished."""

    job: int
    round: int
    name: str
    now: int
    start: int
    commit_end: int
    reveal_end: int
    validation_end: int
    validation_revealed: bool | None = None

    def describe(self) -> str:
        n, w = self.now, fmt_when
        if self.name == "finished":
            return f"job {self.job} has ended"
        head = f"job {self.job} round {self.round}: "
        if self.name == "waiting":
            return head + f"commit window opens at {w(self.start, n)}"
        if self.name == "commit":
            return head + f"commit window open until {w(self.commit_end, n)}"
        if self.name == "reveal":
            return head + f"reveal window open until {w(self.reveal_end, n)}"
        if self.name == "validation":
            return head + (f"reveals over; waiting for the owner's validation shard until "
                           f"{w(self.validation_end, n)}")
        return head + "can be closed now (`tributary close-round --job " f"{self.job}`)"

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "round": self.round, "phase": self.name, "block_time": self.now,
                "commit_opens": self.start, "commit_closes": self.commit_end,
                "reveal_closes": self.reveal_end, "validation_closes": self.validation_end}


def round_phase(info: dict[str, Any], windows: dict[str, int], now: int,
                validation_revealed: bool | None = None) -> Phase:
    """The phase of `info`'s (inspect `job/<id>`) current round, from the spec's windows and the
    block time; the same arithmetic as the market's own window checks (dapp/market/app.py)."""
    rnd = info["rounds"][-1]
    r, start = int(rnd["round"]), int(rnd["start"])
    ce = start + int(windows["commit"])
    re_ = ce + int(windows["reveal"])
    ve = re_ + int(windows["validation"])
    if info.get("status", "open") != "open":
        name = "finished"
    elif now < start:
        name = "waiting"
    elif now < ce:
        name = "commit"
    elif now < re_:
        name = "reveal"
    elif validation_revealed is False and now < ve:
        name = "validation"
    else:
        name = "closable"
    return Phase(int(info.get("id", info.get("job", 0))), r, name, now, start, ce, re_, ve,
                 validation_revealed)


def is_devnet(ctx: Any) -> bool:
    """An anvil chain (chain id 31337): block time moves only when someone mines."""
    try:
        return int(ctx.chain.w3.eth.chain_id) == ANVIL_CHAIN_ID
    except Exception:
        return False


def time_hint(ctx: Any, seconds: int) -> str:
    if seconds > 0 and is_devnet(ctx):
        return (f" On a devnet block time only moves when blocks are mined: "
                f"`tributary dev advance-time {int(seconds)}`.")
    return ""


def too_early(ctx: Any, what: str, opens: int, now: int) -> PreflightError:
    return PreflightError(f"too early: {what} at {fmt_when(opens, now)}; nothing was sent."
                          + time_hint(ctx, opens - now))


# --- the node --------------------------------------------------------------------------------

def chain_input_count(ctx: Any) -> int:
    """How many inputs the InputBox holds for the Application (what the node must process)."""
    return int(ctx.chain.input_box.functions.getNumberOfInputs(ctx.chain.app).call())


def node_ready(ctx: Any, wait: float = 15.0) -> dict[str, Any]:
    """The node answers, is healthy, and has processed every input on chain (waiting up to
    `wait` seconds for it to catch up), so that what inspect says is current."""
    from client.node_api import NodeUnavailable

    try:
        health = ctx.node.health()
    except NodeUnavailable as exc:
        raise PreflightError(f"{exc}; nothing was sent. Start the node (e.g. `python -m rollup "
                             f"devnet`) or pass --node URL") from None
    except ValueError:
        raise PreflightError(f"the node at {ctx.node.url} does not answer /health with JSON; "
                             f"nothing was sent") from None
    if health.get("status") != "ok":
        raise PreflightError(f"the node at {ctx.node.url} reports an error: "
                             f"{health.get('error')}; nothing was sent")
    want = chain_input_count(ctx)
    deadline = time.monotonic() + wait
    while True:
        have = ctx.node.processed_count()
        if have >= want:
            return {"processed": have, "on_chain": want}
        if time.monotonic() > deadline:
            raise PreflightError(f"the node at {ctx.node.url} has processed {have} of the {want} "
                                 f"inputs on chain: it is not following the chain (or is slow); "
                                 f"nothing was sent. Check its log, then retry")
        time.sleep(0.2)


# --- content ---------------------------------------------------------------------------------

def content_reachable(ctx: Any, spec: dict[str, Any], cids: list[str]) -> str:
    """Before a step whose input makes the backend fetch `cids` over GIO: can the node read
    them? A node whose store lacks them waits for them (the input stays undecided), so this is
    checked before paying. Jobs whose content travels through inputs are checked when posting
    (client.uploads). Returns how it was checked."""
    if spec.get("content_source", "gio") == "inputs":
        return "content through inputs: posted and checked before the input"
    node_store = getattr(ctx.cfg, "node_store", None)
    if node_store is None:
        return "unknown: the node's launcher did not say where it reads content"
    if node_store == "none":
        raise PreflightError(
            "the node serves no content over GIO (it was started without a content store), so "
            "it could not fetch this job's content; nothing was sent. Restart it with a store "
            "(`tributary dev up`), or set \"content_source\": \"inputs\" in the spec")
    if _same_store(node_store, ctx.cfg.store_spec):
        return "same store as the node"
    from client.config import open_content_store

    try:
        theirs = open_content_store(node_store)
        missing = [c for c in cids if not theirs.has(c)]
    except Exception as exc:
        raise PreflightError(f"the node reads content from {node_store}, which does not answer "
                             f"({exc}); nothing was sent") from None
    if missing:
        raise PreflightError(
            f"the node reads content from {node_store}, which lacks {', '.join(missing)} (you "
            f"stored into {ctx.cfg.store_spec}); nothing was sent. Pass --store {node_store}")
    return f"the node's store {node_store} holds it"


def _same_store(a: str, b: str) -> bool:
    if a.startswith("ipfs:") or b.startswith("ipfs:"):
        return a.rstrip("/") == b.rstrip("/")
    from pathlib import Path

    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


# --- funds -----------------------------------------------------------------------------------

def gas_cost(ctx: Any, gas: int) -> int:
    """What `gas` units cost at the current fee (max fee if EIP-1559), in wei."""
    w3 = ctx.chain.w3
    try:
        base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        price = max(int(w3.eth.gas_price), 2 * base + int(w3.eth.max_priority_fee))
    except Exception:
        price = int(w3.eth.gas_price)
    return gas * price


def check_funds(ctx: Any, value: int, gas: int, what: str) -> dict[str, int]:
    """Refuse locally when the account cannot pay `value` + `gas` (estimated) in ether."""
    held = ctx.chain.balance(ctx.signer.address)
    fee = gas_cost(ctx, gas)
    if held < value + fee:
        raise PreflightError(
            f"{what}: {ctx.signer.address} holds {fmt_amount(held)}, less than the "
            f"{fmt_amount(value)} to send plus about {fmt_amount(fee)} of gas; nothing was sent. "
            f"Fund the account first" + (" (devnet: `tributary dev fund ADDRESS 10eth`)"
                                         if is_devnet(ctx) else ""))
    return {"held": held, "value": value, "gas_fee": fee}


__all__ = ["PreflightError", "Phase", "round_phase", "fmt_amount", "fmt_when", "fmt_duration",
           "token_name", "node_ready", "check_funds", "content_reachable", "time_hint", "too_early", "is_devnet"]
