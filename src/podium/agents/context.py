"""What an agent is told about the call it is making."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from podium.model import RunHistory, Usage, Workflow


class ChildRuns(Protocol):
    """The engine's way to run a child workflow as a run of its own (`workflow` steps)."""

    async def run_child(self, workflow: Workflow, input: Any, *, run_id: str) -> RunHistory:
        """Run (or resume, or read back) child run `run_id` in the parent's store."""
        ...


# What a remembered call computes: its output, and what it consumed (None if nothing).
Computed = tuple[Any, Usage | None]


class Journal(Protocol):
    """The engine's record of the calls made inside a unit, durable before they return."""

    def recall(self, key: str, name: str) -> tuple[bool, Any, Usage | None]:
        """Whether unit `key` already recorded call `name`; its recorded output and usage."""
        ...

    async def record_call(
        self,
        key: str,
        name: str,
        *,
        kind: str,
        agent: str,
        input: Any,
        output: Any,
        usage: Usage | None,
        seconds: float,
    ) -> None:
        """Record the call and wait until the record is durable."""
        ...


# Usage is immutable, so every context can start from this one zero.
NO_USAGE = Usage()


class StepContext(msgspec.Struct, kw_only=True):
    """Handed to a callable that has a parameter named `ctx`.

    `idempotency_key` is the same for every attempt of a unit and after a crash and resume:
    an agent with side effects can use it to do them at most once. `report_usage` adds what
    the call consumed (model tokens, money); it is recorded with the step and counts
    towards the run's `max_tokens` and `max_cost`. `remember` makes a call inside the unit
    durable: after a crash or a retry, the unit gets the recorded result back.

    An agent that calls other agents (a pattern, a model calling an agent as a tool) hands
    each one `ctx.within("turn-3")`: the same unit, with the calls it records, and the
    child runs it starts, named under `turn-3/`.

    It is a msgspec Struct, not a dataclass, as one is made for every call: its `__init__`
    is in C.
    """

    run_id: str
    step: str
    key: str
    index: int | None
    attempt: int
    agent: str
    usage: Usage = NO_USAGE
    children: ChildRuns | None = None
    journal: Journal | None = None
    path: str = ""  # where inside the unit this call is: "" or "turn-3/" and deeper
    parent: StepContext | None = None  # the context this one is `within`
    spent: Usage = NO_USAGE  # of the calls remembered here and within

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.key}" + (f"/{self.path[:-1]}" if self.path else "")

    def within(self, name: str, *, agent: str | None = None) -> StepContext:
        """The context for a call made inside this one, recorded under `name/`.

        `agent` is who makes that call, when it is another agent (a pattern's participant,
        an agent called as a tool): what it records is counted as that agent's.
        """
        return msgspec.structs.replace(
            self,
            path=f"{self.path}{name}/",
            agent=agent or self.agent,
            usage=NO_USAGE,
            spent=NO_USAGE,
            parent=self,
        )

    def report_usage(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        reported = Usage(tokens=tokens, cost=cost)
        ctx: StepContext | None = self
        while ctx is not None:  # the unit's own context sums what its inner calls report
            ctx.usage = ctx.usage + reported
            ctx = ctx.parent

    def _spend(self, usage: Usage | None) -> None:
        ctx: StepContext | None = self
        while usage is not None and ctx is not None:
            ctx.spent = ctx.spent + usage
            ctx = ctx.parent

    async def remember(
        self,
        name: str,
        compute: Callable[[], Awaitable[Computed]],
        *,
        kind: str = "call",
        input: Any = None,
    ) -> Any:
        """The output of call `name` (unique within this unit): recorded, or computed now.

        `compute` returns the output and its usage (tokens, cost), which counts towards the
        run's budgets once, when the call is made, and in `spent` here and in every context
        this one is within, recorded or recalled alike (so a budget holds across a resume).
        Outside a run nothing is recorded.
        """
        if self.journal is None:
            output, usage = await compute()
            self._spend(usage)
            return output
        name = self.path + name
        found, output, usage = self.journal.recall(self.key, name)
        if found:
            self._spend(usage)
            return output
        began = time.perf_counter()
        output, usage = await compute()
        self._spend(usage)
        await self.journal.record_call(
            self.key,
            name,
            kind=kind,
            agent=self.agent,
            input=input,
            output=output,
            usage=usage,
            seconds=time.perf_counter() - began,
        )
        return output
