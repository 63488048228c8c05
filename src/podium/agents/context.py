"""What an agent is told about the call it is making."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from podium.model import RunHistory, Usage, Workflow


class ChildRuns(Protocol):
    """The engine's way to run a child workflow as a run of its own (`workflow` steps)."""

    async def run_child(self, workflow: Workflow, input: Any, *, run_id: str) -> RunHistory:
        """Run (or resume, or read back) child run `run_id` in the parent's store."""
        ...


@dataclass(slots=True, kw_only=True)
class StepContext:
    """Handed to a callable that has a parameter named `ctx`.

    `idempotency_key` is the same for every attempt of a unit and after a crash and resume:
    an agent with side effects can use it to do them at most once. `report_usage` adds what
    the call consumed (model tokens, money); it is recorded with the step and counts
    towards the run's `max_tokens` and `max_cost`.
    """

    run_id: str
    step: str
    key: str
    index: int | None
    attempt: int
    agent: str
    usage: Usage = field(default_factory=Usage)
    children: ChildRuns | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.key}"

    def report_usage(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        self.usage = self.usage + Usage(tokens=tokens, cost=cost)
