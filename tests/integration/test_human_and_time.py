"""Durable timers and approvals: runs that wait for time or for a person, and resume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from podium import (
    Approval,
    InputError,
    RunError,
    Step,
    StepContext,
    Workflow,
    approve,
    resume_run,
    run_workflow,
)
from podium.model import ApprovalDecided, RunStarted, TimerStarted
from podium.store import open_store
from podium.testing import VirtualClock

DAY = 24 * 3600.0
calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


async def note(ctx: StepContext, **data: Any) -> dict[str, Any]:
    calls.append(ctx.key)
    return data


def napping(seconds: float) -> Workflow:
    return Workflow(
        name="nap",
        steps=[
            Step(id="before", uses=note),
            Step(id="nap", needs=("before",), sleep=seconds),
            Step(id="after", needs=("nap",), uses=note),
        ],
        output="${{ steps.nap.output.woke_at }}",
    )


async def test_a_day_long_sleep_takes_no_time_on_a_virtual_clock() -> None:
    clock = VirtualClock(start=1_700_000_000.0)
    result = await asyncio.wait_for(run_workflow(napping(DAY), clock=clock), 1)
    assert result.status == "succeeded"
    assert result.output == "2023-11-15T22:13:20Z"  # start + 24 h
    assert clock.now() >= 1_700_000_000.0 + DAY
    assert calls == ["before", "after"]


async def cut_after_timer(db: str, run_id: str, into: str) -> None:
    """A copy of the run's log up to its TimerStarted: as if killed while sleeping."""
    store = open_store(db)
    events = await store.load(run_id)
    await store.close()
    cut = next(i for i, e in enumerate(events) if isinstance(e, TimerStarted))
    copy = open_store(into)
    first = events[0]
    assert isinstance(first, RunStarted)
    await copy.create_run(first)
    await copy.append(run_id, events[1 : cut + 1])
    await copy.close()


async def test_a_sleep_resumed_after_its_wake_time_does_not_sleep_again(tmp_path: Path) -> None:
    db, crashed = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    clock = VirtualClock(start=1_000.0)
    await run_workflow(napping(600), store=db, run_id="n", clock=clock)
    await cut_after_timer(db, "n", crashed)
    later = VirtualClock(start=1_000.0 + 900)  # the process comes back 15 minutes later
    resumed = await resume_run("n", store=crashed, clock=later)
    assert resumed.status == "succeeded"
    assert later.now() == 1_000.0 + 900  # no waiting at all: the wake time had passed


async def test_a_sleep_resumed_before_its_wake_time_sleeps_only_what_is_left(
    tmp_path: Path,
) -> None:
    db, crashed = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    await run_workflow(napping(600), store=db, run_id="n", clock=VirtualClock(start=1_000.0))
    await cut_after_timer(db, "n", crashed)
    later = VirtualClock(start=1_000.0 + 200)
    resumed = await resume_run("n", store=crashed, clock=later)
    assert resumed.output == "1970-01-01T00:26:40Z"  # 1,600 s: the original wake time
    assert later.now() == 1_600.0


async def test_wait_until_a_time_given_by_the_input() -> None:
    wf = Workflow(
        name="until",
        steps=[Step(id="w", wait_until="${{ input.at }}"), Step(id="go", needs=("w",), uses=note)],
        output="${{ steps.w.output.woke_at }}",
    )
    clock = VirtualClock(start=0.0)
    result = await run_workflow(wf, {"at": "1970-01-02T00:00:00Z"}, clock=clock)
    assert result.output == "1970-01-02T00:00:00Z"
    assert clock.now() == DAY


async def test_wait_until_garbage_fails_the_step_clearly() -> None:
    wf = Workflow(name="until", steps=[Step(id="w", wait_until="${{ input.at }}")])
    result = await run_workflow(wf, {"at": "next tuesday"}, clock=VirtualClock())
    assert result.status == "failed"
    assert result.error is not None
    assert "expected an ISO 8601 time" in result.error.message


def approval_workflow(**approval: Any) -> Workflow:
    return Workflow(
        name="release",
        steps=[
            Step(id="build", uses=note, with_={"version": "${{ input.version }}"}),
            Step(
                id="ok",
                needs=("build",),
                approval=Approval(
                    prompt="Ship ${{ steps.build.output.version }}?",
                    schema={"type": "object", "required": ["ticket"]},
                    **approval,
                ),
            ),
            Step(
                id="ship",
                needs=("ok",),
                uses=note,
                with_={"ticket": "${{ steps.ok.output.data.ticket }}"},
            ),
        ],
        output="${{ steps.ship.output }}",
    )


async def test_an_approval_waits_holding_no_process_then_resumes(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    waiting = await run_workflow(approval_workflow(), {"version": "1.2"}, store=db, run_id="r")
    assert waiting.status == "waiting"
    assert waiting.history.steps["ok"].status == "waiting"
    assert calls == ["build"]
    store = open_store(db)
    assert (await store.get_run("r")).status == "waiting"
    assert (await store.get_run("r")).owner is None  # no process holds it
    await store.close()

    with pytest.raises(InputError, match="'ticket' is a required property"):
        await approve("r", "ok", store=db, data={})
    with pytest.raises(RunError, match="not asking for approval"):
        await approve("r", "build", store=db, data={})
    await approve("r", "ok", store=db, data={"ticket": "CH-7"}, by="ana")

    done = await resume_run("r", store=db)
    assert done.status == "succeeded"
    assert done.output == {"ticket": "CH-7"}
    assert calls == ["build", "ship"]  # build is not run again
    store = open_store(db)
    decided = [e for e in await store.load("r") if isinstance(e, ApprovalDecided)]
    await store.close()
    assert [(d.approved, d.by, d.data) for d in decided] == [(True, "ana", {"ticket": "CH-7"})]
    with pytest.raises(RunError, match="already decided"):
        await approve("r", "ok", store=db, data={"ticket": "again"})


async def test_a_rejection_fails_the_step_with_the_reason(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    await run_workflow(approval_workflow(), {"version": "2.0"}, store=db, run_id="r")
    await approve("r", "ok", store=db, approved=False, reason="freeze week", by="bo")
    done = await resume_run("r", store=db)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "Rejected"
    assert done.error.message == "rejected by bo: freeze week"


async def test_a_running_engine_picks_up_a_decision_made_meanwhile(tmp_path: Path) -> None:
    """While another step is still busy, the run stays up and notices the decision."""
    db = str(tmp_path / "p.db")
    wf = Workflow(
        name="both",
        steps=[
            Step(id="ok", approval=Approval(prompt="go?")),
            Step(id="slow", uses=slow_note),
            Step(id="after", needs=("ok", "slow"), uses=note),
        ],
    )
    running = asyncio.create_task(run_workflow(wf, store=db, run_id="b"))
    await asyncio.sleep(0.3)
    await approve("b", "ok", store=db, by="cy")
    result = await asyncio.wait_for(running, 10)
    assert result.status == "succeeded"
    assert calls == ["slow", "after"]


async def slow_note(ctx: StepContext) -> str:
    await asyncio.sleep(1.5)
    calls.append(ctx.key)
    return "slow"


async def test_an_approval_timeout_applies_the_default_decision(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    clock = VirtualClock(start=0.0)
    wf = approval_workflow(timeout=3600.0, default="reject")
    waiting = await run_workflow(wf, {"version": "3"}, store=db, run_id="t", clock=clock)
    assert waiting.status == "waiting"
    clock.advance(7200)
    done = await resume_run("t", store=db, clock=clock)
    assert done.status == "failed"
    assert done.error is not None
    assert "no decision within the timeout" in done.error.message
