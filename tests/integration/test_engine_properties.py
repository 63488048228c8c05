"""Random DAGs with random failures and skips, run by the real engine on the memory store.

Properties: a step starts only after each of its needs has settled; a succeeded step ran
exactly once; step statuses match an independent model of the semantics; and folding the
log afresh gives the same state the live run ended with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podium import RetryPolicy, Step, StepContext, Workflow, run_workflow
from podium.model import (
    Event,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    Trigger,
)
from podium.scheduler import ActiveRun, Plan
from podium.store.memory import MemoryStore

TRIGGERS: tuple[Trigger, ...] = ("all_success", "one_success", "all_done", "none_failed")


@dataclass(frozen=True)
class Node:
    needs: tuple[int, ...]
    behaviour: str  # ok | fail | flaky | skip
    trigger: Trigger


executions: list[tuple[str, int]] = []
committed: set[str] = set()  # steps whose settling event the store has committed
violations: list[str] = []


class WatchedStore(MemoryStore):
    """Lets agents see what is durable at the moment they are called."""

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        await asyncio.sleep(0)  # yield, as a networked store would, before committing
        await super().append(run_id, events)
        for event in events:
            if isinstance(event, StepSucceeded | StepFailed | StepSkipped):
                committed.add(event.step)


async def act(behaviour: str, delay: float, needs: list[str], ctx: StepContext) -> str:
    missing = [need for need in needs if need not in committed]
    if missing:  # an assert here would only fail the step, and a retry would hide it
        violations.append(f"{ctx.key} started before {missing} were committed")
    executions.append((ctx.key, ctx.attempt))
    await asyncio.sleep(delay)
    if behaviour == "fail" or (behaviour == "flaky" and ctx.attempt == 1):
        raise RuntimeError(f"{ctx.key} fails")
    return ctx.key


@st.composite
def dags(draw: st.DrawFn) -> list[Node]:
    size = draw(st.integers(1, 9))
    nodes = []
    for i in range(size):
        needs = tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=3)))) if i else ()
        behaviour = draw(st.sampled_from(["ok", "ok", "fail", "flaky", "skip"]))
        trigger = draw(st.sampled_from(TRIGGERS)) if needs else "all_success"
        nodes.append(Node(needs, behaviour, trigger))
    return nodes


def build(nodes: list[Node], delays: list[float], *, tolerate: bool) -> Workflow:
    return Workflow(
        name="random",
        steps=[
            Step(
                id=f"s{i}",
                needs=tuple(f"s{n}" for n in node.needs),
                trigger=node.trigger,
                condition="${{ false }}" if node.behaviour == "skip" else None,
                uses=act,
                with_={
                    "behaviour": node.behaviour,
                    "delay": delays[i],
                    "needs": [f"s{n}" for n in node.needs],
                },
                retry=RetryPolicy(attempts=2),
                continue_on_error=tolerate,
            )
            for i, node in enumerate(nodes)
        ],
    )


def expected_statuses(nodes: list[Node]) -> list[str]:
    """The semantics, written independently of the engine: no halting (continue_on_error)."""
    statuses: list[str] = []
    for node in nodes:
        needs = [statuses[n] for n in node.needs]
        met = {
            "all_success": all(s == "succeeded" for s in needs),
            "one_success": any(s == "succeeded" for s in needs),
            "none_failed": all(s != "failed" for s in needs),
            "all_done": True,
        }[node.trigger]
        if not met or node.behaviour == "skip":
            statuses.append("skipped")
        else:
            statuses.append("failed" if node.behaviour == "fail" else "succeeded")
    return statuses


def check_order_and_once(nodes: list[Node], log: list[Event]) -> None:
    settled_at: dict[str, int] = {}
    for event in log:
        if isinstance(event, StepSucceeded | StepFailed | StepSkipped):
            settled_at.setdefault(event.step, event.seq)
    for event in log:
        if isinstance(event, StepStarted):
            node = nodes[int(event.step[1:])]
            for need in node.needs:
                assert settled_at[f"s{need}"] < event.seq, f"{event.step} began before s{need}"
    succeeded = [e.step for e in log if isinstance(e, StepSucceeded)]
    assert len(succeeded) == len(set(succeeded))
    ran_ok = [key for key, attempt in executions if key in succeeded]
    for key in succeeded:  # the succeeded attempt is the last one made, made once
        attempts = [a for k, a in executions if k == key]
        assert attempts == sorted(set(attempts)), f"{key} repeated an attempt: {attempts}"
    assert set(ran_ok) == set(succeeded)


def check_fold(wf: Workflow, log: list[Event], statuses: dict[str, Any]) -> None:
    fresh = ActiveRun(Plan.from_workflow(wf))
    for event in log:
        fresh.apply(event)
    for step_id, status in statuses.items():
        assert fresh.scope[step_id]["status"] == status


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=dags(),
    delays=st.lists(st.sampled_from([0.0, 0.001, 0.003]), min_size=9, max_size=9),
    max_parallel=st.sampled_from([None, 1, 2, 3]),
)
async def test_random_dags_keep_the_promises(
    nodes: list[Node], delays: list[float], max_parallel: int | None
) -> None:
    executions.clear()
    committed.clear()
    violations.clear()
    store = WatchedStore()
    wf = build(nodes, delays, tolerate=True)
    result = await run_workflow(wf, store=store, max_parallel=max_parallel)
    log = await store.load(result.run_id)
    assert result.status == "succeeded"
    expected = expected_statuses(nodes)
    actual = {f"s{i}": result.history.steps[f"s{i}"].status for i in range(len(nodes))}
    assert actual == {f"s{i}": s for i, s in enumerate(expected)}
    check_order_and_once(nodes, log)
    assert violations == []
    check_fold(wf, log, actual)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=dags(),
    delays=st.lists(st.sampled_from([0.0, 0.001, 0.003]), min_size=9, max_size=9),
)
async def test_random_dags_that_halt_on_failure(nodes: list[Node], delays: list[float]) -> None:
    executions.clear()
    committed.clear()
    violations.clear()
    store = WatchedStore()
    wf = build(nodes, delays, tolerate=False)
    result = await run_workflow(wf, store=store)
    log = await store.load(result.run_id)
    any_failed = any(r.status == "failed" for r in result.history.steps.values())
    assert result.status == ("failed" if any_failed else "succeeded")
    check_order_and_once(nodes, log)
    assert violations == []
    statuses = {
        step_id: record.status
        for step_id, record in result.history.steps.items()
        if record.status in ("succeeded", "failed", "skipped")
    }
    check_fold(wf, log, statuses)
