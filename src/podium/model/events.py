"""The events of a run: every orchestration fact, in the order it happened.

A run's state is the fold of its events and nothing else. Events are msgspec structs rather
than dataclasses because they are encoded on the hot path (one per step start and completion)
and msgspec gives a tagged union that encodes and decodes an order of magnitude faster.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

RunStatus = Literal["running", "waiting", "succeeded", "failed", "cancelled"]
SkipCause = Literal["condition", "trigger"]


def step_key(step: str, index: int | None) -> str:
    """The deterministic key of a unit of work: `step`, or `step[3]` for a for_each item."""
    return step if index is None else f"{step}[{index}]"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What went wrong, in words a user can act on."""

    type: str
    message: str
    step: str | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every event: its place in the run's log and when it happened (epoch seconds)."""

    seq: int
    at: float


class RunStarted(Event, tag="run_started", frozen=True, kw_only=True, omit_defaults=True):
    """A run was created. Carries everything needed to resume it exactly as it was defined."""

    run_id: str
    workflow: str
    definition: dict[str, Any]
    base_dir: str = ""
    input: Any = None
    max_parallel: int | None = None


class RunResumed(Event, tag="run_resumed", frozen=True, kw_only=True, omit_defaults=True):
    """A process took the run up again; with `redrive`, failed steps get another go."""

    redrive: bool = False


class StepStarted(Event, tag="step_started", frozen=True, kw_only=True, omit_defaults=True):
    """A unit of work was handed to an agent; `reason` says why that agent."""

    step: str
    index: int | None = None
    attempt: int = 1
    agent: str
    reason: str = ""

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StepSucceeded(Event, tag="step_succeeded", frozen=True, kw_only=True, omit_defaults=True):
    """A unit of work returned; its output is recorded before any dependent starts."""

    step: str
    index: int | None = None
    attempt: int = 1
    output: Any = None

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StepAttemptFailed(Event, tag="step_retrying", frozen=True, kw_only=True, omit_defaults=True):
    """An attempt failed and another will be made, no earlier than `retry_at`."""

    step: str
    index: int | None = None
    attempt: int
    error: ErrorInfo
    retry_at: float

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StepFailed(Event, tag="step_failed", frozen=True, kw_only=True, omit_defaults=True):
    """A unit of work failed for good: its attempts are spent or its error is final."""

    step: str
    index: int | None = None
    attempt: int
    error: ErrorInfo

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StepSkipped(Event, tag="step_skipped", frozen=True, kw_only=True, omit_defaults=True):
    """A step will not run: its `if` was false, or its trigger rule was not met."""

    step: str
    cause: SkipCause
    reason: str


class StepExpanded(Event, tag="step_expanded", frozen=True, kw_only=True, omit_defaults=True):
    """A for_each step's items were evaluated: units `step[0]` .. `step[count-1]` follow."""

    step: str
    count: int


class RunFinished(Event, tag="run_finished", frozen=True, kw_only=True, omit_defaults=True):
    """The run reached a final status."""

    status: Literal["succeeded", "failed", "cancelled"]
    output: Any = None
    error: ErrorInfo | None = None


AnyEvent = (
    RunStarted
    | RunResumed
    | StepStarted
    | StepSucceeded
    | StepAttemptFailed
    | StepFailed
    | StepSkipped
    | StepExpanded
    | RunFinished
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    """The event as compact JSON, with its `type` tag."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    """The event encoded by `encode_event`."""
    event: Event = _decoder.decode(data)
    return event
