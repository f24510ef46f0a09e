"""The market's whole state, as plain data.

Everything here is small (ids, addresses, hashes, integers); models and datasets live in a
content cache outside the state, keyed by their hashes. An input works on a `trial()` of the
state, committed only when it succeeds, so a refused input changes nothing; the trial copies a
job only when the input reads it (`TrialJobs`), because the jobs grow with the market's history
and copying all of them for every input made every input slower than the last (1,000 finished
50-trainer jobs: 4.7 s per input on x86-64, bench/state_growth.py, before the RISC-V
emulator's slowdown).
`digest()` is the canonical hash that tests use to prove that a refused input changed nothing.
It hashes each job on its own and then the list of job hashes, so that the market can keep the
hashes of jobs no input touched (`JobDigests`) and answer the free `state` query in time that
does not grow with history (every job re-hashed: 11.9 s at 1,000 finished 50-trainer jobs;
3.5 ms now, bench/state_growth.py).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, MutableMapping

from dapp import canonical
from dapp.hashing import keccak
from dapp.market.ledger import Ledger, LedgerView, TrialLedger

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
    validated rule's ``card_classes`` evidence judges this update on. A string because a job
    is copied whenever an input reads it and a string is copied in O(1) (a tuple of up to
    num_classes = 65,536 counts per reveal was 0.66 s per copy of an open 50-trainer round);
    emptied when the round closes."""

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


class TrialJobs(MutableMapping[int, Job]):
    """The jobs as one input sees them: a job read through ``[]`` or ``get`` is deep-copied the
    first time (the input may change it) and the committed jobs are left as they were until
    ``commit``. ``values()`` and ``items()`` give the current version of every job without
    copying it: read them, never change them (money conservation reads every escrow)."""

    def __init__(self, base: MutableMapping[int, Job]) -> None:
        self._base = base
        self._own: dict[int, Job] = {}

    def __getitem__(self, job_id: int) -> Job:
        job = self._own.get(job_id)
        if job is None:
            job = self._own[job_id] = copy.deepcopy(self._base[job_id])
        return job

    def __setitem__(self, job_id: int, job: Job) -> None:
        self._own[job_id] = job

    def __delitem__(self, job_id: int) -> None:
        raise TypeError("jobs are never deleted")

    def __iter__(self) -> Iterator[int]:
        yield from self._base
        yield from (k for k in self._own if k not in self._base)

    def __len__(self) -> int:
        return len(self._base) + sum(1 for k in self._own if k not in self._base)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._own or job_id in self._base

    def values(self) -> list[Job]:  # type: ignore[override]
        return [job for _, job in self.items()]

    def items(self) -> list[tuple[int, Job]]:  # type: ignore[override]
        return [(k, peek_job(self, k)) for k in self]

    def commit(self) -> MutableMapping[int, Job]:
        """Write the jobs this input changed (or created) into the jobs it was taken from, and
        return those."""
        for k, job in self._own.items():
            self._base[k] = job
        return self._base


def peek_job(jobs: MutableMapping[int, Job], job_id: int) -> Job:
    """A job's current version, never a copy: read it, never change it (KeyError if none)."""
    while isinstance(jobs, TrialJobs):
        if job_id in jobs._own:
            return jobs._own[job_id]
        jobs = jobs._base
    return jobs[job_id]


@dataclass
class MarketState:
    jobs: MutableMapping[int, Job] = field(default_factory=dict)
    next_job_id: int = 1
    ledger: LedgerView = field(default_factory=Ledger)

    def trial(self, share_ledger: bool = False) -> "MarketState":
        """A state for one input to change: jobs copied when the input reads them, balances
        kept aside when the input changes them (`TrialLedger`), or the ledger shared when the
        caller knows the input cannot touch it (a batch's signed join, commit or reveal, tried
        once per message). ``commit()`` it on success; drop it on refusal and this state is
        unchanged."""
        return MarketState(TrialJobs(self.jobs), self.next_job_id,
                           self.ledger if share_ledger else TrialLedger(self.ledger))

    def commit(self, digests: "JobDigests | None" = None) -> "MarketState":
        """The state this trial was taken from, with the trial's changes (the trial's fields
        replace its own; that state is the one to keep using). `digests` forgets the hash of
        every job the commit writes."""
        if isinstance(self.jobs, TrialJobs):
            if digests is not None:
                digests.forget(list(self.jobs._own))
            self.jobs = self.jobs.commit()
        if isinstance(self.ledger, TrialLedger):
            self.ledger = self.ledger.commit()
        return self

    def to_json(self) -> dict[str, Any]:
        return {"jobs": {str(k): asdict(job) for k, job in self.jobs.items()},
                "next_job_id": self.next_job_id, "ledger": asdict(self._committed_ledger())}

    def _committed_ledger(self) -> Ledger:
        if not isinstance(self.ledger, Ledger):
            raise TypeError("only a committed state has a canonical form (commit the trial)")
        return self.ledger

    def digest(self, known: "JobDigests | None" = None) -> bytes:
        """keccak over the hash of every job, the next job id and the ledger's digest. With
        `known`, the hashes of jobs no committed input touched since are taken from it, and the
        ledger's multiset hash kept as balances move, instead of recomputed (the same bytes
        while those caches are sound; tests compare both)."""
        jobs = {str(k): _hex(known.of(k, job) if known is not None else job_digest(job))
                for k, job in self.jobs.items()}
        return keccak(canonical.dumps({"jobs": jobs, "next_job_id": self.next_job_id,
                                       "ledger": _hex(self._committed_ledger().digest(
                                           cached=known is not None))}))

    def conserved(self) -> bool:
        """Money conservation, for every token that ever came in: one pass over the jobs and
        one over the tokens (anyone can add a token with one ERC-20 deposit; summing the
        escrows once per token was 330 ms per input at 1,000 tokens and 1,000 jobs)."""
        escrow: dict[str, int] = {}
        for j in self.jobs.values():
            escrow[j.token] = escrow.get(j.token, 0) + j.escrow
        led = self.ledger
        withdrawn = led.withdrawn
        return all(v == led.total_balances(t) + escrow.get(t, 0) + withdrawn.get(t, 0)
                   for t, v in led.deposited.items())


def job_digest(job: Job) -> bytes:
    return keccak(canonical.dumps(asdict(job)))


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


class JobDigests:
    """The hash of each committed job, kept until an input that touched the job commits.

    Sound only because a committed job changes solely by being replaced at commit (an input
    changes its own copy, `TrialJobs`); `forget` is called with every job a commit wrote. The
    proofs that a refused input changed nothing use the uncached `digest()`, which would also
    catch an in-place change this cache would hide."""

    def __init__(self) -> None:
        self._known: dict[int, bytes] = {}

    def of(self, job_id: int, job: Job) -> bytes:
        d = self._known.get(job_id)
        if d is None:
            d = self._known[job_id] = job_digest(job)
        return d

    def forget(self, job_ids: list[int]) -> None:
        for k in job_ids:
            self._known.pop(k, None)
