"""The node's SQLite state: inputs, outputs, reports, epochs and the reader's cursor.

One transaction per processed input (its outputs, reports and status together) and one per batch
of read logs (the inputs and the scanned block together), so a SIGKILL at any moment leaves
either all or nothing of a step. WAL lets the JSON-RPC threads read while the worker writes.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rollup.merkle import leaf_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs(
  idx INTEGER PRIMARY KEY,
  epoch INTEGER NOT NULL,
  block_number INTEGER NOT NULL,
  block_timestamp INTEGER NOT NULL,
  chain_id INTEGER NOT NULL,
  app_contract TEXT NOT NULL,
  msg_sender TEXT NOT NULL,
  prev_randao TEXT NOT NULL,
  payload BLOB NOT NULL,
  raw BLOB NOT NULL,
  tx_hash TEXT,
  status TEXT NOT NULL DEFAULT 'NONE',
  exception_payload BLOB,
  output_base INTEGER
);
CREATE INDEX IF NOT EXISTS inputs_epoch ON inputs(epoch);
CREATE TABLE IF NOT EXISTS outputs(
  idx INTEGER PRIMARY KEY,
  input_index INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  raw BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outputs_input ON outputs(input_index);
CREATE INDEX IF NOT EXISTS outputs_epoch ON outputs(epoch);
CREATE TABLE IF NOT EXISTS reports(
  idx INTEGER PRIMARY KEY,
  input_index INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_input ON reports(input_index);
CREATE INDEX IF NOT EXISTS reports_epoch ON reports(epoch);
CREATE TABLE IF NOT EXISTS executions(
  output_index INTEGER PRIMARY KEY,
  tx_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs(
  idx INTEGER PRIMARY KEY,
  first_block INTEGER NOT NULL,
  last_block INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'OPEN',
  root BLOB,
  output_count INTEGER,
  claim_tx TEXT
);
"""

STATUS_NONE = "NONE"
EPOCH_OPEN = "OPEN"
EPOCH_CLOSED = "CLOSED"
EPOCH_CLAIM_SUBMITTED = "CLAIM_SUBMITTED"
EPOCH_CLAIM_ACCEPTED = "CLAIM_ACCEPTED"


class StoreError(Exception):
    """The store's content contradicts what the node is asked to write (a bug or a foreign db)."""


@dataclass(frozen=True)
class InputRecord:
    index: int
    epoch: int
    block_number: int
    block_timestamp: int
    chain_id: int
    app_contract: str
    msg_sender: str
    prev_randao: str
    payload: bytes
    raw: bytes
    tx_hash: str | None = None
    status: str = STATUS_NONE
    exception_payload: bytes | None = None
    output_base: int | None = None

    def metadata(self) -> dict[str, Any]:
        """Advance metadata exactly as the v2 rollup-http-server sends it."""
        return {
            "chain_id": self.chain_id,
            "app_contract": self.app_contract,
            "msg_sender": self.msg_sender,
            "block_number": self.block_number,
            "block_timestamp": self.block_timestamp,
            "prev_randao": self.prev_randao,
            "input_index": self.index,
        }


@dataclass(frozen=True)
class OutputRecord:
    index: int
    input_index: int
    epoch: int
    raw: bytes
    hash: bytes
    execution_tx: str | None = None
    block_timestamp: int = 0  # of its input: the JSON-RPC's created_at (rollup.rpc)


@dataclass(frozen=True)
class ReportRecord:
    index: int
    input_index: int
    epoch: int
    payload: bytes
    block_timestamp: int = 0  # of its input: the JSON-RPC's created_at (rollup.rpc)


@dataclass(frozen=True)
class EpochRecord:
    index: int
    first_block: int
    last_block: int
    status: str
    root: bytes | None
    output_count: int | None
    claim_tx: str | None
    first_input: int | None = None  # its inputs are [first_input, first_input + input_count)
    input_count: int = 0
    block_timestamp: int = 0  # of its first input: the JSON-RPC's created_at (rollup.rpc)


_OUTPUT_SELECT = ("SELECT idx, input_index, epoch, raw, hash,"
                  " (SELECT tx_hash FROM executions WHERE output_index=outputs.idx),"
                  " COALESCE((SELECT block_timestamp FROM inputs WHERE idx=outputs.input_index), 0) FROM outputs")
_EPOCH_SELECT = ("SELECT idx, first_block, last_block, status, root, output_count, claim_tx,"
                 " (SELECT MIN(idx) FROM inputs WHERE epoch=epochs.idx),"
                 " (SELECT COUNT(*) FROM inputs WHERE epoch=epochs.idx),"
                 # the first input's (one index step on inputs_epoch, not a scan of the epoch's rows)
                 " COALESCE((SELECT block_timestamp FROM inputs WHERE epoch=epochs.idx ORDER BY idx LIMIT 1), 0)"
                 " FROM epochs")
_REPORT_SELECT = ("SELECT idx, input_index, epoch, payload,"
                  " COALESCE((SELECT block_timestamp FROM inputs WHERE idx=reports.input_index), 0) FROM reports")
