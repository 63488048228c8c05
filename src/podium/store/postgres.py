"""The shared store: PostgreSQL, for runs executed by processes on several machines.

Tables: `podium_schema_version`, `podium_runs`, `podium_events` and `podium_signals`, in the
first schema of the connection's `search_path` (`public` unless the URL says otherwise, e.g.
`?options=-csearch_path%3Dpodium`). The prefix lets podium live beside another program's
tables in one database; the search path lets several podiums share one database apart.

Concurrency: writers of one run are serialised by a row lock on its `podium_runs` row
(`FOR NO KEY UPDATE`, the strength an UPDATE of non-key columns takes anyway, so foreign key
checks of other writers are not blocked), held for the one transaction that checks the seqs,
inserts the batch and updates the projection. Creating a run is one `INSERT … ON CONFLICT DO
NOTHING`, so processes racing for one id find exactly one winner. The session is in
autocommit mode: a single statement is its own transaction, a lease is an explicit one, and
the session never sits "idle in transaction" holding a snapshot between calls.

Round trips and psycopg's per-statement overhead, not SQL, are what an operation costs here
(a loopback round trip is ~60 µs), so each operation is one round trip: an append and a
create are one statement each (data-modifying CTEs), a lease is a pipelined transaction.
Measured on loopback (server default `synchronous_commit = on`): ~380 µs per append of one
event, ~1.5 ms per append of 100; the same transaction as separate statements took ~650 µs.

Durability is the server's: with its default `synchronous_commit = on` a committed batch
survives a crash of the server machine, not only of this process.

Every psycopg exception is translated into `StoreError` here, naming the URL with any
password masked, so nothing above this module knows which backend is underneath.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import kwargs_row

from podium.errors import RunNotFound, StoreError
from podium.model import Event, RunStarted, decode_event, encode_event
from podium.store.migrations import refuse_newer
from podium.store.open import display_url
from podium.store.protocol import RunSummary
from podium.store.rules import FINISHED, check_seqs, status_after

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

_CONNECT_TIMEOUT_SECONDS = 10
# Any constant would do: the lock only has to be the same for every podium migrating this
# database. These are the bytes of "podium".
_MIGRATION_LOCK = 0x706F6469756D

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs with their event logs and the messages left for them.
    (
        """
        CREATE TABLE podium_runs (
            run_id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            owner TEXT,
            lease_until DOUBLE PRECISION,
            cancel_requested BOOLEAN NOT NULL DEFAULT false,
            -- The seq of the run's last event, so an append reads it with the row it locks.
            last_seq BIGINT NOT NULL,
            -- Creation order, to list runs created at the same instant newest first.
            created_order BIGINT GENERATED ALWAYS AS IDENTITY
        )
        """,
        "CREATE INDEX podium_runs_by_creation ON podium_runs (created_at, created_order)",
        """
        CREATE TABLE podium_events (
            run_id TEXT NOT NULL REFERENCES podium_runs (run_id),
            seq BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            type TEXT NOT NULL,
            body BYTEA NOT NULL,
            PRIMARY KEY (run_id, seq)
        )
        """,
        """
        CREATE TABLE podium_signals (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES podium_runs (run_id),
            body TEXT NOT NULL
        )
        """,
        "CREATE INDEX podium_signals_by_run ON podium_signals (run_id, id)",
    ),
    # 2: what runs learnt about agents (latency, success rate, cost), for routing.
    (
        """
        CREATE TABLE podium_agent_figures (
            agent TEXT PRIMARY KEY,
            body TEXT NOT NULL
        )
        """,
    ),
)

LATEST = len(MIGRATIONS)

# Event bodies are the msgspec JSON as BYTEA: no JSONB parsing on the way in, no rendering on
# the way out, and a NUL character in a payload (which JSONB refuses) is kept as it is.
_CREATE_RUN = """
    WITH created AS (
        INSERT INTO podium_runs (run_id, workflow, status, created_at, updated_at, last_seq)
        VALUES (%(run_id)s, %(workflow)s, 'running', %(at)s, %(at)s, 0)
        ON CONFLICT (run_id) DO NOTHING
        RETURNING run_id
    )
    INSERT INTO podium_events (run_id, seq, at, type, body)
    SELECT run_id, 0, %(at)s, %(type)s, %(body)s FROM created
