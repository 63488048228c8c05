"""Shared state and loops through the engine, on SQLite: writes, reducers, iterations, resume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from podium import Step, StepContext, Workflow, fork_run, resume_run, run_workflow
from podium.model import Repeat, RunStarted, StateKey, StateWritten, StepSucceeded
from podium.store import open_store

calls: list[str] = []


async def echo(ctx: StepContext, value: Any = None, delay: float = 0.0) -> Any:
    await asyncio.sleep(delay)
    calls.append(ctx.key)
    return value


async def score(ctx: StepContext, n: int) -> dict[str, Any]:
    calls.append(ctx.key)
    return {"n": n, "ok": n >= 3}


def longest(value: str | None, written: str) -> str:
    return written if value is None or len(written) > len(value) else value


def writer(step: str, key: str, value: Any, *, delay: float = 0.0, **more: Any) -> Step:
    return Step(
        id=step,
        uses=echo,
        with_={"value": value, "delay": delay},
        writes={key: "${{ output }}"},
        **more,
    )


async def test_every_reducer_and_a_python_one(tmp_path: Path) -> None:
    wf = Workflow(
        name="reducers",
        state=[
            StateKey(name="last", reducer="replace"),
            StateKey(name="seen", reducer="append"),
            StateKey(name="all", reducer="extend"),
            StateKey(name="doc", reducer="merge", initial={"v": 0}),
            StateKey(name="total", reducer="sum"),
            StateKey(name="top", reducer="max"),
            StateKey(name="low", reducer="min"),
            StateKey(name="word", reducer=longest),
        ],
        steps=[
            writer("a", "last", 1),
            writer("b", "last", 2, needs=("a",)),
            Step(
                id="fan",
                uses=echo,
                for_each="${{ [3, 1, 2] }}",
                with_={"value": "${{ item }}", "delay": "${{ item / 100 }}"},
                writes={
                    "seen": "${{ output }}",
                    "all": "${{ [output, output] }}",
                    "doc": "${{ {'k' ~ output: output} }}",
                    "total": "${{ output }}",
                    "top": "${{ output }}",
                    "low": "${{ output }}",
                    "word": "${{ 'x' * output }}",
                },
            ),
        ],
        output="${{ state }}",
    )
    result = await run_workflow(wf, store=str(tmp_path / "s.db"))
    assert result.status == "succeeded", result.error
    # Items finished 1, 2, 3, but writes fold in item order: the state does not depend on it.
    assert result.output == {
        "last": 2,
        "seen": [3, 1, 2],
        "all": [3, 3, 1, 1, 2, 2],
        "doc": {"v": 0, "k3": 3, "k1": 1, "k2": 2},
        "total": 6,
        "top": 3,
        "low": 1,
        "word": "xxx",
    }
    assert result.history.state == result.output  # the log alone says what the state is


async def test_a_write_of_the_wrong_kind_fails_the_step_clearly(tmp_path: Path) -> None:
    wf = Workflow(
        name="bad-write",
        state=[StateKey(name="n", reducer="sum"), StateKey(name="s", schema={"type": "string"})],
        steps=[writer("a", "n", "three"), writer("b", "s", 3)],
    )
    result = await run_workflow(wf, store=str(tmp_path / "s.db"))
    assert result.status == "failed"
    a, b = result.history.steps["a"].error, result.history.steps["b"].error
    assert a is not None
    assert a.type == "StateError"
    assert a.message.startswith("writes.n: sum needs a number, got str")
    assert b is not None
    assert b.message.startswith(
        "writes.s: the new value does not meet its schema: 3 is not of type"
    )


LAST = "${{ steps.refine.last }}"
DRAFT = "${{ 'v' ~ loop.iteration ~ ' after ' ~ (loop.previous.draft if loop.previous else '-') }}"


def refine(max_iterations: int, on_max: Any = "fail") -> Workflow:
    group = {
        "draft": Step(
            id="draft",
            uses=echo,
            with_={"value": DRAFT},
            writes={"drafts": "${{ output }}"},
        ),
        "critique": Step(
            id="critique", needs=("draft",), uses=score, with_={"n": "${{ loop.iteration }}"}
        ),
    }
    return Workflow(
        name="refine",
        state=[StateKey(name="drafts", reducer="append")],
        steps=[
            Step(
                id="refine",
                steps=group,
                repeat=Repeat(
                    until="${{ steps.critique.output.ok }}",
                    max_iterations=max_iterations,
                    on_max=on_max,
                ),
            ),
            Step(
                id="after",
                needs=("refine",),
                uses=echo,
                with_={"value": "${{ steps.refine.last }}"},
            ),
        ],
        output={
            "last": "${{ steps.after.output }}",
            "drafts": "${{ state.drafts }}",
            "n": "${{ steps.refine.iterations }}",
        },
    )


async def test_a_loop_runs_until_its_condition_holds(tmp_path: Path) -> None:
    calls.clear()
    result = await run_workflow(refine(5), store=str(tmp_path / "l.db"))
    assert result.status == "succeeded", result.error
    assert result.output == {
        "last": {"draft": "v3 after v2 after v1 after -", "critique": {"n": 3, "ok": True}},
        "drafts": ["v1 after -", "v2 after v1 after -", "v3 after v2 after v1 after -"],
        "n": 3,
    }
    assert calls == [
        "draft#1",
        "critique#1",
        "draft#2",
        "critique#2",
        "draft#3",
        "critique#3",
        "after",
    ]
    assert result.history.steps["refine"].status == "succeeded"
    assert len(result.history.steps["refine"].output) == 3


async def test_max_iterations_fails_the_loop_or_continues(tmp_path: Path) -> None:
    failed = await run_workflow(refine(2), store=str(tmp_path / "f.db"))
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.type == "LoopExhausted"
    assert "still false after max_iterations (2)" in failed.error.message
    kept_on = await run_workflow(refine(2, on_max="continue"), store=str(tmp_path / "c.db"))
    assert kept_on.status == "succeeded"
    assert kept_on.output["n"] == 2


async def test_a_repeated_step_without_a_group(tmp_path: Path) -> None:
    wf = Workflow(
        name="count",
        steps=[
            Step(
                id="count",
                uses=echo,
                with_={"value": "${{ loop.iteration * 10 }}"},
                repeat=Repeat(until="${{ output >= 30 }}", max_iterations=9),
            )
        ],
        output="${{ steps.count.output }}",
    )
    result = await run_workflow(wf, store=str(tmp_path / "r.db"))
    assert result.output == [10, 20, 30]


async def test_a_loop_cut_mid_iteration_resumes_in_that_iteration(tmp_path: Path) -> None:
    calls.clear()
    db = str(tmp_path / "l.db")
    done = await run_workflow(refine(5), store=db, run_id="l")
    store = open_store(db)
    events = await store.load("l")
    await store.close()
    # A crash just after draft#2 was committed: critique#2 had not run.
    cut = next(
        i for i, e in enumerate(events) if isinstance(e, StepSucceeded) and e.key == "draft#2"
    )
    crashed = str(tmp_path / "crashed.db")
    store = open_store(crashed)
    first = events[0]
    assert isinstance(first, RunStarted)
    await store.create_run(first)
    await store.append("l", events[1 : cut + 1])
    await store.close()
    calls.clear()
    resumed = await resume_run("l", store=crashed)
    assert resumed.output == done.output
    assert calls == ["critique#2", "draft#3", "critique#3", "after"]


TONE = "${{ 'in a ' ~ state.tone ~ ' tone' }}"


async def test_a_fork_that_sets_state_continues_to_a_different_result(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    wf = Workflow(
        name="tone",
        state=[StateKey(name="tone", initial="plain")],
        steps=[
            writer("pick", "tone", "casual"),
            Step(
                id="write",
                needs=("pick",),
                uses=echo,
                with_={"value": "${{ 'in a ' ~ state.tone ~ ' tone' }}"},
            ),
        ],
        output="${{ steps.write.output }}",
    )
    first = await run_workflow(wf, store=db, run_id="p")
    assert first.output == "in a casual tone"
    forked = await fork_run("p", "write", store=db, sets={"tone": "formal"}, new_run_id="f")
    assert forked.output == "in a formal tone"
    assert forked.history.state == {"tone": "formal"}
    store = open_store(db)
    sets = [e for e in await store.load("f") if isinstance(e, StateWritten) and e.set]
    parent = await store.load("p")
    await store.close()
    assert [(e.key, e.step, e.version) for e in sets] == [("tone", "fork", 2)]
    assert not any(isinstance(e, StateWritten) and e.set for e in parent)  # untouched
