"""The market's whole state, as plain data.

Everything here is small (ids, addresses, hashes, integers); models and datasets live in a
content cache outside the state, keyed by their hashes, so copying the state to make an input
atomic is cheap. `digest()` is the canonical hash that tests use to prove that a refused input
changed nothing.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from dapp import canonical
from dapp.hashing import keccak
from dapp.market.ledger import Ledger

OPEN, FINISHED, CANCELLED = "open", "finished", "cancelled"


@dataclass
class Submission:
    model_cid: str
    data_cid: str
    model_hash: str
    weight: int
    num_samples: int
    label_histogram: str = ""
    """The data card's declared label histogram, its counts comma-separated: the classes the
    validated rule's ``card_classes`` evidence judges this update on. A string because the
    whole state is copied for every input and a string is copied in O(1) (a tuple of up to
    num_classes = 65,536 counts per reveal was 0.66 s per input for one open 50-trainer
    round); emptied when the round closes."""

    @property
    def histogram(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.label_histogram.split(",")) if self.label_histogram else ()


@dataclass
class Round:
    index: int
    start: int
    """Block timestamp at which the commit window opens."""
    budget: int
    """Wei (or token units) this round pays: its share of the deposit plus what earlier rounds
    carried over."""
    commits: dict[str, str] = field(default_factory=dict)
    reveals: dict[str, Submission] = field(default_factory=dict)
    validation_cid: str | None = None
    summary: dict[str, Any] | None = None
    """The round notice, once the round closed."""

    @property
    def closed(self) -> bool:
        return self.summary is not None


@dataclass
class Job:
    id: int
    owner: str
    token: str
    budget: int
    escrow: int
    spec_cid: str
    opened_at: int
    status: str
    global_model_cid: str
    global_model_hash: str
    hparams: dict[str, Any]
    trainers: list[str] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    accuracy_history: list[int] = field(default_factory=list)
    revealed_model_hashes: list[str] = field(default_factory=list)
    """Every model hash revealed in this job's closed rounds: re-revealing one is copying."""
    paid: dict[str, int] = field(default_factory=dict)
    """What each address earned in this job's closed rounds: after the last round, what is left
    of the escrow is paid pro rata to these totals (the owner is refunded only when nobody
    earned anything in the whole job)."""

    @property
    def current(self) -> Round:
        return self.rounds[-1]


@dataclass
class MarketState:
    jobs: dict[int, Job] = field(default_factory=dict)
    next_job_id: int = 1
    ledger: Ledger = field(default_factory=Ledger)

    def clone(self) -> "MarketState":
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["jobs"] = {str(k): v for k, v in data["jobs"].items()}
        return data

    def digest(self) -> bytes:
        return keccak(canonical.dumps(self.to_json()))

    def escrowed(self, token: str) -> int:
        return sum(j.escrow for j in self.jobs.values() if j.token == token)

    def conserved(self) -> bool:
        """Money conservation, for every token that ever came in."""
        led = self.ledger
        return all(
            led.deposited[t] == led.total_balances(t) + self.escrowed(t) + led.withdrawn.get(t, 0)
            for t in led.deposited)
