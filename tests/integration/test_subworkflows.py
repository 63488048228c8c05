"""Sub-workflows: a step that runs a child workflow as a run of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from podium import (
    AgentSpec,
    Approval,
    RunNotFound,
    Step,
    StepContext,
    Workflow,
    approve,
    read_result,
    resume_run,
    run_workflow,
)
from podium.model import StepSucceeded
from podium.store import open_store

ledger: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    ledger.clear()


async def research(ctx: StepContext, topic: str) -> str:
    ledger.append(f"{ctx.run_id}:{ctx.key}")
    return f"notes on {topic}"


async def summarise(ctx: StepContext, notes: str, flag: str = "") -> str:
    ledger.append(f"{ctx.run_id}:{ctx.key}")
    if flag and not Path(flag).exists():
        raise ValueError("the summariser is not ready")
    return notes.upper()


def child(flag: str = "") -> Workflow:
    return Workflow(
        name="research",
        steps=[
            Step(id="find", uses=research, with_={"topic": "${{ input.topic }}"}),
            Step(
                id="sum",
                needs=("find",),
                uses=summarise,
                with_={"notes": "${{ steps.find.output }}", "flag": flag},
            ),
        ],
        output="${{ steps.sum.output }}",
    )


def parent(flag: str = "") -> Workflow:
    return Workflow(
        name="article",
        steps=[
            Step(id="study", workflow=child(flag), with_={"topic": "${{ input.topic }}"}),
            Step(
                id="write",
                needs=("study",),
                uses=research,
                with_={"topic": "${{ steps.study.output }}"},
            ),
        ],
        output="${{ steps.write.output }}",
    )


async def test_a_child_run_gives_its_output_and_keeps_its_own_linked_log(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    result = await run_workflow(parent(), {"topic": "tides"}, store=db, run_id="art")
    assert result.status == "succeeded"
    assert result.output == "notes on NOTES ON TIDES"
    assert result.history.steps["study"].agent == "workflow:research"
    child_run = await read_result("art/study", store=db)
    assert child_run.status == "succeeded"
    assert child_run.history.parent == "art"
    assert list(child_run.history.steps) == ["find", "sum"]
    assert ledger == ["art/study:find", "art/study:sum", "art:write"]


async def test_a_child_failure_is_the_step_failure_and_a_redrive_resumes_the_child(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "p.db")
    flag = tmp_path / "ready"
    failed = await run_workflow(parent(str(flag)), {"topic": "tides"}, store=db, run_id="art")
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.step == "study"
    assert "sub-workflow run art/study failed: ValueError in sum" in failed.error.message
    assert "the summariser is not ready" in failed.error.message

    flag.write_text("ready")
    ledger.clear()
    done = await resume_run("art", store=db, workflow=parent(str(flag)))
    assert done.status == "succeeded"
    assert ledger == ["art/study:sum", "art:write"]  # the child's `find` is not run again


CRASHING = """
import asyncio, os, sys
from podium import Step, Workflow, run_workflow, resume_run

def note(key):
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(key + "\\n")

async def slow(ctx, n):
    await asyncio.sleep(0.15)
    note(f"{ctx.run_id}:{ctx.key}")
    return n

CHILD = Workflow(
    name="inner",
    steps=[Step(id=f"c{i}", uses=slow, with_={"n": i}, needs=(f"c{i-1}",) if i else ())
           for i in range(6)],
    output="${{ steps.c5.output }}",
)
PARENT = Workflow(
    name="outer",
    steps=[
        Step(id="first", uses=slow, with_={"n": 0}),
        Step(id="sub", needs=("first",), workflow=CHILD),
        Step(id="last", needs=("sub",), uses=slow, with_={"n": "${{ steps.sub.output }}"}),
    ],
    output="${{ steps.last.output }}",
)

if __name__ == "__main__":
    db = os.environ["DB"]
    if sys.argv[1] == "run":
        result = asyncio.run(run_workflow(PARENT, store=db, run_id="p"))
    else:
        result = asyncio.run(resume_run("p", store=db, workflow=PARENT))
    print(result.status, result.output)
