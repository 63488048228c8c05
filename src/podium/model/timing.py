"""Where a run's time went: its critical path, the units that queued, and time per agent.

All three come from the recorded start and end times, read against the run's definition
(what each step needs). The log names units as they ran (`reserve[2]`, `draft#3`), so
`RunGraph` answers the definition's questions under those names: what `draft#3` waited for
is `review#3` inside an iteration, or the iteration before when nothing in its own does.

The critical path walks back from the unit that finished last through, at each link, the
need that finished last. A fan-out or a loop stands for its part that finished last. The
`gap` before a link is time no unit of the chain was working: queued for an agent or a slot,
or no process running the run. Pure: no I/O, the same events give the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from podium.model.events import (
    CallRecorded,
    Event,
    IterationStarted,
    RunResumed,
    RunStarted,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepFellBack,
    StepStarted,
    StepSucceeded,
    step_key,
)
from podium.model.history import RunHistory, StepRecord, StepStatus
from podium.model.workflow import Step, Workflow

__all__ = [
    "AgentTime",
    "CriticalPath",
    "Link",
    "Place",
    "RunGraph",
    "Wait",
    "agent_times",
    "took",
]

# A wait between a unit's needs being done and its start is worth telling when it is at
# least this share of the run (and at least `MIN_WAIT` seconds): less is the engine's pace.
NOTABLE_SHARE = 0.05
MIN_WAIT = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A unit on the critical path: when it began, how long it ran, the idle `gap` before."""

    key: str
    agent: str | None
    status: StepStatus
    at: float  # seconds from the run's start
    seconds: float
    gap: float
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CriticalPath:
    """The chain of units the run's duration was made of, first to last."""

    links: tuple[Link, ...]
    seconds: float  # from the run's start to the end of the last link

    @property
    def working(self) -> float:
        """The part of `seconds` the chain's units were running (the rest is gaps)."""
        return sum(link.seconds for link in self.links)


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """A unit that was ready but queued, for how long, and the limits that may have held it."""

    key: str
    seconds: float
    limits: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTime:
    """What one agent did in the run: calls, failed calls, seconds busy, and usage.

    A pattern step's agent is busy for the whole conversation; its participants' calls are
    counted for them as well, so their seconds overlap the pattern's.
    """

    agent: str
    calls: int
    failures: int
    busy: float
    tokens: int
    cost: float


@dataclass(frozen=True, slots=True)
class Place:
    """Where a logged step name stands in the definition: a step, or one of a loop's body."""

    step: Step | None
    iteration: int | None = None
    loop: str | None = None  # the repeat step whose body holds it
    body: tuple[str, ...] = ()


