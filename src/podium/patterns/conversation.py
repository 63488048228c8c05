"""What every pattern shares: the conversation, the recorded turn, the budget and its clock.

A pattern is an agent made of agents, and its durability is the journal's: every turn, every
routing decision and the start time are `ctx.remember`ed under deterministic names (`start`,
`route-3`, `turn-3`, `human-3`), so a unit that runs again after a crash or a retry reads
them back instead of calling anyone again. A participant is handed `ctx.within("turn-3")`,
so the calls it records itself (a model's, a tool's) are replayed too.

Anything that depends on the time, on a person or on chance and that steers the
conversation is decided inside a recorded call, so a replay takes the same road.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from podium.agents import Agent, StepContext
from podium.errors import AgentError, DefinitionError
from podium.model import Usage

Role = Literal["user", "assistant"]


class Message(TypedDict):
    """One message of a conversation: who said it, in which role, and what (any JSON)."""

    agent: str
    role: Role
    content: Any


def message(agent: str, content: Any, role: Role = "assistant") -> Message:
    return {"agent": agent, "role": role, "content": content}


def as_text(content: Any) -> str:
    """Content as text, for conditions that look for words in it."""
    if isinstance(content, str):
        return content
    return json.dumps(content, default=str, ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Limits on a pattern's whole conversation; a pattern stops cleanly when one is reached.

    `max_tokens` and `max_cost` count what the pattern's calls consumed (recorded or read
    back, so the count holds across a resume). `max_seconds` is wall time from the pattern's
    recorded start, not counting time spent waiting for a person. `max_turns` counts
    participants' turns (managers' calls are not turns).
    """

    max_tokens: int | None = None
    max_cost: float | None = None
    max_seconds: float | None = None
    max_turns: int | None = None


NO_BUDGET = Budget()


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a conversation ended: a short code for programs, a sentence for people."""

    reason: str
    detail: str


class OutOfTime(Exception):
    """A turn ran past the pattern's `max_seconds`; the pattern stops with `timeout`."""


def minus(a: Usage, b: Usage) -> Usage:
    return Usage(tokens=a.tokens - b.tokens, cost=a.cost - b.cost)


def usage_json(usage: Usage) -> dict[str, Any]:
    return {"tokens": usage.tokens, "cost": usage.cost}


def split_payload(payload: Any) -> tuple[Any, list[Message]]:
    """The task and the conversation so far from what the pattern was called with.

    A pattern called as a participant of another gets `{task, messages, ...}`; called from
    a step it usually gets `{task: ...}`; anything else is the task itself.
    """
    if isinstance(payload, Mapping) and "task" in payload:
        prior = payload.get("messages") or []
        return payload["task"], cast(list[Message], [m for m in prior if isinstance(m, Mapping)])
    return payload, []


def take_reported(inner: StepContext) -> Usage | None:
    """Move what a participant reported with `report_usage` onto its turn's record.

    `report_usage` adds to the unit's context as well, which the engine records when the
    unit ends; recorded with the turn instead, it is counted once, and read back (not lost)
    when the unit runs again after a crash.
    """
    reported = inner.usage
    if not (reported.tokens or reported.cost):
        return None
    ctx = inner.parent
    while ctx is not None:
        ctx.usage = minus(ctx.usage, reported)
        ctx = ctx.parent
    inner.usage = Usage()
    return reported


def add_spent(ctx: StepContext, usage: Usage) -> None:
    """Count `usage` as spent in `ctx` and every context it is within."""
    at: StepContext | None = ctx
    while at is not None:
        at.spent = at.spent + usage
        at = at.parent


async def remember(
    ctx: StepContext,
    name: str,
    compute: Callable[[], Awaitable[tuple[Any, Usage | None]]],
    *,
    kind: str,
    input: Any = None,
    spent: Callable[[], Usage] | None = None,
) -> Any:
    """`ctx.remember` for a call that makes recorded calls of its own (a turn, a decision).

    Read back after a crash, such a call returns its output without its inner calls being
    replayed, so what they spent would be missing from `ctx.spent` and a budget would
    reset. So the record holds `{"output": ..., "spent": ...}`: what the inner calls spent
    (`spent()`, by default what `ctx.spent` grew by meanwhile), which a replay counts again.
    """
    computed = False
    before = ctx.spent

    async def recorded() -> tuple[Any, Usage | None]:
        nonlocal computed
        output, usage = await compute()
        computed = True
        inner = spent() if spent is not None else minus(ctx.spent, before)
        record: dict[str, Any] = {"output": output}
        if inner.tokens or inner.cost:
            record["spent"] = usage_json(inner)
        return record, usage

    record = await ctx.remember(name, recorded, kind=kind, input=input)
    if not computed and "spent" in record:
        add_spent(ctx, Usage(**record["spent"]))
    return record["output"]


