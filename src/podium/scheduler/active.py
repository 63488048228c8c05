"""The state of one run, and what may happen next: pure, synchronous, rebuilt from events.

`ActiveRun` is to the async runtime what `graphlib.TopologicalSorter` is to a worker pool.
It never runs anything and never does I/O. The runtime drives it with three kinds of calls:

- `decisions()` hands out steps whose needs have settled. The runtime judges each one
  (trigger rule, `if`, `for_each`) and records the verdict as an event: `StepSkipped`,
  `StepExpanded`, or, for a plain step, simply calls `activate(step)`.
- `ready(limit)` hands out runnable units of work, highest priority first. For each the
  runtime either records `StepStarted` or calls `defer(unit, token)` when no agent has room;
  `unblock(token)` puts deferred units back once room is made.
- `apply(event)` folds every recorded event into the state, in log order.

Replaying a log through `apply` gives the state the run had when the log ended; `recover()`
then puts units that were in flight at a crash back in the queue, with the same attempt.
A run halts at a failure that is not `continue_on_error`: nothing new starts except steps
whose trigger is `all_done`, and units already started finish (retries included). A
`RunResumed(redrive=True)` event forgets the failures so the run can go on.

A `repeat` step (or a group) is judged like any step; the runtime starts its iterations
with `IterationStarted`, which adds that iteration's steps (`draft#2`) to the run. When they
have all settled the loop step is handed out by `decisions()` again, and the runtime either
starts the next iteration or records `LoopEnded`, which settles the loop step.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from msgspec.structs import force_setattr

from podium.model import (
    ErrorInfo,
    Event,
    IterationStarted,
    LoopEnded,
    RunResumed,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepFellBack,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    step_key,
)
from podium.scheduler.plan import Plan, PlanStep, Priority, fifo

StepState = Literal["waiting", "deciding", "active", "succeeded", "failed", "skipped"]
UnitState = Literal["queued", "claimed", "blocked", "running", "backoff", "held", "done", "failed"]
SETTLED: frozenset[str] = frozenset({"succeeded", "failed", "skipped"})


class Unit(msgspec.Struct, frozen=True):
    """One call to make: a plain step (`index` None) or one for_each item.

    A Struct rather than a frozen dataclass, as one is made for every call: its `__init__`,
    in C, costs a tenth as much.
    """

    step: str
    index: int | None
    attempt: int
    key: str = ""  # asked for often, so made once, from `step` and `index`

    def __post_init__(self) -> None:
        force_setattr(self, "key", step_key(self.step, self.index))


@dataclass(slots=True)
class _Fanout:
    """Progress of a for_each step: items are queued lazily, at most `max_parallel` open."""

    count: int
    next_index: int = 0
    open: int = 0
    settled: int = 0
    failed: bool = False
    outputs: list[Any] = field(default_factory=lambda: [])


@dataclass(slots=True)
class _Loop:
    """Progress of a `repeat` step: the iteration under way, and its steps still unsettled."""

    iteration: int = 0
    unsettled: int = 0


class ActiveRun:
    """What a run has done and what may run next. See the module docstring for the protocol."""

    def __init__(self, plan: Plan, *, priority: Priority = fifo) -> None:
        self.plan = plan
        self._priority = priority
        # The plan's steps, and those of the loop iterations started since (`draft#2`).
        self._steps: dict[str, PlanStep] = dict(plan.steps)
        self._order: list[str] = list(plan.order)
        self._loops: dict[str, _Loop] = {}
        self._loop_of: dict[str, str] = {}  # iteration step -> its loop step
        self.state: dict[str, StepState] = dict.fromkeys(plan.order, "waiting")
        # The `steps` scope of expressions: what dependents and `output` may read.
        self.scope: dict[str, dict[str, Any]] = {
            step_id: {"output": None, "status": "pending"} for step_id in plan.order
        }
        self._unsettled = {s.id: len(s.needs) for s in plan.steps.values()}
        self._deciding: dict[str, None] = {}  # insertion-ordered set
        self._held_decisions: dict[str, None] = {}
        self._units: dict[str, UnitState] = {}
        self._attempt: dict[str, int] = {}
        self._queue: list[tuple[float, int, str, int | None]] = []
        self._timers: list[tuple[float, int, str, int | None]] = []
        self._blocked: dict[str, list[tuple[float, int, str, int | None]]] = {}
        self._held: list[tuple[float, int, str, int | None]] = []
        self._fanouts: dict[str, _Fanout] = {}
        self._skip_cause: dict[str, str] = {}
        self._errors: dict[str, ErrorInfo] = {}
        self._ticket = 0
        self._open = 0  # units not yet done or held
        self.in_flight = 0
        self.halted_by: str | None = None
        for step_id in plan.order:
            if not plan.steps[step_id].needs:
                self._deciding[step_id] = None
                self.state[step_id] = "deciding"

    # ---- questions -------------------------------------------------------------------

    @property
    def is_complete(self) -> bool:
        """Nothing is running, queued, waiting for a retry or waiting for a decision."""
        return self._open == 0 and not self._deciding

    def next_wake(self) -> float | None:
        """When the earliest retry is due (epoch seconds), if any unit is backing off."""
        while self._timers:
            due, _, step, index = self._timers[0]
            if self._units.get(step_key(step, index)) == "backoff":
                return due
            heapq.heappop(self._timers)
        return None

    def running_keys(self) -> list[str]:
        """Keys of the units handed to an agent and not yet ended."""
        return [key for key, state in self._units.items() if state == "running"]

    def unit_of(self, key: str) -> tuple[str, int | None]:
        """The step and item index of a unit key."""
        return _split_key(key, self._fanouts)

    def attempt_of(self, key: str) -> int:
        """The attempt the unit is on (or will make next)."""
        return self._attempt.get(key, 1)

    def iteration(self, step_id: str) -> int:
        """The iteration a `repeat` step is on: 0 before the first has started."""
        loop = self._loops.get(step_id)
        return 0 if loop is None else loop.iteration

    def loop_of(self, step_id: str) -> str | None:
        """The loop step whose iteration `step_id` (`draft#2`) belongs to, if any."""
        return self._loop_of.get(step_id)

    def failure_of(self, key: str) -> ErrorInfo | None:
        """The error a unit failed with for good, if it did."""
        return self._errors.get(key)

    def trigger_met(self, step_id: str) -> tuple[bool, str]:
        """Whether the step's trigger rule holds for its (settled) needs, and why not."""
        step = self._steps[step_id]
        state = self.state
        if step.trigger == "all_success":  # the common case, answered without a message
            for need in step.needs:
                if state[need] != "succeeded":
                    break
            else:
                return True, ""
        statuses = [state[need] for need in step.needs]
        match step.trigger:
            case "all_success":
                bad = [n for n, s in zip(step.needs, statuses, strict=True) if s != "succeeded"]
                return not bad, f"needs {', '.join(bad)} did not succeed"
            case "one_success":
                return "succeeded" in statuses, "no need succeeded"
            case "none_failed":
                bad = [n for n, s in zip(step.needs, statuses, strict=True) if s == "failed"]
                return not bad, f"needs {', '.join(bad)} failed"
            case "all_done":
                return True, ""

    # ---- the runtime's verbs -----------------------------------------------------------

    def decisions(self) -> list[str]:
        """Steps whose needs have settled and that await the runtime's verdict, in order."""
        return list(self._deciding)

    @property
    def deciding(self) -> bool:
        """Whether `decisions()` would hand out any step (asked without building the list)."""
        return bool(self._deciding)

    @property
    def blocked(self) -> bool:
        """Whether any unit is parked, waiting for an `unblock`."""
        return bool(self._blocked)

    def activate(self, step_id: str) -> None:
        """The runtime decided a plain step runs: queue its one unit."""
        self._enter_active(step_id)
        self._push(step_id, None)

    def ready(self, limit: int) -> Iterator[Unit]:
        """Up to `limit` runnable units, highest priority first.

        Each unit handed out must be started (`apply(StepStarted)`) or deferred before the
        next call; the iterator takes the next unit off the queue only when asked for it.
        """
        handed = 0
        while handed < limit:
            entry = self._pop_valid()
            if entry is None:
                return
            _, _, step, index = entry
            key = step_key(step, index)
            self._units[key] = "claimed"
            handed += 1
            yield Unit(step, index, self._attempt.get(key, 1))

    def defer(self, unit: Unit, token: str) -> None:
        """No agent can take `unit` now; park it until `unblock(token)`."""
        key = unit.key
        self._units[key] = "blocked"
        entry = (self._priority(unit.step), self._next_ticket(), unit.step, unit.index)
        self._blocked.setdefault(token, []).append(entry)

    def unblock(self, token: str) -> None:
        """Room was made for units parked on `token`: queue them again."""
        for entry in self._blocked.pop(token, ()):
            key = step_key(entry[2], entry[3])
            if self._units.get(key) == "blocked":
                self._units[key] = "queued"
                heapq.heappush(self._queue, entry)

    def wake(self, now: float) -> None:
        """Queue the units whose retry is due at `now`."""
        while self._timers and self._timers[0][0] <= now:
            _, _, step, index = heapq.heappop(self._timers)
            key = step_key(step, index)
            if self._units.get(key) == "backoff":
                self._units[key] = "queued"
                self._push_entry(step, index)

    def recover(self) -> list[Unit]:
        """After replaying a crashed run: queue again the units that were in flight."""
        lost = [key for key, state in self._units.items() if state in ("running", "claimed")]
        requeued: list[Unit] = []
        for key in lost:
            step, index = _split_key(key, self._fanouts)
            self.in_flight -= self._units[key] == "running"
            self._units[key] = "queued"
            self._push_entry(step, index)
            requeued.append(Unit(step, index, self._attempt.get(key, 1)))
        return requeued

    # ---- folding events ----------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one recorded event into the state."""
        # Dispatched on the exact type, not by `match`: each class pattern is an `isinstance`,
        # which msgspec's metaclass makes slow, and this runs for every event of a run.
        fold = _FOLDS.get(type(event))
        if fold is not None:
            fold(self, event)

    def _on_started(self, event: StepStarted) -> None:
        step, index = event.step, event.index
        key = step_key(step, index)
        if self.state[step] == "deciding":  # replaying: activation was implicit
            self._enter_active(step)
            if index is None:
                self._open += 1
        prior = self._units.get(key)
        if index is not None and prior is None:  # replaying a for_each item
            self._fanouts[step].next_index = max(self._fanouts[step].next_index, index + 1)
            self._fanouts[step].open += 1
            self._open += 1
        self._units[key] = "running"
        self._attempt[key] = event.attempt
        self.in_flight += 1

    def _on_succeeded(self, event: StepSucceeded) -> None:
        step, index = event.step, event.index
        self._unit_done(step, index, "done")
        if index is None:
            self._settle(step, "succeeded", event.output)
        else:
            fanout = self._fanouts[step]
            fanout.outputs[index] = event.output
            self._item_settled(step, fanout)

    def _on_attempt_failed(self, event: StepAttemptFailed) -> None:
        self._back_off(event.step, event.index, event.attempt, event.retry_at)

    def _on_fell_back(self, event: StepFellBack) -> None:
        self._back_off(event.step, event.index, event.attempt, event.at)

    def _back_off(self, step: str, index: int | None, attempt: int, due: float) -> None:
        """The unit goes again at `due`, as its next attempt."""
        key = step_key(step, index)
        if self._units.get(key) == "running":
            self.in_flight -= 1
        elif self._units.get(key) is None:  # replay of a unit queued implicitly
            self._replayed_unit(step, index)
        self._units[key] = "backoff"
        self._attempt[key] = attempt + 1
        heapq.heappush(self._timers, (due, self._next_ticket(), step, index))

    def _on_failed(self, event: StepFailed) -> None:
        step, index = event.step, event.index
        self._unit_done(step, index, "failed")
        self._errors[step_key(step, index)] = event.error
        if index is None:
            self._settle(step, "failed", None)
        else:
            fanout = self._fanouts[step]
            fanout.failed = True
            self._item_settled(step, fanout)
        if not self._steps[step].continue_on_error and self.halted_by is None:
            self._halt(step_key(step, index))

    def _on_skipped(self, event: StepSkipped) -> None:
        step = event.step
        self._skip_cause[step] = event.cause
        self._deciding.pop(step, None)
        self._held_decisions.pop(step, None)
        self._settle(step, "skipped", None)

    def _on_expanded(self, event: StepExpanded) -> None:
        step, count = event.step, event.count
        self._enter_active(step)
        fanout = self._fanouts[step] = _Fanout(count, outputs=[None] * count)
        if count == 0:
            self._settle(step, "succeeded", [])
        else:
            self._feed(step, fanout)

    def _on_iteration_started(self, event: IterationStarted) -> None:
        self._start_iteration(event.step, event.iteration)

    def _on_loop_ended(self, event: LoopEnded) -> None:
        step, output = event.step, event.output
        self._deciding.pop(step, None)
        self._held_decisions.pop(step, None)
        status: StepState = "failed" if event.error is not None else "succeeded"
        self._settle(step, status, output)
        last = output[-1] if isinstance(output, list) and output else None
        self.scope[step] = {
            "output": output,
            "status": status,
            "last": last,
            "iterations": event.iterations,
            "stopped": event.stopped,
        }
        if event.error is not None:
            self._errors[step] = event.error
            if not self._steps[step].continue_on_error and self.halted_by is None:
                self._halt(step)

    def _on_resumed(self, event: RunResumed) -> None:
        self.recover()
        if event.redrive:
            self._redrive()

    # ---- internals ---------------------------------------------------------------------

    def _next_ticket(self) -> int:
        self._ticket += 1
        return self._ticket

    def _enter_active(self, step_id: str) -> None:
        self._deciding.pop(step_id, None)
        self._held_decisions.pop(step_id, None)
        self.state[step_id] = "active"

    def _start_iteration(self, loop_id: str, number: int) -> None:
        """Add the steps of iteration `number` of `loop_id`; those needing nothing decide."""
        if self.state[loop_id] == "deciding":
            self._enter_active(loop_id)
        self._deciding.pop(loop_id, None)
        self._held_decisions.pop(loop_id, None)
        body = self.plan.bodies[loop_id]
        self._loops[loop_id] = _Loop(number, len(body))
        added: list[PlanStep] = []
        for template in body:
            step = template.iteration(number)
            self._steps[step.id] = step
            self._order.append(step.id)
            self._loop_of[step.id] = loop_id
            self.state[step.id] = "waiting"
            self.scope[step.id] = {"output": None, "status": "pending"}
            self._unsettled[step.id] = len(step.needs)
            added.append(step)
        for step in added:
            if not step.needs:
                self._enter_deciding(step)

    def _push(self, step: str, index: int | None) -> None:
        key = step_key(step, index)
        self._units[key] = "queued"
        self._open += 1
        self._push_entry(step, index)

    def _push_entry(self, step: str, index: int | None) -> None:
        entry = (self._priority(step), self._next_ticket(), step, index)
        if self.halted_by is not None and not self._may_start_when_halted(step, index):
            self._units[step_key(step, index)] = "held"
            self._open -= 1
            self._held.append(entry)
        else:
            heapq.heappush(self._queue, entry)

    def _pop_valid(self) -> tuple[float, int, str, int | None] | None:
        while self._queue:
            entry = heapq.heappop(self._queue)
            if self._units.get(step_key(entry[2], entry[3])) == "queued":
                return entry
        return None

    def _replayed_unit(self, step: str, index: int | None) -> None:
        """A unit that first appears in the log through a failed attempt (start was lost)."""
        if self.state[step] == "deciding":
            self._enter_active(step)
        if index is not None:
            fanout = self._fanouts[step]
            fanout.next_index = max(fanout.next_index, index + 1)
            fanout.open += 1
        self._open += 1

    def _unit_done(self, step: str, index: int | None, outcome: UnitState) -> None:
        key = step_key(step, index)
        state = self._units.get(key)
        if state == "running":
            self.in_flight -= 1
        elif state is None:  # replay: the unit's start was never recorded
            self._replayed_unit(step, index)
        self._units[key] = outcome
        self._open -= 1

    def _item_settled(self, step: str, fanout: _Fanout) -> None:
        fanout.open -= 1
        fanout.settled += 1
        if fanout.open == 0 and (fanout.failed or fanout.settled == fanout.count):
            if fanout.failed:
                self._settle(step, "failed", None)
            else:
                self._settle(step, "succeeded", fanout.outputs)
        else:
            self._feed(step, fanout)

    def _feed(self, step_id: str, fanout: _Fanout) -> None:
        """Queue further items of a for_each step, keeping at most `max_parallel` open."""
        limit = self._steps[step_id].max_parallel or fanout.count
        while not fanout.failed and fanout.next_index < fanout.count and fanout.open < limit:
            index = fanout.next_index
            fanout.next_index += 1
            if step_key(step_id, index) in self._units:  # already known from the log
                continue
            fanout.open += 1
            self._push(step_id, index)

    def _settle(self, step_id: str, state: StepState, output: Any) -> None:
        self.state[step_id] = state
        self.scope[step_id] = {"output": output, "status": state}
        steps = self._steps
        for dependent in steps[step_id].dependents:
            self._unsettled[dependent] -= 1
            if self._unsettled[dependent] == 0 and self.state[dependent] == "waiting":
                self._enter_deciding(steps[dependent])
        loop_id = self._loop_of.get(step_id)
        if loop_id is not None:
            loop = self._loops[loop_id]
            loop.unsettled -= 1
            if loop.unsettled == 0:  # the iteration is over: the loop step decides again
                self._enter_deciding(steps[loop_id])

    def _enter_deciding(self, step: PlanStep) -> None:
        self.state[step.id] = "deciding"
        if self.halted_by is not None and step.trigger != "all_done":
            self._held_decisions[step.id] = None
        else:
            self._deciding[step.id] = None

    def _may_start_when_halted(self, step: str, index: int | None) -> bool:
        if self._steps[step].trigger == "all_done":
            return True
        return step_key(step, index) in self._attempt  # started before the halt: let it finish

    def _halt(self, key: str) -> None:
        self.halted_by = key
        for step_id in list(self._deciding):
            if self._steps[step_id].trigger != "all_done":
                del self._deciding[step_id]
                self._held_decisions[step_id] = None
        entries = [*self._queue, *(e for parked in self._blocked.values() for e in parked)]
        self._queue = []
        self._blocked = {}
        for _, _, step, index in entries:
            if self._units.get(step_key(step, index)) in ("queued", "blocked"):
                self._units[step_key(step, index)] = "queued"
                self._push_entry(step, index)

    def _redrive(self) -> None:
        """Forget failures: failed units and steps skipped by their trigger go again."""
        self.halted_by = None
        for key in [k for k, state in self._units.items() if state == "failed"]:
            del self._units[key]
            self._attempt.pop(key, None)
        reset = [
            s
            for s in self._order
            if self.state[s] == "failed" or self._skip_cause.get(s) == "trigger"
        ]
        for step_id in reset:
            self.state[step_id] = "waiting"
            self.scope[step_id] = {"output": None, "status": "pending"}
            self._skip_cause.pop(step_id, None)
            loop_id = self._loop_of.get(step_id)
            if loop_id is not None:  # its iteration is not over after all
                self._loops[loop_id].unsettled += 1
                self._held_decisions.pop(loop_id, None)
                self._deciding.pop(loop_id, None)
        self._deciding.update(self._held_decisions)
        self._held_decisions.clear()
        for step_id in self._order:
            if self.state[step_id] in ("waiting", "deciding"):
                needs = self._steps[step_id].needs
                self._unsettled[step_id] = sum(self.state[n] not in SETTLED for n in needs)
                if self._unsettled[step_id]:  # a need of it goes again: back to waiting
                    self.state[step_id] = "waiting"
                    self._deciding.pop(step_id, None)
        for step_id in reset:
            if self._unsettled[step_id] > 0:
                continue
            fanout = self._fanouts.get(step_id)
            if fanout is None:
                self._enter_deciding(self._steps[step_id])
            else:  # keep the expansion and the succeeded items; queue the rest
                self.state[step_id] = "active"
                keys = [step_key(step_id, i) for i in range(fanout.count)]
                fanout.failed = False
                fanout.settled = sum(self._units.get(k) == "done" for k in keys)
                fanout.open = sum(self._units.get(k) not in (None, "done") for k in keys)
                fanout.next_index = 0
                self._feed(step_id, fanout)
        held, self._held = self._held, []
        for _, _, step, index in held:
            self._units[step_key(step, index)] = "queued"
            self._open += 1
            self._push_entry(step, index)


# How each kind of event folds into the state; the others (run and call records, state
# writes, approvals) change nothing the scheduler keeps.
_FOLDS: dict[type[Event], Callable[[ActiveRun, Any], None]] = {
    StepStarted: ActiveRun._on_started,
    StepSucceeded: ActiveRun._on_succeeded,
    StepAttemptFailed: ActiveRun._on_attempt_failed,
    StepFellBack: ActiveRun._on_fell_back,
    StepFailed: ActiveRun._on_failed,
    StepSkipped: ActiveRun._on_skipped,
    StepExpanded: ActiveRun._on_expanded,
    IterationStarted: ActiveRun._on_iteration_started,
    LoopEnded: ActiveRun._on_loop_ended,
    RunResumed: ActiveRun._on_resumed,
}


def _split_key(key: str, fanouts: dict[str, _Fanout]) -> tuple[str, int | None]:
    if key.endswith("]"):
        step, _, rest = key.rpartition("[")
        if step in fanouts:
            return step, int(rest[:-1])
    return key, None
