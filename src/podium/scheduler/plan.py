"""The graph a run walks: each step's needs, dependents and the policies the scheduler needs.

A `Plan` is derived once from a `Workflow` and never changes. It keeps only what deciding
"what may run next" requires; how a step runs (agent, inputs, timeout) stays in the model.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from podium.errors import CycleError
from podium.model import Trigger, Workflow

# Lower runs first. FIFO is the constant priority: ties break by order of becoming ready.
Priority = Callable[[str], float]


def fifo(step: str) -> float:
    """Every step equal: units run in the order they became ready."""
    return 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStep:
    id: str
    needs: tuple[str, ...]
    dependents: tuple[str, ...]
    trigger: Trigger
    fans_out: bool
    max_parallel: int | None
    continue_on_error: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """Steps by id, plus a topological order (ties in definition order) for determinism."""

    steps: Mapping[str, PlanStep]
    order: tuple[str, ...]

    @classmethod
    def from_workflow(cls, workflow: Workflow) -> Plan:
        """Build the plan; raises `CycleError` naming the cycle if `needs` loop."""
        dependents: dict[str, list[str]] = {step_id: [] for step_id in workflow.steps}
        for step in workflow.steps.values():
            for need in step.needs:
                dependents[need].append(step.id)
        sorter = graphlib.TopologicalSorter({s.id: s.needs for s in workflow.steps.values()})
        try:
            order = tuple(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle: list[str] = list(reversed(exc.args[1]))
            raise CycleError(cycle, where=workflow.locate("steps", cycle[0])) from None
        steps = {
            step.id: PlanStep(
                id=step.id,
                needs=step.needs,
                dependents=tuple(dependents[step.id]),
                trigger=step.trigger,
                fans_out=step.for_each is not None,
                max_parallel=step.max_parallel,
                continue_on_error=step.continue_on_error,
            )
            for step in workflow.steps.values()
        }
        return cls(steps, order)
