"""The story of a run, told from its events: who did what and why, which branches were
taken on which values, what failed and was retried, what the controller changed, and where
the time went.

`explain(events, workflow)` folds a run's log into an `Explanation`; `podium explain`
prints it. It is a projection for reading, like `RunHistory`, and as pure: no I/O, the same
events give the same story. `workflow` is the run's own definition (the one stored in
`RunStarted`, read back by the caller): the events say what happened, the definition says
what each step waited for and what its `if` read. Without it the story still tells who did
what, but has no conditions and no critical path.

Times are seconds from the run's start (`at`), so that a story reads the same in any time
zone. Where the time went (critical path, queueing, time per agent) is `podium.model.timing`;
this module tells the rest and puts the two together.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from podium.model.events import (
    Adapted,
    ApprovalDecided,
    ApprovalRequested,
    Candidate,
    CircuitChanged,
    CompensationEnded,
    CompensationStarted,
    ErrorInfo,
    Event,
    LoopEnded,
    RunFinished,
    RunResumed,
    RunStatus,
    RunWaiting,
    SkipCause,
    StepAttemptFailed,
    StepFailed,
    StepFellBack,
    StepSkipped,
    StepStarted,
)
from podium.model.history import RunHistory, StepRecord, StepStatus
from podium.model.timing import (
    AgentTime,
    CriticalPath,
    Link,
    Place,
    RunGraph,
    Wait,
    agent_times,
    took,
)
from podium.model.workflow import Workflow

__all__ = [
    "AgentTime",
    "Alternative",
    "Branch",
    "Change",
    "Choice",
    "Conversation",
    "CriticalPath",
    "Explanation",
    "Failure",
    "Link",
    "Moment",
    "Reading",
    "RunFacts",
    "UnitStory",
    "Wait",
    "explain",
    "took",
]

SHORT = 60  # characters of a value shown where a branch read it


# ---- the explanation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFacts:
    """The run as a whole: its status, how long it took, what it used."""

    run_id: str
    workflow: str
    status: RunStatus
    started_at: float | None  # epoch seconds; every other time is relative to it
    seconds: float | None
    resumes: int
    tokens: int
    cost: float
    error: str | None
    forked_from: str | None
    parent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alternative:
    """A candidate the router did not choose, and why not in words (`slower, 180ms vs 40ms`)."""

    agent: str
    score: float | None
    excluded: str
    why_not: str

    @property
    def text(self) -> str:
        if self.excluded:
            return f"{self.agent} (excluded: {self.excluded})"
        score = _score(self.score)
        return (
            f"{self.agent} ({score}: {self.why_not})" if self.why_not else f"{self.agent} ({score})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """How a unit routed by capability got its agent: its score against the others'."""

    agent: str
    score: float | None
    others: tuple[Alternative, ...]

    @property
    def text(self) -> str:
        chosen = f"{self.agent} (score {_score(self.score)})"
        if not self.others:
            return f"{chosen}, the only candidate"
        return f"{chosen} over {_and([other.text for other in self.others])}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """A pattern step's conversation: why it stopped and how long it went on."""

    stop_reason: str
    turns: int
    messages: int

    @property
    def text(self) -> str:
        return f"stopped: {self.stop_reason} after {_count(self.turns, 'turn')}"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitStory:
    """One unit of work (`step`, `step[3]`, `draft#2`): who did it, why, and how it went.

    `agents` lists every agent that made an attempt, in order (a fallback adds one).
    `waited` is the time between its needs being done and its first start.
    """

    key: str
    step: str
    status: StepStatus
    agent: str | None
    agents: tuple[str, ...]
    reason: str
    attempts: int
    at: float | None
    seconds: float | None
    waited: float | None
    items: int | None
    iterations: int | None
    error: str | None
    choice: Choice | None
    conversation: Conversation | None

    @property
    def why(self) -> str:
        """The reason in one line: the routing choice, the fan-out, or the agent's reason."""
        if self.items is not None:
            head = _count(self.items, "item")
        elif self.iterations is not None:
            head = _count(self.iterations, "iteration")
        else:
            head = self.choice.text if self.choice else self.reason
        tail = self.conversation.text if self.conversation else ""
        return "; ".join(part for part in (head, tail) if part)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """A value a branch's condition read (`steps.check.output.in_stock`), shortened."""

    path: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Branch:
    """A step that could have gone either way: its `if` or trigger rule, and what happened.

    `outcome` is `taken` (it ran), `skipped`, or `not reached` (the run ended before).
    """

    step: str
    outcome: Literal["taken", "skipped", "not reached"]
    condition: str | None
    trigger: str
    cause: SkipCause | None
    reason: str
    reads: tuple[Reading, ...]

    @property
    def text(self) -> str:
        rule = f"if {self.condition}" if self.condition else f"trigger {self.trigger}"
        if self.outcome == "skipped":
            return f"skipped: {self.reason}"
        return f"{self.outcome}: {rule}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A failed attempt and what it led to: a retry, the fallback, or the unit's end."""

    at: float
    key: str
    kind: Literal["retried", "fell_back", "failed"]
    attempt: int
    agent: str | None
    error: str
    retry_in: float | None = None
    to: str | None = None

    @property
    def text(self) -> str:
        on = f" on {self.agent}" if self.agent else ""
        then = {
            "retried": f"retry in {took(self.retry_in or 0.0)}",
            "fell_back": f"falls back to {self.to}",
            "failed": "failed for good",
        }[self.kind]
        return f"{self.key} attempt {self.attempt}{on} failed: {self.error}; {then}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A change the adaptation controller made while the run went on, and why."""

    at: float
    policy: str
    subject: str
    setting: str
    old: Any
    new: Any
    reason: str

    @property
    def text(self) -> str:
        change = f"{_short(self.old, 30)} → {_short(self.new, 30)}"
        return f"{self.policy}: {self.subject} {self.setting} {change}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Moment:
    """One line of the timeline: a decision or mishap, `kind` saying which."""

    at: float
    kind: str
    subject: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """The whole story of a run. `as_json` is its machine form, with stable keys."""

    run: RunFacts
    units: tuple[UnitStory, ...]
    branches: tuple[Branch, ...]
    failures: tuple[Failure, ...]
    adaptations: tuple[Change, ...]
    timeline: tuple[Moment, ...]
    critical_path: CriticalPath | None  # None without the definition, or before any unit ended
    time_by_agent: tuple[AgentTime, ...]
    waits: tuple[Wait, ...]

    def as_json(self) -> dict[str, Any]:
        """Plain JSON data: every tuple a list, every key the same from run to run."""
        path = self.critical_path
        document: dict[str, Any] = {
            "run": dataclasses.asdict(self.run),
            "units": [
                {
                    **dataclasses.asdict(unit),
                    "why": unit.why,
                    "choice": None
                    if unit.choice is None
                    else {**dataclasses.asdict(unit.choice), "text": unit.choice.text},
                }
                for unit in self.units
            ],
            "branches": [{**dataclasses.asdict(b), "text": b.text} for b in self.branches],
            "failures": [{**dataclasses.asdict(f), "text": f.text} for f in self.failures],
            "adaptations": [{**dataclasses.asdict(a), "text": a.text} for a in self.adaptations],
            "timeline": [dataclasses.asdict(moment) for moment in self.timeline],
            "critical_path": None
            if path is None
            else {
                "seconds": path.seconds,
                "working": path.working,
                "steps": [dataclasses.asdict(link) for link in path.links],
            },
            "time_by_agent": [dataclasses.asdict(agent) for agent in self.time_by_agent],
            "waits": [dataclasses.asdict(wait) for wait in self.waits],
        }
        plain: dict[str, Any] = _plain(document)
        return plain