"""


@pytest.mark.parametrize("child_steps_done", [1, 3, 5])
def test_a_parent_killed_inside_its_child_resumes_without_repeating_child_steps(
    tmp_path: Path, child_steps_done: int
) -> None:
    (tmp_path / "crashing.py").write_text(textwrap.dedent(CRASHING))
    env = {**os.environ, "LEDGER": str(tmp_path / "ledger"), "DB": str(tmp_path / "p.db")}

    def start(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "crashing.py", mode],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    process = start("run")
    ledger_file = tmp_path / "ledger"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill once the child is that far, whatever the speed
        lines = ledger_file.read_text().split() if ledger_file.exists() else []
        if sum(line.startswith("p/sub:") for line in lines) >= child_steps_done:
            break
        time.sleep(0.01)
    time.sleep(0.05)  # into the next child step
    assert process.poll() is None, "the run ended before the kill"
    process.send_signal(signal.SIGKILL)
    process.communicate()
    loop = asyncio.new_event_loop()  # not asyncio.run: it would reset pytest's loop
    try:
        committed = loop.run_until_complete(committed_successes(env["DB"]))
    finally:
        loop.close()
    assert any(key.startswith("p/sub:") for key in committed), "killed before the child began"

    stdout, stderr = start("resume").communicate(timeout=60)
    assert stdout.strip() == "succeeded 5", stderr
    ran: Counter[str] = Counter((tmp_path / "ledger").read_text().split())
    assert set(ran) == {"p:first", "p:last", *(f"p/sub:c{i}" for i in range(6))}
    for key in committed:
        assert ran[key] == 1, f"{key} was committed before the kill but ran {ran[key]} times"
    assert max(ran.values()) <= 2  # a step in flight at the kill runs at most once more


async def committed_successes(db: str) -> set[str]:
    """`run:key` of every unit whose success the parent's or the child's log holds."""
    store = open_store(db)
    try:
        found: set[str] = set()
        for run_id in ("p", "p/sub"):
            with contextlib.suppress(RunNotFound):
                events = await store.load(run_id)
                found |= {f"{run_id}:{e.key}" for e in events if isinstance(e, StepSucceeded)}
        return found
    finally:
        await store.close()


async def test_a_workflow_can_be_an_agent_reached_by_capability(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    wf = Workflow(
        name="desk",
        agents=[AgentSpec(name="researcher", workflow=child(), capabilities=frozenset({"study"}))],
        steps=[Step(id="s", capability="study", with_={"topic": "${{ input }}"})],
        output="${{ steps.s.output }}",
    )
    result = await run_workflow(wf, "eels", store=db, run_id="d")
    assert result.output == "NOTES ON EELS"
    assert result.history.steps["s"].agent == "researcher"
    assert (await read_result("d/s", store=db)).history.parent == "d"


async def test_a_child_waiting_for_a_person_makes_the_parent_wait(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    gated = Workflow(
        name="gated",
        steps=[
            Step(id="find", uses=research, with_={"topic": "${{ input.topic }}"}),
            Step(id="ok", needs=("find",), approval=Approval(prompt="Publish?")),
        ],
        output="${{ steps.find.output }}",
    )
    wf = Workflow(
        name="article",
        steps=[
            Step(id="intro", uses=research, with_={"topic": "intro"}),
            Step(id="study", workflow=gated, with_={"topic": "${{ input.topic }}"}),
            Step(id="write", needs=("study",), uses=research, with_={"topic": "done"}),
        ],
        output="${{ steps.study.output }}",
    )
    waiting = await run_workflow(wf, {"topic": "tides"}, store=db, run_id="art")
    assert waiting.status == "waiting"
    assert waiting.history.steps["study"].status == "waiting"
    assert (await read_result("art/study", store=db)).status == "waiting"

    await approve("art/study", "ok", store=db, by="ed")
    ledger.clear()
    done = await resume_run("art", store=db, workflow=wf)
    assert done.status == "succeeded"
    assert done.output == "notes on tides"
    assert ledger == ["art:write"]  # neither `intro` nor the child's `find` ran again
