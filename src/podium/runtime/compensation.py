"""Compensation (the saga pattern): when a run fails, undo what its steps did.

The `compensate` calls of the steps that succeeded run one at a time, in the reverse order
of the steps' completion, each recorded as `CompensationStarted` and `CompensationEnded`. A
compensation already recorded as ended is not run again on resume. A failing compensation
is recorded and the others still run: undoing as much as possible beats stopping half-way.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from podium.agents import StepContext
from podium.model import (
    CompensationEnded,
    CompensationStarted,
    ErrorInfo,
    StepSucceeded,
)

if TYPE_CHECKING:
    from podium.runtime.execution import Execution


class Compensation:
    """Runs the compensations a failed run owes, given the execution that failed."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    def owed(self) -> list[str]:
        """Steps to compensate, most recently completed first, minus those already done."""
        execution = self._execution
        completed_at: dict[str, int] = {}
        done: set[str] = set()
        for event in execution.log():
            if isinstance(event, StepSucceeded):
                completed_at[event.step] = event.seq
            elif isinstance(event, CompensationEnded):
                done.add(event.step)
        owed = [
            step
            for step, _ in sorted(completed_at.items(), key=lambda item: -item[1])
            if execution.prepared_step(step).compensate is not None
            and execution.active.state[step] == "succeeded"
            and step not in done
        ]
        return owed

    async def run(self) -> None:
        for step in self.owed():
            await self._compensate(step)

    async def _compensate(self, step: str) -> None:
        execution = self._execution
        prepared = execution.prepared_step(step)
        call = prepared.compensate
        assert call is not None
        registry = execution.prepared.registry
        agent = call.agent
        if agent is None:
            assert call.capability is not None
            picked = registry.pick(call.capability, execution.clock.now())
            agent = picked.agent if picked else next(iter(registry.capable(call.capability)))
        clock = execution.clock
        output: Any = None
        error: ErrorInfo | None = None
        try:
            payload = call.payload.render(execution.scope_for(step))
        except Exception as exc:  # a bad expression: recorded, the other compensations go on
            payload, error = None, ErrorInfo(type=type(exc).__name__, message=str(exc), step=step)
        execution.record(
            CompensationStarted(
                seq=execution.next_seq(), at=clock.now(), step=step, agent=agent.name
            )
        )
        await execution.commit()
        if error is None:
            ctx = StepContext(
                run_id=execution.run_id,
                step=step,
                key=f"{step}/compensate",
                index=None,
                attempt=1,
                agent=agent.name,
            )
            try:
                timeout = prepared.step.timeout
                async with asyncio.timeout(timeout):
                    output = await agent.call(payload, ctx)
            except Exception as exc:  # recorded; cancellation passes through
                error = ErrorInfo(
                    type=type(exc).__name__,
                    message=f"{exc or repr(exc)} (agent {agent.name})",
                    step=step,
                )
        execution.record(
            CompensationEnded(
                seq=execution.next_seq(), at=clock.now(), step=step, output=output, error=error
            )
        )
        await execution.commit()
