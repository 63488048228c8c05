"""The SQLite store: the contract, plus what only a file shared by processes can get wrong."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import podium
from podium.errors import StoreError
from podium.model import StepStarted, encode_event
from podium.store import Store, open_store
from podium.store.migrations import LATEST, MIGRATIONS
from podium.store.sqlite import SqliteStore
from podium.testing import StoreContract
from podium.testing.store_contract import T0, every_event_after_start, started

SRC = str(Path(podium.__file__).resolve().parents[1])


class TestSqliteStore(StoreContract):
    async def open_store(self, tmp_path: Path) -> Store:
        return SqliteStore(tmp_path / "podium.db")


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    """A child Python process running `script` with podium importable, speaking over pipes."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "PYTHONPATH": SRC},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "podium.db"
    store = SqliteStore(path)
    await store.create_run(started())
    await store.append("run-1", every_event_after_start())
    await store.acquire("run-1", "p1", 30, now=T0)
    await store.request_cancel("run-1")
    summary = await store.get_run("run-1")
    await store.close()

    reopened = SqliteStore(path)
    try:
        assert await reopened.load("run-1") == [started(), *every_event_after_start()]
        assert await reopened.get_run("run-1") == summary
    finally:
        await reopened.close()
    types = [t for (t,) in _query(path, "SELECT type FROM events ORDER BY seq")]
    assert types[:3] == ["run_started", "step_expanded", "step_started"]


_RACE = """
import asyncio, sys
from podium.store.sqlite import SqliteStore
from podium.testing.store_contract import started

print("ready", flush=True)
sys.stdin.readline()
async def main():
    store = SqliteStore(sys.argv[1])  # opening a brand-new file races on the migration too
    try:
        print(await store.create_run(started("contested", workflow=sys.argv[2])), flush=True)
    finally:
        await store.close()
asyncio.run(main())
"""


def test_processes_racing_to_create_one_run_on_a_new_file_yield_one_winner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fresh" / "podium.db"
    path.parent.mkdir()
    children = [_python(_RACE, str(path), f"wf{i}") for i in range(8)]
    for child in children:  # every interpreter is up and waiting before any opens the file
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [child.communicate(timeout=60) for child in children]

    assert all(child.returncode == 0 for child in children), [err for _, err in results]
    assert sorted(out.strip() for out, _ in results) == ["False"] * 7 + ["True"]
    winner = next(i for i, (out, _) in enumerate(results) if out.strip() == "True")
    assert _query(path, "SELECT workflow FROM runs") == [(f"wf{winner}",)]
    assert _query(path, "SELECT run_id, seq FROM events") == [("contested", 0)]
    assert _query(path, "SELECT version FROM schema_version") == [(LATEST,)]


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StoreError, match=r"notes\.db is not a podium database"):
        SqliteStore(path)


def test_a_database_of_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(StoreError, match=r"other\.db is not a podium database"):
        SqliteStore(path)


async def test_a_newer_schema_is_refused_with_advice_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "podium.db"
    await SqliteStore(path).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE schema_version SET version = ?", (LATEST + 1,))
    with pytest.raises(StoreError, match=r"newer podium.*upgrade podium"):
        SqliteStore(path)


async def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "podium.db"
    await SqliteStore(path).close()
    assert _query(path, "PRAGMA journal_mode") == [("wal",)]


async def test_sqlite_errors_become_store_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "podium.db"
    store = SqliteStore(path)
    await store.close()
    with pytest.raises(StoreError, match=r"podium\.db: .*closed"):
        await store.get_run("run-1")


async def test_a_writer_holding_the_lock_past_the_timeout_gives_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "podium.db"
    store = SqliteStore(path)
    try:
        await store.create_run(started())
        with closing(sqlite3.connect(path, isolation_level=None)) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            store._conn.execute("PRAGMA busy_timeout = 50")  # not 10 s in a test
            with pytest.raises(StoreError, match=r"podium\.db: database is locked"):
                await store.append("run-1", [StepStarted(seq=1, at=T0, step="a", agent="x")])
            blocker.execute("ROLLBACK")
        assert len(await store.load("run-1")) == 1
    finally:
        await store.close()