_INPUT_COLS = (
    "idx, epoch, block_number, block_timestamp, chain_id, app_contract, msg_sender, prev_randao,"
    " payload, raw, tx_hash, status, exception_payload, output_base"
)


def _input(row: tuple) -> InputRecord:
    return InputRecord(*row[:8], bytes(row[8]), bytes(row[9]), *row[10:12],
                       None if row[12] is None else bytes(row[12]), row[13])


def _output(row: tuple) -> OutputRecord:
    return OutputRecord(row[0], row[1], row[2], bytes(row[3]), bytes(row[4]), row[5], row[6])


def _epoch(row: tuple) -> EpochRecord:
    return EpochRecord(row[0], row[1], row[2], row[3], None if row[4] is None else bytes(row[4]),
                       row[5], row[6], row[7], row[8], row[9])


def _order(descending: bool) -> str:
    return "DESC" if descending else "ASC"


class Store:
    """SQLite store; one connection per thread, writes only from the node's worker thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.db.executescript(SCHEMA)  # executescript manages its own transaction

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    # --- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: Any, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, str(value)),
        )

    def check_identity(self, **identity: Any) -> None:
        """Refuse to run on a state dir made for another chain/app (a foreign db is a bug)."""
        with self.tx() as db:
            for key, value in identity.items():
                row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
                if row is None:
                    self.set_meta(key, value, db)
                elif row[0] != str(value):
                    raise StoreError(
                        f"state dir {self.path} belongs to {key}={row[0]}, not {value}"
                    )

    @property
    def scanned_block(self) -> int:
        return int(self.get_meta("scanned_block", "-1"))

    @property
    def processed_count(self) -> int:
        return int(self.get_meta("processed_count", "0"))

    # --- inputs -----------------------------------------------------------------------------
    def add_inputs(self, inputs: list[InputRecord], scanned_block: int, epoch_length: int) -> None:
        """Append inputs (strictly the next indices) and move the reader's cursor, atomically."""
        with self.tx() as db:
            expected = db.execute("SELECT COUNT(*) FROM inputs").fetchone()[0]
            for rec in inputs:
                if rec.index != expected:
                    raise StoreError(f"input {rec.index} read while input {expected} was expected")
                db.execute(
                    f"INSERT INTO inputs({_INPUT_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (rec.index, rec.epoch, rec.block_number, rec.block_timestamp, rec.chain_id,
                     rec.app_contract, rec.msg_sender, rec.prev_randao, rec.payload, rec.raw,
                     rec.tx_hash, STATUS_NONE, None, None),
                )
                db.execute(
                    "INSERT OR IGNORE INTO epochs(idx, first_block, last_block, status) VALUES(?,?,?,?)",
                    (rec.epoch, rec.epoch * epoch_length, rec.epoch * epoch_length + epoch_length - 1,
                     EPOCH_OPEN),
                )
                expected += 1
            self.set_meta("scanned_block", scanned_block, db)

    def get_input(self, index: int) -> InputRecord | None:
        row = self.db.execute(f"SELECT {_INPUT_COLS} FROM inputs WHERE idx=?", (index,)).fetchone()
        return None if row is None else _input(row)

    def next_unprocessed(self) -> InputRecord | None:
        return self.get_input(self.processed_count)

    def list_inputs(self, epoch: int | None = None, limit: int = 50, offset: int = 0,
                    sender: str | None = None, descending: bool = False) -> tuple[list[InputRecord], int]:
        conds, args = [], []
        if epoch is not None:
            conds.append("epoch=?")
            args.append(epoch)
        if sender is not None:
            conds.append("msg_sender=?")
            args.append(sender.lower())
        where = ("WHERE " + " AND ".join(conds)) if conds else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM inputs {where}", args).fetchone()[0]
        rows = self.db.execute(
            f"SELECT {_INPUT_COLS} FROM inputs {where} ORDER BY idx {_order(descending)} LIMIT ? OFFSET ?",
            args + [limit, offset],
        ).fetchall()
        return [_input(r) for r in rows], total

    def accepted_inputs(self) -> Iterator[InputRecord]:
        last = -1
        while True:
            rows = self.db.execute(
                f"SELECT {_INPUT_COLS} FROM inputs WHERE status='ACCEPTED' AND idx>? ORDER BY idx LIMIT 500",
                (last,),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                rec = _input(row)
                last = rec.index
                yield rec

    def commit_input(self, rec: InputRecord, status: str, outputs: list[bytes], reports: list[bytes],
                     exception_payload: bytes | None, output_base: int) -> list[OutputRecord]:
        """Record everything one processed input produced, in one transaction."""
        written: list[OutputRecord] = []
        with self.tx() as db:
            processed = int(self.get_meta("processed_count", "0"))
            if processed != rec.index:
                raise StoreError(f"committing input {rec.index} but {processed} inputs are processed")
            count = db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
            if count != output_base:
                raise StoreError(f"input {rec.index}: output base {output_base} but {count} outputs stored")
            for i, raw in enumerate(outputs):
                out = OutputRecord(output_base + i, rec.index, rec.epoch, raw, leaf_hash(raw))
                db.execute(
                    "INSERT INTO outputs(idx, input_index, epoch, raw, hash) VALUES(?,?,?,?,?)",
                    (out.index, out.input_index, out.epoch, out.raw, out.hash),
                )
                written.append(out)
            next_report = db.execute("SELECT COALESCE(MAX(idx)+1, 0) FROM reports").fetchone()[0]
            for i, payload in enumerate(reports):
                db.execute(
                    "INSERT INTO reports(idx, input_index, epoch, payload) VALUES(?,?,?,?)",
                    (next_report + i, rec.index, rec.epoch, payload),
                )
            db.execute(
                "UPDATE inputs SET status=?, exception_payload=?, output_base=? WHERE idx=?",
                (status, exception_payload, output_base, rec.index),
            )
            self.set_meta("processed_count", rec.index + 1, db)
        return written

    # --- outputs and reports ----------------------------------------------------------------
    def output_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]

    def output_hashes(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute("SELECT hash FROM outputs ORDER BY idx")]

    def outputs_of_input(self, input_index: int) -> list[OutputRecord]:
        rows = self.db.execute(
            f"{_OUTPUT_SELECT} WHERE input_index=? ORDER BY idx", (input_index,),
        ).fetchall()
        return [_output(r) for r in rows]

    def get_output(self, index: int) -> OutputRecord | None:
        row = self.db.execute(f"{_OUTPUT_SELECT} WHERE idx=?", (index,)).fetchone()
        return None if row is None else _output(row)

    def list_outputs(self, where: str = "", args: list | None = None, limit: int = 50,
                     offset: int = 0, descending: bool = False) -> tuple[list[OutputRecord], int]:
        args = list(args or [])
        clause = f"WHERE {where}" if where else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM outputs {clause}", args).fetchone()[0]
        rows = self.db.execute(
            f"{_OUTPUT_SELECT} {clause} ORDER BY idx {_order(descending)} LIMIT ? OFFSET ?",
            args + [limit, offset],
        ).fetchall()
        return [_output(r) for r in rows], total

    def add_executions(self, executions: list[tuple[int, str]], scanned_block: int) -> None:
        """Record OutputExecuted events (kept apart from outputs: an output may be executed
        before this node has computed it, e.g. while it catches up) and move their cursor."""
        with self.tx() as db:
            db.executemany("INSERT OR IGNORE INTO executions(output_index, tx_hash) VALUES(?,?)",
                           executions)
            self.set_meta("executions_scanned_block", scanned_block, db)

    @property
    def executions_scanned_block(self) -> int:
        return int(self.get_meta("executions_scanned_block", "-1"))

    def list_reports(self, epoch: int | None = None, input_index: int | None = None,
                     limit: int = 50, offset: int = 0, descending: bool = False
                     ) -> tuple[list[ReportRecord], int]:
        conds, args = [], []
        if epoch is not None:
            conds.append("epoch=?")
            args.append(epoch)
        if input_index is not None:
            conds.append("input_index=?")
            args.append(input_index)
        clause = ("WHERE " + " AND ".join(conds)) if conds else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM reports {clause}", args).fetchone()[0]
        rows = self.db.execute(
            f"{_REPORT_SELECT} {clause} ORDER BY idx {_order(descending)} LIMIT ? OFFSET ?",
            args + [limit, offset],
        ).fetchall()
        return [ReportRecord(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows], total

    def get_report(self, index: int) -> ReportRecord | None:
        r = self.db.execute(f"{_REPORT_SELECT} WHERE idx=?", (index,)).fetchone()
        return None if r is None else ReportRecord(r[0], r[1], r[2], bytes(r[3]), r[4])

    # --- epochs -----------------------------------------------------------------------------
    def list_epochs(self, status: str | None = None, limit: int = -1, offset: int = 0,
                    descending: bool = False) -> tuple[list[EpochRecord], int]:
        where, args = ("WHERE status=?", [status]) if status else ("", [])
        total = self.db.execute(f"SELECT COUNT(*) FROM epochs {where}", args).fetchone()[0]
        rows = self.db.execute(
            f"{_EPOCH_SELECT} {where} ORDER BY idx {_order(descending)} LIMIT ? OFFSET ?",
            args + [limit, offset],
        ).fetchall()
        return [_epoch(r) for r in rows], total

    def get_epoch(self, index: int) -> EpochRecord | None:
        row = self.db.execute(f"{_EPOCH_SELECT} WHERE idx=?", (index,)).fetchone()
        return None if row is None else _epoch(row)

    def last_accepted_epoch(self) -> int | None:
        row = self.db.execute("SELECT MAX(idx) FROM epochs WHERE status=?", (EPOCH_CLAIM_ACCEPTED,)).fetchone()
        return row[0]

    def last_input_of_epoch(self, epoch: int) -> int | None:
        row = self.db.execute("SELECT MAX(idx) FROM inputs WHERE epoch=?", (epoch,)).fetchone()
        return row[0]

    def output_count_through_epoch(self, epoch: int) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outputs WHERE epoch<=?", (epoch,)).fetchone()[0]

    def update_epoch(self, index: int, **fields: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE epochs SET {cols} WHERE idx=?", (*fields.values(), index))
