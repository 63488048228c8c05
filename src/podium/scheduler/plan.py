"""The graph a run walks: each step's needs, dependents and the policies the scheduler needs.

A `Plan` is derived once from a `Workflow` and never changes. It keeps only what deciding
"what may run next" requires; how a step runs (agent, inputs, timeout) stays in the model.
A `repeat` step's body (its group of steps, or the step itself) is kept apart in `bodies`:
each iteration adds a copy of it to the run, as steps `<id>#<iteration>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec

from podium.errors import CycleError
from podium.model import Step, Trigger, Workflow

# Lower runs first. FIFO is the constant priority: ties break by order of becoming ready.
Priority = Callable[[str], float]


def fifo(step: str) -> float:
    """Every step equal: units run in the order they became ready."""
    return 0.0


class PlanStep(msgspec.Struct, frozen=True, kw_only=True):
    """What the scheduler knows of a step. A Struct rather than a frozen dataclass: one is
    made per step, and a Struct's `__init__` (in C) costs a tenth as much."""

    id: str
    needs: tuple[str, ...]
    dependents: tuple[str, ...]
    trigger: Trigger
    fans_out: bool
    max_parallel: int | None
    continue_on_error: bool

    def iteration(self, number: int) -> PlanStep:
        """This body step as it runs in iteration `number`: `<id>#<number>`."""

        def name(step_id: str) -> str:
            return f"{step_id}#{number}"

        return msgspec.structs.replace(
            self,
            id=name(self.id),
            needs=tuple(map(name, self.needs)),
            dependents=tuple(map(name, self.dependents)),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """Steps by id, plus a topological order (ties in definition order) for determinism.

    `bodies` maps each `repeat` step (and each group) to the steps of one iteration, in
    topological order.
    """

    steps: Mapping[str, PlanStep]
    order: tuple[str, ...]
    bodies: Mapping[str, tuple[PlanStep, ...]] = field(default_factory=lambda: {})

    @classmethod
    def from_workflow(cls, workflow: Workflow) -> Plan:
        """Build the plan; raises `CycleError` naming the cycle if `needs` loop."""
        plan_steps, order = _graph(workflow, workflow.steps)
        bodies: dict[str, tuple[PlanStep, ...]] = {}
        for step in workflow.steps.values():
            if step.steps is not None:
                body, body_order = _graph(workflow, step.steps)
                bodies[step.id] = tuple(body[step_id] for step_id in body_order)
            elif step.repeat is not None:  # the step itself is the body, without its needs
                bodies[step.id] = (
                    msgspec.structs.replace(plan_steps[step.id], needs=(), dependents=()),
                )
        return cls(plan_steps, tuple(order), bodies)


def _graph(workflow: Workflow, steps: Mapping[str, Step]) -> tuple[dict[str, PlanStep], list[str]]:
    dependents: dict[str, list[str]] = {step_id: [] for step_id in steps}
    # Needs not yet done, one count per entry of `needs`: a need named twice lists the step
    # twice in a row among its dependents, so both counts go at once, as one would.
    waiting: dict[str, int] = {}
    for step in steps.values():
        waiting[step.id] = len(step.needs)
        for need in step.needs:
            dependents[need].append(step.id)
    order = _topological(waiting, dependents)
    if len(order) < len(steps):
        raise _cycle_error(workflow, steps, set(steps) - set(order))
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
    return plan_steps, order


def _topological(waiting: dict[str, int], dependents: Mapping[str, list[str]]) -> list[str]:
    """Kahn's algorithm, in linear time, counting `waiting` down; steps left out are on or
    behind a cycle."""
    order = [step_id for step_id, count in waiting.items() if count == 0]
    for step_id in order:  # the list grows while it is walked
        for dependent in dependents[step_id]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                order.append(dependent)
    return order


def _cycle_error(workflow: Workflow, steps: Mapping[str, Step], tangled: set[str]) -> CycleError:
    """Walk `needs` within the tangle until a step repeats: that loop is a cycle."""
    start = next(step_id for step_id in steps if step_id in tangled)
    walk: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(walk)
        walk.append(node)
        node = next(n for n in steps[node].needs if n in tangled)
    cycle = list(reversed(walk[seen[node] :]))
    return CycleError([*cycle, cycle[0]], where=workflow.locate("steps", cycle[0]))
