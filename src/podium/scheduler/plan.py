"""The graph a run walks: each step's needs, dependents and the policies the scheduler needs.

A `Plan` is derived once from a `Workflow` and never changes. It keeps only what deciding
"what may run next" requires; how a step runs (agent, inputs, timeout) stays in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from podium.errors import CycleError
from podium.model import Step, Trigger, Workflow

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
        steps = workflow.steps
        dependents: dict[str, list[str]] = {step_id: [] for step_id in steps}
        for step in steps.values():
            for need in step.needs:
                dependents[need].append(step.id)
        order = _topological(steps, dependents)
        if len(order) < len(steps):
            raise _cycle_error(workflow, set(steps) - set(order))
        plan_steps = {
            step.id: PlanStep(
                id=step.id,
                needs=step.needs,
                dependents=tuple(dependents[step.id]),
                trigger=step.trigger,
                fans_out=step.for_each is not None,
                max_parallel=step.max_parallel,
                continue_on_error=step.continue_on_error,
            )
            for step in steps.values()
        }
        return cls(plan_steps, tuple(order))


def _topological(steps: Mapping[str, Step], dependents: Mapping[str, list[str]]) -> list[str]:
    """Kahn's algorithm, in linear time; steps left out are on or behind a cycle."""
    waiting = {step_id: len(set(step.needs)) for step_id, step in steps.items()}
    order = [step_id for step_id, count in waiting.items() if count == 0]
    for step_id in order:  # the list grows while it is walked
        for dependent in dict.fromkeys(dependents[step_id]):
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                order.append(dependent)
    return order


def _cycle_error(workflow: Workflow, tangled: set[str]) -> CycleError:
    """Walk `needs` within the tangle until a step repeats: that loop is a cycle."""
    start = next(step_id for step_id in workflow.steps if step_id in tangled)
    walk: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(walk)
        walk.append(node)
        node = next(n for n in workflow.steps[node].needs if n in tangled)
    cycle = list(reversed(walk[seen[node] :]))
    return CycleError([*cycle, cycle[0]], where=workflow.locate("steps", cycle[0]))
