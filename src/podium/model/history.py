"""A run as a person reads it: the fold of its events into one record per step key.

This is what `podium show` prints and what `RunResult` carries. It is a projection for
reading; the scheduler keeps its own state for deciding what runs next.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from podium.model.events import (
    ErrorInfo,
    Event,
    IterationStarted,
    LoopEnded,
    RunFinished,
    RunResumed,
    RunStarted,
    RunStatus,
    RunWaiting,
    StateWritten,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    Usage,
    step_key,
)
from podium.model.state import BUILTIN_REDUCERS, ReduceFn, StateFold, initial_value

StepStatus = Literal["pending", "running", "retrying", "waiting", "succeeded", "failed", "skipped"]


@dataclass(slots=True, kw_only=True)
class StepRecord:
    """What happened to one unit of work (`step` or `step[3]`)."""

    key: str
    step: str
    index: int | None = None
    status: StepStatus = "pending"
    attempts: int = 0
    agent: str | None = None
    reason: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    output: Any = None
    error: ErrorInfo | None = None
    items: int | None = None
    iterations: int | None = None  # of a repeat step: iterations started
    usage: Usage = field(default_factory=Usage)  # summed over attempts (and items)
    settled_items: int = 0  # of a for_each step: items that succeeded or failed so far

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "attempts": self.attempts,
            "agent": self.agent,
            "reason": self.reason,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "output": self.output,
            "error": _error_json(self.error),
            "usage": {"tokens": self.usage.tokens, "cost": self.usage.cost},
        }


@dataclass(slots=True, kw_only=True)
class RunHistory:
    """The fold of a run's events. `steps` is keyed by step key, in order of first mention."""

    run_id: str = ""
    workflow: str = ""
    status: RunStatus = "running"
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    ended_at: float | None = None
    resumes: int = 0
    forked_from: str | None = None
    fork_at: str | None = None
    parent: str | None = None
    usage: Usage = field(default_factory=Usage)  # everything the run's agents reported
    agents: dict[str, Usage] = field(default_factory=lambda: {})  # the same, by agent
    steps: dict[str, StepRecord] = field(default_factory=lambda: {})
    state: dict[str, Any] = field(default_factory=lambda: {})
    _state: StateFold | None = None

    @classmethod
    def fold(cls, events: Iterable[Event]) -> RunHistory:
        history = cls()
        for event in events:
            history.apply(event)
        return history

    def _record(self, step: str, index: int | None) -> StepRecord:
        key = step_key(step, index)
        record = self.steps.get(key)
        if record is None:
            record = self.steps[key] = StepRecord(key=key, step=step, index=index)
        return record

    def apply(self, event: Event) -> None:
        usage = getattr(event, "usage", None)
        if usage is not None:
            self._add_usage(event, usage)
        match event:
            case StepStarted():
                record = self._record(event.step, event.index)
                if event.index is not None and record.status in ("succeeded", "failed"):
                    self.steps[event.step].settled_items -= 1  # an item goes again (redrive)
                record.status = "running"
                record.attempts = event.attempt
                record.agent = event.agent
                record.reason = event.reason
                if record.started_at is None:
                    record.started_at = event.at
                self._touch_parent(event.step, event.index, event.at)
            case StepSucceeded():
                record = self._record(event.step, event.index)
                self._count_item(record)
                record.status = "succeeded"
                record.output = event.output
                record.error = None
                record.ended_at = event.at
                if event.index is not None:
                    self._settle_parent(event.step, event.at)
            case StepAttemptFailed():
                record = self._record(event.step, event.index)
                record.status = "retrying"
                record.error = event.error
            case StepFailed():
                record = self._record(event.step, event.index)
                self._count_item(record)
                record.status = "failed"
                record.attempts = max(record.attempts, event.attempt)
                record.error = event.error
                record.ended_at = event.at
                if event.index is not None:
                    self._settle_parent(event.step, event.at)
            case StepSkipped():
                record = self._record(event.step, None)
                record.status = "skipped"
                record.reason = event.reason
                record.ended_at = event.at
            case StepExpanded():
                record = self._record(event.step, None)
                record.items = event.count
                record.status = "running" if event.count else "succeeded"
                record.started_at = record.started_at or event.at
                if not event.count:
                    record.output = []
                    record.ended_at = event.at
            case IterationStarted():
                record = self._record(event.step, None)
                record.status = "running"
                record.iterations = event.iteration
                record.started_at = record.started_at or event.at
            case LoopEnded():
                record = self._record(event.step, None)
                record.status = "failed" if event.error else "succeeded"
                record.output = event.output
                record.error = event.error
                record.ended_at = event.at
            case StateWritten():
                self._write(event)
            case RunStarted():
                self._start_state(event.definition.get("state"))
                self.run_id = event.run_id
                self.workflow = event.workflow
                self.input = event.input
                self.started_at = event.at
                self.forked_from = event.forked_from
                self.fork_at = event.fork_at
                self.parent = event.parent
            case RunResumed():
                self.resumes += 1
                self.status = "running"
                self.ended_at = None
            case RunWaiting():
                self.status = "waiting"
                for key in event.waiting_for:
                    self.steps[key].status = "waiting"
            case RunFinished():
                self.status = event.status
                self.output = event.output
                self.error = event.error
                self.ended_at = event.at
            case _:
                pass

    def _start_state(self, declared: Any) -> None:
        """The state keys' initial values, from the definition stored with the run."""
        if not isinstance(declared, dict):
            return
        initial: dict[str, Any] = {}
        reducers: dict[str, ReduceFn] = {}
        for key, spec in declared.items():
            spec = spec if isinstance(spec, dict) else {"reducer": spec}
            reducer = spec.get("reducer", "replace")
            initial[key] = initial_value(reducer, spec.get("initial"))
            # A Python reducer's writes carry their result, which is set (see `_write`).
            reducers[key] = BUILTIN_REDUCERS.get(reducer, BUILTIN_REDUCERS["replace"])
        self._state = StateFold(initial, reducers)
        self.state = self._state.values

    def _write(self, event: StateWritten) -> None:
        """Fold a write in (a Python reducer's result is recorded with it)."""
        if self._state is None:
            return
        if event.set:
            self._state.set(event.key, event.written)
        elif event.reducer in BUILTIN_REDUCERS:
            self._state.write(event.key, event.order, event.written)
        else:
            self._state.set(event.key, event.value)

    def _add_usage(self, event: Event, usage: Usage) -> None:
        """Count reported usage on the unit, on its for_each step, and on the run."""
        self.usage = self.usage + usage
        step: str = getattr(event, "step", "")
        index: int | None = getattr(event, "index", None)
        record = self._record(step, index)
        record.usage = record.usage + usage
        if index is not None:
            parent = self._record(step, None)
            parent.usage = parent.usage + usage
        # A recorded call says which agent made it (a pattern's participant, say); other
        # usage is the step's agent's.
        agent = getattr(event, "agent", "") or record.agent or "?"
        self.agents[agent] = self.agents.get(agent, Usage()) + usage

    def _touch_parent(self, step: str, index: int | None, at: float) -> None:
        if index is None:
            return
        parent = self._record(step, None)
        parent.status = "running"
        if parent.started_at is None:
            parent.started_at = at

    def _count_item(self, record: StepRecord) -> None:
        if record.index is not None and record.status not in ("succeeded", "failed"):
            self.steps[record.step].settled_items += 1

    def _settle_parent(self, step: str, at: float) -> None:
        """Derive a for_each step's status and output from its items once all have ended."""
        parent = self.steps[step]
        count = parent.items or 0
        if parent.settled_items < count:
            return
        items = [self.steps.get(step_key(step, i)) for i in range(count)]
        failed = next((item for item in items if item and item.status == "failed"), None)
        parent.ended_at = at
        if failed is not None:
            parent.status = "failed"
            parent.error = failed.error
        else:
            parent.status = "succeeded"
            parent.output = [item.output for item in items if item is not None]

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": _error_json(self.error),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "usage": {"tokens": self.usage.tokens, "cost": self.usage.cost},
            "agents": {
                name: {"tokens": usage.tokens, "cost": usage.cost}
                for name, usage in sorted(self.agents.items())
            },
            "forked_from": self.forked_from,
            "fork_at": self.fork_at,
            "parent": self.parent,
            "steps": {key: record.as_json() for key, record in self.steps.items()},
            "state": self.state,
        }


def _error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"step": error.step, "type": error.type, "message": error.message}