def failed(pattern: str, agent: str, name: str, exc: Exception) -> AgentError:
    """A participant's failure, named, and as retryable as the cause said it was."""
    error = AgentError(
        f"pattern {pattern!r}: participant {agent!r} failed in {name}: {type(exc).__name__}: {exc}"
    )
    error.retryable = bool(getattr(exc, "retryable", True))
    return error


async def call_participant(
    ctx: StepContext,
    agent: Agent,
    payload: Any,
    name: str,
    *,
    pattern: str,
    kind: str = "turn",
    input: Any = None,
    seconds: float | None = None,
) -> Any:
    """Call `agent` as the recorded call `name`; its own calls are recorded under `name/`.

    `seconds` bounds the call: past it, `OutOfTime` is raised and nothing is recorded. A
    failure becomes an `AgentError` naming the participant, as retryable as its cause: the
    step's retry policy decides, and a retry reads the turns already taken back.
    """
    inner = ctx.within(name, agent=agent.name)

    async def compute() -> tuple[Any, Usage | None]:
        timer = asyncio.timeout(seconds)
        try:
            async with timer:
                reply = await agent.call(payload, inner)
        except TimeoutError as exc:
            if timer.expired():
                raise OutOfTime(f"{agent.name} was still working in {name}") from None
            raise failed(pattern, agent.name, name, exc) from exc
        except Exception as exc:  # the participant's own failure; cancellation passes
            raise failed(pattern, agent.name, name, exc) from exc
        return reply, take_reported(inner)

    record_input = input if input is not None else {"agent": agent.name}
    return await remember(
        ctx, name, compute, kind=kind, input=record_input, spent=lambda: inner.spent
    )


async def _clock() -> tuple[Any, Usage | None]:
    return time.time(), None