class RunGraph:
    """A run's units and their needs: the definition asked under the names the log uses."""

    def __init__(
        self, events: Sequence[Event], history: RunHistory, workflow: Workflow | None
    ) -> None:
        self.workflow = workflow
        self.history = history
        self.start = history.started_at or (events[0].at if events else 0.0)
        self.max_parallel: int | None = None
        self._expanded_at: dict[str, float] = {}
        self._iteration_at: dict[tuple[str, int], float] = {}
        self._resumed_at: list[float] = []
        for event in events:
            match event:
                case RunStarted():
                    self.max_parallel = event.max_parallel
                case StepExpanded():
                    self._expanded_at[event.step] = event.at
                case IterationStarted():
                    self._iteration_at[(event.step, event.iteration)] = event.at
                case RunResumed():
                    self._resumed_at.append(event.at)
                case _:
                    pass

    def place(self, name: str) -> Place:
        workflow = self.workflow
        if workflow is None:
            return Place(None)
        base, mark, number = name.rpartition("#")
        if not (mark and number.isdigit()):
            return Place(workflow.steps.get(name))
        iteration = int(number)
        own = workflow.steps.get(base)
        if own is not None and own.repeat is not None and own.steps is None:
            return Place(own, iteration, base, (base,))
        for group in workflow.steps.values():
            if group.steps is not None and base in group.steps:
                return Place(group.steps[base], iteration, group.id, tuple(group.steps))
        return Place(None)

    def needs(self, name: str) -> list[str]:
        """The step names (as the log spells them) that step `name` waited for."""
        place = self.place(name)
        if place.step is None or self.workflow is None:
            return []
        if place.iteration is None or place.loop is None:
            return list(place.step.needs)
        inner = () if place.body == (place.loop,) else place.step.needs
        if inner:
            return [f"{need}#{place.iteration}" for need in inner]
        if place.iteration > 1:  # the first steps of an iteration follow the one before
            return [f"{step}#{place.iteration - 1}" for step in place.body]
        return list(self.workflow.steps[place.loop].needs)

    def leaf(self, name: str) -> StepRecord | None:
        """The record for `name`; for a fan-out or a loop, its part that finished last."""
        steps = self.history.steps
        record = steps.get(name)
        if record is None or record.index is not None:
            return record
        parts: list[StepRecord] = []
        if record.items:
            parts = [steps[key] for i in range(record.items) if (key := step_key(name, i)) in steps]
        elif record.iterations is not None:
            parts = [
                part
                for part in steps.values()
                if part.index is None and self.place(part.step).loop == name
            ]
        ended = [part for part in parts if part.ended_at is not None]
        if not ended:
            return record
        return self.leaf(max(ended, key=_end).key)

    # ---- the critical path --------------------------------------------------------------

    def critical_path(self) -> CriticalPath | None:
        """Back from the unit that finished last, through the need that finished last.

        None without the definition (the needs are unknown) or before any unit ended.
        """
        if self.workflow is None:
            return None
        leaves = [
            record
            for record in self.history.steps.values()
            if record.ended_at is not None and self.leaf(record.key) is record
        ]
        if not leaves:
            return None
        chain = [max(leaves, key=_end)]
        seen = {chain[0].key}
        while True:
            before = [self.leaf(need) for need in self.needs(chain[-1].step)]
            ended = [r for r in before if r and r.ended_at is not None and r.key not in seen]
            if not ended:
                break
            chain.append(max(ended, key=_end))
            seen.add(chain[-1].key)
        chain.reverse()
        links: list[Link] = []
        previous_end = self.start
        for record in chain:
            end = _end(record)
            begin = end if record.started_at is None else record.started_at  # skipped: no run
            links.append(
                Link(
                    key=record.key,
                    agent=record.agent,
                    status=record.status,
                    at=begin - self.start,
                    seconds=max(0.0, end - begin),
                    gap=max(0.0, begin - previous_end),
                    attempts=record.attempts,
                )
            )
            previous_end = end
        return CriticalPath(links=tuple(links), seconds=max(0.0, _end(chain[-1]) - self.start))

    # ---- queueing -----------------------------------------------------------------------

    def waited(self, record: StepRecord) -> float | None:
        """Seconds from the unit being ready (its needs done) to its first start.

        None for a unit that did not start, a fan-out or loop as a whole, or when the needs
        are unknown (no definition).
        """
        started = record.started_at
        composite = record.index is None and (
            record.items is not None or record.iterations is not None
        )
        if started is None or composite or self.workflow is None:
            return None
        ready = self._ready_at(record)
        resumes = [at for at in self._resumed_at if at <= started]
        if resumes:
            ready = max(ready, resumes[-1])  # no unit starts while no process runs the run
        return max(0.0, started - ready)

    def _ready_at(self, record: StepRecord) -> float:
        steps = self.history.steps
        place = self.place(record.step)
        ended = [steps[need] for need in self.needs(record.step) if need in steps]
        ends = [need.ended_at for need in ended if need.ended_at is not None]
        succeeded = [
            need.ended_at
            for need in ended
            if need.status == "succeeded" and need.ended_at is not None
        ]
        if place.step is not None and place.step.trigger == "one_success" and succeeded:
            ready = min(succeeded)
        else:
            ready = max(ends, default=self.start)
        if record.index is not None:
            ready = max(ready, self._expanded_at.get(record.step, ready))
        if place.loop is not None and place.iteration is not None:
            ready = max(ready, self._iteration_at.get((place.loop, place.iteration), ready))
        return ready

    def waits(self, run_seconds: float | None) -> list[Wait]:
        """The units whose wait for a start is worth telling, longest first."""
        floor = max(MIN_WAIT, NOTABLE_SHARE * (run_seconds or 0.0))
        found: list[Wait] = []
        for record in self.history.steps.values():
            seconds = self.waited(record)
            if seconds is not None and seconds >= floor:
                found.append(Wait(key=record.key, seconds=seconds, limits=self._limits(record)))
        return sorted(found, key=lambda wait: -wait.seconds)

    def _limits(self, record: StepRecord) -> tuple[str, ...]:
        """The limits that could have held the unit back: its agent's, its step's, the run's.

        None of them is named in the log as the cause, so they are the candidates a reader
        weighs, not a verdict.
        """
        limits: list[str] = []
        workflow = self.workflow
        agent = record.agent
        spec = None if workflow is None or agent is None else workflow.agents.get(agent)
        if spec is not None and spec.concurrency is not None:
            limits.append(f"agent {agent} takes {spec.concurrency} at a time")
        step = self.place(record.step).step
        if record.index is not None and step is not None and step.max_parallel:
            items = "item" if step.max_parallel == 1 else "items"
            limits.append(f"{record.step} runs {step.max_parallel} {items} at a time")
        held = {} if step is None or step.uses_resources is None else step.uses_resources
        for name, amount in held.items():
            total = None if workflow is None else workflow.resources.get(name)
            limits.append(f"it holds {amount} of {name}" + (f" (of {total})" if total else ""))
        if self.max_parallel is not None:
            limits.append(f"the run runs {self.max_parallel} units at a time")
        return tuple(limits)


