"""The PostgreSQL store: the contract, plus what only a shared server can get wrong.

Every test works in a schema of its own (`postgres_schema_url`, tests/conftest.py), so no
test sees another's runs. Without a server these tests skip, except under CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import podium
from podium import Step, Workflow, resume_run, run_workflow
from podium.errors import StoreError
from podium.model import StepStarted
from podium.store import Store, open_store
from podium.store.open import display_url
from podium.store.postgres import LATEST, PostgresStore
from podium.testing import StoreContract
from podium.testing.store_contract import T0, every_event_after_start, started

SRC = str(Path(podium.__file__).resolve().parents[1])


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _schema(self, postgres_schema_url: str) -> None:
        self.url = postgres_schema_url

    async def open_store(self, tmp_path: Path) -> Store:
        return PostgresStore(self.url)


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


async def test_data_survives_close_and_reopen(postgres_schema_url: str) -> None:
    store = PostgresStore(postgres_schema_url)
    await store.create_run(started())
    await store.append("run-1", every_event_after_start())
    await store.acquire("run-1", "p1", 30, now=T0)
    await store.request_cancel("run-1")
    summary = await store.get_run("run-1")
    await store.close()

    reopened = PostgresStore(postgres_schema_url)
    try:
        assert await reopened.load("run-1") == [started(), *every_event_after_start()]
        assert await reopened.get_run("run-1") == summary
    finally:
        await reopened.close()
    sql = "SELECT type FROM podium_events ORDER BY seq LIMIT 3"
    types = [t for (t,) in _query(postgres_schema_url, sql)]
    assert types == ["run_started", "step_expanded", "step_started"]


_RACE = """
import asyncio, sys
from podium.store.postgres import PostgresStore
from podium.testing.store_contract import started

print("ready", flush=True)
sys.stdin.readline()
async def main():
    store = PostgresStore(sys.argv[1])  # a brand-new schema: the migration races too
    try:
        print(await store.create_run(started("contested", workflow=sys.argv[2])), flush=True)
    finally:
        await store.close()