# ---- telling it -----------------------------------------------------------------------------


def explain(events: Sequence[Event], workflow: Workflow | None = None) -> Explanation:
    """The story of the run whose log is `events`, defined by `workflow` (if known)."""
    history = RunHistory.fold(events)
    graph = RunGraph(events, history, workflow)
    story = _Story(history, graph)
    for event in events:
        story.see(event)
    run = _run_facts(history)
    return Explanation(
        run=run,
        units=tuple(story.unit(record) for record in history.steps.values()),
        branches=tuple(story.branches()),
        failures=tuple(story.failures),
        adaptations=tuple(story.adaptations),
        timeline=tuple(story.timeline),
        critical_path=graph.critical_path(),
        time_by_agent=agent_times(events, history),
        waits=tuple(graph.waits(run.seconds)),
    )


def _run_facts(history: RunHistory) -> RunFacts:
    start, end = history.started_at, history.ended_at
    return RunFacts(
        run_id=history.run_id,
        workflow=history.workflow,
        status=history.status,
        started_at=start,
        seconds=_between(start, end),
        resumes=history.resumes,
        tokens=history.usage.tokens,
        cost=history.usage.cost,
        error=_error(history.error),
        forked_from=history.forked_from,
        parent=history.parent,
    )


class _Story:
    """What the history does not keep, gathered in one pass over the events."""

    def __init__(self, history: RunHistory, graph: RunGraph) -> None:
        self.history = history
        self.graph = graph
        self.start = graph.start
        self.failures: list[Failure] = []
        self.adaptations: list[Change] = []
        self.timeline: list[Moment] = []
        self.skip_causes: dict[str, SkipCause] = {}
        self.choices: dict[str, Choice] = {}
        self.agents: dict[str, list[str]] = {}  # unit key -> the agents of its attempts

    def see(self, event: Event) -> None:
        match event:
            case StepStarted():
                self._started(event)
            case StepAttemptFailed():
                retry_in = max(0.0, event.retry_at - event.at)
                self._failed(event, "retried", retry_in=retry_in)
            case StepFellBack():
                self._failed(event, "fell_back", to=event.to)
            case StepFailed():
                self._failed(event, "failed")
            case StepSkipped():
                self.skip_causes[event.step] = event.cause
                self._moment(event, "skipped", event.step, f"{event.step} skipped: {event.reason}")
            case Adapted():
                self._adapted(event)
            case _:
                self._other(event)

    def _other(self, event: Event) -> None:
        """The moments that are told as they are: loops, circuits, resumes, people, undoing."""
        match event:
            case LoopEnded():
                ended = f"{event.step} ended after {_count(event.iterations, 'iteration')}"
                why = "its until held" if event.stopped == "until" else "max_iterations spent"
                error = f": {_error(event.error)}" if event.error else ""
                self._moment(event, "loop", event.step, f"{ended}: {why}{error}")
            case CircuitChanged():
                text = f"circuit of {event.agent} {event.state.replace('_', '-')}: {event.reason}"
                self._moment(event, "circuit", event.agent, text)
            case RunResumed():
                text = "resumed, failed steps go again (redrive)" if event.redrive else "resumed"
                self._moment(event, "resumed", "run", text)
            case ApprovalRequested():
                self._moment(event, "approval", event.key, f"{event.key} asks: {event.prompt}")
            case ApprovalDecided():
                verdict = "approved" if event.approved else "rejected"
                why = f": {event.reason}" if event.reason else ""
                text = f"{event.key} {verdict} by {event.by}{why}"
                self._moment(event, "approval", event.key, text)
            case RunWaiting():
                text = f"run waits for {', '.join(event.waiting_for)}"
                self._moment(event, "waiting", "run", text)
            case CompensationStarted():
                text = f"{event.step} is undone by {event.agent}"
                self._moment(event, "compensation", event.step, text)
            case CompensationEnded():
                how = f"failed: {_error(event.error)}" if event.error else "done"
                self._moment(event, "compensation", event.step, f"{event.step} undo {how}")
            case RunFinished():
                error = f": {_error(event.error)}" if event.error else ""
                self._moment(event, "finished", "run", f"run {event.status}{error}")
            case _:
                pass

    def _moment(self, event: Event, kind: str, subject: str, text: str) -> None:
        self.timeline.append(
            Moment(at=event.at - self.start, kind=kind, subject=subject, text=text)
        )

    def _started(self, event: StepStarted) -> None:
        key = event.key
        agents = self.agents.setdefault(key, [])
        agents.append(event.agent)
        if event.candidates:
            self.choices[key] = _choice(event.agent, event.candidates)
        else:
            self.choices.pop(key, None)  # a later attempt named its agent (a fallback, say)

    def _failed(
        self,
        event: StepAttemptFailed | StepFellBack | StepFailed,
        kind: Literal["retried", "fell_back", "failed"],
        *,
        retry_in: float | None = None,
        to: str | None = None,
    ) -> None:
        attempts = self.agents.get(event.key)
        failure = Failure(
            at=event.at - self.start,
            key=event.key,
            kind=kind,
            attempt=event.attempt,
            agent=attempts[-1] if attempts else None,  # the attempt that failed began last
            error=_error(event.error) or "",
            retry_in=retry_in,
            to=to,
        )
        self.failures.append(failure)
        self._moment(event, kind, event.key, failure.text)

    def _adapted(self, event: Adapted) -> None:
        adaptation = Change(
            at=event.at - self.start,
            policy=event.policy,
            subject=event.subject,
            setting=event.setting,
            old=event.old,
            new=event.new,
            reason=event.reason,
        )
        self.adaptations.append(adaptation)
        self._moment(event, "adapted", event.subject, adaptation.text)

    def unit(self, record: StepRecord) -> UnitStory:
        loop = record.iterations is not None and record.index is None
        return UnitStory(
            key=record.key,
            step=record.step,
            status=record.status,
            agent=record.agent,
            agents=tuple(dict.fromkeys(self.agents.get(record.key, ()))),
            reason=record.reason,
            attempts=record.attempts,
            at=None if record.started_at is None else record.started_at - self.start,
            seconds=_between(record.started_at, record.ended_at),
            waited=self.graph.waited(record),
            items=record.items if record.index is None else None,
            iterations=record.iterations if loop else None,
            error=_error(record.error) if record.status in ("failed", "retrying") else None,
            choice=self.choices.get(record.key),
            conversation=_conversation(record.output),
        )

    # ---- branches -----------------------------------------------------------------------

    def branches(self) -> list[Branch]:
        """Each step with an `if` or a trigger rule, and each skipped step, in order met."""
        found: list[Branch] = []
        for record in self.history.steps.values():
            if record.index is not None:
                continue
            place = self.graph.place(record.step)
            step = place.step
            conditional = step is not None and (
                step.condition is not None or step.trigger != "all_success"
            )
            if conditional or record.status == "skipped":
                found.append(self._branch(record, place))
        return found

    def _branch(self, record: StepRecord, place: Place) -> Branch:
        step = place.step
        condition = None if step is None else step.condition
        trigger = "all_success" if step is None else step.trigger
        outcome: Literal["taken", "skipped", "not reached"] = "not reached"
        if record.status == "skipped":
            outcome = "skipped"
        elif record.started_at is not None:
            outcome = "taken"
        reads: list[Reading] = []
        if condition is not None:
            reads = self._reads(condition, place)
        elif trigger != "all_success":  # what the rule looked at: how each need ended
            steps = self.history.steps
            for need in self.graph.needs(record.step):
                status = steps[need].status if need in steps else "not reached"
                reads.append(Reading(path=need, value=status))
        return Branch(
            step=record.key,
            outcome=outcome,
            condition=condition,
            trigger=trigger,
            cause=self.skip_causes.get(record.step),
            reason=record.reason if record.status == "skipped" else "",
            reads=tuple(reads),
        )

    def _reads(self, condition: str, place: Place) -> list[Reading]:
        """The values the condition read: each `steps.X.output...` and `input...` path in it.

        A path is followed as far as the recorded value goes, so `steps.a.output.ok` shows
        `ok` itself, and a path into something richer (a filter, a call) shows what it
        starts from.
        """
        readings: dict[str, Reading] = {}
        for match in _ROOT.finditer(condition):
            path = _path(condition, match.end())
            if match.group(1) == "input":
                value, shown = _walk(self.history.input, path)
                text = "input" + "".join(map(_spell, shown))
            elif path and isinstance(path[0], str):
                step_id = path[0]
                inside = place.iteration is not None and step_id in place.body
                record = self.history.steps.get(
                    f"{step_id}#{place.iteration}" if inside else step_id
                )
                if record is None:
                    text, value = f"steps{_spell(step_id)}", "(did not run)"
                else:
                    scope = {"output": record.output, "status": record.status}
                    value, shown = _walk(scope, path[1:] or ["output"])
                    text = f"steps{_spell(step_id)}" + "".join(map(_spell, shown))
            else:
                continue
            readings.setdefault(text, Reading(path=text, value=_short(value)))
        return list(readings.values())


