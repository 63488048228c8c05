"""Failure policies and run guards, decided in one place from a step's declaration.

After a failed attempt a unit is retried (within `retry.attempts`, if the error type is
retryable and the step's `deadline` leaves time), else handed to its `fallback` (once),
else failed for good. An attempt refused because the agent's circuit is open (the
controller's `circuits`) goes to the fallback at once: the agent is known to be down, so
waiting out its cool-down in retries would only delay the step. Each outcome is an event,
so the log tells why. Run guards (`max_steps`, `deadline`) are checked before anything
starts and when timers fire.

All state here is rebuilt from the run's log, so a resumed run keeps counting where the
crashed one stopped: attempts, the fallback switch, starts towards `max_steps`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from podium.errors import CircuitOpen, DeadlineExceeded
from podium.model import (
    CallRecorded,
    ErrorInfo,
    Event,
    RunStarted,
    Step,
    StepAttemptFailed,
    StepFailed,
    StepFellBack,
    StepStarted,
    StepSucceeded,
    Usage,
)
from podium.runtime.prepare import Prepared, PreparedCall, PreparedStep
from podium.scheduler import Unit

_BASE_TYPES = (object, BaseException, Exception)
_REPORTS_USAGE = (StepSucceeded, StepAttemptFailed, StepFellBack, StepFailed, CallRecorded)


def error_types(error: BaseException) -> tuple[str, ...]:
    """The names `retry.on` / `not_on` match: the error's class and its bases."""
    return tuple(c.__name__ for c in type(error).__mro__ if c not in _BASE_TYPES)


class Policies:
    """The policy state of one run, folded from its log and kept up to date live."""

    def __init__(self, prepared: Prepared, *, run_id: str, history: Sequence[Event]) -> None:
        self._prepared = prepared
        self._run_id = run_id
        self._guards = prepared.workflow.guards
        self.started = 0
        self._first_start: dict[str, float] = {}
        self._fallback_from: dict[str, int] = {}  # unit key -> its first attempt on fallback
        started_at = 0.0
        self.usage = Usage()
        for event in history:
            if isinstance(
                event, StepSucceeded | StepAttemptFailed | StepFellBack | StepFailed | CallRecorded
            ):
                self.add_usage(event.usage)
            if isinstance(event, StepStarted):
                self.count_start(event.key, event.at)
            elif isinstance(event, StepFellBack):
                self._fallback_from[event.key] = event.attempt + 1
            elif isinstance(event, RunStarted):
                started_at = event.at
        deadline = self._guards.deadline
        self.run_deadline = None if deadline is None else started_at + deadline
        guards = self._guards
        self.guarded = any(
            limit is not None
            for limit in (guards.max_steps, deadline, guards.max_tokens, guards.max_cost)
        )

    def add_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage = self.usage + usage

    def count_start(self, key: str, now: float) -> None:
        self.started += 1
        self._first_start.setdefault(key, now)

    def current_call(self, prepared: PreparedStep, key: str) -> PreparedCall:
        """The unit's own call, or its fallback once it has fallen back."""
        if key in self._fallback_from and prepared.fallback is not None:
            return prepared.fallback
        assert prepared.call is not None
        return prepared.call

    def time_left(self, step: Step, key: str, now: float) -> float | None:
        """The attempt's timeout: `timeout`, cut short by the step's `deadline`."""
        if step.deadline is None:
            return step.timeout
        left = self._first_start.get(key, now) + step.deadline - now
        if left <= 0:
            raise DeadlineExceeded(f"the step's deadline of {step.deadline:g}s has passed")
        return left if step.timeout is None else min(step.timeout, left)

    def guard_breached(self, now: float, *, starting: bool) -> ErrorInfo | None:
        """Why the run must stop now, if a guard says so.

        Before a start (`starting`), a limit already reached forbids it; otherwise only a
        limit exceeded (usage reported by the calls that just ended) stops the run.
        """
        if not self.guarded:
            return None
        guards = self._guards
        limit = guards.max_steps
        if starting and limit is not None and self.started >= limit:
            return ErrorInfo(
                type="GuardExceeded",
                message=f"max_steps reached: the run started {self.started} units (limit {limit})",
            )
        for name, spent, cap in (
            ("max_tokens", self.usage.tokens, guards.max_tokens),
            ("max_cost", self.usage.cost, guards.max_cost),
        ):
            if cap is not None and (spent > cap or (starting and spent >= cap)):
                return ErrorInfo(
                    type="GuardExceeded",
                    message=f"{name} reached: the run used {spent:g} (limit {cap:g})",
                )
        if self.run_deadline is not None and now >= self.run_deadline:
            return ErrorInfo(
                type="DeadlineExceeded",
                message=f"the run's deadline of {self._guards.deadline:g}s has passed",
            )
        return None

    def after_failure(
        self,
        prepared: PreparedStep,
        unit: Unit,
        error: BaseException,
        info: ErrorInfo,
        *,
        seq: int,
        now: float,
        usage: Usage | None,
    ) -> StepAttemptFailed | StepFellBack | StepFailed:
        """What a failed attempt leads to: a retry, the fallback, or the end of the unit."""
        step = prepared.step
        retry = step.retry
        key = unit.key
        can_fall_back = prepared.fallback is not None and key not in self._fallback_from
        used = unit.attempt - self._fallback_from.get(key, 1) + 1
        if (
            not (can_fall_back and isinstance(error, CircuitOpen))
            and getattr(error, "retryable", True)
            and used < retry.attempts
            and retry.retries(error_types(error))
        ):
            # The jitter is drawn from the unit's identity: a replay draws the same.
            spread = random.Random(f"{self._run_id}/{key}/{unit.attempt}").random()
            retry_at = now + retry.delay_after(used, spread=spread)
            deadline = step.deadline
            if deadline is None or retry_at < self._first_start.get(key, now) + deadline:
                return StepAttemptFailed(
                    seq=seq,
                    at=now,
                    step=unit.step,
                    index=unit.index,
                    attempt=unit.attempt,
                    error=info,
                    retry_at=retry_at,
                    usage=usage,
                )
        if can_fall_back:
            assert prepared.fallback is not None
            self._fallback_from[key] = unit.attempt + 1
            return StepFellBack(
                seq=seq,
                at=now,
                step=unit.step,
                index=unit.index,
                attempt=unit.attempt,
                error=info,
                to=prepared.fallback.target,
                usage=usage,
            )
        return StepFailed(
            seq=seq,
            at=now,
            step=unit.step,
            index=unit.index,
            attempt=unit.attempt,
            error=info,
            usage=usage,
        )