asyncio.run(main())
"""


def test_processes_racing_to_create_one_run_in_a_new_schema_yield_one_winner(
    postgres_schema_url: str,
) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, postgres_schema_url, f"wf{i}"],
            env={**os.environ, "PYTHONPATH": SRC},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    for child in children:  # every interpreter is up and waiting before any connects
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
    assert _query(postgres_schema_url, "SELECT workflow FROM podium_runs") == [(f"wf{winner}",)]
    assert _query(postgres_schema_url, "SELECT run_id, seq FROM podium_events") == [
        ("contested", 0)
    ]
    assert _query(postgres_schema_url, "SELECT version FROM podium_schema_version") == [(LATEST,)]


async def test_two_connections_appending_the_same_seqs_never_both_win(
    postgres_schema_url: str,
) -> None:
    """Writers racing on one run: each seq is taken by exactly one, the log stays gapless."""
    stores = [PostgresStore(postgres_schema_url) for _ in range(2)]
    try:
        await stores[0].create_run(started())

        async def write(store: PostgresStore, seq: int) -> str:
            try:
                await store.append("run-1", [StepStarted(seq=seq, at=T0, step="a", agent="x")])
            except StoreError as error:
                return str(error)
            return "written"

        for seq in range(1, 41):
            outcomes = await asyncio.gather(*(write(store, seq) for store in stores))
            assert sorted(outcomes) == sorted(
                [
                    "written",
                    f"run 'run-1': event seq {seq} already recorded; is another "
                    "process running it?",
                ]
            )
        seqs = [e.seq for e in await stores[1].load("run-1")]
        assert seqs == list(range(41))
        assert (await stores[0].get_run("run-1")).updated_at == T0
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused_with_advice_to_upgrade(postgres_schema_url: str) -> None:
    store = PostgresStore(postgres_schema_url)
    await store.list_runs()  # creates the schema
    await store.close()
    with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
        conn.execute("UPDATE podium_schema_version SET version = %s", (LATEST + 1,))
    store = PostgresStore(postgres_schema_url)
    with pytest.raises(StoreError, match=r"newer podium.*upgrade podium"):
        await store.list_runs()
    await store.close()


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    store = open_store("postgresql://podium:s3cret@127.0.0.1:1/runs?connect_timeout=2")
    with pytest.raises(StoreError, match=r"^cannot connect to postgresql://podium:\*\*\*@") as e:
        await store.get_run("run-1")
    assert "s3cret" not in str(e.value)
    await store.close()


def test_display_url_masks_passwords_everywhere() -> None:
    assert display_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert display_url("postgres://h/db?password=pw&sslmode=require") == (
        "postgres://h/db?password=***&sslmode=require"
    )
    assert display_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert display_url("runs/podium.db") == "runs/podium.db"


async def test_server_errors_become_store_errors_naming_the_url(postgres_schema_url: str) -> None:
    store = PostgresStore(postgres_schema_url)
    await store.create_run(started())
    with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE podium_events ADD CHECK (seq < 1)")  # sabotage
    try:
        with pytest.raises(StoreError, match=r"^postgresql://.*: .*check constraint"):
            await store.append("run-1", [StepStarted(seq=1, at=T0, step="a", agent="x")])
        assert len(await store.load("run-1")) == 1  # rolled back, and still usable
    finally:
        await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("run-1")


async def test_a_dropped_connection_fails_one_call_then_reconnects(
    postgres_schema_url: str,
) -> None:
    store = PostgresStore(postgres_schema_url)
    try:
        await store.create_run(started())
        with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'podium' AND pid <> pg_backend_pid() "
                "AND query LIKE '%podium_events%'"
            )
        with pytest.raises(StoreError):
            await store.get_run("run-1")
        assert (await store.get_run("run-1")).run_id == "run-1"
    finally:
        await store.close()


async def test_open_store_routes_postgres_urls(postgres_schema_url: str) -> None:
    for scheme in ("postgresql://", "postgres://"):
        store = open_store(postgres_schema_url.replace("postgresql://", scheme))
        try:
            assert isinstance(store, PostgresStore)
            assert await store.list_runs() == []
        finally:
            await store.close()


# -- the engine and the CLI on Postgres ------------------------------------------------------

calls: list[str] = []


async def note(key: str) -> str:
    calls.append(key)
    return key


def fragile(flag: str) -> str:
    calls.append("fragile")
    if not Path(flag).exists():
        raise RuntimeError("not yet")
    return "repaired"


async def test_a_run_executes_then_is_redriven_on_postgres(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    calls.clear()
    flag = tmp_path / "fixed"
    wf = Workflow(
        name="pg",
        steps=[
            Step(id="a", uses=note, with_={"key": "a"}),
            Step(id="fan", needs=("a",), for_each="${{ input }}", uses=note, with_="${{ item }}"),
            Step(id="b", needs=("fan",), uses=fragile, with_={"flag": str(flag)}),
        ],
        output={"fan": "${{ steps.fan.output }}", "b": "${{ steps.b.output }}"},
    )
    failed = await run_workflow(wf, ["x", "y"], store=postgres_schema_url, run_id="pg-1")
    assert failed.status == "failed"
    assert sorted(calls) == ["a", "fragile", "x", "y"]

    flag.write_text("fixed")
    calls.clear()
    redriven = await resume_run("pg-1", store=postgres_schema_url, workflow=wf)
    assert (redriven.status, redriven.output) == ("succeeded", {"fan": ["x", "y"], "b": "repaired"})
    assert calls == ["fragile"]  # what succeeded is not run again
    store = open_store(postgres_schema_url)
    try:
        assert (await store.get_run("pg-1")).status == "succeeded"
        seqs = [e.seq for e in await store.load("pg-1")]
        assert seqs == list(range(len(seqs)))
    finally:
        await store.close()


def test_the_cli_runs_on_postgres(postgres_schema_url: str, tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: cli-pg\nsteps:\n  hi: {uses: 'cli_agents:hi', with: {name: '${{ input.name }}'}}\n"
        "output: '${{ steps.hi.output }}'\n"
    )
    (tmp_path / "cli_agents.py").write_text("def hi(name):\n    return 'hello ' + name\n")

    def podium_cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "podium", *args, "--db", postgres_schema_url, "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    result = podium_cli("run", "wf.yaml", "--run-id", "c1", "--input", '{"name": "pg"}')
    assert (result["run_id"], result["status"], result["output"]) == ("c1", "succeeded", "hello pg")
    assert [run["run_id"] for run in podium_cli("runs")] == ["c1"]
