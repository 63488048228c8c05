"""The `podium` command end to end: real subprocesses, real SQLite files, real exit codes.

Each test writes a workflow and a module of agents into its own folder and runs
`python -m podium` there, exactly as a user would, with stdout a pipe (so no live view).
The agents append to a ledger file, which is how a test sees what ran and how often.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import podium

SRC = Path(podium.__file__).resolve().parents[1]

AGENTS = '''
import asyncio


def _note(ledger, line):
    with open(ledger, "a") as f:
        f.write(line + "\\n")


async def greet(name, ledger):
    _note(ledger, f"greet {name}")
    return {"greeting": f"hello {name}"}


async def shout(text):
    return text.upper()


async def burn(what):
    raise ValueError(f"the {what} is on fire")


async def nap(ledger, seconds):
    """Sleeps `seconds` the first time only, so a resumed run does not wait again."""
    with open(ledger) as f:
        first = not any(line.startswith("nap") for line in f)
    _note(ledger, "nap")
    if first:
        await asyncio.sleep(seconds)
    return "rested"
'''

GOOD = """
name: hello
input:
  type: object
  required: [name, ledger]
steps:
  greet:
    uses: e2e_agents:greet
    with:
      name: ${{ input.name }}
      ledger: ${{ input.ledger }}
  shout:
    needs: greet
    uses: e2e_agents:shout
    with:
      text: ${{ steps.greet.output.greeting }}
  never:
    needs: greet
    if: ${{ input.name == 'nobody' }}
    uses: e2e_agents:shout
    with:
      text: never
  echo:
    needs: shout
    for_each: ${{ input.items }}
    uses: e2e_agents:shout
    with:
      text: ${{ item }}
output:
  message: ${{ steps.shout.output }}
  echoes: ${{ steps.echo.output }}
"""

FAILING = """
name: failing
steps:
  first:
    uses: e2e_agents:shout
    with:
      text: fine
  fire:
    needs: first
    uses: e2e_agents:burn
    with:
      what: warehouse
"""

SLOW = """
name: slow
steps:
  greet:
    uses: e2e_agents:greet
    with:
      name: sleeper
      ledger: ${{ input.ledger }}
  nap:
    needs: greet
    uses: e2e_agents:nap
    with:
      ledger: ${{ input.ledger }}
      seconds: 30
"""

INVALID = """
name: invalid
steps:
  first:
    uses: e2e_agents:shout
  second:
    neds: first
    uses: e2e_agents:shout
"""

UNIMPORTABLE = """
name: unimportable
steps:
  first:
    uses: e2e_agents:no_such_function
