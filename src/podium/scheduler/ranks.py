"""Which ready step goes first when there are more ready steps than free slots.

A step's upward rank is its expected duration plus the largest rank among its dependents:
how long the run still takes from the moment the step starts, were slots unlimited. Running
the highest rank first (list scheduling by critical path) keeps the longest chain moving.
With few slots a run is bound by its work as much as by its paths, and then what matters
too is how much work a step opens up for the other slots. So the score also counts the work
below a step, spread over the slots:

    score(s) = rank(s) + work(s) / (2 · slots)
    rank(s)  = duration(s) + max rank(d)          over the dependents d of s
    work(s)  = duration(s) + Σ work(d) / needs(d)

`work` shares each dependent's work among the steps it needs: an estimate of the work below
a step in linear time that does not count a diamond's bottom twice (exact on trees). With
unlimited slots the score is the rank alone. The weight ½ was measured on the Standard Task
Graph Set (`make bench`, docs/scheduling.md): rank alone is within 9% of the optimum on all
1,440 cases, the blend within 6%; weights from 0.4 to 0.75 do as well.

Durations are seconds, from each step's `estimate` (`estimates`), else what its agent took
in recorded runs (`recorded`), or a default. The steps of a
loop's iteration (`draft#2`) rank as their body step: its rank within the body plus what
follows the loop. A group's duration is its body's critical path unless it declares an
estimate; a loop is counted as one iteration and a for_each step as one item, since neither
count is known before the run.

`Ranks.of` walks the plan once, in O(steps + needs); the `Priority` it gives `ActiveRun` is
each step's place in the order of scores (ties by plan order), so a call is a dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from podium.model import Step, Workflow
from podium.model.callables import callable_name
from podium.scheduler.plan import Plan, PlanStep, Priority

DEFAULT_SECONDS = 1.0  # the duration of a step that declares no estimate
WORK_WEIGHT = 0.5  # how much the work below a step counts, per slot, beside its rank


def estimates(workflow: Workflow) -> dict[str, float]:
    """Each step's declared `estimate` (a `sleep` step's sleep if it has none), the steps of
    groups included; steps with neither are left to the default."""
    found: dict[str, float] = {}
    for step in _every_step(workflow):
        seconds = step.estimate if step.estimate is not None else step.sleep
        if seconds is not None:
            found[step.id] = seconds
    return found


def recorded(
    workflow: Workflow, figures: Mapping[str, Mapping[str, object]], figure: str
) -> dict[str, float]:
    """A recorded figure (`latency`, `cost`) of each step's agent, from `figures` by agent
    name (as the store saves them); for a capability, the lowest among its agents'."""
    by_agent = {
        name: value
        for name, saved in figures.items()
        if isinstance(value := saved.get(figure), int | float) and value
    }
    found: dict[str, float] = {}
    if not by_agent:  # nothing recorded yet: no step needs looking at
        return found
    for step in _every_step(workflow):
        known = [by_agent[name] for name in _agents_of(workflow, step) if name in by_agent]
        if known:
            found[step.id] = float(min(known))
    return found


def _every_step(workflow: Workflow) -> Iterator[Step]:
    """The workflow's steps in definition order, each group followed by its own steps."""
    for step in workflow.steps.values():
        yield step
        if step.steps:
            yield from step.steps.values()


def _agents_of(workflow: Workflow, step: Step) -> list[str]:
    """The names under which the agents that may run `step` keep their figures."""
    if step.agent is not None:
        return [step.agent]
    if step.uses is not None:
        return [callable_name(step.uses)]
    if step.pattern is not None:
        return [f"{step.pattern.kind}:{step.id}"]
    if step.capability is not None:
        return [a.name for a in workflow.agents.values() if step.capability in a.capabilities]
    return []


