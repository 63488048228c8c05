"""Shared resources, rate limits and the controller's throttle on 429s, in real runs.

Resources and the 429 storms use real concurrency (agents that await, and a chat model
over real HTTP), and count what is really in flight; rate limits run on a virtual clock,
so the start times are exact.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from podium import AgentSpec, ModelSpec, RetryPolicy, Step, StepContext, Workflow, run_workflow
from podium.errors import DefinitionError, RateLimited
from podium.model import Adapted, Event, Guards, StepStarted
from podium.model.workflow import Adaptation, RateLimit
from podium.spec import load_workflow, validate_workflow
from podium.spec.document import workflow_from_document, workflow_to_document
from podium.store import open_store
from podium.testing import ChatRequest, ChatServer, Reply, VirtualClock


class Gauge:
    """Counts the units of a resource held by calls in flight, and the peak."""

    def __init__(self) -> None:
        self.held = 0
        self.peak = 0

    async def hold(self, amount: int, seconds: float) -> None:
        self.held += amount
        self.peak = max(self.peak, self.held)
        await asyncio.sleep(seconds)
        self.held -= amount


async def events_of(db: str, run_id: str) -> list[Event]:
    store = open_store(db)
    try:
        return await store.load(run_id)
    finally:
        await store.close()


async def test_a_resource_is_never_held_beyond_its_capacity(tmp_path: Path) -> None:
    gauge = Gauge()

    async def render(item: int) -> int:
        await gauge.hold(1, 0.01)
        return item

    async def train(item: int) -> int:
        await gauge.hold(2, 0.02)  # two at once, beside render's one each
        return item

    wf = Workflow(
        name="gpus",
        resources={"gpu": 3},
        steps=[
            Step(id="render", uses=render, for_each="${{ input }}", with_={"item": "${{ item }}"},
                 uses_resources={"gpu": 1}),
            Step(id="train", uses=train, for_each="${{ input }}", with_={"item": "${{ item }}"},
                 uses_resources={"gpu": 2}),
        ],
    )  # fmt: skip
    result = await run_workflow(wf, list(range(12)), store=str(tmp_path / "p.db"))
    assert result.status == "succeeded"
    assert gauge.peak == 3  # full use, and never more
    assert gauge.held == 0


def test_resources_are_checked_against_what_is_declared() -> None:
    def work() -> None: ...

    with pytest.raises(DefinitionError) as caught:
        validate_workflow(
            Workflow(
                name="r",
                resources={"gpu": 2},
                steps=[
                    Step(id="a", uses=work, uses_resources={"gpu": 3}),
                    Step(id="b", uses=work, uses_resources={"gpux": 1}),
                ],
            )
        )
    assert caught.value.problems == (
        "<python>: step 'a' needs 3 of resource 'gpu', which has only 2: it could never start",
        "<python>: step 'b' uses resource 'gpux', which `resources:` does not declare "
        "(did you mean 'gpu'?)",
    )


async def test_a_rate_limit_spreads_the_calls_over_the_minute(tmp_path: Path) -> None:
    def call(item: int) -> int:
        return item

    wf = Workflow(
        name="paced",
        agents=[AgentSpec(name="api", uses=call, rate_limit=RateLimit(requests_per_minute=120))],
        steps=[Step(id="f", agent="api", for_each="${{ input }}", with_={"item": "${{ item }}"})],
    )
    clock = VirtualClock()
    db = str(tmp_path / "p.db")
    result = await run_workflow(wf, list(range(6)), store=db, run_id="r", clock=clock)
    assert result.status == "succeeded"
    starts = [e.at for e in await events_of(db, "r") if isinstance(e, StepStarted)]
    first = starts[0]
    # 2 a second: a second's worth (two) at once, then one every half second.
    assert [round(at - first, 3) for at in starts] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]


class Endpoint:
    """A service that answers 429 to a call made while more than `capacity` are open."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.open = 0
        self.refused = 0

    async def __call__(self, item: int, ctx: StepContext) -> int:
        self.open += 1
        try:
            if self.open > self.capacity:
                self.refused += 1
                raise RateLimited("HTTP 429: too many requests", retry_after=0.01)
            await asyncio.sleep(0.02)
            return item
        finally:
            self.open -= 1


def storm(agent: AgentSpec, with_: object, *, adapt: bool) -> Workflow:
    """A call to `agent` per input item, 8 at once, each retried until it gets through."""
    return Workflow(
        name="storm",
        agents=[agent],
        steps=[
            Step(
                id="f",
                agent=agent.name,
                for_each="${{ input }}",
                with_=with_,
                retry=RetryPolicy(attempts=500, backoff=0.01, factor=1.0),
            )
        ],
        adaptation=Adaptation(rate_limit=adapt),
    )


def api_storm(endpoint: Endpoint, adapt: bool) -> Workflow:
    agent = AgentSpec(name="api", uses=endpoint, concurrency=8)
    return storm(agent, {"item": "${{ item }}"}, adapt=adapt)


