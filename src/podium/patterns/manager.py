"""Asking a manager (a group chat's selector, magentic's orchestrator) for a structured reply.

A manager is a participant like any other, called with `output_schema` set. An LLM agent
validates its own reply and retries; a Python manager may return anything. So the reply is
checked here too, against the same schema and then by the pattern's own rule (a speaker that
exists, say). A reply that does not fit is asked again, with what was wrong, a bounded number
of times; then the caller applies its fallback and records that it did. Every try is a
recorded call (`route-3/try-1`), so a replay reads the same garbage back and falls back alike.
A manager that gives up on its own (an LLM agent whose replies never fit: `OutputInvalid`)
counts as a try that did not fit, not as a failure of the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from podium.agents import Agent, StepContext
from podium.errors import OutputInvalid
from podium.patterns.conversation import Session, call_participant

# The key of the recorded reply of a manager that gave up on fitting the schema itself.
_REFUSED = "podium_reply_refused"


class _Lenient:
    """A manager whose own refusal to answer (`OutputInvalid`) is a reply that does not fit.

    The refusal is recorded as the try's reply, so a replay reads it back and goes on alike.
    """

    def __init__(self, manager: Agent) -> None:
        self.manager = manager
        self.name = manager.name
        self.capabilities = manager.capabilities
        self.concurrency = manager.concurrency

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        try:
            return await self.manager.call(payload, ctx)
        except OutputInvalid as exc:
            return {_REFUSED: str(exc)}


def schema_problem(reply: Any, schema: Mapping[str, Any]) -> str | None:
    """Why `reply` does not fit `schema`, in one line; None if it fits."""
    error = best_match(Draft202012Validator(schema).iter_errors(reply))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where or 'the reply'}: {error.message}"


async def ask_manager(
    session: Session,
    manager: Agent,
    name: str,
    *,
    schema: Mapping[str, Any],
    instruction: str,
    retries: int,
    check: Callable[[Any], str | None] | None = None,
    timed: bool = True,
) -> tuple[Any | None, list[str]]:
    """The manager's first reply that fits, and the problems of those that did not.

    Returns `(None, problems)` after `retries + 1` tries that all failed to fit. With
    `timed`, a try past the pattern's `max_seconds` raises `OutOfTime`; the final answer
    asked once a limit is hit is not timed, as it is the last call anyway.
    """
    problems: list[str] = []
    for attempt in range(1, retries + 2):
        told = instruction
        if problems:
            told = (
                f"{instruction}\n\nYour previous reply was not accepted ({problems[-1]}). "
                "Reply with one JSON object that fits output_schema."
            )
        reply = await call_participant(
            session.ctx,
            _Lenient(manager),
            session.payload(instruction=told, output_schema=dict(schema)),
            f"{name}/try-{attempt}",
            pattern=session.pattern,
            kind="manager",
            input={"agent": manager.name, "asked": schema.get("title"), "try": attempt},
            seconds=session.time_left() if timed else None,
        )
        refused = reply.get(_REFUSED) if isinstance(reply, Mapping) else None
        problem = str(refused) if refused is not None else schema_problem(reply, schema)
        if problem is None and check is not None:
            problem = check(reply)
        if problem is None:
            return reply, problems
        problems.append(problem)
    return None, problems
