"""Fixtures shared by the test tree: a reachable PostgreSQL, and a fresh schema on it per test.

The server is `PODIUM_TEST_POSTGRES` (default: trust auth as `postgres` on 127.0.0.1:5432,
database `test`). If it does not answer, the local cluster is started once with
`pg_ctlcluster`. If it still does not answer, the Postgres tests are skipped with the reason,
except under CI (the `CI` variable set), where a missing server must fail the build instead
of quietly testing less.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
_START_WAIT_SECONDS = 15.0


def pytest_configure(config: pytest.Config) -> None:
    # Say "no current event loop" up front. Otherwise the first async test's setup asks
    # asyncio for the current loop, which makes one that nobody closes; a later sync test's
    # `asyncio.run` drops it, and its ResourceWarning fails the session at exit.
    asyncio.set_event_loop(None)


def _reachable(url: str) -> str | None:
    """None if `url` answers a query, else why not."""
    try:
        import psycopg
    except ImportError as error:
        return f"psycopg is not installed ({error}): pip install -e '.[dev]'"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return " ".join(str(error).split())
    return None


def _start_local_cluster() -> None:
    """Start the Debian-packaged cluster, if this machine has one; errors are ignored."""
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A URL of a PostgreSQL server that answers; skips (fails under CI) if there is none."""
    url = os.environ.get("PODIUM_TEST_POSTGRES", DEFAULT_POSTGRES)
    problem = _reachable(url)
    if problem is not None and "psycopg is not installed" not in problem:
        _start_local_cluster()
        deadline = time.monotonic() + _START_WAIT_SECONDS
        while (problem := _reachable(url)) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    if problem is not None:
        message = f"no PostgreSQL at {url}: {problem} (set PODIUM_TEST_POSTGRES)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """`postgres_url` confined to a new, empty schema (its `search_path`), dropped afterwards.

    Each test sees only its own runs, and tests can run in parallel on one database.
    """
    import psycopg

    schema = f"podium_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