class Session:
    """One run of a pattern: its conversation, its budget, and its recorded calls."""

    def __init__(self, pattern: str, ctx: StepContext, payload: Any, budget: Budget) -> None:
        self.pattern = pattern
        self.ctx = ctx
        self.budget = budget
        self.task, self.messages = split_payload(payload)
        self.turns = 0  # participants' turns taken, recorded or read back
        self.started_at = 0.0
        self.paused = 0.0  # seconds spent waiting for a person, not counted as work time
        self._spent_before = ctx.spent
        self._reported_before = ctx.usage

    async def begin(self) -> None:
        """Record (or read back) when the pattern started: a resume keeps its wall time."""
        self.started_at = float(await self.ctx.remember("start", _clock, kind="clock"))

    # ---- the budget -----------------------------------------------------------------------

    @property
    def spent(self) -> Usage:
        """What this pattern's calls consumed so far, recorded or read back."""
        return minus(self.ctx.spent, self._spent_before) + minus(
            self.ctx.usage, self._reported_before
        )

    def elapsed(self) -> float:
        return time.time() - self.started_at - self.paused

    def time_left(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return max(self.budget.max_seconds - self.elapsed(), 0.0)

    def over_budget(self) -> Stop | None:
        """Which limit of the budget is reached, if any. Call it inside a recorded decision."""
        b = self.budget
        if b.max_turns is not None and self.turns >= b.max_turns:
            return Stop("max_turns", f"{self.turns} turns taken (max_turns {b.max_turns})")
        spent = self.spent
        if b.max_tokens is not None and spent.tokens >= b.max_tokens:
            return Stop("budget", f"{spent.tokens} tokens used (max_tokens {b.max_tokens})")
        if b.max_cost is not None and spent.cost >= b.max_cost:
            return Stop("budget", f"cost {spent.cost:g} reached (max_cost {b.max_cost:g})")
        if b.max_seconds is not None and self.elapsed() >= b.max_seconds:
            return Stop("timeout", f"{self.elapsed():.3g}s of work (max_seconds {b.max_seconds:g})")
        return None

    # ---- recorded calls -------------------------------------------------------------------

    async def decide(
        self, name: str, compute: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """A routing decision, made once and recorded: replays take the same road."""

        async def recorded() -> tuple[Any, Usage | None]:
            return await compute(), None

        decision: dict[str, Any] = await remember(self.ctx, name, recorded, kind="route")
        return decision

    def payload(self, **extra: Any) -> dict[str, Any]:
        """What a participant is called with: the task, the conversation, and `extra`."""
        sent: dict[str, Any] = {"task": self.task, "messages": list(self.messages)}
        sent.update({key: value for key, value in extra.items() if value is not None})
        return sent

    async def turn(self, agent: Agent, name: str, payload: Any = None, **extra: Any) -> Any:
        """A participant's recorded turn; raises `OutOfTime` past the wall-time budget.

        The participant gets `payload` if given, else the task, the conversation and `extra`.
        """
        instruction = extra.get("instruction")
        record_input: dict[str, Any] = {"agent": agent.name}
        if instruction is not None:
            record_input["instruction"] = instruction
        reply = await call_participant(
            self.ctx,
            agent,
            self.payload(**extra) if payload is None else payload,
            name,
            pattern=self.pattern,
            input=record_input,
            seconds=self.time_left(),
        )
        self.turns += 1
        return reply

    async def ask_human(self, human: Agent, name: str, question: Any, asked_by: str) -> Any:
        """Ask a person (through the `human` participant) and wait for the answer.

        The participant's exceptions pass unchanged: a workflow agent whose child run waits
        for an approval makes this unit wait too, and a resume after the decision comes
        back here, to the answer. The wait does not count towards `max_seconds`: when the
        question was asked and when it was answered are both recorded.
        """
        asked_at = float(await self.ctx.remember(f"asked-{name}", _clock, kind="clock"))
        payload = self.payload(question=question, asked_by=asked_by)
        inner = self.ctx.within(name, agent=human.name)

        async def compute() -> tuple[Any, Usage | None]:
            reply = await human.call(payload, inner)
            return {"reply": reply, "answered_at": time.time()}, take_reported(inner)

        record_input = {"agent": human.name, "question": question, "asked_by": asked_by}
        answer = await remember(
            self.ctx, name, compute, kind="human", input=record_input, spent=lambda: inner.spent
        )
        self.paused += max(float(answer["answered_at"]) - asked_at, 0.0)
        return answer["reply"]

    def say(self, agent: str, content: Any, role: Role = "assistant") -> None:
        self.messages.append(message(agent, content, role))

    def result(self, answer: Any, stop: Stop, **extra: Any) -> dict[str, Any]:
        """The pattern's output: answer, conversation, why it stopped, and what it used."""
        out: dict[str, Any] = {
            "answer": answer,
            "messages": list(self.messages),
            "stop_reason": stop.reason,
            "detail": stop.detail,
            "usage": usage_json(self.spent),
            "turns": self.turns,
        }
        out.update(extra)
        return out

    def last_content(self) -> Any:
        """The best answer a conversation has without asking anyone: its last message."""
        return self.messages[-1]["content"] if self.messages else None


class PatternAgent:
    """The agent a pattern builds: named, with its participants resolved by name."""

    capabilities: frozenset[str] = frozenset()
    concurrency: int | None = None

    def __init__(self, name: str, participants: Mapping[str, Agent]) -> None:
        self.name = name
        self.participants = dict(participants)


def check_names(
    pattern: str,
    what: str,
    names: Sequence[str],
    known: Mapping[str, Agent] | Sequence[str],
    among: str = "the participants",
) -> None:
    """Raise `DefinitionError` naming the first of `names` that is not in `known`."""
    for name in names:
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise DefinitionError(
                f"pattern {pattern!r}: {what} {name!r} is not among {among} ({listed})"
            )


def check_agents(pattern: str, agents: Sequence[str], participants: Mapping[str, Agent]) -> None:
    if not agents:
        raise DefinitionError(f"pattern {pattern!r} needs at least one agent")
    seen: set[str] = set()
    for name in agents:
        if name in seen:
            raise DefinitionError(f"pattern {pattern!r} lists agent {name!r} twice")
        seen.add(name)
    check_names(pattern, "agent", agents, participants)


def check_positive(pattern: str, **limits: float | None) -> None:
    for option, value in limits.items():
        if value is not None and value < 0:
            raise DefinitionError(f"pattern {pattern!r}: {option} must not be negative")