"""
# An append is this one statement, so one round trip and its own transaction. `locked` takes
# the run's row lock first (both writes reference it, so it runs before either) and yields the
# last seq as committed by any writer that held the lock before; the writes happen only if the
# batch continues exactly that seq, and the caller checks the returned seq with the shared
# rule (`check_seqs`), which reports a refused batch exactly as the other backends do.
# unnest: one statement text for any batch size, so it is prepared once.
_APPEND = """
    WITH locked AS (
        SELECT last_seq FROM podium_runs WHERE run_id = %(run_id)s FOR NO KEY UPDATE
    ),
    inserted AS (
        INSERT INTO podium_events (run_id, seq, at, type, body)
        SELECT %(run_id)s, * FROM unnest(
            %(seqs)s::bigint[], %(ats)s::float8[], %(types)s::text[], %(bodies)s::bytea[]
        )
        WHERE (SELECT last_seq FROM locked) = %(after)s
    ),
    touched AS (
        UPDATE podium_runs
        SET status = coalesce(%(status)s, status), updated_at = %(at)s, last_seq = %(last)s
        WHERE run_id = %(run_id)s AND (SELECT last_seq FROM locked) = %(after)s
    )
    SELECT last_seq FROM locked
"""
_LAST_SEQ = "SELECT last_seq FROM podium_runs WHERE run_id = %s"
_LOAD = "SELECT body FROM podium_events WHERE run_id = %s ORDER BY seq"
_SUMMARY = """
    SELECT run_id, workflow, status, created_at, updated_at, owner, lease_until,
        cancel_requested
    FROM podium_runs
"""
_GET_RUN = _SUMMARY + " WHERE run_id = %s"
_LIST_RUNS = _SUMMARY + " ORDER BY created_at DESC, created_order DESC LIMIT %s"
_FINISHED_SQL = ", ".join(f"'{status}'" for status in FINISHED)
_TAKE_LEASE = f"""
    UPDATE podium_runs SET owner = %s, lease_until = %s,
        cancel_requested = cancel_requested AND status NOT IN ({_FINISHED_SQL})
    WHERE run_id = %s
"""
_ACQUIRE = _TAKE_LEASE + " AND (owner IS NULL OR owner = %s OR lease_until < %s)"
_STEAL = _TAKE_LEASE + " AND owner = %s"
_LOCK_OWNER = "SELECT owner FROM podium_runs WHERE run_id = %s FOR NO KEY UPDATE"
_EXISTS = "SELECT 1 FROM podium_runs WHERE run_id = %s"
_RELEASE = (
    "UPDATE podium_runs SET owner = NULL, lease_until = NULL WHERE run_id = %s AND owner = %s"
)
_REQUEST_CANCEL = "UPDATE podium_runs SET cancel_requested = true WHERE run_id = %s"
_CANCEL_REQUESTED = "SELECT cancel_requested FROM podium_runs WHERE run_id = %s"
_SEND_SIGNAL = (
    "INSERT INTO podium_signals (run_id, body) SELECT run_id, %s FROM podium_runs WHERE run_id = %s"
)
# The join tells "no run" (no row) from "no signals" (one row with a NULL body) in one query.
_LOAD_FIGURES = "SELECT agent, body FROM podium_agent_figures"
_SAVE_FIGURES = """
    INSERT INTO podium_agent_figures (agent, body) VALUES (%s, %s)
    ON CONFLICT (agent) DO UPDATE SET body = excluded.body
"""
_READ_SIGNALS = """
    SELECT s.body FROM podium_runs r LEFT JOIN podium_signals s ON s.run_id = r.run_id
    WHERE r.run_id = %s ORDER BY s.id
"""


def _event_type(event: Event) -> str:
    """The event's tag (`step_succeeded`…), stored beside the body so SQL can filter on it."""
    return str(event.__struct_config__.tag)


