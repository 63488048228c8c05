"""Helpers for the pattern tests: scripted participants and an in-memory journal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podium.agents import StepContext
from podium.model import Usage

Reply = Any
Script = Sequence[Reply] | Callable[[Mapping[str, Any]], Reply]


class Bot:
    """A participant that replies from a script and remembers what it was called with.

    `tokens` is reported with `report_usage` (a Python agent's way); `model_tokens` is spent
    in a remembered inner call (an LLM agent's way), recorded under the turn's path.
    """

    capabilities: frozenset[str] = frozenset()
    concurrency: int | None = None

    def __init__(
        self,
        name: str,
        script: Script = (),
        *,
        tokens: int = 0,
        model_tokens: int = 0,
        delay: float = 0.0,
        raises: Exception | None = None,
    ) -> None:
        self.name = name
        self.script = script
        self.tokens = tokens
        self.model_tokens = model_tokens
        self.delay = delay
        self.raises = raises
        self.calls: list[dict[str, Any]] = []
        self.paths: list[str] = []

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        self.calls.append(dict(payload) if isinstance(payload, Mapping) else {"raw": payload})
        self.paths.append(ctx.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raises is not None:
            raise self.raises
        if self.tokens:
            ctx.report_usage(tokens=self.tokens)
        if self.model_tokens:
            spent = Usage(tokens=self.model_tokens)

            async def model() -> tuple[Any, Usage | None]:
                return "thought", spent

            await ctx.remember("model-1", model, kind="model")
        if callable(self.script):
            return self.script(payload)
        if not self.script:
            return f"{self.name} #{len(self.calls)}"
        return self.script[min(len(self.calls), len(self.script)) - 1]


class MemoryJournal:
    """The engine's journal, in memory: what a resume would read back."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], tuple[Any, Usage | None]] = {}
        self.names: list[str] = []
        self.kinds: dict[str, str] = {}
        self.inputs: dict[str, Any] = {}

    def recall(self, key: str, name: str) -> tuple[bool, Any, Usage | None]:
        if (key, name) not in self.calls:
            return False, None, None
        output, usage = self.calls[key, name]
        return True, output, usage

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
        assert (key, name) not in self.calls, f"{name} recorded twice"
        self.calls[key, name] = (json.loads(json.dumps(output)), usage)
        self.names.append(name)
        self.kinds[name] = kind
        self.inputs[name] = input

    def cut(self, count: int) -> MemoryJournal:
        """The journal as a crash after its first `count` records left it."""
        cut = MemoryJournal()
        for name in self.names[:count]:
            cut.calls["p", name] = self.calls["p", name]
            cut.names.append(name)
        return cut

    def output(self, name: str) -> Any:
        """What call `name` gave: a turn's reply, a decision (without what it spent)."""
        recorded = self.calls["p", name][0]
        return recorded["output"] if isinstance(recorded, dict) else recorded


def context(journal: MemoryJournal | None = None) -> StepContext:
    return StepContext(
        run_id="r", step="p", key="p", index=None, attempt=1, agent="p", journal=journal
    )


def team(*bots: Bot) -> dict[str, Bot]:
    return {bot.name: bot for bot in bots}


def handoff_to(target: str, content: Any = None, reason: str = "") -> dict[str, Any]:
    reply: dict[str, Any] = {"handoff_to": target}
    if content is not None:
        reply["content"] = content
    if reason:
        reply["reason"] = reason
    return reply
