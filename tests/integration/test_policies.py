"""Failure policies and fail-safes: retry filters and jitter, fallback, circuit breakers,
compensation, step deadlines, run guards and the output size limit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from podium import AgentSpec, RetryPolicy, Step, StepContext, Workflow, run_workflow
from podium.model import (
    Call,
    CircuitChanged,
    CircuitPolicy,
    CompensationEnded,
    Guards,
    StepAttemptFailed,
    StepFellBack,
)
from podium.store import open_store
from podium.store.memory import MemoryStore
from podium.testing import VirtualClock

calls: Counter[str] = Counter()
order: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    order.clear()


async def raises_value_error(ctx: StepContext) -> None:
    calls[ctx.agent] += 1
    raise ValueError("bad value")


async def ok(ctx: StepContext, **data: Any) -> dict[str, Any]:
    calls[ctx.agent] += 1
    order.append(ctx.key)
    return {"by": ctx.agent, **data}


def one_step(retry: RetryPolicy, **step: Any) -> Workflow:
    return Workflow(name="p", steps=[Step(id="s", uses=raises_value_error, retry=retry, **step)])


@pytest.mark.parametrize(
    ("retry", "attempts"),
    [
        (RetryPolicy(attempts=3), 3),
        (RetryPolicy(attempts=3, not_on=("ValueError",)), 1),
        (RetryPolicy(attempts=3, on=("TimeoutError",)), 1),
        (RetryPolicy(attempts=3, on=("ValueError",)), 3),
        (RetryPolicy(attempts=3, on=("ValueError",), not_on=("ValueError",)), 1),
    ],
)
async def test_retry_on_and_not_on_filter_by_error_type(retry: RetryPolicy, attempts: int) -> None:
    result = await run_workflow(one_step(retry), clock=VirtualClock())
    assert result.status == "failed"
    assert result.history.steps["s"].attempts == attempts


async def test_jitter_spreads_the_backoff_and_is_recorded() -> None:
    retry = RetryPolicy(attempts=4, backoff=10.0, factor=2.0, jitter=0.5)
    store = MemoryStore()
    result = await run_workflow(one_step(retry), store=store, run_id="j", clock=VirtualClock())
    waits = [
        e.retry_at - e.at
        for e in await store.load(result.run_id)
        if isinstance(e, StepAttemptFailed)
    ]
    assert len(waits) == 3
    for wait, base in zip(waits, (10.0, 20.0, 40.0), strict=True):
        assert base * 0.5 <= wait <= base * 1.5
    assert len({round(w / b, 6) for w, b in zip(waits, (10.0, 20.0, 40.0), strict=True)}) > 1


async def test_a_fallback_takes_over_when_the_primary_fails_for_good() -> None:
    wf = Workflow(
        name="fb",
        agents=[
            AgentSpec(name="primary", uses=raises_value_error),
            AgentSpec(name="backup", uses=ok),
        ],
        steps=[
            Step(
                id="s",
                agent="primary",
                retry=RetryPolicy(attempts=2),
                fallback=Call(agent="backup", with_={"why": "primary down"}),
            )
        ],
        output="${{ steps.s.output }}",
    )
    store = MemoryStore()
    result = await run_workflow(wf, store=store, clock=VirtualClock())
    assert result.status == "succeeded"
    assert result.output == {"by": "backup", "why": "primary down"}
    assert calls == {"primary": 2, "backup": 1}
    (fell,) = [e for e in await store.load(result.run_id) if isinstance(e, StepFellBack)]
    assert fell.to == "backup"
    assert fell.error.type == "ValueError"


flaky_calls = 0


async def broken_then_fixed(ctx: StepContext) -> str:
    global flaky_calls
    flaky_calls += 1
    if flaky_calls <= 2:
        raise ConnectionError("down")
    return "up"


async def test_a_circuit_opens_refuses_calls_then_a_probe_closes_it() -> None:
    global flaky_calls
    flaky_calls = 0
    wf = Workflow(
        name="cb",
        agents=[
            AgentSpec(
                name="svc",
                uses=broken_then_fixed,
                circuit=CircuitPolicy(failures=2, window=60, cooldown=30),
            )
        ],
        steps=[Step(id="s", agent="svc", retry=RetryPolicy(attempts=6, backoff=10))],
        output="${{ steps.s.output }}",
    )
    store = MemoryStore()
    result = await run_workflow(wf, store=store, clock=VirtualClock())
    assert result.output == "up"
    events = await store.load(result.run_id)
    changes = [e.state for e in events if isinstance(e, CircuitChanged)]
    assert changes == ["open", "half_open", "closed"]
    refused = [
        e for e in events if isinstance(e, StepAttemptFailed) and e.error.type == "CircuitOpen"
    ]
    assert refused  # attempts during the cool-down made no call
    assert flaky_calls == 3  # two failures, then the probe


async def test_routing_by_capability_avoids_an_open_circuit() -> None:
    wf = Workflow(
        name="cb",
        agents=[
            AgentSpec(
                name="a_bad",
                uses=raises_value_error,
                capabilities=frozenset({"work"}),
                circuit=CircuitPolicy(failures=1, window=60, cooldown=600),
            ),
            AgentSpec(name="b_good", uses=ok, capabilities=frozenset({"work"})),
        ],
        steps=[
            Step(id="first", capability="work", retry=RetryPolicy(attempts=2)),
            Step(id="later", capability="work", needs=("first",), for_each="${{ [1, 2, 3] }}"),
        ],
    )
    result = await run_workflow(wf, clock=VirtualClock())
    assert result.status == "succeeded"
    assert calls["a_bad"] == 1  # failed once, then out of routing
    assert {result.history.steps[f"later[{i}]"].agent for i in range(3)} == {"b_good"}


async def test_an_open_circuit_sends_a_step_to_its_fallback_without_waiting() -> None:
    wf = Workflow(
        name="cb",
        agents=[
            AgentSpec(
                name="primary",
                uses=raises_value_error,
                circuit=CircuitPolicy(failures=1, window=60, cooldown=600),
            ),
            AgentSpec(name="backup", uses=ok),
        ],
        steps=[
            Step(id="first", agent="primary", continue_on_error=True),
            Step(
                id="later",
                needs=("first",),
                trigger="all_done",
                agent="primary",
                for_each="${{ [1, 2] }}",
                retry=RetryPolicy(attempts=5, backoff=60),
                fallback=Call(agent="backup"),
            ),
        ],
    )
    store = MemoryStore()
    clock = VirtualClock()
    result = await run_workflow(wf, store=store, clock=clock)
    assert result.status == "succeeded"
    assert calls == {"primary": 1, "backup": 2}  # the open circuit spared primary
    events = await store.load(result.run_id)
    fell = [e for e in events if isinstance(e, StepFellBack)]
    assert [(e.key, e.attempt, e.error.type) for e in fell] == [
        ("later[0]", 1, "CircuitOpen"),
        ("later[1]", 1, "CircuitOpen"),
    ]
    assert not [e for e in events if isinstance(e, StepAttemptFailed) and e.step == "later"]
    assert clock.now() - events[0].at < 60  # no retry backoff was waited out


async def undo(ctx: StepContext, what: Any) -> str:
    order.append(f"undo {what}")
    return f"undid {what}"


async def test_a_failed_run_compensates_succeeded_steps_in_reverse_order(tmp_path: Path) -> None:
    wf = Workflow(
        name="saga",
        steps=[
            Step(id="reserve", uses=ok, compensate=Call(uses=undo, with_={"what": "reserve"})),
            Step(
                id="charge",
                needs=("reserve",),
                uses=ok,
                compensate=Call(uses=undo, with_={"what": "${{ steps.charge.output.by }}"}),
            ),
            Step(id="ship", needs=("charge",), uses=raises_value_error),
        ],
    )
    db = str(tmp_path / "p.db")
    result = await run_workflow(wf, store=db)
    assert result.status == "failed"
    assert order == ["reserve", "charge", "undo test_policies:ok", "undo reserve"]
    store = open_store(db)
    ended = [e for e in await store.load(result.run_id) if isinstance(e, CompensationEnded)]
    await store.close()
    assert [(e.step, e.output) for e in ended] == [
        ("charge", "undid test_policies:ok"),
        ("reserve", "undid reserve"),
    ]


async def test_a_step_deadline_stops_retrying() -> None:
    wf = one_step(RetryPolicy(attempts=10, backoff=30), deadline=100.0)
    result = await run_workflow(wf, clock=VirtualClock())
    assert result.status == "failed"
    assert result.history.steps["s"].attempts == 3  # at 0, 30, 90; the next would be at 210


async def test_max_steps_stops_the_run_cleanly() -> None:
    wf = Workflow(
        name="guard",
        guards=Guards(max_steps=3),
        steps=[Step(id=f"s{i}", uses=ok, needs=(f"s{i - 1}",) if i else ()) for i in range(5)],
    )
    result = await run_workflow(wf)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "GuardExceeded"
    assert "max_steps" in result.error.message
    assert order == ["s0", "s1", "s2"]


async def test_a_run_deadline_cuts_a_long_sleep() -> None:
    wf = Workflow(
        name="late",
        guards=Guards(deadline=3600.0),
        steps=[Step(id="nap", sleep=7200.0), Step(id="after", needs=("nap",), uses=ok)],
    )
    result = await run_workflow(wf, clock=VirtualClock())
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "DeadlineExceeded"
    assert order == []


async def big(ctx: StepContext) -> str:
    calls[ctx.key] += 1
    return "x" * 2_000_000


async def test_an_output_over_the_limit_fails_the_step_without_retry() -> None:
    wf = Workflow(
        name="big",
        guards=Guards(max_output_bytes=1_000_000),
        steps=[Step(id="s", uses=big, retry=RetryPolicy(attempts=3))],
    )
    result = await run_workflow(wf)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "OutputTooLarge"
    assert "max_output_bytes (1,000,000)" in result.error.message
    assert calls["s"] == 1


async def spend(ctx: StepContext, tokens: int) -> int:
    ctx.report_usage(tokens=tokens, cost=tokens / 1000)
    order.append(ctx.key)
    return tokens


def spending(guards: Guards) -> Workflow:
    return Workflow(
        name="budget",
        guards=guards,
        steps=[
            Step(id=f"s{i}", uses=spend, with_={"tokens": 400}, needs=(f"s{i - 1}",) if i else ())
            for i in range(5)
        ],
    )


async def test_usage_is_recorded_per_step_and_summed_for_the_run() -> None:
    result = await run_workflow(spending(Guards()))
    assert result.status == "succeeded"
    assert result.history.usage.tokens == 2000
    assert result.history.usage.cost == pytest.approx(2.0)
    assert result.history.steps["s3"].usage.tokens == 400


@pytest.mark.parametrize(
    "guards", [Guards(max_tokens=1000), Guards(max_cost=1.0)], ids=["max_tokens", "max_cost"]
)
async def test_a_budget_stops_the_run_once_exceeded(guards: Guards) -> None:
    result = await run_workflow(spending(guards))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "GuardExceeded"
    assert order == ["s0", "s1", "s2"]  # 1,200 tokens used: over the limit, nothing more starts


async def test_a_budget_that_is_exactly_met_lets_the_run_finish() -> None:
    result = await run_workflow(spending(Guards(max_tokens=2000)))
    assert result.status == "succeeded"