# ---- small helpers ----------------------------------------------------------------------------


def _choice(agent: str, candidates: Sequence[Candidate]) -> Choice:
    chosen = next((c for c in candidates if c.agent == agent), None)
    others = tuple(
        Alternative(
            agent=other.agent,
            score=other.score,
            excluded=other.excluded,
            why_not="" if chosen is None or other.excluded else _why_not(other, chosen),
        )
        for other in candidates
        if other.agent != agent
    )
    return Choice(agent=agent, score=None if chosen is None else chosen.score, others=others)


def _why_not(other: Candidate, chosen: Candidate) -> str:
    """How `other` compared worse with the chosen agent, figure by figure."""
    reasons: list[str] = []
    if other.latency and chosen.latency and other.latency > chosen.latency * 1.05:
        reasons.append(f"slower, {took(other.latency)} vs {took(chosen.latency)}")
    if other.in_flight > chosen.in_flight:
        reasons.append(f"busier, {other.in_flight} in flight vs {chosen.in_flight}")
    if other.success_rate < chosen.success_rate - 0.005:
        rates = f"{other.success_rate:.0%} vs {chosen.success_rate:.0%}"
        reasons.append(f"less reliable, {rates} success")
    if other.cost and chosen.cost and other.cost > chosen.cost * 1.05:
        reasons.append(f"dearer, {other.cost:g} vs {chosen.cost:g} a call")
    if not reasons and other.score == chosen.score:
        reasons.append("tied, declared later")
    return "; ".join(reasons)


