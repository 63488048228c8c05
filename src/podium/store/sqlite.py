"""The embedded default store: one SQLite file in WAL mode, shared safely by many processes.

Durability: `synchronous=NORMAL` in WAL mode makes every committed transaction survive a crash
of the process (the WAL is written before COMMIT returns); a power loss or OS crash may lose
the last few transactions, never corrupt the file, and never leave a gap in a run's log,
because each batch of events is one transaction.

Concurrency: writers take SQLite's single write lock with `BEGIN IMMEDIATE`, so a batch either
lands whole or not at all, and two processes racing to create the same run cannot both win.
A process that finds the lock held waits up to `busy_timeout` (10 s) before `StoreError`.

Every `sqlite3` exception is translated into `StoreError` here, naming the file, so nothing
above this module knows which backend is underneath.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from podium.errors import RunNotFound, StoreError
from podium.model import Event, RunStarted, RunStatus, decode_event, encode_event
from podium.store.migrations import migrate
from podium.store.protocol import RunSummary
from podium.store.rules import FINISHED, check_seqs, status_after

_BUSY_TIMEOUT_MS = 10_000

# Constant SQL text, so sqlite3's per-connection statement cache (keyed by text) reuses the
# prepared statements: a hot `append` parses no SQL.
_INSERT_RUN = """
    INSERT INTO runs (run_id, workflow, status, created_at)
    VALUES (?, ?, 'running', ?) ON CONFLICT (run_id) DO NOTHING
"""
_INSERT_EVENT = "INSERT INTO events (run_id, seq, at, type, body) VALUES (?, ?, ?, ?, ?)"
# No run exists without its seq 0, so a NULL maximum means the run does not exist.
_LAST_SEQ = "SELECT max(seq) FROM events WHERE run_id = ?"
_SET_STATUS = "UPDATE runs SET status = ? WHERE run_id = ?"
_LOAD = "SELECT body FROM events WHERE run_id = ? ORDER BY seq"
# A run was last updated when its last event happened: the primary key finds that event.
_UPDATED_AT = "(SELECT at FROM events WHERE events.run_id = runs.run_id ORDER BY seq DESC LIMIT 1)"
_SUMMARY_COLUMNS = (
    f"run_id, workflow, status, created_at, {_UPDATED_AT}, owner, lease_until, cancel_requested"
)
_GET_RUN = f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE run_id = ?"
# rowid breaks ties in `created_at`: it grows with insertion, so the later insert lists first.
_LIST_RUNS = f"SELECT {_SUMMARY_COLUMNS} FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?"
_FINISHED_SQL = ", ".join(f"'{status}'" for status in FINISHED)
_TAKE_LEASE = f"""
    UPDATE runs SET owner = ?, lease_until = ?,
        cancel_requested = cancel_requested AND status NOT IN ({_FINISHED_SQL})
    WHERE run_id = ?
"""
_ACQUIRE = _TAKE_LEASE + " AND (owner IS NULL OR owner = ? OR lease_until < ?)"
_STEAL = _TAKE_LEASE + " AND owner = ?"
_OWNER = "SELECT owner FROM runs WHERE run_id = ?"
_RELEASE = "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id = ? AND owner = ?"
_REQUEST_CANCEL = "UPDATE runs SET cancel_requested = 1 WHERE run_id = ?"
_CANCEL_REQUESTED = "SELECT cancel_requested FROM runs WHERE run_id = ?"
_SEND_SIGNAL = "INSERT INTO signals (run_id, body) VALUES (?, ?)"
_READ_SIGNALS = "SELECT body FROM signals WHERE run_id = ? ORDER BY id"
_LOAD_FIGURES = "SELECT agent, body FROM agent_figures"
_SAVE_FIGURES = """
    INSERT INTO agent_figures (agent, body) VALUES (?, ?)
    ON CONFLICT (agent) DO UPDATE SET body = excluded.body
"""

_Row = tuple[str, str, str, float, float, str | None, float | None, int]


def _event_type(event: Event) -> str:
    """The event's tag (`step_succeeded`…), stored beside the body so SQL can filter on it."""
    return str(event.__struct_config__.tag)


def _summary(row: _Row) -> RunSummary:
    run_id, workflow, status, created_at, updated_at, owner, lease_until, cancel = row
    return RunSummary(
        run_id=run_id,
        workflow=workflow,
        status=cast(RunStatus, status),
        created_at=created_at,
        updated_at=updated_at,
        owner=owner,
        lease_until=lease_until,
        cancel_requested=bool(cancel),
    )


