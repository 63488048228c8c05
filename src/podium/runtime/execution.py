"""Driving one run: the async loop around the pure scheduler.

Each turn of the loop judges the steps whose needs have settled, starts what capacity
allows, then waits for calls to end. Calls that end together are committed to the store in
one transaction (group commit), and only then folded into the scheduler, so no dependent
ever starts before the result it depends on is durable. Events recorded between commits
(starts, skips, expansions) ride along in the same transaction, in seq order; a verdict
that settles a step (a skip, a failure before starting) and a request for approval are
committed at once, for the same reason.

What a failure leads to is decided in `policies` (retry, fallback, guards); approvals are
tracked in `approvals` and undoing a failed run in `compensation`. Built-in steps run here
without an agent: `sleep` and `wait_until` as durable timers, `approval` as a unit that
waits for a decision. When nothing but people can move the run on, it is left `waiting`
and the process lets go of it.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from asyncio import Task
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from podium.agents import Agent, StepContext
from podium.agents.context import NO_USAGE
from podium.errors import (
    AgentError,
    ChildWaiting,
    CircuitOpen,
    DeadlineExceeded,
    ExpressionError,
    OutputTooLarge,
    PodiumError,
    RunBusy,
    RunNotFound,
    StepTimeout,
)
from podium.model import (
    Adapted,
    ApprovalDecided,
    ApprovalRequested,
    CallRecorded,
    Candidate,
    CircuitChanged,
    ErrorInfo,
    Event,
    IterationStarted,
    LoopEnded,
    RunFinished,
    RunHistory,
    RunWaiting,
    StateWritten,
    StepExpanded,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    TimerStarted,
    Usage,
    Workflow,
)
from podium.model.workflow import ROUTING_PRESETS
from podium.runtime.adaptation import Change, Controller, DeadlinePolicy
from podium.runtime.approvals import Approvals, Decision
from podium.runtime.circuits import CircuitChange
from podium.runtime.clock import Cancellable, Clock
from podium.runtime.compensation import Compensation
from podium.runtime.loops import Loops
from podium.runtime.policies import Policies
from podium.runtime.prepare import Prepared, PreparedCall, PreparedStep
from podium.runtime.state import SharedState
from podium.scheduler import ActiveRun, Ranks, Unit
from podium.scheduler.active import SETTLED
from podium.spec import truthy
from podium.store import Store

EventSink = Callable[[Sequence[Event]], None]
POLL_SECONDS = 0.5  # how often the store is asked for a cancel request or a decision

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class _Ended(msgspec.Struct):
    """A call that returned or raised, waiting to be committed (a Struct: cheap to make)."""

    unit: Unit
    agent: Agent | None  # None for a built-in step (a timer)
    seconds: float
    output: Any = None
    error: BaseException | None = None
    usage: Usage | None = None  # what the agent reported through its context
    cost: float = 0.0  # what the call cost, reported or in its recorded calls (routing)
    tokens: int = 0  # the model tokens it used, likewise (rate limits)


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
        # Critical path first when more units are ready than slots are free.
        self._ranks = Ranks.of(prepared.plan, prepared.expected_seconds())
        self.active = ActiveRun(prepared.plan, priority=self._ranks.priority(max_parallel))
        for event in history:
            self.active.apply(event)
        self._history = list(history)
        self._approvals = Approvals(history)
        self._wake_at = {e.key: e.wake_at for e in history if isinstance(e, TimerStarted)}
        self._seq = history[-1].seq + 1 if history else 0
        self._state = SharedState(prepared, self.active, history)
        self._scope: dict[str, Any] = {
            "input": run_input,
            "steps": self.active.scope,
            "state": self._state.values,
        }
        self._steps: dict[str, PreparedStep] = dict(prepared.steps)  # and iterations' steps
        self._loops = Loops(self.active, self._scope)
        self._items: dict[str, list[Any]] = {}
        self._pending: list[Event] = []
        self._ended: deque[_Ended] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Future[None] | None = None
        self._timer: Cancellable | None = None
        self._on_events = on_events
        self._cancelled = False
        self._lost_to: str | None = None
        self._children_waiting: dict[str, str] = {}  # unit key -> the child run that waits
        self._stopped: ErrorInfo | None = None
        self._commit_soon = False
        self._policy = Policies(prepared, run_id=run_id, history=history)
        self._control = Controller(prepared.workflow)
        self._deadline_checked = -math.inf  # when the deadline policy may look again
        self._calls = {(e.key, e.name): e for e in history if isinstance(e, CallRecorded)}
        self._durable: list[asyncio.Future[None]] = []  # calls waiting for their record
        self.recorded: list[Event] = []

    # ---- the loop ----------------------------------------------------------------------

    async def run(self) -> RunFinished | RunWaiting:
        """Drive the run to a final event (or to waiting for people), committed; return it."""
        self._loop = asyncio.get_running_loop()
        self._approvals.take_signals(await self.store.read_signals(self.run_id))
        poller = asyncio.create_task(self._watch_the_store())
        try:
            while True:
                self._judge_ready_steps()
                if self._commit_soon:  # dependents may start only once it is durable
                    await self._commit([])
                self._start_units()
                if self._commit_soon:  # a request for approval must be visible to people
                    await self._commit([])
                if self.active.deciding:  # a unit failed before starting: judge again
                    continue
                if (
                    self._cancelled
                    or self._stopped
                    or (self.active.is_complete and not self._tasks)
                ):
                    break
                if self._only_people_can_go_on():
                    return await self._finish(waiting=True)
                await self._wait()
                await self._commit_ended()  # raises RunBusy if the lease was lost
            return await self._finish()
        finally:
            poller.cancel()
            if self._timer is not None:
                self._timer.cancel()
            for task in self._tasks:
                task.cancel()

    async def run_child(self, workflow: Workflow, input: Any, *, run_id: str) -> RunHistory:
        """Run a child workflow in this run's store and clock; a failed child is redriven.

        Called again for the same child (a retry, a resume of this run), it resumes the
        child or reads back its result: completed child steps never run twice.
        """
        from podium.runtime.api import resume_run, run_workflow

        try:
            before = await self.store.get_run(run_id)
        except RunNotFound:
            before = None
        if before is not None and before.status == "failed":
            redriven = await resume_run(
                run_id, store=self.store, workflow=workflow, clock=self.clock
            )
            return redriven.history
        result = await run_workflow(
            workflow, input, store=self.store, run_id=run_id, clock=self.clock, parent=self.run_id
        )
        return result.history

    def recall(self, key: str, name: str) -> tuple[bool, Any, Usage | None]:
        """Whether unit `key` recorded call `name` (in an earlier attempt or process)."""
        recorded = self._calls.get((key, name))
        if recorded is None:
            return False, None, None
        return True, recorded.output, recorded.usage

    async def record_call(
        self,
        key: str,
        name: str,
        *,
        kind: str,
        agent: str,
        input: Any,
        output: Any,
        usage: Usage | None,
        seconds: float,
    ) -> None:
        """Record a call made inside unit `key`; return once the record is committed."""
        step, index = self.active.unit_of(key)
        output = _decode(_encode(output))  # what a replay will see, exactly
        recorded = CallRecorded(
            seq=self._next_seq(),
            at=self.clock.now(),
            step=step,
            index=index,
            name=name,
            kind=kind,
            agent=agent,
            input=_decode(_encode(input)),
            output=output,
            seconds=seconds,
            usage=usage,
        )
        self._pending.append(recorded)
        self._calls[key, name] = recorded
        self._policy.add_usage(usage)
        durable = self._loop.create_future()
        self._durable.append(durable)
        self._poke()
        await durable

    def lose_lease(self, holder: str) -> None:
        """Another process took the run over: stop at once, writing nothing more."""
        self._lost_to = holder
        self._poke()

    def request_cancel(self) -> None:
        """Stop starting work, cancel calls in flight and finish the run as cancelled."""
        self._cancelled = True
        self._poke()

    async def _watch_the_store(self) -> None:
        """Notice, within a poll, a cancel request or a decision sent by another process."""
        while not self._cancelled:
            await asyncio.sleep(POLL_SECONDS)
            if await self.store.cancel_requested(self.run_id):
                self.request_cancel()
            if self._approvals.awaiting:
                self._approvals.take_signals(await self.store.read_signals(self.run_id))
                self._poke()

    def _only_people_can_go_on(self) -> bool:
        """Every unit in flight awaits a decision (here or in a child), nothing else is due."""
        waiting = len(self._approvals.awaiting) + len(self._children_waiting)
        return (
            waiting > 0
            and not self._tasks
            and not self._ended
            and self.active.in_flight == waiting
            and self.active.next_wake() is None
            and not self._approvals.decisions_pending(self.clock.now())
        )

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _wait(self) -> None:
        """Until a call ends, a retry or a timeout is due, a decision comes, or a cancel."""
        if (
            self._ended
            or self._durable
            or self._cancelled
            or self._approvals.decisions_pending(self.clock.now())
        ):
            return
        due = _earliest(
            self.active.next_wake(),
            self._approvals.next_deadline(),
            self._policy.run_deadline,
            self._control.next_due(self.clock.now()),
        )
        if due is not None and due <= self.clock.now():
            self._timers_due()
            return
        self._wake = self._loop.create_future()
        if due is not None:
            self._timer = self.clock.call_at(due, self._poke)
        await self._wake
        self._wake = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self._timers_due()

    def _timers_due(self) -> None:
        now = self.clock.now()
        self.active.wake(now)
        for token in self._control.refilled(now):  # rate-limit buckets that can give again
            self.active.unblock(token)
        reason = self._policy.guard_breached(now, starting=False)
        if reason is not None:
            self._stop(reason)

    # ---- what the compensation of a failed run uses ---------------------------------

    @property
    def scope(self) -> dict[str, Any]:
        return self._scope

    def prepared_step(self, step_id: str) -> PreparedStep:
        """The compiled step `step_id`: a workflow step, or a step of a loop's iteration."""
        prepared = self._steps.get(step_id)
        if prepared is None:  # `draft#2`: the body step `draft`, met in a new iteration
            prepared = self._steps[step_id] = self.prepared.body_steps[step_id.rpartition("#")[0]]
        return prepared

    def scope_for(self, step_id: str) -> dict[str, Any]:
        """What expressions of step `step_id` read; an iteration's steps see their siblings."""
        loop_id = self.active.loop_of(step_id)
        if loop_id is None:
            return self._scope
        loop = self._steps[loop_id].loop
        assert loop is not None
        return self._loops.scope_for(step_id, loop.body, loop_id)

    def log(self) -> list[Event]:
        """Every event of the run so far: replayed, committed here, and pending."""
        return [*self._history, *self.recorded, *self._pending]

    def record(self, event: Event) -> None:
        self._record(event)

    def next_seq(self) -> int:
        return self._next_seq()

    async def commit(self) -> None:
        await self._commit([])

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
        while active.deciding:
            for step_id in active.decisions():
                self._judge(step_id)

    def _judge(self, step_id: str) -> None:
        prepared = self.prepared_step(step_id)
        step = prepared.step
        if prepared.loop is not None and self.active.iteration(step_id):
            self._after_iteration(prepared)
            return
        met, why = self.active.trigger_met(step_id)
        if not met:
            self._skip(step_id, "trigger", f"trigger {step.trigger}: {why}")
            return
        try:
            if prepared.condition is not None:
                value = prepared.condition.render(self.scope_for(step_id))
                if not truthy(value):
                    self._skip(step_id, "condition", f"if {step.condition} was {value!r}")
                    return
            if prepared.loop is not None:
                now = self.clock.now()
                started = IterationStarted(seq=self._next_seq(), at=now, step=step_id, iteration=1)
                self._record(started)
                return
            if prepared.items is None:
                self.active.activate(step_id)
                return
            items = self._evaluate_items(step_id, prepared)
        except ExpressionError as exc:
            self._fail_unit(Unit(step_id, None, 0), exc)
            return
        self._record(
            StepExpanded(seq=self._next_seq(), at=self.clock.now(), step=step_id, count=len(items))
        )

    def _after_iteration(self, prepared: PreparedStep) -> None:
        """An iteration of a loop ended: start the next, or end the loop (durably at once)."""
        step_id = prepared.step.id
        now = self.clock.now()
        try:
            verdict = self._loops.after_iteration(prepared, seq=self._next_seq(), now=now)
        except ExpressionError as exc:
            self._fail_unit(Unit(step_id, None, 0), exc)
            return
        writes: list[StateWritten] = []
        if isinstance(verdict, LoopEnded) and verdict.error is None and prepared.writes:
            try:  # a group's own writes, with the list of its iterations' outputs as output
                scope = {**self._scope, "output": verdict.output}
                unit = Unit(step_id, None, 1)
                writes = self._state.writes(prepared, unit, scope, next_seq=self._next_seq, now=now)
            except PodiumError as exc:
                verdict = msgspec.structs.replace(
                    verdict, error=self._error_info(Unit(step_id, None, 0), None, exc)
                )
        self._commit_soon = True
        self._record(verdict)
        for write in writes:
            self._record(write)

    def _evaluate_items(self, step_id: str, prepared: PreparedStep) -> list[Any]:
        """The items of a for_each step; the same on every resume, as its inputs are logged."""
        cached = self._items.get(step_id)
        if cached is not None:
            return cached
        assert prepared.items is not None
        value = prepared.items.render(self.scope_for(step_id))
        if not isinstance(value, list):
            raise ExpressionError(
                f"for_each {prepared.step.for_each} gave {type(value).__name__}, expected a list"
            )
        items: list[Any] = value
        self._items[step_id] = items
        return items

    def _skip(self, step_id: str, cause: Any, reason: str) -> None:
        self._commit_soon = True
        self._record(
            StepSkipped(
                seq=self._next_seq(), at=self.clock.now(), step=step_id, cause=cause, reason=reason
            )
        )

    # ---- starting units ----------------------------------------------------------------

    def _start_units(self) -> None:
        policy, deadline = self._control.deadline, self._policy.run_deadline
        if policy is not None and deadline is not None and not policy.fired:
            self._keep_to_deadline(policy, deadline)
        active = self.active
        free = 1 << 30 if self.max_parallel is None else self.max_parallel - active.in_flight
        if free <= 0:
            return
        registry = self.prepared.registry
        for unit in active.ready(free):
            prepared = self.prepared_step(unit.step)
            if self._policy.guarded and self._guard_stops_before(unit):
                return
            if prepared.call is None:
                self._start_builtin(prepared, unit)
                continue
            call = self._policy.current_call(prepared, unit.key)
            now = self.clock.now()
            candidates: tuple[Candidate, ...] = ()
            if call.agent is not None:
                agent, reason = call.agent, "named by the step"
                if not registry.has_room(agent):
                    active.defer(unit, agent.name)
                    continue
                if not self._control.closed(agent.name, now):
                    self._refuse(unit, agent, CircuitOpen(f"agent {agent.name}'s circuit is open"))
                    continue
            else:
                assert call.capability is not None
                picked = registry.pick(call.capability, now, closed=self._control.closed)
                if picked is None:
                    if any(registry.has_room(a) for a in registry.capable(call.capability)):
                        error = CircuitOpen(f"every agent with {call.capability} is out of routing")
                        self._refuse(unit, None, error)
                    else:
                        active.defer(unit, f"capability:{call.capability}")
                    continue
                agent, reason, candidates = picked.agent, picked.reason, picked.candidates
                for change in self._control.after_route(call.capability, candidates):
                    self._record(self._adapted(change))
            try:
                seconds = self._policy.time_left(prepared.step, unit.key, now)
                payload = self._payload(prepared, call, unit)
            except (ExpressionError, DeadlineExceeded) as exc:
                self._fail_unit(unit, exc)
                continue
            token = self._control.admit(unit.key, agent.name, prepared.step.uses_resources, now)
            if token is not None:  # a resource, a rate limit or a throttle: it waits
                active.defer(unit, token)
                continue
            self._started(unit, agent.name, reason, now, candidates)
            registry.started(agent)
            self._note_circuit(self._control.started(agent.name))
            task = _start_task(self._loop, self._call(unit, agent, payload, seconds))
            if not task.done():
                self._tasks.add(task)

    def _keep_to_deadline(self, policy: DeadlinePolicy, deadline: float) -> None:
        """Ask the deadline policy whether the work left still fits (a few times a second)."""
        now = self.clock.now()
        if now < self._deadline_checked:
            return
        self._deadline_checked = now + 0.25
        ranks = self._ranks
        left = [s for s, state in self.active.state.items() if state not in SETTLED]
        path = max((ranks.rank.get(s, 0.0) for s in left), default=0.0)
        work = sum(ranks.duration.get(s, 0.0) for s in left)
        slots = self.max_parallel
        registry = self.prepared.registry
        fast = ROUTING_PRESETS["fast"]
        for change in policy.check(
            left=max(path, work / slots) if slots else path,
            to_deadline=deadline - now,
            max_parallel=slots,
            fast=registry.weights == fast,
        ):
            if change.setting == "max_parallel":
                self.max_parallel = change.new
            else:
                registry.weights = fast
            self._record(self._adapted(change))

    def _refuse(self, unit: Unit, agent: Agent | None, error: AgentError) -> None:
        """A unit that no agent may take now: an attempt that failed without a call."""
        self._started(unit, agent.name if agent else "-", "refused: circuit open", self.clock.now())
        self._ended.append(_Ended(unit, None, 0.0, error=error))

    def _note_circuit(self, change: CircuitChange | None) -> None:
        if change is not None:
            self._record(self._circuit_changed(change))

    def _circuit_changed(self, change: CircuitChange) -> CircuitChanged:
        return CircuitChanged(
            seq=self._next_seq(),
            at=self.clock.now(),
            agent=change.agent,
            state=change.state,
            reason=change.reason,
        )

    def _guard_stops_before(self, unit: Unit) -> bool:
        """Whether starting `unit` would break a run guard; if so, stop the run."""
        reason = self._policy.guard_breached(self.clock.now(), starting=True)
        if reason is not None:
            self.active.defer(unit, "stopped")
            self._stop(reason)
            return True
        return False

    def _stop(self, reason: ErrorInfo) -> None:
        """End the run cleanly for `reason`: nothing new starts, calls in flight are cancelled."""
        if self._stopped is None:
            self._stopped = reason
        self._poke()

    def _start_builtin(self, prepared: PreparedStep, unit: Unit) -> None:
        """Start a `sleep`, `wait_until` or `approval` unit: no agent, a durable wait."""
        step = prepared.step
        now = self.clock.now()
        try:
            if step.approval is not None:
                request = self._approvals.requested.get(unit.key)
                prompt = request.prompt if request else self._approval_prompt(prepared, unit)
                self._started(unit, "person", f"approval: {prompt}", now)
                if request is None:
                    request = self._approval_request(prepared, unit, prompt, now)
                    self._approvals.requested[unit.key] = request
                    self._record(request)
                    self._commit_soon = True
                self._approvals.await_decision(unit)
                return
            wake_at = self._wake_at.get(unit.key)
            if wake_at is None:
                wake_at = self._wake_time(prepared, unit, now)
        except ExpressionError as exc:
            self._fail_unit(unit, exc)
            return
        self._started(unit, "timer", f"{step.builtin} until {_iso(wake_at)}", now)
        if unit.key not in self._wake_at:
            self._wake_at[unit.key] = wake_at
            self._record(
                TimerStarted(
                    seq=self._next_seq(), at=now, step=unit.step, index=unit.index, wake_at=wake_at
                )
            )
        self._tasks.add(asyncio.create_task(self._sleep(unit, wake_at)))

    def _approval_prompt(self, prepared: PreparedStep, unit: Unit) -> str:
        assert prepared.prompt is not None
        prompt = prepared.prompt.render(self._unit_scope(prepared, unit))
        return prompt if isinstance(prompt, str) else json.dumps(prompt)

    def _approval_request(
        self, prepared: PreparedStep, unit: Unit, prompt: str, now: float
    ) -> ApprovalRequested:
        approval = prepared.step.approval
        assert approval is not None
        return ApprovalRequested(
            seq=self._next_seq(),
            at=now,
            step=unit.step,
            index=unit.index,
            prompt=prompt,
            schema=None if approval.schema is None else dict(approval.schema),
            timeout_at=None if approval.timeout is None else now + approval.timeout,
            default=approval.default,
        )

    def _wake_time(self, prepared: PreparedStep, unit: Unit, now: float) -> float:
        step = prepared.step
        if step.sleep is not None:
            return now + step.sleep
        assert prepared.wake_at is not None
        return _epoch(prepared.wake_at.render(self._unit_scope(prepared, unit)), step.wait_until)

    def _started(
        self,
        unit: Unit,
        agent: str,
        reason: str,
        now: float,
        candidates: tuple[Candidate, ...] = (),
    ) -> None:
        self._policy.count_start(unit.key, now)
        self._record(
            StepStarted(
                seq=self._next_seq(),
                at=now,
                step=unit.step,
                index=unit.index,
                attempt=unit.attempt,
                agent=agent,
                reason=reason,
                candidates=candidates,
            )
        )

    async def _sleep(self, unit: Unit, wake_at: float) -> None:
        await self.clock.sleep_until(wake_at)
        self._ended.append(_Ended(unit, None, 0.0, output={"woke_at": _iso(wake_at)}))
        self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        self._poke()

    def _unit_scope(self, prepared: PreparedStep, unit: Unit) -> dict[str, Any]:
        scope = self.scope_for(unit.step)
        if unit.index is None:
            return scope
        items = self._evaluate_items(unit.step, prepared)
        return {**scope, "item": items[unit.index], "index": unit.index}

    def _payload(self, prepared: PreparedStep, call: PreparedCall, unit: Unit) -> Any:
        template = call.payload
        if template.is_constant:
            return template.render(self._scope)
        return template.render(self._unit_scope(prepared, unit))

    async def _call(self, unit: Unit, agent: Agent, payload: Any, seconds: float | None) -> None:
        ctx = StepContext(
            run_id=self.run_id,
            step=unit.step,
            key=unit.key,
            index=unit.index,
            attempt=unit.attempt,
            agent=agent.name,
            children=self,
            journal=self,
        )
        loop = self._loop
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
        if ctx.usage is not NO_USAGE or ctx.spent is not NO_USAGE:  # it consumed something
            ended.cost = ctx.usage.cost + ctx.spent.cost
            ended.tokens = ctx.usage.tokens + ctx.spent.tokens
            if ctx.usage.tokens or ctx.usage.cost:
                ended.usage = ctx.usage
                self._policy.add_usage(ctx.usage)
        self._ended.append(ended)
        self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        self._poke()

    # ---- committing what ended ---------------------------------------------------------

    async def _commit_ended(self) -> None:
        registry = self.prepared.registry
        completions: list[Event] = []
        now = self.clock.now()
        while self._ended:
            ended = self._ended.popleft()
            # A child run that waits for a person: its call went well but is not over, so
            # it counts as a success and its cost is not counted yet.
            waiting = ended.error if isinstance(ended.error, ChildWaiting) else None
            if ended.agent is not None:
                ok = waiting is not None or ended.error is None
                cost = 0.0 if waiting is not None else ended.cost
                registry.finished(ended.agent, ok=ok, seconds=ended.seconds, cost=cost)
                completions.extend(self._released(ended, ok=ok, now=now))
            if waiting is not None:  # no outcome yet: the unit waits
                self._children_waiting[ended.unit.key] = waiting.run_id
                continue
            completions.extend(self._completion(ended, now))
        for unit, decision in self._approvals.decisions(now):
            completions.extend(self._decided(unit, decision))
        await self._commit(completions)
        if completions and self._policy.guarded:
            reason = self._policy.guard_breached(self.clock.now(), starting=False)
            if reason is not None:
                self._stop(reason)

    def _decided(self, unit: Unit, decision: Decision) -> list[Event]:
        """The decision, then the step's outcome: success with the data, or failure."""
        now = self.clock.now()
        decided = ApprovalDecided(
            seq=self._next_seq(),
            at=now,
            step=unit.step,
            index=unit.index,
            approved=decision.approved,
            by=decision.by,
            decided_at=decision.decided_at,
            data=decision.data,
            reason=decision.reason,
        )
        if decision.approved:
            output = {"approved": True, "by": decision.by, "data": decision.data}
            outcome: Event = StepSucceeded(
                seq=self._next_seq(),
                at=now,
                step=unit.step,
                index=unit.index,
                attempt=unit.attempt,
                output=output,
            )
        else:
            why = f": {decision.reason}" if decision.reason else ""
            message = f"rejected by {decision.by}{why}"
            outcome = self._failed(unit, ErrorInfo(type="Rejected", message=message, step=unit.key))
        return [decided, outcome]

    async def _commit(self, completions: list[Event]) -> None:
        """Commit what was recorded since the last commit plus `completions`, in one go."""
        if self._lost_to is not None:
            raise RunBusy(self.run_id, self._lost_to)
        if not completions and not self._pending:
            return
        batch = self._pending + completions
        self._pending = []
        durable, self._durable = self._durable, []
        self._commit_soon = False
        await self.store.append(self.run_id, batch)
        for event in completions:
            self.active.apply(event)
        for waiter in durable:
            if not waiter.done():
                waiter.set_result(None)
        self._published(batch)

    def _completion(self, ended: _Ended, now: float) -> list[Event]:
        """The events that end a unit: success (and its state writes), a retry or failure."""
        unit = ended.unit
        prepared = self.prepared_step(unit.step)
        if ended.error is None:
            try:  # also gives every backend the same plain JSON types (tuples become lists)
                encoded = _encode(ended.output)
                output = _decode(encoded)
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                ended.error = AgentError(
                    f"returned a value that is not JSON-serialisable "
                    f"({type(ended.output).__name__}): {exc or 'nested too deeply'}"
                )
                ended.error.retryable = False
            else:
                limit = self.prepared.workflow.guards.max_output_bytes
                if len(encoded) > limit:
                    ended.error = OutputTooLarge(
                        f"returned {len(encoded):,} bytes of JSON, "
                        f"over max_output_bytes ({limit:,})"
                    )
                else:
                    return self._succeeded(prepared, ended, output, now)
        assert ended.error is not None
        error = self._error_info(unit, ended.agent, ended.error)
        failed = self._policy.after_failure(
            prepared, unit, ended.error, error, seq=self._next_seq(), now=now, usage=ended.usage
        )
        return [failed]

    def _succeeded(
        self, prepared: PreparedStep, ended: _Ended, output: Any, now: float
    ) -> list[Event]:
        unit = ended.unit
        writes: list[StateWritten] = []
        if prepared.writes is not None:
            scope = {**self._unit_scope(prepared, unit), "output": output}
            try:
                writes = self._state.writes(prepared, unit, scope, next_seq=self._next_seq, now=now)
            except PodiumError as exc:  # a write refused: the unit fails, for good
                error = self._error_info(unit, ended.agent, exc)
                return [self._failed(unit, error, usage=ended.usage)]
        succeeded = StepSucceeded(
            seq=self._next_seq(),
            at=now,
            step=unit.step,
            index=unit.index,
            attempt=unit.attempt,
            output=output,
            usage=ended.usage,
        )
        return [*writes, succeeded]  # writes are numbered first: a refused one takes none

    def _error_info(self, unit: Unit, agent: Agent | None, error: BaseException) -> ErrorInfo:
        detail = str(error) or repr(error)
        by = f" (agent {agent.name})" if agent is not None else ""
        return ErrorInfo(type=type(error).__name__, message=f"{detail}{by}", step=unit.key)

    def _fail_unit(self, unit: Unit, error: PodiumError) -> None:
        """A unit that cannot even start (its expressions fail): failed for good, at once."""
        self._commit_soon = True
        self._record(self._failed(unit, self._error_info(unit, None, error)))

    def _failed(self, unit: Unit, error: ErrorInfo, usage: Usage | None = None) -> StepFailed:
        """The end of a unit decided here rather than by its call's policies."""
        return StepFailed(
            seq=self._next_seq(),
            at=self.clock.now(),
            step=unit.step,
            index=unit.index,
            attempt=unit.attempt,
            error=error,
            usage=usage,
        )

    def _released(self, ended: _Ended, *, ok: bool, now: float) -> list[Event]:
        """A call ended: units waiting for its agent, its resources or its endpoint may go.

        The controller hears how it went first; what it changed is returned as events, to
        be committed with the unit's completion.
        """
        agent = ended.agent
        assert agent is not None
        freed, changes = self._control.after_call(
            ended.unit.key,
            agent.name,
            None if ok else ended.error,
            started=now - ended.seconds,
            tokens=ended.tokens,
            now=now,
        )
        if self.active.blocked:
            for token in (agent.name, *(f"capability:{c}" for c in agent.capabilities), *freed):
                self.active.unblock(token)
        return [self._adapted(change) for change in changes]

    def _adapted(self, change: Change | CircuitChange) -> Event:
        if isinstance(change, CircuitChange):
            return self._circuit_changed(change)
        return Adapted(
            seq=self._next_seq(),
            at=self.clock.now(),
            policy=change.policy,
            subject=change.subject,
            setting=change.setting,
            old=change.old,
            new=change.new,
            reason=change.reason,
        )

    def _published(self, batch: Sequence[Event]) -> None:
        self.recorded.extend(batch)
        if self._on_events is not None:
            self._on_events(batch)

    # ---- the end -----------------------------------------------------------------------

    async def _finish(self, *, waiting: bool = False) -> RunFinished | RunWaiting:
        if self._lost_to is not None:
            raise RunBusy(self.run_id, self._lost_to)
        if self._cancelled or self._stopped:
            await self._cancel_in_flight()
        finished: RunFinished | RunWaiting
        if waiting:
            keys = sorted([*self._approvals.awaiting, *self._children_waiting])
            finished = RunWaiting(seq=self._next_seq(), at=self.clock.now(), waiting_for=keys)
        else:
            status, output, error = self._outcome()
            if status == "failed":
                await self._commit([])
                await Compensation(self).run()
            finished = RunFinished(
                seq=self._next_seq(), at=self.clock.now(), status=status, output=output, error=error
            )
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
        message = self._stopped.message if self._stopped else "the run was cancelled"
        for key in self.active.running_keys():
            step, index = self.active.unit_of(key)
            unit = Unit(step, index, self.active.attempt_of(key))
            self._record(self._failed(unit, ErrorInfo(type="Cancelled", message=message, step=key)))

    def _outcome(self) -> tuple[Literal["succeeded", "failed", "cancelled"], Any, ErrorInfo | None]:
        """How the run ends: status, output and error."""
        if self._cancelled:
            return "cancelled", None, ErrorInfo(type="Cancelled", message="the run was cancelled")
        if self._stopped is not None:
            return "failed", None, self._stopped
        halted_by = self.active.halted_by
        if halted_by is not None:
            return "failed", None, self.active.failure_of(halted_by)
        try:
            return "succeeded", self.prepared.output.render(self._scope), None
        except ExpressionError as exc:
            error = ErrorInfo(type="ExpressionError", message=str(exc), step="output")
            return "failed", None, error


def _earliest(*moments: float | None) -> float | None:
    found = [m for m in moments if m is not None]
    return min(found) if found else None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat().replace("+00:00", "Z")


def _epoch(value: Any, expression: str | None) -> float:
    """A `wait_until` value as epoch seconds: a number, or an ISO 8601 time (UTC if naive)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    raise ExpressionError(
        f"wait_until {expression} gave {value!r}: expected an ISO 8601 time "
        "(2026-11-24T18:00:00Z) or epoch seconds"
    )


if sys.version_info >= (3, 12):

    def _start_task(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, None]) -> Task[None]:
        # Eagerly: the call runs at once, in its own task, up to its first wait, so an agent
        # that has nothing to wait for ends without a trip through the event loop.
        return asyncio.eager_task_factory(loop, call)

else:

    def _start_task(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, None]) -> Task[None]:
        return loop.create_task(call)
