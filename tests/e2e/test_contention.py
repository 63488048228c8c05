"""Eight processes start the same run id at once: one executes it, all eight report it.

Starting a run with a chosen id is idempotent: whoever loses the race to create it waits for
the winner and prints the winner's result. Each step appends its key to a ledger file, the
stand-in for a side effect in the world, so a second execution would show as a duplicate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

PROCESSES = 8

AGENTS = """
import asyncio, os

async def work(ctx, delay):
    await asyncio.sleep(delay)
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(ctx.key + "\\n")
    return ctx.key
"""

WORKFLOW = """
name: contended
steps:
  first: {uses: "contention_agents:work", with: {delay: 0.05}}
  fan:
    needs: [first]
    for_each: "${{ [1, 2, 3] }}"
    uses: "contention_agents:work"
    with: {delay: 0.05}
  last: {needs: [fan], uses: "contention_agents:work", with: {delay: 0.05}}
output:
  fan: "${{ steps.fan.output }}"
  last: "${{ steps.last.output }}"
"""

KEYS = ["first", "fan[0]", "fan[1]", "fan[2]", "last"]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "p.db")
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


def test_one_run_id_started_by_eight_processes_executes_once(tmp_path: Path, db: str) -> None:
    (tmp_path / "contention_agents.py").write_text(AGENTS)
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = {**os.environ, "LEDGER": str(tmp_path / "ledger")}
    command = [sys.executable, "-m", "podium", "run", "wf.yaml", "--run-id", "x", "--json"]
    processes = [
        subprocess.Popen(
            [*command, "--db", db],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    outcomes = [process.communicate(timeout=60) for process in processes]

    errors = [
        err for process, (_, err) in zip(processes, outcomes, strict=True) if process.returncode
    ]
    assert not errors, errors
    reported = {
        json.dumps([r["run_id"], r["status"], r["output"]], sort_keys=True)
        for r in (json.loads(out) for out, _ in outcomes)
    }
    expected = ["x", "succeeded", {"fan": ["fan[0]", "fan[1]", "fan[2]"], "last": "last"}]
    assert reported == {json.dumps(expected, sort_keys=True)}
    ledger = Counter((tmp_path / "ledger").read_text().split())
    assert ledger == Counter(KEYS), "every step ran exactly once"