# ---- time by agent ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Calls:
    calls: int = 0
    failures: int = 0
    busy: float = 0.0


def agent_times(events: Sequence[Event], history: RunHistory) -> tuple[AgentTime, ...]:
    """Each agent that was called or used something, busiest first.

    An attempt is a call from its `StepStarted` to the outcome of the same unit and
    attempt; one cut short by a crash counts as a call and nothing more.
    """
    calls: dict[str, _Calls] = {}
    opened: dict[tuple[str, int], tuple[str, float]] = {}
    for event in events:
        match event:
            case StepStarted():
                opened[(event.key, event.attempt)] = (event.agent, event.at)
                calls.setdefault(event.agent, _Calls()).calls += 1
            case StepSucceeded() | StepAttemptFailed() | StepFailed() | StepFellBack():
                attempt = opened.pop((event.key, event.attempt), None)
                if attempt is not None:
                    counted = calls[attempt[0]]
                    counted.busy += max(0.0, event.at - attempt[1])
                    counted.failures += not isinstance(event, StepSucceeded)
            case CallRecorded():
                unit = history.steps.get(event.key)
                if event.agent and (unit is None or event.agent != unit.agent):
                    participant = calls.setdefault(event.agent, _Calls())
                    participant.calls += 1
                    participant.busy += event.seconds
            case _:
                pass
    calls.pop("-", None)  # a refused attempt (circuit open) called no agent
    usage = history.agents
    rows = [
        AgentTime(
            agent=name,
            calls=counted.calls,
            failures=counted.failures,
            busy=counted.busy,
            tokens=usage[name].tokens if name in usage else 0,
            cost=usage[name].cost if name in usage else 0.0,
        )
        for name in [*calls, *(name for name in usage if name not in calls)]
        for counted in [calls.get(name, _Calls())]
    ]
    return tuple(sorted(rows, key=lambda row: (-row.busy, row.agent)))


def took(seconds: float) -> str:
    """`40ms`, `1.25s`, `2m03.4s`: as precise as a reader needs."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"


def _end(record: StepRecord) -> float:
    assert record.ended_at is not None
    return record.ended_at
