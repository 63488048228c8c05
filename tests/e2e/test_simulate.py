"""`podium simulate`: a predicted schedule from the estimates, with no agent called.

The workflow names agents in a module that does not exist: the simulation must not import,
let alone call, any of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from podium.cli import main

DIAMOND = """
name: diamond
steps:
  a:
    uses: nowhere:fetch
    estimate: 1s
  b:
    needs: a
    uses: nowhere:slow
    estimate: 3
  c:
    needs: a
    uses: nowhere:quick
    estimate: 2
  d:
    needs: [b, c]
    uses: nowhere:join
"""

FAN_OUT = """
name: fan
steps:
  fan:
    for_each: ${{ input.items }}
    uses: nowhere:each
    estimate: 2
  gated:
    needs: fan
    if: ${{ input.go }}
    uses: nowhere:gate
    estimate: 5
"""


def podium(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def simulated(path: Path, *args: str) -> dict[str, Any]:
    result = podium("simulate", str(path), "--json", *args)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture
def diamond(tmp_path: Path) -> Path:
    path = tmp_path / "diamond.yaml"
    path.write_text(DIAMOND)
    return path


def test_one_slot_runs_the_steps_one_after_another(diamond: Path) -> None:
    report = simulated(diamond, "--max-parallel", "1")
    assert report["makespan"] == 1 + 3 + 2 + 1
    schedule = [(s["step"], s["start"], s["end"]) for s in report["schedule"]]
    assert schedule == [("a", 0, 1), ("b", 1, 4), ("c", 4, 6), ("d", 6, 7)]
    assert report["max_parallel"] == 1


def test_without_a_limit_the_makespan_is_the_critical_path(diamond: Path) -> None:
    report = simulated(diamond)
    assert report["makespan"] == 1 + 3 + 1
    assert report["critical_path"] == {"steps": ["a", "b", "d"], "seconds": 5}
    assert report["max_parallel"] is None
    assert report["assumptions"] == ["d: no estimate, taken as 1 s"]


def test_the_table_shows_the_schedule_makespan_and_critical_path(diamond: Path) -> None:
    result = podium("simulate", str(diamond), "--max-parallel", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["step", "slot", "start", "end"]
    assert lines[1].split() == ["a", "0", "0", "s", "1", "s"]
    assert "makespan: 5 s (at most 2 at once)" in result.stdout
    assert "critical path: a → b → d (5 s)" in result.stdout
    assert "assumed: d: no estimate, taken as 1 s" in result.stdout


def test_the_input_counts_for_each_items_and_decides_ifs(tmp_path: Path) -> None:
    path = tmp_path / "fan.yaml"
    path.write_text(FAN_OUT)
    report = simulated(path, "--input", '{"items": [1, 2, 3], "go": false}', "--max-parallel", "2")
    assert [s["step"] for s in report["schedule"]] == ["fan[0]", "fan[1]", "fan[2]"]
    assert report["makespan"] == 4
    taken = simulated(path, "--max-parallel", "2")
    assert taken["makespan"] == 2 + 5
    assert taken["assumptions"] == [
        "fan: 1 item (its list is known only in a run)",
        "gated: `if` taken as true",
    ]


def test_bad_input_gives_the_same_errors_as_run(tmp_path: Path, diamond: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    cases = [
        [str(tmp_path / "missing.yaml")],
        [str(broken)],
        [str(diamond), "--input", "{not json"],
    ]
    for args in cases:
        simulate, run = podium("simulate", *args), podium("run", *args, "--db", ":memory:")
        assert simulate.exit_code == run.exit_code == 2
        assert simulate.stderr.replace("simulate", "run") == run.stderr
        assert "Traceback" not in simulate.stderr
    yaml_error = podium("simulate", str(broken)).stderr
    assert yaml_error.startswith(f"error: {broken}:2:1: YAML syntax error")
    assert len(yaml_error.splitlines()) == 1


RECORDED = """
name: recorded
steps:
  fetch: {uses: "timed_agents:fetch"}
  score:
    needs: fetch
    for_each: ${{ input.items }}
    uses: "timed_agents:score"
"""

TIMED_AGENTS = """
import asyncio

async def fetch(ctx):
    await asyncio.sleep(0.2)
    ctx.report_usage(tokens=100, cost=0.01)

async def score(ctx):
    await asyncio.sleep(0.05)
    ctx.report_usage(tokens=10, cost=0.002)
"""


def test_recorded_runs_give_the_durations_and_the_cost(tmp_path: Path) -> None:
    (tmp_path / "timed_agents.py").write_text(TIMED_AGENTS)
    path = tmp_path / "recorded.yaml"
    path.write_text(RECORDED)
    db = str(tmp_path / "p.db")
    items = '{"items": [1, 2, 3, 4]}'
    ran = podium("run", str(path), "--input", items, "--db", db)
    assert ran.exit_code == 0, ran.stderr
    guess = simulated(path, "--input", items, "--db", str(tmp_path / "none.db"))
    assert guess["makespan"] == 2  # nothing recorded: 1 s each
    assert guess["cost"] is None
    report = simulated(path, "--input", items, "--db", db, "--max-parallel", "2")
    assert report["assumptions"] == []  # every step has a recorded duration
    fetch, *scores = report["schedule"]
    assert 0.2 <= fetch["end"] < 0.4  # what fetch took, not the 1 s default
    assert all(0.05 <= s["end"] - s["start"] < 0.15 for s in scores)
    assert report["cost"] == pytest.approx(0.01 + 4 * 0.002)
    assert not (tmp_path / "none.db").exists()  # reading figures creates no store
