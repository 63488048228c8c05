"""Predicting a run's schedule: the real `ActiveRun` on a virtual clock, no agent called.

`simulate` drives the scheduler the way the runtime does, with `slots` units at most in
flight: at each instant it answers `decisions()`, starts what `ready(free)` hands out
(`StepStarted`), then moves the clock to the next completion (`StepSucceeded`). Every unit
takes its step's expected duration and succeeds, so what comes out is the schedule the
runtime's ordering gives when the estimates hold: the makespan, where each unit ran, and
the log of events the runtime would have recorded.

The simulator knows the plan, not the expressions, so it makes assumptions the caller can
override: a step whose `if` is known to be false goes in `skipped` (its dependents then
follow their trigger rule, as in a run); a for_each step has `items[step]` items (1 if not
given); a loop runs `iterations[step]` iterations (1 if not given). Agents' own concurrency
limits are not modelled: only the run's slots.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from podium.model import (
    Event,
    IterationStarted,
    LoopEnded,
    StepExpanded,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from podium.scheduler.active import ActiveRun, Unit
from podium.scheduler.plan import Plan, PlanStep, Priority
from podium.scheduler.ranks import DEFAULT_SECONDS, Ranks

AGENT = "simulated"  # the agent named in the simulated log's `StepStarted` events


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where and when one unit ran: `key` is `step`, `step[3]` or `draft#2`."""

    key: str
    step: str
    start: float
    end: float
    slot: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Simulation:
    """The predicted run: makespan (seconds), each unit's placement in start order, the
    plan's critical path and its length, and the events the runtime would have recorded."""

    makespan: float
    schedule: tuple[Placement, ...]
    critical_path: tuple[str, ...]
    critical_length: float
    slots: int | None
    events: tuple[Event, ...]


def simulate(
    plan: Plan,
    durations: Mapping[str, float] | None = None,
    *,
    slots: int | None = None,
    default: float = DEFAULT_SECONDS,
    priority: Priority | None = None,
    skipped: Collection[str] = (),
    items: Mapping[str, int] | None = None,
    iterations: Mapping[str, int] | None = None,
) -> Simulation:
    """Run `plan` on a virtual clock from 0 with at most `slots` units at once (None: no limit).

    `durations` gives seconds by step id (a loop's iteration step `draft#2` takes the time
    of `draft`), `default` the rest. `priority` is the runtime's unless given: critical path
    first, from the same durations and slots.
    """
    ranks = Ranks.of(plan, durations, default=default)
    active = ActiveRun(plan, priority=priority or ranks.priority(slots))
    run = _Simulator(plan, active, ranks.duration, default, skipped, items or {}, iterations or {})
    run.drive(slots)
    return Simulation(
        makespan=run.now,
        schedule=tuple(run.schedule),
        critical_path=ranks.critical_path(),
        critical_length=ranks.length,
        slots=slots,
        events=tuple(run.events),
    )


class _Simulator:
    """The loop of `runtime.execution`, with a heap of completions in place of agents."""

    def __init__(
        self,
        plan: Plan,
        active: ActiveRun,
        duration: Mapping[str, float],
        default: float,
        skipped: Collection[str],
        items: Mapping[str, int],
        iterations: Mapping[str, int],
    ) -> None:
        self.active = active
        self.duration = duration
        self.default = default
        self.skipped = skipped
        self.items = items
        self.iterations = iterations
        self.loops = plan.bodies.keys()
        # What a step of a loop's iteration (`draft#2`) is: its body step (`draft`).
        self.templates: dict[str, PlanStep] = {s.id: s for b in plan.bodies.values() for s in b}
        self.templates.update(plan.steps)
        self.now = 0.0
        self.events: list[Event] = []
        self.schedule: list[Placement] = []
        self.running: list[tuple[float, int, Unit, int]] = []  # (end, ticket, unit, slot)
        self.free_slots: list[int] = []  # slots released, lowest reused first
        self.opened = 0  # slots ever used
        self.tickets = itertools.count()

    def drive(self, slots: int | None) -> None:
        active = self.active
        while True:
            while decisions := active.decisions():
                for step_id in decisions:
                    self.judge(step_id)
            free = (1 << 30) if slots is None else slots - active.in_flight
            for unit in active.ready(free):
                self.start(unit)
            if not self.running:
                break
            self.finish_next()
        if not active.is_complete:  # every unit succeeds, so nothing can be left over
            raise AssertionError("the simulated run stopped before it was complete")

    def judge(self, step_id: str) -> None:
        """The runtime's verdict on a step whose needs have settled, under the assumptions."""
        active = self.active
        base = step_id.rpartition("#")[0] or step_id
        if step_id in self.loops and active.iteration(step_id):
            done = active.iteration(step_id)
            if done < self.iterations.get(step_id, 1):
                self.record(IterationStarted, step=step_id, iteration=done + 1)
            else:
                output = [None] * done
                self.record(
                    LoopEnded, step=step_id, iterations=done, stopped="until", output=output
                )
            return
        met, why = active.trigger_met(step_id)
        if not met:
            self.record(StepSkipped, step=step_id, cause="trigger", reason=why)
        elif base in self.skipped:
            self.record(StepSkipped, step=step_id, cause="condition", reason="assumed false")
        elif step_id in self.loops:
            self.record(IterationStarted, step=step_id, iteration=1)
        elif self.templates[base].fans_out:
            self.record(StepExpanded, step=step_id, count=self.items.get(base, 1))
        else:
            active.activate(step_id)

    def start(self, unit: Unit) -> None:
        slot = heapq.heappop(self.free_slots) if self.free_slots else self.opened
        self.opened = max(self.opened, slot + 1)
        self.record(
            StepStarted, step=unit.step, index=unit.index, attempt=unit.attempt, agent=AGENT
        )
        base = unit.step.rpartition("#")[0] or unit.step
        end = self.now + self.duration.get(base, self.default)
        self.schedule.append(
            Placement(key=unit.key, step=unit.step, start=self.now, end=end, slot=slot)
        )
        heapq.heappush(self.running, (end, next(self.tickets), unit, slot))

    def finish_next(self) -> None:
        """Move the clock to the earliest completion and record every unit that ends then."""
        self.now = self.running[0][0]
        while self.running and self.running[0][0] == self.now:
            _, _, unit, slot = heapq.heappop(self.running)
            heapq.heappush(self.free_slots, slot)
            self.record(StepSucceeded, step=unit.step, index=unit.index, attempt=unit.attempt)

    def record(self, kind: type[Event], **fields: object) -> None:
        event = kind(seq=len(self.events), at=self.now, **fields)
        self.events.append(event)
        self.active.apply(event)