async def test_a_429_storm_halves_the_calls_at_once_then_lets_them_grow(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    blind = Endpoint(capacity=2)
    plain = await run_workflow(api_storm(blind, adapt=False), list(range(40)), store=db, run_id="a")
    adapted = Endpoint(capacity=2)
    result = await run_workflow(
        api_storm(adapted, adapt=True), list(range(40)), store=db, run_id="b"
    )
    assert result.status == "succeeded"
    assert plain.status in ("succeeded", "failed")  # blind, it may well run out of retries
    changes = [e for e in await events_of(db, "b") if isinstance(e, Adapted)]
    cuts = [c for c in changes if c.new < c.old]
    raises = [c for c in changes if c.new > c.old]
    assert cuts[0].old == 8  # the agent's concurrency, where it started
    assert cuts[0].reason.startswith("HTTP 429")
    assert min(c.new for c in cuts) <= 2  # it found the capacity...
    assert raises  # ... and tried for more as calls succeeded
    assert all(c.policy == "rate_limit" and c.subject == "agent:api" for c in changes)
    assert adapted.refused * 5 < blind.refused  # far fewer calls thrown away
    assert not [e for e in await events_of(db, "a") if isinstance(e, Adapted)]


class CrowdedModel:
    """A chat endpoint (scripted, over HTTP) that answers 429 to a request made while more
    than `capacity` are open, and "ok" after a think of 0.2 s otherwise."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.open = 0
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> Reply:
        with self._lock:
            self.open += 1
            crowded = self.open > self.capacity
            self.refused += crowded
        try:
            if crowded:
                return Reply.error(429, "too many requests", retry_after=0.01)
            time.sleep(0.2)  # long enough that a blind client retries many times meanwhile
            return Reply.text("ok")
        finally:
            with self._lock:
                self.open -= 1


async def model_storm(tmp_path: Path, run_id: str, *, adapt: bool) -> tuple[int, list[Adapted]]:
    """24 calls to a chat model that takes 2 at once; the 429s it answered, and the changes."""
    endpoint = CrowdedModel(capacity=2)
    with ChatServer(respond=endpoint) as server:
        spec = ModelSpec(model="m", base_url=server.url, api_key_env="PODIUM_TEST_KEY")
        writer = AgentSpec(name="writer", model=spec, concurrency=8)
        wf = storm(writer, "Say ok to ${{ item }}.", adapt=adapt)
        db = str(tmp_path / "p.db")
        result = await run_workflow(wf, list(range(24)), store=db, run_id=run_id)
        assert result.status == "succeeded"
        assert result.history.steps["f"].output == ["ok"] * 24
        changes = [e for e in await events_of(db, run_id) if isinstance(e, Adapted)]
        assert {c.subject for c in changes} <= {f"model:m@{server.url}"}
    return endpoint.refused, changes


async def test_a_429_storm_from_a_model_endpoint_throttles_its_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_TEST_KEY", "sk-test")
    blind_refused, none = await model_storm(tmp_path, "blind", adapt=False)
    refused, changes = await model_storm(tmp_path, "adapted", adapt=True)
    assert not none
    cuts = [c for c in changes if c.new < c.old]
    assert cuts[0].old == 8  # the agent's concurrency, where it started
    assert cuts[0].reason.startswith("HTTP 429")
    assert min(c.new for c in cuts) <= 2  # it found the endpoint's capacity
    assert any(c.new > c.old for c in changes)  # ... and tried for more as calls succeeded
    assert refused * 2 < blind_refused  # far fewer calls thrown away


def test_the_yaml_keys_round_trip_through_the_stored_definition(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        """
name: limits
resources: {gpu: 2}
adapt: {rate_limit: false}
models:
  local: {model: m, base_url: "http://127.0.0.1:9/v1", rate_limit: {requests_per_minute: 30}}
agents:
  writer: {model: local, instructions: write}
  api: {uses: "builtins:len", rate_limit: {tokens_per_minute: 9000}}
steps:
  draft: {agent: writer, uses_resources: {gpu: 1}, with: {task: hi}}
"""
    )
    wf = load_workflow(tmp_path / "wf.yaml")
    again = workflow_from_document(workflow_to_document(wf), source="stored", base_dir="/")
    for each in (wf, again):
        assert each.resources == {"gpu": 2}
        assert each.adaptation == Adaptation(rate_limit=False)
        assert each.steps["draft"].uses_resources == {"gpu": 1}
        writer, api = each.agents["writer"], each.agents["api"]
        assert writer.model is not None
        assert writer.model.rate_limit == RateLimit(requests_per_minute=30)
        assert writer.endpoint == "model:m@http://127.0.0.1:9/v1"
        assert api.rate_limit == RateLimit(tokens_per_minute=9000)


def late_workflow(adapt: bool) -> Workflow:
    async def work() -> None:
        await asyncio.sleep(0.15)

    return Workflow(
        name="late",
        max_parallel=1,
        guards=Guards(deadline=0.7),
        adaptation=Adaptation(deadline=adapt),
        steps=[Step(id=f"s{i}", uses=work, estimate=0.15) for i in range(6)],
    )


async def test_a_run_falling_behind_its_deadline_gets_more_parallelism(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    # 6 steps of 0.15s one at a time is 0.9s: past the 0.7s deadline, unless it adapts.
    slow = await run_workflow(late_workflow(adapt=False), store=db, run_id="slow")
    assert slow.status == "failed"
    assert slow.error is not None
    assert slow.error.type == "DeadlineExceeded"
    fast = await run_workflow(late_workflow(adapt=True), store=db, run_id="fast")
    assert fast.status == "succeeded"
    changes = [e for e in await events_of(db, "fast") if isinstance(e, Adapted)]
    assert [(c.policy, c.setting, c.old, c.new) for c in changes] == [
        ("deadline", "max_parallel", 1, 2),
        ("deadline", "routing", "as declared", "fast"),
    ]
    assert changes[0].reason.startswith("0.9s of work left and 0.")
