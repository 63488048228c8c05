"""Driving one run: the async loop around the pure scheduler.

Each turn of the loop judges the steps whose needs have settled, starts what capacity
allows, then waits for calls to end. Calls that end together are committed to the store in
one transaction (group commit), and only then folded into the scheduler, so no dependent
ever starts before the result it depends on is durable. Events recorded between commits
(starts, skips, expansions) ride along in the same transaction, in seq order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from podium.agents import Agent, StepContext
from podium.errors import AgentError, ExpressionError, PodiumError, StepTimeout
from podium.model import (
    ErrorInfo,
    Event,
    RunFinished,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from podium.runtime.clock import Cancellable, Clock
from podium.runtime.prepare import Prepared, PreparedStep
from podium.scheduler import ActiveRun, Unit
from podium.spec import truthy
from podium.store import Store

EventSink = Callable[[Sequence[Event]], None]
CANCEL_POLL_SECONDS = 0.5

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


@dataclass(slots=True)
class _Ended:
    """A call that returned or raised, waiting to be committed."""

    unit: Unit
    agent: Agent
    seconds: float
    output: Any = None
    error: BaseException | None = None


class Execution:
    """Runs one run to its end (or until it is cancelled), recording every fact."""

    def __init__(
        self,
        prepared: Prepared,
        store: Store,
        *,
        run_id: str,
        run_input: Any,
        history: Sequence[Event],
        clock: Clock,
        max_parallel: int | None,
        on_events: EventSink | None = None,
    ) -> None:
        self.prepared = prepared
        self.store = store
        self.run_id = run_id
        self.clock = clock
        self.max_parallel = max_parallel
        self.active = ActiveRun(prepared.plan)
        for event in history:
            self.active.apply(event)
        self._seq = history[-1].seq + 1 if history else 0
        self._scope: dict[str, Any] = {"input": run_input, "steps": self.active.scope}
        self._items: dict[str, list[Any]] = {}
        self._pending: list[Event] = []
        self._ended: deque[_Ended] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Future[None] | None = None
        self._timer: Cancellable | None = None
        self._on_events = on_events
        self._cancelled = False
        self._settled_since_commit = False
        self.recorded: list[Event] = []

    # ---- the loop ----------------------------------------------------------------------

    async def run(self) -> RunFinished:
        """Drive the run to a final event, committed; returns that event."""
        poller = asyncio.create_task(self._watch_for_cancel())
        try:
            while True:
                self._judge_ready_steps()
                if self._settled_since_commit:  # dependents may start only once it is durable
                    await self._commit([])
                self._start_units()
                if self.active.decisions():  # a unit failed before starting: judge again
                    continue
                if self._cancelled or (self.active.is_complete and not self._tasks):
                    break
                await self._wait()
                await self._commit_ended()
            return await self._finish()
        finally:
            poller.cancel()
            if self._timer is not None:
                self._timer.cancel()
            for task in self._tasks:
                task.cancel()

    def request_cancel(self) -> None:
        """Stop starting work, cancel calls in flight and finish the run as cancelled."""
        self._cancelled = True
        self._poke()

    async def _watch_for_cancel(self) -> None:
        while not self._cancelled:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            if await self.store.cancel_requested(self.run_id):
                self.request_cancel()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _wait(self) -> None:
        """Until a call ends, a retry is due, or the run is cancelled."""
        if self._ended or self._cancelled:
            return
        due = self.active.next_wake()
        if due is not None and due <= self.clock.now():
            self.active.wake(self.clock.now())
            return
        self._wake = asyncio.get_running_loop().create_future()
        if due is not None:
            self._timer = self.clock.call_at(due, self._poke)
        await self._wake
        self._wake = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self.active.wake(self.clock.now())

    def _record(self, event: Event) -> None:
        """Add an event to the log-to-be and fold it in; the next commit makes it durable."""
        self._pending.append(event)
        self.active.apply(event)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    # ---- judging steps whose needs have settled ---------------------------------------

    def _judge_ready_steps(self) -> None:
        active = self.active
        while decisions := active.decisions():
            for step_id in decisions:
                self._judge(self.prepared.steps[step_id])

    def _judge(self, prepared: PreparedStep) -> None:
        step = prepared.step
        met, why = self.active.trigger_met(step.id)
        if not met:
            self._skip(step.id, "trigger", f"trigger {step.trigger}: {why}")
            return
        try:
            if prepared.condition is not None:
                value = prepared.condition.render(self._scope)
                if not truthy(value):
                    self._skip(step.id, "condition", f"if {step.condition} was {value!r}")
                    return
            if prepared.items is None:
                self.active.activate(step.id)
                return
            items = self._evaluate_items(prepared)
        except ExpressionError as exc:
            self._fail_unit(Unit(step.id, None, 0), exc)
            return
        self._record(
            StepExpanded(seq=self._next_seq(), at=self.clock.now(), step=step.id, count=len(items))
        )

    def _evaluate_items(self, prepared: PreparedStep) -> list[Any]:
        """The items of a for_each step; the same on every resume, as its inputs are logged."""
        cached = self._items.get(prepared.step.id)
        if cached is not None:
            return cached
        assert prepared.items is not None
        value = prepared.items.render(self._scope)
        if not isinstance(value, list):
            raise ExpressionError(
                f"for_each {prepared.step.for_each} gave {type(value).__name__}, expected a list"
            )
        items: list[Any] = value
        self._items[prepared.step.id] = items
        return items

    def _skip(self, step_id: str, cause: Any, reason: str) -> None:
        self._settled_since_commit = True
        self._record(
            StepSkipped(
                seq=self._next_seq(), at=self.clock.now(), step=step_id, cause=cause, reason=reason
            )
        )

    # ---- starting units ----------------------------------------------------------------

    def _start_units(self) -> None:
        active = self.active
        free = 1 << 30 if self.max_parallel is None else self.max_parallel - active.in_flight
        if free <= 0:
            return
        registry = self.prepared.registry
        for unit in active.ready(free):
            prepared = self.prepared.steps[unit.step]
            agent = prepared.agent
            if agent is not None:
                reason = "named by the step"
                if not registry.has_room(agent):
                    active.defer(unit, agent.name)
                    continue
            else:
                assert prepared.capability is not None
                picked = registry.pick(prepared.capability)
                if picked is None:
                    active.defer(unit, f"capability:{prepared.capability}")
                    continue
                agent, reason = picked
            try:
                payload = self._payload(prepared, unit)
            except ExpressionError as exc:
                self._fail_unit(unit, exc)
                continue
            self._record(
                StepStarted(
                    seq=self._next_seq(),
                    at=self.clock.now(),
                    step=unit.step,
                    index=unit.index,
                    attempt=unit.attempt,
                    agent=agent.name,
                    reason=reason,
                )
            )
            registry.started(agent)
            task = asyncio.create_task(self._call(unit, agent, payload, prepared.step.timeout))
            self._tasks.add(task)

    def _payload(self, prepared: PreparedStep, unit: Unit) -> Any:
        template = prepared.payload
        if template.is_constant:
            return template.render(self._scope)
        if unit.index is None:
            return template.render(self._scope)
        items = self._evaluate_items(prepared)
        scope = {**self._scope, "item": items[unit.index], "index": unit.index}
        return template.render(scope)

    async def _call(self, unit: Unit, agent: Agent, payload: Any, seconds: float | None) -> None:
        ctx = StepContext(
            run_id=self.run_id,
            step=unit.step,
            key=unit.key,
            index=unit.index,
            attempt=unit.attempt,
            agent=agent.name,
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        ended = _Ended(unit, agent, 0.0)
        try:
            if seconds is None:
                ended.output = await agent.call(payload, ctx)
            else:
                async with asyncio.timeout(seconds):
                    ended.output = await agent.call(payload, ctx)
        except TimeoutError as exc:
            ended.error = StepTimeout(f"timed out after {seconds:g}s") if seconds else exc
        except Exception as exc:  # the agent's own failure; cancellation passes through
            ended.error = exc
        ended.seconds = loop.time() - began
        self._ended.append(ended)
        self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        self._poke()

    # ---- committing what ended ---------------------------------------------------------

    async def _commit_ended(self) -> None:
        registry = self.prepared.registry
        completions: list[Event] = []
        while self._ended:
            ended = self._ended.popleft()
            registry.finished(ended.agent, ok=ended.error is None, seconds=ended.seconds)
            completions.append(self._completion(ended))
            self._unblock(ended.agent)
        await self._commit(completions)

    async def _commit(self, completions: list[Event]) -> None:
        """Commit what was recorded since the last commit plus `completions`, in one go."""
        if not completions and not self._pending:
            return
        batch = self._pending + completions
        self._pending = []
        self._settled_since_commit = False
        await self.store.append(self.run_id, batch)
        for event in completions:
            self.active.apply(event)
        self._published(batch)

    def _completion(self, ended: _Ended) -> Event:
        unit = ended.unit
        now = self.clock.now()
        if ended.error is None:
            try:  # also gives every backend the same plain JSON types (tuples become lists)
                output = _decode(_encode(ended.output))
            except (TypeError, ValueError, OverflowError) as exc:
                ended.error = AgentError(
                    f"returned a value that is not JSON-serialisable "
                    f"({type(ended.output).__name__}): {exc}"
                )
                ended.error.retryable = False
            else:
                return StepSucceeded(
                    seq=self._next_seq(),
                    at=now,
                    step=unit.step,
                    index=unit.index,
                    attempt=unit.attempt,
                    output=output,
                )
        error = self._error_info(unit, ended.agent, ended.error)
        retry = self.prepared.steps[unit.step].step.retry
        if unit.attempt < retry.attempts and getattr(ended.error, "retryable", True):
            return StepAttemptFailed(
                seq=self._next_seq(),
                at=now,
                step=unit.step,
                index=unit.index,
                attempt=unit.attempt,
                error=error,
                retry_at=now + retry.delay_after(unit.attempt),
            )
        return StepFailed(
            seq=self._next_seq(),
            at=now,
            step=unit.step,
            index=unit.index,
            attempt=unit.attempt,
            error=error,
        )

    def _error_info(self, unit: Unit, agent: Agent | None, error: BaseException) -> ErrorInfo:
        detail = str(error) or repr(error)
        by = f" (agent {agent.name})" if agent is not None else ""
        return ErrorInfo(type=type(error).__name__, message=f"{detail}{by}", step=unit.key)

    def _fail_unit(self, unit: Unit, error: PodiumError) -> None:
        """A unit that cannot even start (its expressions fail): failed for good, at once."""
        self._settled_since_commit = True
        self._record(
            StepFailed(
                seq=self._next_seq(),
                at=self.clock.now(),
                step=unit.step,
                index=unit.index,
                attempt=unit.attempt,
                error=self._error_info(unit, None, error),
            )
        )

    def _unblock(self, agent: Agent) -> None:
        self.active.unblock(agent.name)
        for capability in agent.capabilities:
            self.active.unblock(f"capability:{capability}")

    def _published(self, batch: Sequence[Event]) -> None:
        self.recorded.extend(batch)
        if self._on_events is not None:
            self._on_events(batch)

    # ---- the end -----------------------------------------------------------------------

    async def _finish(self) -> RunFinished:
        if self._cancelled:
            await self._cancel_in_flight()
        finished = self._final_event()
        self._pending.append(finished)
        batch, self._pending = self._pending, []
        await self.store.append(self.run_id, batch)
        self._published(batch)
        return finished

    async def _cancel_in_flight(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self._commit_ended()  # calls that ended before the cancel keep their results
        for key in self.active.running_keys():
            step, index = self.active.unit_of(key)
            self._record(
                StepFailed(
                    seq=self._next_seq(),
                    at=self.clock.now(),
                    step=step,
                    index=index,
                    attempt=self.active.attempt_of(key),
                    error=ErrorInfo(type="Cancelled", message="the run was cancelled", step=key),
                )
            )

    def _final_event(self) -> RunFinished:
        now = self.clock.now()
        if self._cancelled:
            return RunFinished(
                seq=self._next_seq(),
                at=now,
                status="cancelled",
                error=ErrorInfo(type="Cancelled", message="the run was cancelled"),
            )
        halted_by = self.active.halted_by
        if halted_by is not None:
            return RunFinished(
                seq=self._next_seq(),
                at=now,
                status="failed",
                error=self.active.failure_of(halted_by),
            )
        try:
            output = self.prepared.output.render(self._scope)
        except ExpressionError as exc:
            return RunFinished(
                seq=self._next_seq(),
                at=now,
                status="failed",
                error=ErrorInfo(type="ExpressionError", message=str(exc), step="output"),
            )
        return RunFinished(seq=self._next_seq(), at=now, status="succeeded", output=output)
