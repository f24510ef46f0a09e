"""GIO (generic I/O) resolvers: how the host-mode node answers a backend's `/gio` request.

The official v2 node does not serve GIO; ours does, so that content (models, shards) can be
fetched by hash instead of being pushed through inputs. Storage backends plug in behind
`ContentResolver`; the backend verifies every answer, so a resolver need not be trusted for
*integrity*. It is trusted for *availability* (the data-availability assumption of GIO mode):
"not found" changes what the backend decides, so the node may only say it when its content
source was reachable and really lacks the block.

Hence three kinds of answer, never confused:
- found (`CODE_OK`) and not found (`CODE_NOT_FOUND`, `CODE_UNSUPPORTED_DOMAIN`): verdicts the
  backend may act on; `JournaledResolver` records each one per input (code + sha-256 of the
  bytes) in the node's state folder, so a replay re-serves exactly the same answers;
- unavailable (`CODE_UNAVAILABLE`): the store is down, timed out, or there is no store at all.
  Never recorded and never a verdict: the node retries with backoff, logging loudly, and if the
  content stays out of reach it does not commit the input (it restarts the backend and tries
  again), or, during a replay, stops with a message naming the CID.

The codes are the backend's (`dapp/content/source.py` has the table and what the market does with
each: code 4 is "temporarily unavailable", which it never turns into a refused input).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

log = logging.getLogger(__name__)

DOMAIN_BLOCK_BY_CID = 0x10
CODE_OK = 0
CODE_NOT_FOUND = 1
CODE_UNSUPPORTED_DOMAIN = 2
CODE_ERROR = 3  # kept for compatibility; the node no longer answers it (see CODE_UNAVAILABLE)
CODE_UNAVAILABLE = 4  # "temporarily unavailable": the backend must never turn it into a verdict
VERDICT_CODES = (CODE_OK, CODE_NOT_FOUND, CODE_UNSUPPORTED_DOMAIN)

JOURNAL_FILE = "gio.sqlite"
DEFAULT_RETRY_BUDGET_S = 30.0  # must stay below the backend's rollup-API timeout (60 s)


@dataclass(frozen=True)
class GioResponse:
    code: int
    data: bytes = b""
    why: str = ""  # for CODE_UNAVAILABLE: what failed (logged, never sent to the backend)


@runtime_checkable
class ContentResolver(Protocol):
    def resolve(self, domain: int, id: bytes) -> GioResponse: ...


def describe_id(domain: int, id: bytes) -> str:
    """A GIO id as a person reads it: the CID string for domain 0x10, else hex."""
    if domain == DOMAIN_BLOCK_BY_CID:
        try:
            from dapp.content.cid import Cid

            return str(Cid.from_bytes(bytes(id)))
        except Exception:
            pass
    return f"domain 0x{domain:02x} id 0x{bytes(id).hex()}"


class NullResolver:
    """The node has no content store: every block is *unavailable* (not "not found": another
    node with a store would find it, and the two must not decide differently)."""

    def resolve(self, domain: int, id: bytes) -> GioResponse:
        if domain == DOMAIN_BLOCK_BY_CID:
            return GioResponse(CODE_UNAVAILABLE, why="this node has no content store "
                               "(start it with --content-store DIR or --ipfs-api MULTIADDR)")
        return GioResponse(CODE_UNSUPPORTED_DOMAIN)


class BlockStoreResolver:
    """Domain 0x10: one block by binary CID, from any `get_block(cid_bytes)` callable.

    `get_block` returns the bytes, None for "the store is reachable and lacks it", or raises
    when the store cannot answer (down, timeout, corrupt bytes): that is answered as
    unavailable, never as not found."""

    def __init__(self, get_block: Callable[[bytes], bytes | None]) -> None:
        self._get_block = get_block

    def resolve(self, domain: int, id: bytes) -> GioResponse:
        if domain != DOMAIN_BLOCK_BY_CID:
            return GioResponse(CODE_UNSUPPORTED_DOMAIN)
        try:
            data = self._get_block(bytes(id))
        except Exception as exc:  # a broken store must not take the node down, nor decide
            log.warning("content store failed on GIO id %s: %s", describe_id(domain, id), exc)
            return GioResponse(CODE_UNAVAILABLE, why=f"{type(exc).__name__}: {exc}")
        if data is None:
            return GioResponse(CODE_NOT_FOUND)
        return GioResponse(CODE_OK, bytes(data))


def resolver_from_args(content_store: str | None = None, ipfs_api: str | None = None) -> ContentResolver:
    """Build the node's resolver from its CLI options (`rollup.content` wires in the stores of
    `client.storage`, imported lazily)."""
    if not content_store and not ipfs_api:
        return NullResolver()
    from rollup import content

    return content.resolver_from_args(content_store, ipfs_api)


class JournaledResolver:
    """Wraps the node's resolver: retries unavailable content with backoff, records every verdict
    per input and re-serves it on replay.

    The node tells it which input runs (`begin(index, replay=...)`, then `end()` before it
    commits the input); outside an input (inspects) answers pass through unrecorded and are
    never retried, since an inspect changes nothing. `end()` returns None, or a message when
    some content stayed unavailable during the input: the node must then not commit it (even
    if the backend, retrying by itself, got the content later: another backend might have
    decided on the "unavailable" answer, so the run is discarded and the input run afresh).
    During a replay, a block recorded as found that cannot be served again sets `fatal`: the
    node aborts the request and stops with that message (the backend may wait forever).

    Records live in `<state>/gio.sqlite`, table `answers(input_index, domain, id, code, sha256)`,
    written in one transaction at `end()` (so before the node commits the input; a discarded
    run records nothing). On replay:
    a recorded not-found is answered again without asking the store (the content may have
    appeared since); a recorded found block must come back with the same sha-256, else it is
    unavailable (the node stops rather than diverge).
    """

    def __init__(self, inner: ContentResolver, path: str | Path | None, *,
                 stop: threading.Event | None = None, retry_budget: float = DEFAULT_RETRY_BUDGET_S,
                 first_delay: float = 0.25, max_delay: float = 5.0) -> None:
        self.inner = inner
        self.stop_event = stop or threading.Event()
        self.retry_budget = retry_budget
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers(input_index INTEGER NOT NULL, domain INTEGER NOT NULL,"
                " id BLOB NOT NULL, code INTEGER NOT NULL, sha256 BLOB NOT NULL,"
                " PRIMARY KEY(input_index, domain, id))")
        self._input: int | None = None
        self._replay = False
        self._pending: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        self._unavailable: str | None = None
        self.fatal: str | None = None  # set during a replay that cannot go on: the node stops
        self.retries = 0  # how many times an answer was retried (tests, logs)
        self.last_unavailable: str | None = None  # the latest stall's message (verify reports it)

    # ------------------------------------------------------------------ node side
    def begin(self, input_index: int | None, replay: bool = False) -> None:
        with self._lock:
            self._input, self._replay = input_index, replay
            self._pending, self._unavailable, self.fatal = {}, None, None

    def end(self) -> str | None:
        """Flush this input's records; returns why content was unavailable (None: it never was)."""
        with self._lock:
            index, pending, why = self._input, self._pending, self._unavailable
            self._input, self._replay, self._pending, self._unavailable = None, False, {}, None
            if index is not None and pending and why is None and self._db is not None:
                with self._db:  # one transaction
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)",
                        [(index, d, i, c, h) for (d, i), (c, h) in pending.items()])
            return why

    def recorded(self, input_index: int, domain: int, id: bytes) -> tuple[int, bytes] | None:
        """The (code, sha256) recorded for this request of this input, if any."""
        if self._db is None:
            return None
        row = self._db.execute("SELECT code, sha256 FROM answers WHERE input_index=? AND domain=? AND id=?",
                               (input_index, domain, bytes(id))).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def close(self) -> None:
        self.stop_event.set()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ------------------------------------------------------------------ backend side (HTTP thread)
    def resolve(self, domain: int, id: bytes) -> GioResponse:
        id = bytes(id)
        with self._lock:
            index, replay = self._input, self._replay
            rec = self._pending.get((domain, id))
            if rec is None and index is not None:
                rec = self.recorded(index, domain, id)
        if index is None:  # an inspect: one try, nothing recorded
            resp = self.inner.resolve(domain, id)
            return GioResponse(CODE_UNAVAILABLE) if resp.code not in VERDICT_CODES else resp
        if rec is not None and rec[0] != CODE_OK:
            return GioResponse(rec[0])  # the recorded verdict, whatever the store says today
        deadline = time.monotonic() + self.retry_budget
        delay = self.first_delay
        while True:
            resp = self.inner.resolve(domain, id)
            if rec is not None:  # found before: must be found again, with the same bytes
                if resp.code == CODE_OK and hashlib.sha256(resp.data).digest() == rec[1]:
                    return resp
                what = describe_id(domain, id)  # only on the way to a retry (it parses the CID)
                now = ("other bytes" if resp.code == CODE_OK else "not found" if resp.code == CODE_NOT_FOUND
                       else resp.why or f"code {resp.code}")
                why = (f"{what} was found when input {index} was first processed, but the content "
                       f"source now answers: {now}")
            elif resp.code in VERDICT_CODES:
                with self._lock:
                    if self._input == index:
                        self._pending.setdefault((domain, id), (resp.code, hashlib.sha256(resp.data).digest()))
                return resp
            else:
                what = describe_id(domain, id)
                why = f"{what} is unavailable: {resp.why or f'code {resp.code}'}"
            left = deadline - time.monotonic()
            if left <= 0 or self.stop_event.is_set():
                msg = (f"input {index}{' (replay)' if replay else ''} needs {what}; {why}. The node "
                       f"will not decide this input without it (a node must never answer 'not found' "
                       f"for content it cannot reach)")
                log.error("%s", msg)
                with self._lock:
                    self.last_unavailable = msg
                    if self._input == index:
                        self._unavailable = msg
                        if replay and rec is not None:
                            # history cannot be rebuilt from this source: the node stops (a
                            # backend that retries by itself would otherwise wait forever)
                            self.fatal = msg
                return GioResponse(CODE_UNAVAILABLE)
            self.retries += 1
            log.warning("GIO: input %d needs %s: %s; retrying in %.1f s", index, what, why, min(delay, left))
            self.stop_event.wait(min(delay, left))
            delay = min(delay * 2, self.max_delay)


def journaled(resolver: ContentResolver, state_dir: str | Path, stop: threading.Event | None = None,
              retry_budget: float | None = None) -> JournaledResolver:
    """`resolver` wrapped with the node's journal in `state_dir` (as is if already wrapped).

    The retry budget per request (seconds) defaults to $TRIBUTARY_GIO_RETRY_S, else 30 s: it
    must stay below the backend's rollup-API timeout, after which the node retries the input."""
    if isinstance(resolver, JournaledResolver):
        if stop is not None:
            resolver.stop_event = stop
        return resolver
    if retry_budget is None:
        retry_budget = float(os.environ.get("TRIBUTARY_GIO_RETRY_S", DEFAULT_RETRY_BUDGET_S))
    return JournaledResolver(resolver, Path(state_dir) / JOURNAL_FILE, stop=stop, retry_budget=retry_budget)
