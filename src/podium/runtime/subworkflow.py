"""Sub-workflows: a step that runs another workflow as a run of its own.

The child run's id is the parent's run id and the step key (`order-7/ship`), so it is the
same on every attempt and after a crash: resuming the parent re-runs the unit, which finds
the child by its id and resumes it (or reads back its result) instead of starting it anew.
The child has its own log, linked to its parent by `RunStarted.parent`. Its output is the
step's output; its failure is the step's failure, with the child's error inside. A child
that waits for a person makes the parent wait too: resuming the parent resumes the child.
"""

from __future__ import annotations

from typing import Any

from podium.agents import StepContext
from podium.errors import AgentError, ChildWaiting
from podium.model import Workflow


class WorkflowAgent:
    """An agent whose work is a whole workflow."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        name: str | None = None,
        capabilities: frozenset[str] = frozenset(),
        concurrency: int | None = None,
    ) -> None:
        self.name = name or f"workflow:{workflow.name}"
        self.workflow = workflow
        self.capabilities = capabilities
        self.concurrency = concurrency

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        if ctx.children is None:
            raise AgentError(f"{self.name} can only run inside a podium run")
        child_id = ctx.idempotency_key
        history = await ctx.children.run_child(self.workflow, payload, run_id=child_id)
        if history.status == "succeeded":
            return history.output
        if history.status == "waiting":
            raise ChildWaiting(child_id)
        error = history.error
        detail = f": {error.type} in {error.step or 'the run'}: {error.message}" if error else ""
        failure = AgentError(f"sub-workflow run {child_id} {history.status}{detail}")
        failure.retryable = False  # the child retried by its own policies already
        raise failure