class SqliteStore:
    """A `Store` in the SQLite file at `path`, created (with its schema) if missing.

    The store owns one connection and uses it synchronously from the event loop's thread.
    That is deliberate: a WAL commit with `synchronous=NORMAL` takes tens of microseconds,
    less than handing the work to a thread and waiting for it (`asyncio.to_thread` costs
    about as much again, plus a context switch), and one connection on one thread needs no
    locking of its own. The async methods keep the `Store` protocol open to backends that
    do wait on the network.
    """

    def __init__(self, path: str | Path) -> None:
        self._name = str(path)
        self._last_seq: dict[str, int] = {}  # by run: the seq of the last event written or read
        with self._translate():
            # isolation_level=None: no implicit transactions; each write opens its own
            # BEGIN IMMEDIATE, each read runs on its own snapshot.
            self._conn = sqlite3.connect(self._name, isolation_level=None)
        try:
            with self._translate():
                self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                self._enter_wal()
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.execute("PRAGMA foreign_keys = ON")
                migrate(self._conn, self._name)
        except BaseException:
            self._conn.close()
            raise

    def _enter_wal(self) -> None:
        """Switch the file to WAL, waiting out other processes opening it at the same moment.

        SQLite answers a journal-mode switch that collides with another connection's switch
        or WAL recovery with SQLITE_BUSY at once, without calling the busy handler, so this
        one statement is retried here, within the same 10 s budget.
        """
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                busy = error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn any `sqlite3` error into a `StoreError` naming the file."""
        try:
            yield
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
                raise StoreError(f"{self._name} is not a podium database ({error})") from error
            raise StoreError(f"{self._name}: {error}") from error

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block returns, rolled back if it raises.

        Blocks never await, so a transaction never spans a suspension of the event loop and
        two stores in one process cannot wait on each other's lock.
        """
        with self._translate():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _insert_events(
        self, conn: sqlite3.Connection, run_id: str, events: Sequence[Event]
    ) -> None:
        conn.executemany(
            _INSERT_EVENT,
            [(run_id, e.seq, e.at, _event_type(e), encode_event(e)) for e in events],
        )

    async def create_run(self, started: RunStarted) -> bool:
        check_seqs(started.run_id, [started], 0)
        with self._write() as conn:
            inserted = conn.execute(
                _INSERT_RUN, (started.run_id, started.workflow, started.at)
            ).rowcount
            if inserted:
                self._insert_events(conn, started.run_id, [started])
        if inserted:
            self._last_seq[started.run_id] = 0
        # Losing the race commits an empty transaction: nothing was written.
        return inserted == 1

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._write() as conn:
            # The seq this store wrote last spares reading the log's end back. Should another
            # process have written since, the primary key refuses the batch, and the end of
            # the log, read then, says why.
            last = self._last_seq.get(run_id)
            if last is None or events[0].seq != last + 1:
                last = self._read_last_seq(conn, run_id)
            check_seqs(run_id, events, last + 1)
            try:
                self._insert_events(conn, run_id, events)
            except sqlite3.IntegrityError:
                check_seqs(run_id, events, self._read_last_seq(conn, run_id) + 1)
                raise
            status = status_after(events)
            if status is not None:
                conn.execute(_SET_STATUS, (status, run_id))
        self._last_seq[run_id] = events[-1].seq

    @staticmethod
    def _read_last_seq(conn: sqlite3.Connection, run_id: str) -> int:
        (last,) = conn.execute(_LAST_SEQ, (run_id,)).fetchone()
        if last is None:
            raise RunNotFound(run_id)
        return int(last)

    async def load(self, run_id: str) -> list[Event]:
        with self._translate():
            rows: list[tuple[bytes]] = self._conn.execute(_LOAD, (run_id,)).fetchall()
        if not rows:
            raise RunNotFound(run_id)
        events = [decode_event(body) for (body,) in rows]
        self._last_seq[run_id] = events[-1].seq
        return events

    async def get_run(self, run_id: str) -> RunSummary:
        with self._translate():
            row: _Row | None = self._conn.execute(_GET_RUN, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return _summary(row)

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        # max(): a negative LIMIT means "no limit" to SQLite.
        with self._translate():
            rows: list[_Row] = self._conn.execute(_LIST_RUNS, (max(limit, 0),)).fetchall()
        return [_summary(row) for row in rows]

    async def acquire(self, run_id: str, owner: str, ttl: float, *, now: float) -> str | None:
        # One transaction: reading the owner after a refused UPDATE must see the state that
        # refused it, not a release that slipped in between.
        with self._write() as conn:
            if conn.execute(_ACQUIRE, (owner, now + ttl, run_id, owner, now)).rowcount:
                return None
            return self._owner(conn, run_id)

    async def steal(
        self, run_id: str, owner: str, previous: str, ttl: float, *, now: float
    ) -> bool:
        with self._write() as conn:
            if conn.execute(_STEAL, (owner, now + ttl, run_id, previous)).rowcount:
                return True
            self._owner(conn, run_id)  # raises RunNotFound for an unknown run
            return False

    @staticmethod
    def _owner(conn: sqlite3.Connection, run_id: str) -> str | None:
        row: tuple[str | None] | None = conn.execute(_OWNER, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return row[0]

    async def release(self, run_id: str, owner: str) -> None:
        with self._translate():
            self._conn.execute(_RELEASE, (run_id, owner))

    async def request_cancel(self, run_id: str) -> None:
        with self._translate():
            updated = self._conn.execute(_REQUEST_CANCEL, (run_id,)).rowcount
        if not updated:
            raise RunNotFound(run_id)

    async def cancel_requested(self, run_id: str) -> bool:
        with self._translate():
            row: tuple[int] | None = self._conn.execute(_CANCEL_REQUESTED, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return bool(row[0])

    async def send_signal(self, run_id: str, body: dict[str, Any]) -> None:
        with self._write() as conn:
            self._owner(conn, run_id)  # raises RunNotFound for an unknown run
            conn.execute(_SEND_SIGNAL, (run_id, json.dumps(body)))

    async def read_signals(self, run_id: str) -> list[dict[str, Any]]:
        with self._translate():
            rows: list[tuple[str]] = self._conn.execute(_READ_SIGNALS, (run_id,)).fetchall()
            if not rows:
                self._owner(self._conn, run_id)
        return [json.loads(body) for (body,) in rows]

    async def load_agent_figures(self) -> dict[str, dict[str, Any]]:
        with self._translate():
            rows: list[tuple[str, str]] = self._conn.execute(_LOAD_FIGURES).fetchall()
        return {agent: json.loads(body) for agent, body in rows}

    async def save_agent_figures(self, figures: Mapping[str, Mapping[str, Any]]) -> None:
        rows = [(agent, json.dumps(dict(f))) for agent, f in figures.items()]
        with self._write() as conn:
            conn.executemany(_SAVE_FIGURES, rows)

    async def close(self) -> None:
        self._conn.close()
