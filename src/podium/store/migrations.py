"""The SQLite schema, as the ordered list of migrations that builds it.

`schema_version` holds one row: how many entries of `MIGRATIONS` the file has had applied.
A new schema change is a new entry appended at the end; entries already released are never
edited, because files in the field have them applied.

Several processes may open a brand-new file at the same moment (a fan of workers started
together). Migrating happens under `BEGIN IMMEDIATE`, the database's single write lock, and
the version is read again once the lock is held: the first process builds the schema, the
others wait on the busy timeout, then find the work done and change nothing.
"""

from __future__ import annotations

import sqlite3

from podium.errors import StoreError

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs and their event logs.
    (
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            owner TEXT,
            lease_until REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX runs_by_creation ON runs (created_at)",
        """
        CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            type TEXT NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID
        """,
    ),
    # 2: messages to whoever executes a run (approval decisions).
    (
        """
        CREATE TABLE signals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            body BLOB NOT NULL
        )
        """,
        "CREATE INDEX signals_by_run ON signals (run_id, id)",
    ),
    # 3: what runs learnt about agents (latency, success rate, cost), for routing.
    (
        """
        CREATE TABLE agent_figures (
            agent TEXT PRIMARY KEY,
            body TEXT NOT NULL
        ) WITHOUT ROWID
        """,
    ),
    # 4: a run's last activity is read off its log (the time of its last event) rather than
    # kept in `runs`, so that appending events writes one table, not two.
    ("ALTER TABLE runs DROP COLUMN updated_at",),
)

LATEST = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, name: str) -> None:
    """Bring the database on `conn` (autocommit mode) to `LATEST`; `name` is for messages.

    Raises `StoreError` if the file belongs to something else or to a newer podium.
    """
    if _version(conn, name) == LATEST:  # the common case: no lock taken
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = _version(conn, name)  # again: another process may have migrated meanwhile
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection, name: str) -> int:
    """The file's schema version: 0 for an empty file; refuses foreign or newer files."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        if tables:
            raise StoreError(f"{name} is not a podium database (it has other tables)")
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    version = int(row[0] or 0)
    refuse_newer(name, version, LATEST)
    return version


def refuse_newer(name: str, version: int, latest: int) -> None:
    """Raise `StoreError` if a store's schema `version` is past the `latest` this code knows.

    Shared by every backend: a store migrated by a newer podium may hold data this one would
    misread or damage, so it is refused with the one piece of advice that helps.
    """
    if version > latest:
        raise StoreError(
            f"{name} was written by a newer podium (schema version {version}; this podium "
            f"knows up to {latest}): upgrade podium to open it"
        )