class PostgresStore:
    """A `Store` in the PostgreSQL database at `url` (`postgresql://user:pw@host:port/db`).

    Nothing is done until first use: then one connection is opened and the schema created or
    migrated. The connection is used by one operation at a time (an asyncio lock), because a
    transaction is a property of the connection: two tasks interleaving statements on it
    would end up in each other's transactions. A connection the server dropped is replaced on
    the next operation; the operation that saw it drop fails with `StoreError`, because
    whether its write committed is unknown (resuming the run settles that from the log).
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._name = display_url(url)
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    # -- the connection --------------------------------------------------------------------

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn any psycopg error into a `StoreError` naming the URL (without its password)."""
        try:
            yield
        except psycopg.Error as error:
            raise StoreError(f"{self._name}: {_one_line(error)}") from error

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Connection]:
        """The connection, for this operation alone, with errors translated."""
        async with self._lock:
            with self._translate():
                yield await self._connection()

    async def _connection(self) -> Connection:
        if self._closed:
            raise StoreError(f"{self._name}: the store is closed")
        if self._conn is not None and not self._conn.closed:
            return self._conn
        settings = conninfo_to_dict(self._url)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in settings:  # libpq waits for the OS otherwise: minutes
            extra["connect_timeout"] = _CONNECT_TIMEOUT_SECONDS
        if "application_name" not in settings:  # so a DBA can tell podium's sessions apart
            extra["application_name"] = "podium"
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True, **extra)
        except psycopg.OperationalError as error:
            raise StoreError(f"cannot connect to {self._name}: {_one_line(error)}") from error
        try:
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _migrate(self, conn: Connection) -> None:
        """Bring the schema to `LATEST`; safe when many processes open a new database at once.

        The version is read without a lock first (the common case: nothing to do), then again
        under a transaction-scoped advisory lock: the first process builds the schema, the
        others wait on the lock, then find the work done and change nothing. DDL is
        transactional in PostgreSQL, so a migration lands whole or not at all.
        """
        if await self._version(conn) == LATEST:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS podium_schema_version (version INTEGER NOT NULL)"
            )
            version = await self._version(conn)
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    await conn.execute(statement)
            await conn.execute("DELETE FROM podium_schema_version")
            await conn.execute("INSERT INTO podium_schema_version (version) VALUES (%s)", (LATEST,))

    async def _version(self, conn: Connection) -> int:
        """The schema version: 0 before podium's first use; refuses a newer podium's schema."""
        cur = await conn.execute("SELECT to_regclass('podium_schema_version') IS NOT NULL")
        exists = await cur.fetchone()
        if exists is None or not exists[0]:
            return 0
        cur = await conn.execute("SELECT max(version) FROM podium_schema_version")
        row = await cur.fetchone()
        version = int(row[0] or 0) if row is not None else 0
        refuse_newer(self._name, version, LATEST)
        return version

    # -- the log ---------------------------------------------------------------------------

    async def create_run(self, started: RunStarted) -> bool:
        check_seqs(started.run_id, [started], 0)
        values = {
            "run_id": started.run_id,
            "workflow": started.workflow,
            "at": started.at,
            "type": _event_type(started),
            "body": encode_event(started),
        }
        async with self._session() as conn:
            # One statement: the run row and its seq 0 commit together, or (the id is taken)
            # neither is written. A racing creator waits for the winner's commit, then finds
            # the conflict.
            cur = await conn.execute(_CREATE_RUN, values)
            return cur.rowcount == 1

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return
        try:
            check_seqs(run_id, events, events[0].seq)  # a gap inside the batch: no write tried
        except StoreError:
            check_seqs(run_id, events, await self._last_seq(run_id) + 1)  # the usual message
            raise
        values = {
            "run_id": run_id,
            "seqs": [e.seq for e in events],
            "ats": [e.at for e in events],
            "types": [_event_type(e) for e in events],
            "bodies": [encode_event(e) for e in events],
            "after": events[0].seq - 1,
            "status": status_after(events),
            "at": events[-1].at,
            "last": events[-1].seq,
        }
        async with self._session() as conn:
            cur = await conn.execute(_APPEND, values)
            row = await cur.fetchone()
        if row is None:
            raise RunNotFound(run_id)
        check_seqs(run_id, events, row[0] + 1)  # passes exactly when the batch was written

    async def _last_seq(self, run_id: str) -> int:
        async with self._session() as conn:
            cur = await conn.execute(_LAST_SEQ, (run_id,))
            row = await cur.fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return int(row[0])

    async def load(self, run_id: str) -> list[Event]:
        async with self._session() as conn:
            # Binary results: the bodies arrive as bytes, not as hex text to decode.
            cur = conn.cursor(binary=True)
            await cur.execute(_LOAD, (run_id,))
            rows = await cur.fetchall()
        if not rows:
            raise RunNotFound(run_id)
        return [decode_event(body) for (body,) in rows]

    # -- the projection --------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunSummary:
        async with self._session() as conn:
            cur = conn.cursor(row_factory=kwargs_row(RunSummary))
            await cur.execute(_GET_RUN, (run_id,))
            summary = await cur.fetchone()
        if summary is None:
            raise RunNotFound(run_id)
        return summary

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        async with self._session() as conn:
            cur = conn.cursor(row_factory=kwargs_row(RunSummary))
            await cur.execute(_LIST_RUNS, (max(limit, 0),))
            return await cur.fetchall()

    # -- leases ----------------------------------------------------------------------------

    async def acquire(self, run_id: str, owner: str, ttl: float, *, now: float) -> str | None:
        # One transaction, one round trip: the locked owner read first is exactly the state
        # the UPDATE then sees, so a refusal names the owner that caused it, never one that
        # has since released the lease.
        async with self._session() as conn, conn.pipeline(), conn.transaction():
            holder = await conn.execute(_LOCK_OWNER, (run_id,))
            taken = await conn.execute(_ACQUIRE, (owner, now + ttl, run_id, owner, now))
        with self._translate():
            row = await holder.fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return None if taken.rowcount else row[0]

    async def steal(
        self, run_id: str, owner: str, previous: str, ttl: float, *, now: float
    ) -> bool:
        # Runs are never deleted, so the existence check needs no transaction with the UPDATE.
        async with self._session() as conn, conn.pipeline():
            taken = await conn.execute(_STEAL, (owner, now + ttl, run_id, previous))
            exists = await conn.execute(_EXISTS, (run_id,))
        with self._translate():
            if await exists.fetchone() is None:
                raise RunNotFound(run_id)
        return taken.rowcount == 1

    async def release(self, run_id: str, owner: str) -> None:
        async with self._session() as conn:
            await conn.execute(_RELEASE, (run_id, owner))

    # -- messages to the executor ----------------------------------------------------------

    async def request_cancel(self, run_id: str) -> None:
        async with self._session() as conn:
            cur = await conn.execute(_REQUEST_CANCEL, (run_id,))
        if not cur.rowcount:
            raise RunNotFound(run_id)

    async def cancel_requested(self, run_id: str) -> bool:
        async with self._session() as conn:
            cur = await conn.execute(_CANCEL_REQUESTED, (run_id,))
            row = await cur.fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return bool(row[0])

    async def send_signal(self, run_id: str, body: dict[str, Any]) -> None:
        text = json.dumps(body)
        async with self._session() as conn:
            cur = await conn.execute(_SEND_SIGNAL, (text, run_id))
        if not cur.rowcount:
            raise RunNotFound(run_id)

    async def read_signals(self, run_id: str) -> list[dict[str, Any]]:
        async with self._session() as conn:
            cur = await conn.execute(_READ_SIGNALS, (run_id,))
            rows = await cur.fetchall()
        if not rows:
            raise RunNotFound(run_id)
        return [json.loads(body) for (body,) in rows if body is not None]

    async def load_agent_figures(self) -> dict[str, dict[str, Any]]:
        async with self._session() as conn:
            cur = await conn.execute(_LOAD_FIGURES)
            rows = await cur.fetchall()
        return {str(agent): json.loads(body) for agent, body in rows}

    async def save_agent_figures(self, figures: Mapping[str, Mapping[str, Any]]) -> None:
        rows = [(agent, json.dumps(dict(f))) for agent, f in sorted(figures.items())]
        async with self._session() as conn, conn.transaction():
            cur = conn.cursor()
            await cur.executemany(_SAVE_FIGURES, rows)

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def _one_line(error: BaseException) -> str:
    """libpq's message folded onto one line (it spreads hints over several)."""
    return " ".join(str(error).split()) or type(error).__name__