async def test_open_store_reads_urls_and_paths(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "podium.db"
    for url in (str(nested), f"sqlite:///{nested}"):
        store = open_store(url)
        try:
            assert isinstance(store, SqliteStore)
        finally:
            await store.close()
    assert nested.exists()
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("redis://localhost")


_APPEND_FOREVER = """
import asyncio, sys
from podium.model import StepStarted, StepSucceeded
from podium.store.sqlite import SqliteStore
from podium.testing.store_contract import started

async def main():
    store = SqliteStore(sys.argv[1])
    await store.create_run(started())
    seq = 1
    while True:
        batch = [
            StepStarted(seq=seq, at=seq, step=f"s{seq}", agent="echo"),
            StepSucceeded(seq=seq + 1, at=seq, step=f"s{seq}", output="o" * (seq % 5000)),
        ]
        await store.append("run-1", batch)
        seq += 2
        if seq % 101 == 0:
            print(seq, flush=True)
asyncio.run(main())
"""


async def test_a_file_of_an_earlier_version_is_migrated_and_keeps_its_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "podium.db"
    with closing(sqlite3.connect(path)) as conn, conn:  # a file as schema version 3 left it
        for statements in MIGRATIONS[:3]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (3)")
        conn.execute(
            "INSERT INTO runs VALUES ('run-1', 'wf', 'running', ?, ?, NULL, NULL, 0)", (T0, T0)
        )
        conn.execute(
            "INSERT INTO events VALUES ('run-1', 0, ?, 'run_started', ?)",
            (T0, encode_event(started())),
        )
    store = SqliteStore(path)
    try:
        await store.append("run-1", [StepStarted(seq=1, at=T0 + 5, step="a", agent="echo")])
        summary = await store.get_run("run-1")
        assert (summary.status, summary.created_at, summary.updated_at) == ("running", T0, T0 + 5)
        assert _query(path, "SELECT max(version) FROM schema_version") == [(LATEST,)]
    finally:
        await store.close()


async def test_a_store_that_missed_another_writers_events_is_refused_not_merged(
    tmp_path: Path,
) -> None:
    # A store remembers where it left a run's log; another process may have written since.
    path = tmp_path / "podium.db"
    mine, theirs = SqliteStore(path), SqliteStore(path)
    try:
        await mine.create_run(started())
        await mine.append("run-1", [StepStarted(seq=1, at=T0, step="a", agent="echo")])
        await theirs.append("run-1", [StepStarted(seq=2, at=T0, step="b", agent="echo")])
        with pytest.raises(StoreError, match="seq 2 already recorded"):
            await mine.append("run-1", [StepStarted(seq=2, at=T0, step="c", agent="echo")])
        await mine.append("run-1", [StepStarted(seq=3, at=T0, step="c", agent="echo")])
        events = await theirs.load("run-1")
        assert [(e.seq, getattr(e, "step", None)) for e in events] == [
            (0, None),
            (1, "a"),
            (2, "b"),
            (3, "c"),
        ]
    finally:
        await mine.close()
        await theirs.close()


async def test_a_process_killed_mid_append_leaves_a_gapless_prefix(tmp_path: Path) -> None:
    path = tmp_path / "podium.db"
    child = _python(_APPEND_FOREVER, str(path))
    assert child.stdout is not None
    for _ in range(5):  # let it commit a few hundred batches first
        assert child.stdout.readline(), child.communicate()[1]
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    store = SqliteStore(path)
    try:
        seqs = [event.seq for event in await store.load("run-1")]
        assert len(seqs) >= 500
        assert seqs == list(range(len(seqs)))
        assert len(seqs) % 2 == 1  # batches landed whole: seq 0 plus pairs
        assert (await store.get_run("run-1")).updated_at == (len(seqs) - 2)
    finally:
        await store.close()