def _conversation(output: Any) -> Conversation | None:
    """The conversation of a pattern step's output (`messages`, `stop_reason`), if it is one."""
    if not isinstance(output, Mapping) or "stop_reason" not in output:
        return None
    messages = output.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    turns = output.get("turns")
    return Conversation(
        stop_reason=str(output["stop_reason"]),
        turns=turns if isinstance(turns, int) else count,
        messages=count,
    )


# `steps` or `input` as a name (not `x.steps`), then `.name`, `[0]` or `['name']` segments.
_ROOT = re.compile(r"(?<![\w.])(steps|input)\b")
_SEGMENT = re.compile(
    r"\s*(?:\.([A-Za-z_]\w*)|\[\s*(\d+)\s*\]|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\])"
)


def _segment(match: re.Match[str]) -> str | int:
    name, number, single, double = match.groups()
    if number is not None:
        return int(number)
    return name if name is not None else (single if single is not None else double)


def _path(text: str, start: int) -> list[str | int]:
    """The path segments that follow `start` without a gap: `steps.a.output.ok` -> a, output, ok."""
    path: list[str | int] = []
    position = start
    while (match := _SEGMENT.match(text, position)) is not None:
        path.append(_segment(match))
        position = match.end()
    return path


def _walk(value: Any, path: Sequence[str | int]) -> tuple[Any, list[str | int]]:
    """Follow `path` into `value` as far as it goes; the value reached and the path taken."""
    taken: list[str | int] = []
    for key in path:
        in_mapping = isinstance(value, Mapping) and key in value
        in_list = (
            isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value)
        )
        if not (in_mapping or in_list):
            break
        value = value[key]
        taken.append(key)
    return value, taken


def _spell(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    return f".{key}" if re.fullmatch(r"[A-Za-z_]\w*", key) else f"[{key!r}]"


def _short(value: Any, limit: int = SHORT) -> str:
    """`value` as compact JSON, cut to `limit` characters with an ellipsis."""
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any) -> Any:
    """`value` with tuples as lists, as JSON has them (`dataclasses.asdict` keeps tuples)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _error(error: ErrorInfo | None) -> str | None:
    return None if error is None else f"{error.type}: {error.message}"


def _between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, end - start)


def _score(score: float | None) -> str:
    return "?" if score is None else f"{score:.2f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
