"""The engine end to end on real stores: branches, fan-out, retries, timeouts, limits, resume."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from podium import (
    AgentSpec,
    DefinitionError,
    InputError,
    RetryPolicy,
    Step,
    StepContext,
    Workflow,
    read_result,
    resume_run,
    run_workflow,
)
from podium.model import RunStarted, StepStarted, StepSucceeded
from podium.store import open_store

calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


async def record(ctx: StepContext, **kwargs: Any) -> dict[str, Any]:
    calls.append(ctx.key)
    return {"key": ctx.key, **kwargs}


async def stock(qty: int) -> dict[str, Any]:
    calls.append("stock")
    return {"in_stock": qty > 0}


async def flaky(ctx: StepContext) -> str:
    calls.append(f"flaky#{ctx.attempt}")
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} failed")
    return "ok"


async def boom() -> None:
    raise ValueError("the warehouse is on fire")


async def slow() -> str:
    await asyncio.sleep(10)
    return "late"


def not_json() -> object:
    return object()


def sync_double(x: int) -> int:
    return x * 2


def order_workflow() -> Workflow:
    return Workflow(
        name="order",
        input_schema={"type": "object", "required": ["qty"]},
        steps=[
            Step(id="check", uses=stock, with_={"qty": "${{ input.qty }}"}),
            Step(
                id="reserve",
                needs=("check",),
                condition="${{ steps.check.output.in_stock }}",
                uses=record,
            ),
            Step(
                id="backorder",
                needs=("check",),
                condition="${{ not steps.check.output.in_stock }}",
                uses=record,
            ),
            Step(
                id="notify",
                needs=("reserve", "backorder"),
                trigger="one_success",
                for_each="${{ input.contacts }}",
                max_parallel=2,
                uses=record,
                with_={"to": "${{ item }}", "n": "${{ index }}"},
            ),
        ],
        output={
            "shipped": "${{ steps.reserve.status == 'succeeded' }}",
            "notices": "${{ steps.notify.output }}",
        },
    )


async def test_branch_and_fan_out_in_memory() -> None:
    result = await run_workflow(order_workflow(), {"qty": 2, "contacts": ["a", "b", "c"]})
    assert result.status == "succeeded"
    assert result.output["shipped"] is True
    assert [n["to"] for n in result.output["notices"]] == ["a", "b", "c"]
    assert [n["n"] for n in result.output["notices"]] == [0, 1, 2]
    assert result.history.steps["backorder"].status == "skipped"
    assert "was False" in result.history.steps["backorder"].reason


async def test_the_other_branch_on_sqlite(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    result = await run_workflow(order_workflow(), {"qty": 0, "contacts": ["x"]}, store=db)
    assert result.output == {
        "shipped": False,
        "notices": [{"key": "notify[0]", "to": "x", "n": 0}],
    }
    again = await read_result(result.run_id, store=db)
    assert again.output == result.output
    assert str(again.history.steps["notify[0]"].agent).endswith("test_engine:record")


async def test_input_is_checked_against_its_schema() -> None:
    with pytest.raises(InputError, match="'qty' is a required property"):
        await run_workflow(order_workflow(), {"contacts": []})


async def test_retries_with_backoff_then_success() -> None:
    wf = Workflow(
        name="retry",
        steps=[Step(id="f", uses=flaky, retry=RetryPolicy(attempts=3, backoff=0.01))],
    )
    result = await run_workflow(wf)
    assert result.status == "succeeded"
    assert calls == ["flaky#1", "flaky#2", "flaky#3"]
    assert result.history.steps["f"].attempts == 3


async def test_a_failure_names_step_and_agent_and_keeps_what_completed(tmp_path: Path) -> None:
    wf = Workflow(
        name="fail",
        agents=[AgentSpec(name="depot", uses=boom)],
        steps=[
            Step(id="first", uses=record),
            Step(id="burn", needs=("first",), agent="depot", retry=RetryPolicy(attempts=2)),
            Step(id="after", needs=("burn",), uses=record),
        ],
    )
    db = str(tmp_path / "p.db")
    result = await run_workflow(wf, store=db)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.step == "burn"
    assert result.error.type == "ValueError"
    assert "the warehouse is on fire (agent depot)" in result.error.message
    assert result.history.steps["first"].status == "succeeded"
    assert result.history.steps["burn"].attempts == 2
    assert "after" not in result.history.steps


async def test_a_timeout_cancels_the_call() -> None:
    wf = Workflow(name="t", steps=[Step(id="s", uses=slow, timeout=0.05)])
    result = await asyncio.wait_for(run_workflow(wf), 5)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "StepTimeout"
    assert "timed out after 0.05s" in result.error.message


async def test_a_value_that_is_not_json_fails_the_step() -> None:
    wf = Workflow(name="t", steps=[Step(id="s", uses=not_json, retry=RetryPolicy(attempts=3))])
    result = await run_workflow(wf)
    assert result.status == "failed"
    assert result.error is not None
    assert "not JSON-serialisable (object)" in result.error.message
    assert result.history.steps["s"].attempts == 1  # not retried: it would fail again


async def test_sync_callables_run_in_threads_with_a_positional_argument() -> None:
    wf = Workflow(
        name="t", steps=[Step(id="s", uses=sync_double, with_=21)], output="${{ steps.s.output }}"
    )
    result = await run_workflow(wf)
    assert result.output == 42


async def test_continue_on_error_lets_the_run_succeed() -> None:
    wf = Workflow(
        name="t",
        steps=[
            Step(id="bad", uses=boom, continue_on_error=True),
            Step(id="next", needs=("bad",), trigger="all_done", uses=record),
        ],
        output="${{ steps.bad.status }}",
    )
    result = await run_workflow(wf)
    assert result.status == "succeeded"
    assert result.output == "failed"


in_flight = 0
peak = 0


async def tracked(ctx: StepContext) -> str:
    global in_flight, peak
    in_flight += 1
    peak = max(peak, in_flight)
    await asyncio.sleep(0.01)
    in_flight -= 1
    return ctx.agent


@pytest.mark.parametrize(("concurrency", "max_parallel", "expected"), [(2, None, 2), (5, 3, 3)])
async def test_agent_concurrency_and_max_parallel_are_limits(
    concurrency: int, max_parallel: int | None, expected: int
) -> None:
    global peak
    peak = 0
    wf = Workflow(
        name="t",
        agents=[AgentSpec(name="worker", uses=tracked, concurrency=concurrency)],
        steps=[Step(id="f", agent="worker", for_each="${{ input }}")],
    )
    result = await run_workflow(wf, list(range(12)), max_parallel=max_parallel)
    assert result.status == "succeeded"
    assert peak == expected


async def test_capability_routing_spreads_load_and_says_why(tmp_path: Path) -> None:
    wf = Workflow(
        name="t",
        agents=[
            AgentSpec(name="east", uses=tracked, capabilities=frozenset({"ship"}), concurrency=1),
            AgentSpec(name="west", uses=tracked, capabilities=frozenset({"ship"}), concurrency=1),
        ],
        steps=[Step(id="f", capability="ship", for_each="${{ input }}")],
    )
    db = str(tmp_path / "p.db")
    result = await run_workflow(wf, list(range(6)), store=db, run_id="r")
    agents = [result.history.steps[f"f[{i}]"].agent for i in range(6)]
    assert set(agents) == {"east", "west"}
    assert all("ship" in result.history.steps[f"f[{i}]"].reason for i in range(6))
    store = open_store(db)
    started = [e for e in await store.load("r") if isinstance(e, StepStarted)]
    await store.close()
    # Every choice lists both agents: scored, or excluded with the reason (no room).
    assert all({c.agent for c in e.candidates} == {"east", "west"} for e in started)
    assert any(c.excluded == "no room" for e in started for c in e.candidates)


async def test_an_unknown_capability_is_a_definition_error() -> None:
    wf = Workflow(name="t", steps=[Step(id="s", capability="teleport")])
    with pytest.raises(DefinitionError, match="teleport"):
        await run_workflow(wf)


async def test_an_expression_error_fails_the_step_with_a_clear_message() -> None:
    wf = Workflow(
        name="t",
        steps=[
            Step(id="a", uses=record),
            Step(id="b", needs=("a",), uses=record, with_={"x": "${{ steps.a.output.nope }}"}),
        ],
    )
    result = await run_workflow(wf)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.step == "b"
    assert "nope" in result.error.message


async def test_same_run_id_twice_returns_the_recorded_result(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    first = await run_workflow(order_workflow(), {"qty": 1, "contacts": []}, store=db, run_id="r1")
    count = len(calls)
    second = await run_workflow(order_workflow(), {"qty": 1, "contacts": []}, store=db, run_id="r1")
    assert second.output == first.output
    assert len(calls) == count  # nothing ran again


async def test_resume_after_a_crash_runs_only_what_did_not_complete(tmp_path: Path) -> None:
    """Cut a finished log just after `check` succeeded and `reserve` started: a crash."""
    db = str(tmp_path / "p.db")
    done = await run_workflow(order_workflow(), {"qty": 1, "contacts": ["a"]}, store=db, run_id="x")
    store = open_store(db)
    events = await store.load("x")
    await store.close()
    cut = next(
        i for i, e in enumerate(events) if isinstance(e, StepStarted) and e.step == "reserve"
    )
    crashed = str(tmp_path / "crashed.db")
    store = open_store(crashed)
    first = events[0]
    assert isinstance(first, RunStarted)
    await store.create_run(first)
    await store.append("x", events[1 : cut + 1])
    await store.close()
    calls.clear()
    resumed = await resume_run("x", store=crashed)
    assert resumed.output == done.output
    assert calls == ["reserve", "notify[0]"]  # `check` is not run again
    store = open_store(crashed)
    log = await store.load("x")
    await store.close()
    succeeded = [e.key for e in log if isinstance(e, StepSucceeded)]
    assert sorted(succeeded) == sorted(set(succeeded))


async def test_resume_of_a_failed_run_redrives_failed_steps(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    state = tmp_path / "fixed"

    wf = Workflow(
        name="redrive",
        steps=[
            Step(id="a", uses=record),
            Step(id="b", needs=("a",), uses=fragile, with_={"flag": str(state)}),
            Step(id="c", needs=("b",), uses=record),
        ],
        output="${{ steps.b.output }}",
    )
    failed = await run_workflow(wf, store=db)
    assert failed.status == "failed"
    state.write_text("fixed")
    calls.clear()
    redriven = await resume_run(failed.run_id, store=db, workflow=wf)
    assert redriven.status == "succeeded"
    assert redriven.output == "repaired"
    assert calls == ["c"]  # `a` kept its result


def fragile(flag: str) -> str:
    if not Path(flag).exists():
        raise RuntimeError("not yet")
    return "repaired"


async def test_a_unit_that_cannot_start_does_not_stall_its_all_done_dependents() -> None:
    wf = Workflow(
        name="t",
        steps=[
            Step(id="bad", uses=record, with_="${{ input.missing }}"),
            Step(id="cleanup", needs=("bad",), trigger="all_done", uses=record),
        ],
    )
    result = await asyncio.wait_for(run_workflow(wf, {}), 5)
    assert result.status == "failed"
    assert result.history.steps["cleanup"].status == "succeeded"


async def test_a_run_resumes_as_it_was_defined_even_if_the_file_changed(tmp_path: Path) -> None:
    from podium.spec import load_workflow

    module = tmp_path / "defined_agents.py"
    module.write_text("def hello(name):\n    return 'hello ' + name\n")
    source = tmp_path / "wf.yaml"
    source.write_text(
        "name: greet\n"
        "steps:\n"
        "  a: {uses: 'defined_agents:hello', with: {name: first}}\n"
        "  b: {uses: 'defined_agents:hello', needs: [a], with: {name: second}}\n"
        "output: ${{ steps.b.output }}\n"
    )
    db = str(tmp_path / "p.db")
    done = await run_workflow(load_workflow(source), store=db, run_id="g")
    store = open_store(db)
    events = await store.load("g")
    await store.close()
    cut = next(i for i, e in enumerate(events) if isinstance(e, StepSucceeded))
    crashed = str(tmp_path / "crashed.db")
    store = open_store(crashed)
    first = events[0]
    assert isinstance(first, RunStarted)
    await store.create_run(first)
    await store.append("g", events[1 : cut + 1])
    await store.close()
    source.write_text(source.read_text().replace("second", "CHANGED"))
    resumed = await resume_run("g", store=crashed)
    assert resumed.output == done.output == "hello second"


async def test_a_run_whose_lease_is_taken_over_stops_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if this process had stalled past its lease and another had taken the run over."""
    from podium import RunBusy
    from podium.runtime import api

    monkeypatch.setattr(api, "LEASE_SECONDS", 0.3)  # renewed every 0.1 s
    db = str(tmp_path / "p.db")
    wf = Workflow(name="slow", steps=[Step(id="s", uses=slow, timeout=5)])
    running = asyncio.create_task(run_workflow(wf, store=db, run_id="taken"))
    store = open_store(db)
    try:
        await asyncio.sleep(0.1)
        ours = (await store.get_run("taken")).owner
        assert ours is not None
        assert await store.steal("taken", "elsewhere:1:x", ours, 60, now=time.time())
        written = len(await store.load("taken"))
        with pytest.raises(RunBusy, match="elsewhere"):
            await asyncio.wait_for(running, 5)
        assert len(await store.load("taken")) == written  # nothing more was written
    finally:
        await store.close()
