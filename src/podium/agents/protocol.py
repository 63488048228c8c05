"""The seam between the engine and whatever does the work."""

from __future__ import annotations

from typing import Any, Protocol

from podium.agents.context import StepContext


class Agent(Protocol):
    """Anything that takes a task and returns a JSON-serialisable result.

    `concurrency` bounds the calls in flight (None: unbounded). `call` raises `AgentError`
    (or any exception, which the engine reports as a failure naming the step and agent).
    """

    name: str
    capabilities: frozenset[str]
    concurrency: int | None

    async def call(self, payload: Any, ctx: StepContext) -> Any: ...
