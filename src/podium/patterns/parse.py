"""The YAML form of a pattern: what a step gives beside `pattern: <kind>`, checked eagerly.

    - id: support
      pattern: handoff
      agents: [triage, billing, refunds]
      start: triage
      max_handoffs: 6
      max_seconds: 120

Every mistake names its option, where it stands, and what would be accepted. Callables
(`"package.module:function"`) are imported here, from the `search` folders first, so that a
wrong path is reported before the run starts rather than in the middle of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from podium.errors import DefinitionError, Location
from podium.model.callables import import_callable
from podium.model.workflow import PATTERN_OPTIONS as OPTIONS
from podium.patterns.concurrent import Concurrent
from podium.patterns.conversation import Budget
from podium.patterns.group_chat import ROUND_ROBIN, GroupChat
from podium.patterns.handoff import Handoff
from podium.patterns.magentic import Magentic
from podium.patterns.sequential import CONTEXT_MODES, Sequential
from podium.patterns.termination import (
    AllOf,
    AnyOf,
    ExternalStop,
    MaxMessages,
    StopWhen,
    Termination,
    TextMention,
    Timeout,
    TokenBudget,
)

Locate = Callable[[tuple[str | int, ...]], Location]
Pattern = Sequential | Concurrent | Handoff | GroupChat | Magentic
Path = tuple[str | int, ...]

CONDITIONS = (
    "any",
    "all",
    "max_messages",
    "mention",
    "max_tokens",
    "max_cost",
    "timeout",
    "function",
    "external",
)


def parse_pattern(
    kind: str, options: Mapping[str, Any], locate: Locate, *, search: Sequence[str] = ()
) -> Pattern:
    """The pattern a step's `pattern: <kind>` and its options describe.

    `locate` turns an option's path (`("agents", 2)`) into where it stands in the file.
    `search` are folders to import `module:function` options from, before `sys.path`.
    Raises `DefinitionError` for an unknown kind or option, or a value of the wrong type.
    """
    if kind not in OPTIONS:
        raise DefinitionError(
            f"unknown pattern {kind!r}; patterns: {', '.join(OPTIONS)}", where=locate(("pattern",))
        )
    read = _Reader(kind, options, locate, search)
    budget = Budget(
        max_tokens=read.integer("max_tokens", 0),
        max_cost=read.number("max_cost"),
        max_seconds=read.number("max_seconds"),
        max_turns=read.integer("max_turns", 0),
    )
    agents = read.names("agents")
    if kind == "sequential":
        context = read.text("context")
        if context == "previous":
            return Sequential(agents=agents, context="previous", budget=budget)
        if context is None or context == "full":
            return Sequential(agents=agents, context="full", budget=budget)
        if ":" not in context:
            raise read.fail(
                ("context",),
                f"context must be {' or '.join(CONTEXT_MODES)}, or a 'module:function' path",
            )
        return Sequential(
            agents=agents, context=read.function(("context",), context), budget=budget
        )
    if kind == "concurrent":
        aggregator = read.text("aggregator")
        return Concurrent(
            agents=agents,
            aggregator=read.agent_or_function("aggregator", aggregator, ("list",)),
            quorum=read.integer("quorum", 1),
            agent_timeout=read.number("agent_timeout"),
            budget=budget,
        )
    if kind == "handoff":
        return Handoff(
            agents=agents,
            start=read.text("start"),
            graph=read.graph("graph"),
            max_handoffs=_default(read.integer("max_handoffs", 0), 10),
            human=read.text("human"),
            budget=budget,
        )
    if kind == "group_chat":
        selector = read.text("selector")
        chosen = read.agent_or_function("selector", selector, (ROUND_ROBIN,))
        raw = options.get("termination")
        return GroupChat(
            agents=agents,
            selector=ROUND_ROBIN if chosen is None else chosen,
            max_rounds=_default(read.integer("max_rounds", 0), 10),
            allow_repeated_speaker=_default(read.boolean("allow_repeated_speaker"), True),
            termination=None if raw is None else read.termination(raw, ("termination",)),
            manager_retries=_default(read.integer("manager_retries", 0), 2),
            budget=budget,
        )
    manager = read.text("manager")
    if manager is None:
        raise DefinitionError(
            "pattern 'magentic' needs a manager: the participant that keeps the ledgers",
            where=locate(()),
        )
    return Magentic(
        agents=agents,
        manager=manager,
        max_rounds=_default(read.integer("max_rounds", 0), 20),
        max_stalls=_default(read.integer("max_stalls", 1), 3),
        max_resets=_default(read.integer("max_resets", 0), 2),
        manager_retries=_default(read.integer("manager_retries", 0), 2),
        human=read.text("human"),
        review_plan=_default(read.boolean("review_plan"), False),
        budget=budget,
    )


T = TypeVar("T")


def _default(value: T | None, default: T) -> T:
    return default if value is None else value


class _Reader:
    """Reads one pattern's options, each checked for its type, with errors where they stand."""

    def __init__(
        self, kind: str, options: Mapping[str, Any], locate: Locate, search: Sequence[str]
    ) -> None:
        self.kind = kind
        self.options = options
        self.locate = locate
        self.search = search
        valid = OPTIONS[kind]
        for key in options:
            if key not in valid:
                raise DefinitionError(
                    f"pattern {kind!r} has no option {key!r}; its options: {', '.join(valid)}",
                    where=locate((str(key),)),
                )

    def fail(self, path: Path, message: str) -> DefinitionError:
        return DefinitionError(f"pattern {self.kind!r}: {message}", where=self.locate(path))

    def names(self, key: str) -> tuple[str, ...]:
        value = self.options.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail((key,), f"{key} must be a non-empty list of agent names")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail((key, i), f"{key}[{i}] must be an agent name, not {item!r}")
        return tuple(value)

    def text(self, key: str) -> str | None:
        value = self.options.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.fail((key,), f"{key} must be a name, not {value!r}")
        return value

    def integer(self, key: str, minimum: int) -> int | None:
        value = self.options.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail((key,), f"{key} must be a whole number of at least {minimum}")
        return int(value)

    def number(self, key: str, path: Path | None = None, value: Any = None) -> float | None:
        value = self.options.get(key) if path is None else value
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(path or (key,), f"{key} must be a number more than 0")
        return float(value)

    def boolean(self, key: str) -> bool | None:
        value = self.options.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.fail((key,), f"{key} must be true or false")
        return value

    def function(self, path: Path, ref: Any) -> Callable[..., Any]:
        if not isinstance(ref, str):
            raise self.fail(path, f"{path[-1]} must be a 'package.module:function' path")
        return import_callable(ref, search=self.search, where=functools.partial(self.locate, path))

    def agent_or_function(
        self, key: str, value: str | None, words: tuple[str, ...]
    ) -> str | Callable[..., Any] | None:
        """None for the default (absent, or one of `words`), a function, or a name."""
        if value is None or value in words:
            return None
        if ":" in value:
            return self.function((key,), value)
        return value

    def graph(self, key: str) -> dict[str, tuple[str, ...]] | None:
        value = self.options.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail((key,), f"{key} must map each agent to the agents it hands off to")
        graph: dict[str, tuple[str, ...]] = {}
        for source, targets in value.items():
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise self.fail((key, source), f"{key}.{source} must be a list of agent names")
            graph[str(source)] = tuple(targets)
        return graph

    def termination(self, raw: Any, path: Path) -> Termination:
        """`{max_messages: 10}`, `{mention: DONE}`, `{any: [...]}`, `{all: [...]}`, ..."""
        if not isinstance(raw, Mapping) or len(raw) != 1:
            raise self.fail(
                path, f"a termination condition is a mapping with one of: {', '.join(CONDITIONS)}"
            )
        ((name, value),) = raw.items()
        at = (*path, name)
        if name in ("any", "all"):
            if not isinstance(value, list) or not value:
                raise self.fail(at, f"{name} must be a non-empty list of conditions")
            parts = [self.termination(item, (*at, i)) for i, item in enumerate(value)]
            return AnyOf(parts) if name == "any" else AllOf(parts)
        if name == "max_messages":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self.fail(at, "max_messages must be a whole number of at least 1")
            return MaxMessages(value)
        if name == "mention":
            return self._mention(value, at)
        if name == "max_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self.fail(at, "max_tokens must be a whole number of at least 1")
            return TokenBudget(max_tokens=value)
        if name == "max_cost":
            return TokenBudget(max_cost=self.number(name, at, value))
        if name == "timeout":
            return Timeout(self.number(name, at, value) or 0.0)
        if name == "function":
            return StopWhen(self.function(at, value))
        if name == "external":
            return ExternalStop(self.function(at, value))
        raise self.fail(
            at, f"unknown termination condition {name!r}; conditions: {', '.join(CONDITIONS)}"
        )

    def _mention(self, value: Any, at: Path) -> Termination:
        if isinstance(value, str) and value:
            return TextMention(value)
        if isinstance(value, Mapping) and isinstance(value.get("text"), str):
            sources = value.get("sources", [])
            unknown = set(value) - {"text", "sources"}
            if unknown or not isinstance(sources, list):
                raise self.fail(at, "mention takes text and sources (a list of agent names)")
            return TextMention(value["text"], tuple(sources))
        raise self.fail(at, "mention must be the text to look for, or {text, sources}")