"""


class Project:
    """A folder with workflows, agents, a ledger and a store, and a way to run podium in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = str(root / "runs.db")
        self.ledger = root / "ledger.txt"
        self.ledger.touch()
        (root / "e2e_agents.py").write_text(AGENTS)
        for name, text in [
            ("good", GOOD),
            ("failing", FAILING),
            ("slow", SLOW),
            ("invalid", INVALID),
            ("unimportable", UNIMPORTABLE),
        ]:
            (root / f"{name}.yaml").write_text(text)

    def input(self, **values: Any) -> str:
        return json.dumps({"ledger": str(self.ledger), **values})

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "podium", *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        env.pop("PODIUM_DB", None)
        return env

    def podium(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )

    @contextlib.contextmanager
    def running(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        """Podium in the background, once it has announced its run; killed at the end."""
        with subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            try:
                assert process.stderr is not None
                announced = process.stderr.readline()
                assert "started" in announced, announced
                yield process
            finally:
                process.kill()

    def ledger_lines(self) -> list[str]:
        return self.ledger.read_text().splitlines()

    def wait_for_ledger(self, line: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.ledger_lines():
            assert time.monotonic() < deadline, f"{line!r} never appeared in the ledger"
            time.sleep(0.05)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


def test_help_lists_every_command(project: Project) -> None:
    result = project.podium("--help")
    assert result.returncode == 0
    commands = ("run", "resume", "cancel", "runs", "show", "events", "validate", "graph")
    for command in (*commands, "simulate", "explain"):
        assert f"  {command} " in result.stdout
    assert "  demo " in result.stdout


def test_run_prints_one_json_result(project: Project) -> None:
    result = project.podium(
        "run", "good.yaml", "--input", project.input(name="ada", items=["a", "b"]),
        "--db", project.db, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "succeeded"
    assert answer["error"] is None
    assert answer["output"] == {"message": "HELLO ADA", "echoes": ["A", "B"]}
    assert f"run {answer['run_id']} started (db: {project.db})" in result.stderr


def test_run_without_json_prints_the_steps_and_the_store(project: Project) -> None:
    result = project.podium(
        "run", "good.yaml", "--input", project.input(name="ada", items=[]), "--db", project.db
    )
    assert result.returncode == 0, result.stderr
    for text in ("succeeded", "greet", "shout", "skipped", "HELLO ADA", f"db: {project.db}"):
        assert text in result.stdout


def test_a_failed_run_exits_1_and_names_the_step(project: Project) -> None:
    result = project.podium("run", "failing.yaml", "--db", project.db, "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["step"] == "fire"
    assert error["type"] == "ValueError"
    assert "the warehouse is on fire" in error["message"]
    no_traceback(result)


def test_an_invalid_definition_exits_2_with_file_line_and_column(project: Project) -> None:
    result = project.podium("run", "invalid.yaml", "--db", project.db)
    assert result.returncode == 2
    assert "invalid.yaml:7:" in result.stderr  # the line of the `neds:` typo
    assert "neds" in result.stderr
    no_traceback(result)
    validated = project.podium("validate", "invalid.yaml")
    assert validated.returncode == 2
    assert validated.stderr == result.stderr


def test_validate_accepts_a_good_file_and_checks_imports(project: Project) -> None:
    ok = project.podium("validate", "good.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = project.podium("validate", "unimportable.yaml")
    assert bad.returncode == 2
    assert "unimportable.yaml:" in bad.stderr
    assert "no_such_function" in bad.stderr
    no_traceback(bad)


def test_bad_input_json_is_one_line_naming_the_option(project: Project) -> None:
    result = project.podium("run", "good.yaml", "--input", "{not json", "--db", project.db)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --input is not valid JSON")
    assert len(result.stderr.splitlines()) == 1
    assert project.ledger_lines() == []


def test_input_that_breaks_the_schema_exits_2(project: Project) -> None:
    result = project.podium("run", "good.yaml", "--input", "{}", "--db", project.db)
    assert result.returncode == 2
    assert "'name' is a required property" in result.stderr
    no_traceback(result)


def test_a_missing_workflow_file_is_a_usage_error(project: Project) -> None:
    result = project.podium("run", "nowhere.yaml")
    assert result.returncode == 2
    assert "nowhere.yaml" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("command", ["show", "resume", "events", "cancel"])
def test_an_unknown_run_id_exits_2_with_a_clear_message(project: Project, command: str) -> None:
    assert project.podium("run", "failing.yaml", "--db", project.db).returncode == 1
    result = project.podium(command, "no-such-run", "--db", project.db)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no run with id 'no-such-run'")
    no_traceback(result)


def test_reading_a_store_that_is_not_there_does_not_create_it(project: Project) -> None:
    result = project.podium("show", "some-run", "--db", "typo.db")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no store at typo.db")
    assert not (project.root / "typo.db").exists()


def test_the_same_run_id_twice_runs_once(project: Project) -> None:
    args = ("run", "good.yaml", "--input", project.input(name="bo", items=["x"]))
    first = project.podium(*args, "--run-id", "once", "--db", project.db, "--json")
    second = project.podium(*args, "--run-id", "once", "--db", project.db, "--json")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert json.loads(second.stdout)["run_id"] == "once"
    assert project.ledger_lines() == ["greet bo"]


def test_show_json_has_every_step_by_key(project: Project) -> None:
    args = ("--input", project.input(name="cy", items=["p", "q"]), "--run-id", "r1")
    assert project.podium("run", "good.yaml", *args, "--db", project.db).returncode == 0
    result = project.podium("show", "r1", "--db", project.db, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["run_id"] == "r1"
    assert shown["status"] == "succeeded"
    steps = shown["steps"]
    assert set(steps) == {"greet", "shout", "never", "echo", "echo[0]", "echo[1]"}
    assert steps["never"]["status"] == "skipped"
    assert steps["echo[1]"]["output"] == "Q"
    for record in steps.values():
        assert {"status", "attempts", "agent", "started_at", "ended_at"} <= set(record)
    assert steps["greet"]["agent"] == "e2e_agents:greet"
    human = project.podium("show", "r1", "--db", project.db)
    assert "echo[1]" in human.stdout


def test_events_json_is_one_object_a_line(project: Project) -> None:
    args = ("--input", project.input(name="di", items=["z"]), "--run-id", "r2")
    assert project.podium("run", "good.yaml", *args, "--db", project.db).returncode == 0
    result = project.podium("events", "r2", "--db", project.db, "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["type"] == "run_started"
    assert events[-1]["type"] == "run_finished"
    assert [e["seq"] for e in events] == list(range(len(events)))
    started = [e for e in events if e["type"] == "step_started"]
    assert {e["key"] for e in started} == {"greet", "shout", "echo[0]"}
    human = project.podium("events", "r2", "--db", project.db)
    assert len(human.stdout.splitlines()) == len(events)


def test_runs_lists_what_ran(project: Project) -> None:
    args = ("--input", project.input(name="ed", items=[]), "--run-id", "listed")
    assert project.podium("run", "good.yaml", *args, "--db", project.db).returncode == 0
    result = project.podium("runs", "--db", project.db, "--json")
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)
    assert (run["run_id"], run["workflow"], run["status"]) == ("listed", "hello", "succeeded")
    assert "listed" in project.podium("runs", "--db", project.db).stdout


def test_graph_draws_the_needs(project: Project) -> None:
    mermaid = project.podium("graph", "good.yaml", "--format", "mermaid")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD")
    assert "step_greet --> step_shout" in mermaid.stdout
    assert "step_greet -.-> step_never" in mermaid.stdout  # a conditional step
    assert "step_echo[[" in mermaid.stdout  # a for_each step
    dot = project.podium("graph", "good.yaml", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "hello" {')
    assert '"greet" -> "shout";' in dot.stdout
    assert '"shout" -> "echo";' in dot.stdout


def test_cancel_stops_a_run_another_process_executes(project: Project) -> None:
    args = ("--input", project.input(), "--run-id", "long", "--db", project.db, "--json")
    with project.running("run", "slow.yaml", *args) as running:
        project.wait_for_ledger("nap")
        cancelled = project.podium("cancel", "long", "--db", project.db)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "asked the process executing run long to cancel it" in cancelled.stdout
        out, _ = running.communicate(timeout=10)
        assert running.returncode == 4
    assert json.loads(out)["status"] == "cancelled"
    shown = json.loads(project.podium("show", "long", "--db", project.db, "--json").stdout)
    assert shown["status"] == "cancelled"


def test_a_killed_run_resumes_without_redoing_completed_steps(project: Project) -> None:
    args = ("--input", project.input(), "--run-id", "crash", "--db", project.db)
    with project.running("run", "slow.yaml", *args) as running:
        project.wait_for_ledger("nap")
        running.send_signal(signal.SIGKILL)
        running.wait()
    resumed = project.podium("resume", "crash", "--db", project.db, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert project.ledger_lines() == ["greet sleeper", "nap", "nap"]


def test_ctrl_c_says_how_to_resume_and_exits_130(project: Project) -> None:
    args = ("--input", project.input(), "--run-id", "intr", "--db", project.db)
    with project.running("run", "slow.yaml", *args) as running:
        project.wait_for_ledger("nap")
        running.send_signal(signal.SIGINT)
        _, err = running.communicate(timeout=10)
        assert running.returncode == 130
    assert f"podium resume intr --db {project.db}" in err
    assert "Traceback" not in err
    resumed = project.podium("resume", "intr", "--db", project.db, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert project.ledger_lines() == ["greet sleeper", "nap", "nap"]


def test_cancel_of_a_run_whose_process_died(project: Project) -> None:
    args = ("--input", project.input(), "--run-id", "orphan", "--db", project.db)
    with project.running("run", "slow.yaml", *args) as running:
        project.wait_for_ledger("nap")
        running.send_signal(signal.SIGKILL)
        running.wait()
    cancelled = project.podium("cancel", "orphan", "--db", project.db)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "run orphan cancelled" in cancelled.stdout
    resumed = project.podium("resume", "orphan", "--db", project.db, "--json")
    assert resumed.returncode == 4
    assert json.loads(resumed.stdout)["status"] == "cancelled"
    assert project.ledger_lines() == ["greet sleeper", "nap"]


def test_demo_runs_and_says_where_it_wrote(project: Project) -> None:
    db = str(project.root / "demo.db")
    result = project.podium("demo", "--db", db)
    assert result.returncode == 0, result.stderr
    assert f"db: {db}" in result.stdout
    assert "succeeded" in result.stdout
    (run,) = json.loads(project.podium("runs", "--db", db, "--json").stdout)
    shown = json.loads(project.podium("show", run["run_id"], "--db", db, "--json").stdout)
    steps = shown["steps"]
    assert steps["charge"]["attempts"] == 2  # the flaky gateway, retried
    assert steps["backorder"]["status"] == "skipped"
    assert {steps[f"reserve[{i}]"]["agent"] for i in range(3)} == {
        "warehouse_east",
        "warehouse_west",
    }
    assert shown["output"]["invoice"] == "INV-SO-1042"