@dataclass(frozen=True, slots=True)
class Ranks:
    """Expected duration, upward rank and work below each step of a plan, loop bodies too.

    `order` is the tie-break: the plan's order, then the body steps that are not plan steps.
    """

    plan: Plan
    duration: Mapping[str, float]
    rank: Mapping[str, float]
    work: Mapping[str, float]
    order: tuple[str, ...]

    @classmethod
    def of(
        cls,
        plan: Plan,
        durations: Mapping[str, float] | None = None,
        *,
        default: float = DEFAULT_SECONDS,
    ) -> Ranks:
        """Rank every step; `durations` gives seconds by step id, `default` the rest."""
        given = durations or {}
        bodies: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        duration: dict[str, float] = {}
        for loop_id, body in plan.bodies.items():
            for step in body:
                duration[step.id] = given.get(step.id, default)
            bodies[loop_id] = _upward(body, duration)
        for step_id in plan.order:
            inside = bodies.get(step_id)
            length = default if inside is None else max(inside[0].values(), default=0.0)
            duration[step_id] = given.get(step_id, length)
        top = [plan.steps[step_id] for step_id in plan.order]
        rank, work = _upward(top, duration)
        order = list(plan.order)
        for loop_id, (body_rank, body_work) in bodies.items():
            # What follows the loop, added to what follows each step within the iteration.
            after_rank = rank[loop_id] - duration[loop_id]
            after_work = work[loop_id] - duration[loop_id]
            for step_id in body_rank:
                if step_id not in rank:  # a repeated step without a group is its own body
                    rank[step_id] = body_rank[step_id] + after_rank
                    work[step_id] = body_work[step_id] + after_work
                    order.append(step_id)
        return cls(plan, duration, rank, work, tuple(order))

    @property
    def length(self) -> float:
        """The critical path's length: the makespan no number of slots can beat."""
        return max((self.rank[s] for s in self.plan.order), default=0.0)

    def critical_path(self) -> tuple[str, ...]:
        """The plan's longest chain of steps by expected duration, first step first.

        Groups and loops appear as one step; ties go to the step first in plan order.
        """
        steps = self.plan.steps
        starts = [step_id for step_id in self.plan.order if not steps[step_id].needs]
        if not starts:
            return ()
        node = max(starts, key=self.rank.__getitem__)
        path = [node]
        while dependents := steps[node].dependents:
            node = max(dependents, key=self.rank.__getitem__)
            path.append(node)
        return tuple(path)

    def priority(self, slots: int | None = None) -> Priority:
        """The priority of `ActiveRun` for a run with `slots` units at once (None: no limit)."""
        spread = 0.0 if slots is None else WORK_WEIGHT / slots
        order = self.order
        score = [self.rank[step_id] + spread * self.work[step_id] for step_id in order]
        # Highest score first; the sort is stable, so equal scores keep plan order.
        ranked = sorted(range(len(order)), key=score.__getitem__, reverse=True)
        place = {order[i]: float(position) for position, i in enumerate(ranked)}
        unknown = float(len(place))

        def critical_path_first(step: str) -> float:
            found = place.get(step)
            if found is None:  # `draft#2`: a step of a loop's iteration goes as its body step
                found = place.get(step.rpartition("#")[0], unknown)
            return found

        return critical_path_first


def _upward(
    steps: Sequence[PlanStep], duration: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """Rank and work of `steps` (in topological order) within their own graph.

    A step needed twice by one dependent gets two shares of its work: the shares of a
    dependent's needs still add up to one.
    """
    fan_in = {step.id: len(step.needs) for step in steps}
    rank: dict[str, float] = {}
    work: dict[str, float] = {}
    for step in reversed(steps):
        after_rank = after_work = 0.0
        for dependent in step.dependents:
            if rank[dependent] > after_rank:
                after_rank = rank[dependent]
            after_work += work[dependent] / fan_in[dependent]
        rank[step.id] = duration[step.id] + after_rank
        work[step.id] = duration[step.id] + after_work
    return rank, work
