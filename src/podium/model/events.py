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


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a call consumed, as its agent reported it: model tokens and money."""

    tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(tokens=self.tokens + other.tokens, cost=self.cost + other.cost)


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
    forked_from: str | None = None  # the run whose history this one starts with
    fork_at: str | None = None  # the step key it was forked at
    parent: str | None = None  # the run whose `workflow` step started this one


class RunResumed(Event, tag="run_resumed", frozen=True, kw_only=True, omit_defaults=True):
    """A process took the run up again; with `redrive`, failed steps get another go."""

    redrive: bool = False


class Candidate(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An agent that could have taken a routed call, its figures then, and its score.

    `score` is lower-is-better (see `podium.agents.routing`); `excluded` says why an agent
    that has the capability could not be chosen at all (no room, circuit open, throttled).
    """

    agent: str
    score: float | None = None
    in_flight: int = 0
    latency: float | None = None  # moving average, seconds
    success_rate: float = 1.0
    cost: float | None = None  # moving average per call
    excluded: str = ""


class StepStarted(Event, tag="step_started", frozen=True, kw_only=True, omit_defaults=True):
    """A unit of work was handed to an agent; `reason` says why that agent.

    A unit routed by capability lists the `candidates` it was chosen among, with their
    scores, so that the choice can be explained afterwards.
    """

    step: str
    index: int | None = None
    attempt: int = 1
    agent: str
    reason: str = ""
    candidates: tuple[Candidate, ...] = ()

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StepSucceeded(Event, tag="step_succeeded", frozen=True, kw_only=True, omit_defaults=True):
    """A unit of work returned; its output is recorded before any dependent starts."""

    step: str
    index: int | None = None
    attempt: int = 1
    output: Any = None
    usage: Usage | None = None

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
    usage: Usage | None = None

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StepFailed(Event, tag="step_failed", frozen=True, kw_only=True, omit_defaults=True):
    """A unit of work failed for good: its attempts are spent or its error is final."""

    step: str
    index: int | None = None
    attempt: int
    error: ErrorInfo
    usage: Usage | None = None

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


class TimerStarted(Event, tag="timer_started", frozen=True, kw_only=True, omit_defaults=True):
    """A `sleep` or `wait_until` step began waiting; it ends at `wake_at` (epoch seconds).

    Recorded once: a run resumed after `wake_at` does not sleep again, and one resumed
    before it sleeps only what is left.
    """

    step: str
    index: int | None = None
    wake_at: float

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class ApprovalRequested(
    Event, tag="approval_requested", frozen=True, kw_only=True, omit_defaults=True
):
    """An `approval` step asks a person for a decision (`podium approve RUN STEP`)."""

    step: str
    index: int | None = None
    prompt: str
    schema: dict[str, Any] | None = None
    timeout_at: float | None = None
    default: Literal["approve", "reject"] | None = None

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class ApprovalDecided(Event, tag="approval_decided", frozen=True, kw_only=True, omit_defaults=True):
    """The decision on an approval: who made it, when (`decided_at`), with what data."""

    step: str
    index: int | None = None
    approved: bool
    by: str
    decided_at: float
    data: Any = None
    reason: str = ""

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StepFellBack(Event, tag="step_fell_back", frozen=True, kw_only=True, omit_defaults=True):
    """The step's own target failed for good; the unit goes on with its `fallback` (`to`)."""

    step: str
    index: int | None = None
    attempt: int
    error: ErrorInfo
    to: str
    usage: Usage | None = None

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class CircuitChanged(Event, tag="circuit_changed", frozen=True, kw_only=True, omit_defaults=True):
    """An agent's circuit breaker opened (out of routing), half-opened (probe) or closed."""

    agent: str
    state: Literal["open", "half_open", "closed"]
    reason: str


class Adapted(Event, tag="adapted", frozen=True, kw_only=True, omit_defaults=True):
    """The adaptation controller changed how the run goes on, and why.

    `policy` made the change (`reroute`, `rate_limit`, `deadline`, ...); `subject` is what
    it applies to (an agent, an endpoint, `run`); `setting` went from `old` to `new` (a
    concurrency limit, whether an agent is routed to, the run's parallelism).
    """

    policy: str
    subject: str
    setting: str
    old: Any = None
    new: Any = None
    reason: str


class CompensationStarted(
    Event, tag="compensation_started", frozen=True, kw_only=True, omit_defaults=True
):
    """The run failed: the `compensate` call of a succeeded step begins undoing it."""

    step: str
    agent: str


class CompensationEnded(
    Event, tag="compensation_ended", frozen=True, kw_only=True, omit_defaults=True
):
    """A compensation returned (`output`) or failed (`error`)."""

    step: str
    output: Any = None
    error: ErrorInfo | None = None


class CallRecorded(Event, tag="call_recorded", frozen=True, kw_only=True, omit_defaults=True):
    """A call made inside a unit (a model call, a tool call, a conversation turn) returned.

    `name` is unique within the unit (`model-3`, `turn-2`): a unit that runs again after a
    crash or a retry gets the recorded `output` back instead of making the call again.
    `agent` made the call: the step's agent, or a participant of a pattern run by the step
    (its `usage` counts towards that agent).
    """

    step: str
    index: int | None = None
    name: str
    kind: str
    agent: str = ""
    input: Any = None
    output: Any = None
    seconds: float = 0.0
    usage: Usage | None = None

    @property
    def key(self) -> str:
        return step_key(self.step, self.index)


class StateWritten(Event, tag="state_written", frozen=True, kw_only=True, omit_defaults=True):
    """A unit wrote `written` to state key `key`, folded in by `reducer` (`version` counts).

    `order` is the unit's place in the plan, which fixes where the write is folded in (see
    `podium.model.state`). A fork's `--set` is a write with `set` true: the key takes the
    value outright. A key whose reducer is a Python callable carries its new `value` too, so
    that the log alone says what the state was.
    """

    key: str
    step: str
    index: int | None = None
    version: int
    order: tuple[int, ...] = ()
    reducer: str = "replace"
    written: Any = None
    set: bool = False
    value: Any = None


class IterationStarted(
    Event, tag="iteration_started", frozen=True, kw_only=True, omit_defaults=True
):
    """A `repeat` step began iteration `iteration`: its steps run again as `step#n`."""

    step: str
    iteration: int


class LoopEnded(Event, tag="loop_ended", frozen=True, kw_only=True, omit_defaults=True):
    """A `repeat` step ended: its `until` held, or `max_iterations` were spent first.

    `output` lists the iterations' outputs; `error` is set when the loop failed.
    """

    step: str
    iterations: int
    stopped: Literal["until", "max_iterations"]
    output: Any = None
    error: ErrorInfo | None = None


class RunWaiting(Event, tag="run_waiting", frozen=True, kw_only=True, omit_defaults=True):
    """Nothing can go on until a person decides: the run holds no process while it waits."""

    waiting_for: list[str]


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
    | TimerStarted
    | ApprovalRequested
    | ApprovalDecided
    | RunWaiting
    | CallRecorded
    | StateWritten
    | IterationStarted
    | LoopEnded
    | StepFellBack
    | CircuitChanged
    | Adapted
    | CompensationStarted
    | CompensationEnded
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
