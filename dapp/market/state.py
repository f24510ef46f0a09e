"""The market's whole state, as plain data.

Everything here is small (ids, addresses, hashes, integers); models and datasets live in a
content cache outside the state, keyed by their hashes. An input works on a `trial()` of the
state, committed only when it succeeds, so a refused input changes nothing; the trial copies a
job only when the input reads it (`TrialJobs`), because the jobs grow with the market's history
and copying all of them for every input made every input slower than the last (1,000 finished
50-trainer jobs: 5.7 s per input on x86-64, bench/state_growth.py, before the RISC-V
emulator's slowdown).
`digest()` is the canonical hash that tests use to prove that a refused input changed nothing.
It hashes each job on its own and keeps a multiset hash of (id, job hash) pairs, so that the
market can re-hash only the jobs inputs wrote (`JobDigests`) and answer the free `state` query
in time that does not grow with history (every job re-hashed: 14 s at 1,000 finished
50-trainer jobs; 0.9 ms now, bench/state_growth.py).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, MutableMapping

from dapp import canonical
from dapp.hashing import MultisetHash, keccak
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
    of the escrow is paid pro rata to these totals, or settled against them (``value``); the
    owner is refunded only when nobody earned anything in the whole job."""
    price: str = ""
    """``pay: "value"`` and ``"settle"`` jobs: wei per unit of value ("p/q"), set by the first
    round valued in the rule's score utility; "" until then (and for every other job)."""
    value: dict[str, int] = field(default_factory=dict)
    """``pay: "settle"`` jobs: the value each address created in the rounds valued in the rule's
    score utility (whole units); after the last round what is left of the escrow tops earners
    up towards their share of the job's pay by these totals."""

    @property
    def current(self) -> Round:
        return self.rounds[-1]


class TrialJobs(MutableMapping[int, Job]):
    """The jobs as one input sees them: a job read through ``[]`` or ``get`` is deep-copied the
    first time (the input may change it) and the committed jobs are left as they were until
    ``commit``. ``values()`` and ``items()`` give the current version of every job without
    copying it: read them, never change them."""

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

    @property
    def nested(self) -> bool:
        """Taken from another input's jobs (a batch's message), not from the committed ones."""
        return isinstance(self._base, TrialJobs)

    def changes(self) -> Iterator[tuple[int, Job | None, Job]]:
        """(id, the version it was taken from or None for a new job, this input's version) of
        every job this input read or created."""
        for k, job in self._own.items():
            yield k, (peek_job(self._base, k) if k in self._base else None), job

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
class JobIndex:
    """What every input would otherwise scan every job for: each token's escrow total (money
    conservation) and the open jobs (what the backend keeps models for). Kept as commits write
    jobs; at 100,000 small jobs the scans cost 60 ms per input (bench/state_growth.py)."""

    escrow: dict[str, int] = field(default_factory=dict)
    open: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, jobs: MutableMapping[int, Job]) -> "JobIndex":
        index = cls()
        for k, job in jobs.items():
            index.move(k, None, job)
        return index

    def move(self, job_id: int, old: Job | None, new: Job) -> None:
        """Job `job_id` went from `old` (None: it is new) to `new`."""
        _move_escrow(self.escrow, old, new)
        if new.status == OPEN:
            self.open.add(job_id)
        else:
            self.open.discard(job_id)


def _move_escrow(escrow: dict[str, int], old: Job | None, new: Job) -> None:
    """Per-token escrow totals after one job went from `old` (None: new) to `new`."""
    if old is not None:
        escrow[old.token] = escrow.get(old.token, 0) - old.escrow
    escrow[new.token] = escrow.get(new.token, 0) + new.escrow


