"""When a group chat stops: conditions that compose with `|` (either) and `&` (both).

    stop = MaxMessages(20) | TextMention("TERMINATE") | (TokenBudget(max_tokens=5000) & Timeout(60))

A condition looks at a snapshot of the conversation between two turns and says whether to
stop, and why. Conditions are checked on the whole conversation so far, so most of them,
once met, stay met: `a & b` stops once both have been met, as AutoGen's do. The check is
made inside the recorded routing decision, so a condition that reads the time or an
outside flag decides once, and a replay follows what it decided.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from podium.model import Usage
from podium.patterns.conversation import Message, Stop, as_text


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The conversation between two turns, as termination conditions see it."""

    messages: Sequence[Message]
    spent: Usage  # what the pattern's calls consumed so far
    elapsed: float  # seconds of work since the pattern started (a resume keeps counting)
    rounds: int  # participants' turns taken


class Termination:
    """A stop condition; combine them with `|` and `&`."""

    __slots__ = ()

    def check(self, state: Snapshot) -> Stop | None:
        raise NotImplementedError

    def __or__(self, other: Termination) -> Termination:
        return AnyOf(conditions=(*_parts(self, AnyOf), *_parts(other, AnyOf)))

    def __and__(self, other: Termination) -> Termination:
        return AllOf(conditions=(*_parts(self, AllOf), *_parts(other, AllOf)))


def _parts(condition: Termination, kind: type[AnyOf] | type[AllOf]) -> tuple[Termination, ...]:
    """Flatten `a | b | c` into one AnyOf of three, so the reason is not nested."""
    if isinstance(condition, AnyOf | AllOf) and isinstance(condition, kind):
        return tuple(condition.conditions)
    return (condition,)


@dataclass(frozen=True, slots=True)
class AnyOf(Termination):
    """Stops when any of `conditions` is met; the first met gives the reason."""

    conditions: Sequence[Termination]

    def check(self, state: Snapshot) -> Stop | None:
        for condition in self.conditions:
            stop = condition.check(state)
            if stop is not None:
                return stop
        return None


@dataclass(frozen=True, slots=True)
class AllOf(Termination):
    """Stops when every one of `conditions` is met; the reason names them all (`a&b`)."""

    conditions: Sequence[Termination]

    def check(self, state: Snapshot) -> Stop | None:
        stops: list[Stop] = []
        for condition in self.conditions:
            stop = condition.check(state)
            if stop is None:
                return None
            stops.append(stop)
        return Stop("&".join(s.reason for s in stops), "; and ".join(s.detail for s in stops))


@dataclass(frozen=True, slots=True)
class MaxMessages(Termination):
    """Stops once the conversation holds `count` messages (any agent, any role)."""

    count: int

    def check(self, state: Snapshot) -> Stop | None:
        if len(state.messages) >= self.count:
            return Stop("max_messages", f"{len(state.messages)} messages (max {self.count})")
        return None


@dataclass(frozen=True, slots=True)
class TextMention(Termination):
    """Stops once a message contains `text`; with `sources`, only messages by those agents."""

    text: str
    sources: Sequence[str] = ()

    def check(self, state: Snapshot) -> Stop | None:
        for m in reversed(state.messages):
            if self.sources and m["agent"] not in self.sources:
                continue
            if self.text in as_text(m["content"]):
                return Stop("mention", f"{m['agent']} said {self.text!r}")
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenBudget(Termination):
    """Stops once the pattern's calls have used `max_tokens` tokens or cost `max_cost`."""

    max_tokens: int | None = None
    max_cost: float | None = None

    def check(self, state: Snapshot) -> Stop | None:
        spent = state.spent
        if self.max_tokens is not None and spent.tokens >= self.max_tokens:
            return Stop("budget", f"{spent.tokens} tokens used (limit {self.max_tokens})")
        if self.max_cost is not None and spent.cost >= self.max_cost:
            return Stop("budget", f"cost {spent.cost:g} reached (limit {self.max_cost:g})")
        return None


@dataclass(frozen=True, slots=True)
class Timeout(Termination):
    """Stops once `seconds` of work have passed since the pattern started.

    Checked between turns: a turn under way is not cut short (the pattern's
    `Budget.max_seconds` does that).
    """

    seconds: float

    def check(self, state: Snapshot) -> Stop | None:
        if state.elapsed >= self.seconds:
            return Stop("timeout", f"{state.elapsed:.3g}s passed (limit {self.seconds:g}s)")
        return None


@dataclass(frozen=True, slots=True)
class StopWhen(Termination):
    """Stops when `predicate(messages)` says so: True, or a string that says why."""

    predicate: Callable[[Sequence[Message]], bool | str | None]

    def check(self, state: Snapshot) -> Stop | None:
        said = self.predicate(list(state.messages))
        if not said:
            return None
        name = getattr(self.predicate, "__name__", "a function")
        return Stop("function", said if isinstance(said, str) else f"{name} said to stop")


@runtime_checkable
class Flag(Protocol):
    """An event someone else sets: `asyncio.Event`, `threading.Event`, or alike."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ExternalStop(Termination):
    """Stops when told from outside: `set()` it, or give an event or a callable to poll.

    `signal` may be an `asyncio.Event`, a `threading.Event` (from another thread) or a
    function returning True to stop. It is polled between turns.
    """

    signal: Flag | Callable[[], bool] = field(default_factory=threading.Event)

    def set(self) -> None:
        """Ask the conversation to stop after the turn under way."""
        if not isinstance(self.signal, asyncio.Event | threading.Event):
            raise TypeError("ExternalStop.set() needs an Event; this one polls a function")
        self.signal.set()

    def check(self, state: Snapshot) -> Stop | None:
        flag = self.signal
        stopped = flag.is_set() if isinstance(flag, Flag) else flag()
        return Stop("external", "stopped from outside") if stopped else None
