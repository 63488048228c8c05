"""`podium explain` end to end: a real run through the CLI, then its story, as text and JSON.

The workflow has a branch (in stock or not), a flaky payment agent that fails its first call
and is retried, and a fan-out over the contacts. The run is made with `python -m podium run`
in a folder of its own, exactly as a user would, and explained from the SQLite file it left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import podium

SRC = Path(podium.__file__).resolve().parents[1]

AGENTS = '''
import asyncio
import os


async def check(order):
    return {"in_stock": False, "short": ["sku-2"]}


async def ship(order):
    return "shipped"


async def backorder(short):
    await asyncio.sleep(0.05)
    return {"backordered": short}


async def charge(ledger, amount):
    """Fails the first call (the gateway times out), then succeeds."""
    first = not os.path.exists(ledger)
    with open(ledger, "a") as f:
        f.write("charge\\n")
    await asyncio.sleep(0.2)
    if first:
        raise TimeoutError("the payment gateway timed out")
    return {"charged": amount}


async def notify(contact):
    await asyncio.sleep(0.05)
    return f"told {contact}"
'''

WORKFLOW = """
name: explained-order
steps:
  check:
    uses: explain_agents:check
    with:
      order: ${{ input.order }}
  ship:
    needs: check
    if: ${{ steps.check.output.in_stock }}
    uses: explain_agents:ship
    with:
      order: ${{ input.order }}
  backorder:
    needs: check
    if: ${{ not steps.check.output.in_stock }}
    uses: explain_agents:backorder
    with:
      short: ${{ steps.check.output.short }}
  charge:
    needs: check
    uses: explain_agents:charge
    with:
      ledger: ${{ input.ledger }}
      amount: 42
    retry:
      attempts: 3
      backoff: 100ms
  notify:
    needs: [charge, backorder, ship]
    trigger: none_failed
    for_each: ${{ input.contacts }}
    uses: explain_agents:notify
    with:
      contact: ${{ item }}
"""


class Folder:
    """A folder with the workflow, its agents and a store, and `python -m podium` run there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = str(root / "runs.db")
        (root / "explain_agents.py").write_text(AGENTS)
        (root / "order.yaml").write_text(WORKFLOW)

    def podium(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        env.pop("PODIUM_DB", None)
        return subprocess.run(
            [sys.executable, "-m", "podium", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def run(self) -> str:
        """Run the workflow to its end; the run's id."""
        run_input = {
            "order": {"id": "o-1"},
            "contacts": ["ann", "bo"],
            "ledger": str(self.root / "charges.txt"),
        }
        result = self.podium("run", "order.yaml", "--input", json.dumps(run_input), "--db", self.db)
        assert result.returncode == 0, result.stderr
        run_id: str = json.loads(self.podium("runs", "--db", self.db, "--json").stdout)[0]["run_id"]
        return run_id


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Folder, str]:
    folder = Folder(tmp_path_factory.mktemp("explain"))
    return folder, folder.run()


def test_the_text_tells_the_branch_the_retry_and_the_critical_path(
    explained: tuple[Folder, str],
) -> None:
    folder, run_id = explained
    result = folder.podium("explain", run_id, "--db", folder.db)

    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"run {run_id}  workflow explained-order  succeeded in ")
    assert "ship  skipped  if ${{ steps.check.output.in_stock }}" in text
    assert "because if ${{ steps.check.output.in_stock }} was False" in text
    assert "steps.check.output.in_stock = false" in text
    assert "backorder  taken  if ${{ not steps.check.output.in_stock }}" in text
    assert "charge attempt 1 on explain_agents:charge failed: TimeoutError" in text
    assert "retry in 100ms" in text
    assert "(2 attempts)" in text
    critical = text[text.index("critical path: ") :]
    assert critical.index("check") < critical.index("charge") < critical.index("notify[")
    assert "time by agent" in text
    assert "Traceback" not in result.stderr


def test_the_json_tells_the_same_story_for_machines(explained: tuple[Folder, str]) -> None:
    folder, run_id = explained
    result = folder.podium("explain", run_id, "--db", folder.db, "--json")

    assert result.returncode == 0, result.stderr
    story: dict[str, Any] = json.loads(result.stdout)
    assert story["run"]["run_id"] == run_id
    assert story["run"]["status"] == "succeeded"
    branches = {branch["step"]: branch for branch in story["branches"]}
    assert branches["ship"]["outcome"] == "skipped"
    assert branches["ship"]["cause"] == "condition"
    assert branches["ship"]["reads"] == [{"path": "steps.check.output.in_stock", "value": "false"}]
    assert branches["backorder"]["outcome"] == "taken"
    assert branches["notify"]["reads"] == [
        {"path": "charge", "value": "succeeded"},
        {"path": "backorder", "value": "succeeded"},
        {"path": "ship", "value": "skipped"},
    ]
    (failure,) = story["failures"]
    assert (failure["key"], failure["kind"], failure["attempt"]) == ("charge", "retried", 1)
    assert failure["error"].startswith("TimeoutError: the payment gateway timed out")
    units = {unit["key"]: unit for unit in story["units"]}
    assert units["charge"]["attempts"] == 2
    assert units["notify"]["items"] == 2
    assert {"notify[0]", "notify[1]"} <= set(units)
    steps = [link["key"] for link in story["critical_path"]["steps"]]
    assert steps[:2] == ["check", "charge"]
    assert steps[2] in ("notify[0]", "notify[1]")
    assert len(steps) == 3
    busy = {row["agent"]: row for row in story["time_by_agent"]}
    assert busy["explain_agents:charge"]["calls"] == 2
    assert busy["explain_agents:charge"]["failures"] == 1


def test_an_unknown_run_id_is_a_one_line_error(explained: tuple[Folder, str]) -> None:
    folder, _ = explained
    result = folder.podium("explain", "no-such-run", "--db", folder.db)

    assert result.returncode == 2
    assert result.stderr.startswith("error: no run with id 'no-such-run'")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