@dataclass
class MarketState:
    jobs: MutableMapping[int, Job] = field(default_factory=dict)
    next_job_id: int = 1
    ledger: LedgerView = field(default_factory=Ledger)
    index: JobIndex | None = field(default=None, compare=False, repr=False)
    """Of the committed jobs; built on the first trial, then kept by commits."""

    def trial(self, share_ledger: bool = False) -> "MarketState":
        """A state for one input to change: jobs copied when the input reads them, balances
        kept aside when the input changes them (`TrialLedger`), or the ledger shared when the
        caller knows the input cannot touch it (a batch's signed join, commit or reveal, tried
        once per message). ``commit()`` it on success; drop it on refusal and this state is
        unchanged."""
        if self.index is None:
            self.index = JobIndex.of(self.jobs)
        return MarketState(TrialJobs(self.jobs), self.next_job_id,
                           self.ledger if share_ledger else TrialLedger(self.ledger), self.index)

    def commit(self, digests: "JobDigests | None" = None) -> "MarketState":
        """The state this trial was taken from, with the trial's changes (the trial's fields
        replace its own; that state is the one to keep using). `digests` forgets the hash of
        every job the commit writes."""
        if isinstance(self.jobs, TrialJobs):
            written = list(self.jobs.changes())
            if digests is not None:
                digests.forget([k for k, _, _ in written])
            if self.index is not None and not self.jobs.nested:   # into the committed jobs
                for k, old, new in written:
                    self.index.move(k, old, new)
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
        """keccak over a multiset hash of (id, hash) of every job, the next job id and the
        ledger's digest. With `known`, the jobs' multiset hash kept as commits write jobs is
        taken from it (only the jobs written since are hashed), and the
        ledger's multiset hash kept as balances move, instead of recomputed (the same bytes
        while those caches are sound; tests compare both)."""
        jobs = known.root(self.jobs) if known is not None else _jobs_hash(self.jobs).digest()
        return keccak(canonical.dumps({"jobs": _hex(jobs), "next_job_id": self.next_job_id,
                                       "ledger": _hex(self._committed_ledger().digest(
                                           cached=known is not None))}))

    def open_jobs(self) -> list[int]:
        """The committed open jobs' ids, ascending."""
        return sorted(self._index().open)

    def escrow_total(self, token: str) -> int:
        """What the committed jobs hold in escrow in `token` (kept by commits, O(1))."""
        return self._index().escrow.get(token, 0)

    def audit(self) -> bool:
        """The job index is what scanning every committed job gives (tests call it)."""
        return self._index() == JobIndex.of(self.jobs)

    def _index(self) -> JobIndex:
        if self.index is None:
            self.index = JobIndex.of(self.jobs)
        return self.index

    def conserved(self) -> bool:
        """Money conservation: per token, deposited = balances + escrow + withdrawn. An input's
        trial checks only the tokens it moved (a job's escrow, a balance, a deposit or a
        withdrawal): the others are as the last commit left them, and every commit was checked.
        So no input scans every job or every token, and anyone adds a job with a deposit and a
        token with an ERC-20 deposit (escrows summed per token over every job: 358 ms per input
        at 1,000 tokens and 1,000 jobs; every token checked: 93 ms at 100,000 tokens, against
        0.12 ms now; bench/state_growth.py). Any other
        state checks every token."""
        escrow = self._index().escrow
        moved: dict[str, int] = {}
        if isinstance(self.jobs, TrialJobs):
            for _, old, new in self.jobs.changes():
                _move_escrow(moved, old, new)
        led = self.ledger
        tokens = (led.tokens_moved() | set(moved)
                  if isinstance(led, TrialLedger) and isinstance(self.jobs, TrialJobs)
                  else set(led.deposited) | set(moved))
        for t in tokens:
            deposited, withdrawn = led.flows(t)
            if deposited != led.total_balances(t) + escrow.get(t, 0) + moved.get(t, 0) + withdrawn:
                return False
        return True


def job_digest(job: Job) -> bytes:
    return keccak(canonical.dumps(asdict(job)))


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


class JobDigests:
    """A multiset hash of (id, hash) of every committed job, kept as commits write jobs: the
    free `state` query hashes only the jobs written since it was last asked (once every job,
    on the first ask after a start), not every job (14 s at 1,000 finished 50-trainer jobs;
    assembling every job's known hash was still 343 ms at 100,000 small ones).

    Sound only because a committed job changes solely by being replaced at commit (an input
    changes its own copy, `TrialJobs`); `forget` is called with every job a commit writes. The
    proofs that a refused input changed nothing use the uncached `digest()`, which would also
    catch an in-place change this cache would hide."""

    def __init__(self) -> None:
        self._known: dict[int, bytes] = {}
        self._set = MultisetHash()
        self._stale: set[int] | None = None   # None: nothing hashed yet

    def forget(self, job_ids: list[int]) -> None:
        for k in job_ids:
            d = self._known.pop(k, None)
            if d is not None:
                self._set.remove(_job_entry(k, d))
            if self._stale is not None:
                self._stale.add(k)

    def root(self, jobs: MutableMapping[int, Job]) -> bytes:
        """The multiset hash of the committed `jobs`, hashing only those written since."""
        for k in sorted(jobs if self._stale is None else self._stale):
            d = self._known[k] = job_digest(jobs[k])
            self._set.add(_job_entry(k, d))
        self._stale = set()
        return self._set.digest()


def _job_entry(job_id: int, digest: bytes) -> bytes:
    return job_id.to_bytes(32, "big") + digest


def _jobs_hash(jobs: MutableMapping[int, Job]) -> MultisetHash:
    h = MultisetHash()
    for k, job in jobs.items():
        h.add(_job_entry(k, job_digest(job)))
    return h
