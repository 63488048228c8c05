"""Routing by capability on live figures: away from an agent that degrades, and back.

Agents here sleep for real, so the latencies routing sees are measured, not given; the
ratios (2 ms against 20 ms and 60 ms) are wide enough that a loaded machine keeps them.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from podium import AgentSpec, RetryPolicy, Step, StepContext, Workflow, run_workflow
from podium.agents.routing import Figures, score
from podium.model import StepStarted
from podium.model.workflow import ROUTING_PRESETS, RoutingWeights
from podium.store import open_store


class Scripted:
    """An agent whose behaviour changes with the call number: slow, failing or fine."""

    def __init__(self, fast: float, slow: float, bad: range, fails: bool = False) -> None:
        self.fast, self.slow, self.bad, self.fails = fast, slow, bad, fails
        self.calls = 0

    async def __call__(self, item: int, ctx: StepContext) -> int:
        self.calls += 1
        if item in self.bad and self.fails:
            raise RuntimeError(f"down for item {item}")
        await asyncio.sleep(self.slow if item in self.bad else self.fast)
        return item


def workflow(a: Scripted, b: Scripted, routing: RoutingWeights | None = None) -> Workflow:
    ship = frozenset({"ship"})
    return Workflow(
        name="route",
        agents=[
            AgentSpec(name="a", uses=a, capabilities=ship),
            AgentSpec(name="b", uses=b, capabilities=ship),
        ],
        steps=[
            Step(
                id="f",
                capability="ship",
                for_each="${{ input }}",
                max_parallel=1,  # one at a time: load plays no part, the figures decide
                with_={"item": "${{ item }}"},
                retry=RetryPolicy(attempts=3),
            )
        ],
        routing=routing,
    )


async def chosen(db: str, run_id: str) -> list[tuple[int | None, str, str]]:
    store = open_store(db)
    try:
        events = await store.load(run_id)
    finally:
        await store.close()
    return [(e.index, e.agent, e.reason) for e in events if isinstance(e, StepStarted)]


def share(picks: list[tuple[int | None, str, str]], agent: str, items: range) -> float:
    mine = [who for index, who, _ in picks if index in items]
    return mine.count(agent) / len(mine)


async def test_routing_leaves_an_agent_that_slows_down_and_comes_back(tmp_path: Path) -> None:
    a = Scripted(fast=0.002, slow=0.06, bad=range(10, 40))  # slow for items 10..39
    b = Scripted(fast=0.02, slow=0.02, bad=range(0))
    db = str(tmp_path / "p.db")
    result = await run_workflow(workflow(a, b), list(range(90)), store=db, run_id="r")
    assert result.status == "succeeded"
    picks = await chosen(db, "r")
    assert share(picks, "a", range(0, 10)) >= 0.8  # fast and first declared
    assert share(picks, "b", range(20, 40)) >= 0.7  # a is slow now: b, but for probes
    assert share(picks, "a", range(70, 90)) >= 0.8  # a probe found it fast again
    assert any(reason.startswith("probe:") for _, _, reason in picks)


async def test_routing_leaves_a_failing_agent_and_comes_back(tmp_path: Path) -> None:
    a = Scripted(fast=0.002, slow=0.002, bad=range(10, 25), fails=True)
    b = Scripted(fast=0.02, slow=0.02, bad=range(0))
    db = str(tmp_path / "p.db")
    result = await run_workflow(
        workflow(a, b, ROUTING_PRESETS["reliable"]), list(range(120)), store=db, run_id="r"
    )
    assert result.status == "succeeded"  # the failed attempts were retried, elsewhere
    picks = await chosen(db, "r")
    assert share(picks, "b", range(15, 25)) >= 0.7
    assert share(picks, "a", range(100, 120)) >= 0.8


async def test_what_a_run_learnt_is_where_the_next_run_starts(tmp_path: Path) -> None:
    a = Scripted(fast=0.06, slow=0.06, bad=range(0))  # a is slow from the start
    b = Scripted(fast=0.01, slow=0.01, bad=range(0))
    db = str(tmp_path / "p.db")
    await run_workflow(workflow(a, b), list(range(12)), store=db, run_id="first")
    await run_workflow(workflow(a, b), list(range(5)), store=db, run_id="second")
    first, second = await chosen(db, "first"), await chosen(db, "second")
    assert first[0][1] == "a"  # nothing known: the first declared
    assert [who for _, who, _ in second] == ["b"] * 5  # known from the first run


def test_the_score_compares_each_figure_with_the_best() -> None:
    figures = [
        Figures("fast", in_flight=0, latency=0.1, success_rate=1.0, cost=None),
        Figures("slow", in_flight=0, latency=0.2, success_rate=1.0, cost=None),
        Figures("busy", in_flight=1, latency=0.1, success_rate=1.0, cost=None),
        Figures("flaky", in_flight=0, latency=0.1, success_rate=0.5, cost=None),
        Figures("new", in_flight=0, latency=None, success_rate=1.0, cost=None),
    ]
    scores = {c.agent: c.score for c in score(figures, RoutingWeights())}
    # Twice as slow, one call in flight and half the success rate weigh the same.
    assert scores == {
        "fast": 0.0,
        "slow": round(math.log(2), 4),
        "busy": round(math.log(2), 4),
        "flaky": round(math.log(2), 4),
        "new": 0.0,  # not known yet: counted as the best, so it gets tried
    }


def test_weights_say_what_to_prefer() -> None:
    figures = [
        Figures("quick", in_flight=0, latency=0.1, success_rate=1.0, cost=0.04),
        Figures("thrifty", in_flight=0, latency=0.3, success_rate=1.0, cost=0.01),
    ]

    def winner(preset: str) -> str:
        scored = score(figures, ROUTING_PRESETS[preset])
        return min(scored, key=lambda c: c.score or 0.0).agent

    assert winner("fast") == "quick"
    assert winner("cheap") == "thrifty"
