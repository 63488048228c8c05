"""Calls made inside a unit are recorded before they return, and replayed, not made again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podium import RetryPolicy, Step, StepContext, Workflow, resume_run, run_workflow
from podium.agents import Computed
from podium.model import CallRecorded, RunStarted, StepStarted, Usage
from podium.store import open_store

made: list[str] = []


def counted(name: str, tokens: int = 0) -> Any:
    async def compute() -> Computed:
        made.append(name)
        return {"said": name}, Usage(tokens=tokens) if tokens else None

    return compute


async def two_calls_then_fail_once(ctx: StepContext) -> list[Any]:
    first = await ctx.remember("model-1", counted("model-1", 10), kind="model", input="hi")
    second = await ctx.remember("tool-1", counted("tool-1"), kind="tool")
    if ctx.attempt == 1:
        raise RuntimeError("the connection dropped after two calls")
    return [first, second]


def workflow() -> Workflow:
    return Workflow(
        name="journal",
        steps=[Step(id="talk", uses=two_calls_then_fail_once, retry=RetryPolicy(attempts=2))],
    )


async def test_a_retry_gets_the_recorded_calls_back(tmp_path: Path) -> None:
    made.clear()
    db = str(tmp_path / "j.db")
    result = await run_workflow(workflow(), store=db, run_id="j")
    assert result.status == "succeeded"
    assert result.history.steps["talk"].output == [{"said": "model-1"}, {"said": "tool-1"}]
    assert made == ["model-1", "tool-1"]  # attempt 2 made neither call again
    assert result.history.usage.tokens == 10  # counted once
    store = open_store(db)
    recorded = [e for e in await store.load("j") if isinstance(e, CallRecorded)]
    await store.close()
    assert [(e.key, e.name, e.kind, e.input) for e in recorded] == [
        ("talk", "model-1", "model", "hi"),
        ("talk", "tool-1", "tool", None),
    ]


async def test_a_crash_after_a_call_resumes_without_making_it_again(tmp_path: Path) -> None:
    made.clear()
    db = str(tmp_path / "j.db")
    done = await run_workflow(workflow(), store=db, run_id="j")
    store = open_store(db)
    events = await store.load("j")
    await store.close()
    # The log as a process killed right after the first call was recorded left it.
    cut = next(i for i, e in enumerate(events) if isinstance(e, CallRecorded))
    assert any(isinstance(e, StepStarted) for e in events[:cut])
    crashed = str(tmp_path / "crashed.db")
    store = open_store(crashed)
    first = events[0]
    assert isinstance(first, RunStarted)
    await store.create_run(first)
    await store.append("j", events[1 : cut + 1])
    await store.close()
    made.clear()
    resumed = await resume_run("j", store=crashed)
    assert resumed.history.steps["talk"].output == done.history.steps["talk"].output
    assert made == ["tool-1"]  # the model call was replayed from the log
    assert resumed.history.usage.tokens == 10


async def test_outside_a_run_the_call_is_simply_made() -> None:
    made.clear()
    ctx = StepContext(run_id="r", step="s", key="s", index=None, attempt=1, agent="a")
    assert await ctx.remember("x", counted("x")) == {"said": "x"}
    assert await ctx.remember("x", counted("x", 2)) == {"said": "x"}
    assert made == ["x", "x"]
    assert ctx.spent == Usage(tokens=2)


async def test_calls_within_a_call_are_named_under_it_and_report_usage_upwards() -> None:
    made.clear()
    ctx = StepContext(run_id="r", step="s", key="s", index=None, attempt=1, agent="a")
    inner = ctx.within("turn-3").within("tool-1")
    assert inner.path == "turn-3/tool-1/"
    assert inner.idempotency_key == "r/s/turn-3/tool-1"
    inner.report_usage(tokens=5, cost=0.25)
    assert ctx.usage == Usage(tokens=5, cost=0.25)


async def nested(ctx: StepContext) -> Any:
    turn = ctx.within("turn-1")
    said = await turn.remember("model-1", counted("inner", 3), kind="model")
    assert ctx.spent == turn.spent == Usage(tokens=3)
    return said


async def test_a_call_within_a_call_is_recorded_under_its_path(tmp_path: Path) -> None:
    made.clear()
    db = str(tmp_path / "n.db")
    await run_workflow(Workflow(name="n", steps=[Step(id="s", uses=nested)]), store=db, run_id="n")
    store = open_store(db)
    recorded = [e for e in await store.load("n") if isinstance(e, CallRecorded)]
    await store.close()
    assert [(e.key, e.name) for e in recorded] == [("s", "turn-1/model-1")]
