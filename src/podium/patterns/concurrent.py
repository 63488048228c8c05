"""Concurrent: the same task to every agent at once, and their answers brought together.

Each agent's turn (`turn-1`, `turn-2`, ... in the order the agents are listed) is recorded
with its outcome: an answer, a failure or a timeout. A failure or a timeout is an outcome,
not an error: one slow or broken agent does not sink the step, and a resume does not call
it again. Which answers were waited for (all, the first `quorum`, those in before the
wall-time budget ran out) is the recorded decision `gather`, so a replay counts the same
answers even though it no longer waits for anyone.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from podium.agents import Agent, StepContext
from podium.errors import DefinitionError
from podium.model import Usage
from podium.patterns.conversation import (
    NO_BUDGET,
    Budget,
    OutOfTime,
    PatternAgent,
    Session,
    Stop,
    check_agents,
    check_names,
    remember,
    take_reported,
)

# Brings the answers together: `(task, {agent: answer}) -> answer`, sync or async.
Aggregator = Callable[[Any, Mapping[str, Any]], Any]

AGGREGATE_INSTRUCTION = (
    "The messages are the answers of {agents} to the task. "
    "Combine them into one final answer to the task."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Concurrent:
    """Every agent gets the task at once; the answers are aggregated.

    `aggregator`: None gives the list of the answers, in the agents' order; a function
    `(task, {agent: answer}) -> answer`; or the name of a participant (an LLM summariser,
    say), called with the answers as the conversation. `quorum`: stop waiting once that
    many agents answered, cancelling the others. `agent_timeout`: seconds each agent gets; past
    it, its turn is recorded as timed out.
    """

    agents: Sequence[str]
    aggregator: str | Aggregator | None = None
    quorum: int | None = None
    agent_timeout: float | None = None
    budget: Budget = NO_BUDGET

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))

    @property
    def participants(self) -> tuple[str, ...]:
        """Every participant this pattern names, for checking them before a run."""
        extra = (self.aggregator,) if isinstance(self.aggregator, str) else ()
        return (*self.agents, *extra)

    def build(self, participants: Mapping[str, Agent], *, name: str) -> Agent:
        check_agents(name, self.agents, participants)
        if isinstance(self.aggregator, str):
            check_names(name, "aggregator", [self.aggregator], participants)
        if self.quorum is not None and not 1 <= self.quorum <= len(self.agents):
            raise DefinitionError(
                f"pattern {name!r}: quorum {self.quorum} must be between 1 and the number "
                f"of agents ({len(self.agents)})"
            )
        if self.agent_timeout is not None and self.agent_timeout <= 0:
            raise DefinitionError(f"pattern {name!r}: agent_timeout must be more than 0 seconds")
        turns = self.budget.max_turns
        if turns is not None and turns < len(self.agents):
            raise DefinitionError(
                f"pattern {name!r}: max_turns {turns} is less than one turn per agent "
                f"({len(self.agents)})"
            )
        return ConcurrentAgent(self, name, participants)


class ConcurrentAgent(PatternAgent):
    def __init__(self, spec: Concurrent, name: str, participants: Mapping[str, Agent]) -> None:
        super().__init__(name, participants)
        self.spec = spec

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        spec = self.spec
        s = Session(self.name, ctx, payload, spec.budget)
        await s.begin()
        sent = s.payload()  # every agent sees the same task and conversation
        outcomes: dict[str, dict[str, Any]] = {}
        inners: dict[str, StepContext] = {}  # each agent's context, for what it spent

        def cancelled_spent() -> Usage:
            # A cancelled turn is never recorded, but the calls it made inside are: they
            # are counted with the decision, so a replay that skips the agent counts them.
            spent = Usage()
            for who, inner in inners.items():
                if who not in outcomes:
                    spent = spent + inner.spent
            return spent

        async def gather() -> tuple[Any, Usage | None]:
            stop = s.over_budget()
            if stop is None:
                stop = await self._wait(s, sent, outcomes, inners)
            statuses = {
                w: outcomes[w]["status"] if w in outcomes else "cancelled" for w in spec.agents
            }
            decided: dict[str, Any] = {"statuses": statuses, "stop": None, "detail": ""}
            if stop is not None:
                decided.update(stop=stop.reason, detail=stop.detail)
            return decided, None

        decision = await remember(ctx, "gather", gather, kind="route", spent=cancelled_spent)
        statuses: dict[str, str] = decision["statuses"]
        for i, who in enumerate(spec.agents, 1):
            if statuses[who] != "cancelled" and who not in outcomes:  # a replay: read it back
                outcomes[who] = await self._one(s, i, who, sent, inners)
            outcomes.setdefault(who, {"status": "cancelled", "error": "no longer waited for"})
        s.turns += sum(1 for who in spec.agents if statuses[who] != "cancelled")
        results = {who: outcomes[who] for who in spec.agents}  # in the agents' order, not arrival
        answers = {w: o["content"] for w, o in results.items() if o["status"] == "ok"}
        for who in spec.agents:
            if who in answers:
                s.say(who, answers[who])
        failures = [
            {"agent": who, "status": o["status"], "error": o.get("error", "")}
            for who, o in results.items()
            if o["status"] != "ok"
        ]
        stop = self._stop(decision, answers, failures)
        answer: Any = None
        if answers:
            try:
                answer = await self._aggregate(s, answers)
            except OutOfTime as exc:
                answer = [answers[who] for who in spec.agents if who in answers]
                stop = Stop("timeout", f"{exc}: max_seconds reached while aggregating")
        return s.result(answer, stop, results=results, failures=failures)

    async def _wait(
        self,
        s: Session,
        sent: Any,
        outcomes: dict[str, dict[str, Any]],
        inners: dict[str, StepContext],
    ) -> Stop | None:
        """Run every agent's turn; wait for all, or the quorum, or until time is up."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        left = s.time_left()
        end = None if left is None else loop.time() + left
        pending = {
            asyncio.create_task(self._one(s, i, who, sent, inners)): who
            for i, who in enumerate(spec.agents, 1)
        }
        stop: Stop | None = None
        try:
            while pending:
                wait = None if end is None else max(end - loop.time(), 0.0)
                done, _ = await asyncio.wait(
                    pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    stop = Stop("timeout", f"max_seconds reached with {len(pending)} not in")
                    break
                for task in done:
                    outcomes[pending.pop(task)] = task.result()
                answered = sum(1 for o in outcomes.values() if o["status"] == "ok")
                if spec.quorum is not None and answered >= spec.quorum and pending:
                    stop = Stop("quorum", f"{answered} answered (quorum {spec.quorum})")
                    break
                over = s.over_budget()
                if over is not None and over.reason == "budget" and pending:
                    stop = over
                    break
        finally:
            for task in pending:  # no longer waited for: cancelled, never recorded
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        return stop

    async def _one(
        self, s: Session, i: int, who: str, sent: Any, inners: dict[str, StepContext]
    ) -> dict[str, Any]:
        """One agent's recorded turn; its failure or timeout is its outcome, not an error."""
        agent = self.participants[who]
        inner = inners[who] = s.ctx.within(f"turn-{i}", agent=who)
        seconds = self.spec.agent_timeout

        async def compute() -> tuple[Any, Usage | None]:
            timer = asyncio.timeout(seconds)
            outcome: dict[str, Any]
            try:
                async with timer:
                    # a copy each: one agent changing its payload must not change another's
                    outcome = {"status": "ok", "content": await agent.call(dict(sent), inner)}
            except TimeoutError as exc:
                if timer.expired():
                    outcome = {"status": "timeout", "error": f"no answer within {seconds:g}s"}
                else:
                    outcome = {"status": "failed", "error": f"TimeoutError: {exc}"}
            except Exception as exc:  # recorded as the agent's outcome; cancellation passes
                outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            return outcome, take_reported(inner)

        recorded: dict[str, Any] = await remember(
            s.ctx,
            f"turn-{i}",
            compute,
            kind="turn",
            input={"agent": who},
            spent=lambda: inner.spent,
        )
        return recorded

    def _stop(
        self, decision: Mapping[str, Any], answers: Mapping[str, Any], failures: list[Any]
    ) -> Stop:
        if decision["stop"] is not None:
            return Stop(decision["stop"], decision["detail"])
        quorum = self.spec.quorum
        if quorum is not None and len(answers) < quorum:
            return Stop("no_quorum", f"{len(answers)} answered, fewer than the quorum {quorum}")
        if not answers:
            return Stop("all_failed", f"none of the {len(self.spec.agents)} agents answered")
        failed = f", {len(failures)} did not" if failures else ""
        return Stop("done", f"{len(answers)} answered{failed}")

    async def _aggregate(self, s: Session, answers: Mapping[str, Any]) -> Any:
        spec = self.spec
        in_order = [answers[who] for who in spec.agents if who in answers]
        aggregator = spec.aggregator
        if aggregator is None:
            return in_order
        if isinstance(aggregator, str):
            names = ", ".join(who for who in spec.agents if who in answers)
            instruction = AGGREGATE_INSTRUCTION.format(agents=names)
            return await s.turn(self.participants[aggregator], "aggregate", instruction=instruction)

        async def compute() -> tuple[Any, Usage | None]:
            combined = aggregator(s.task, dict(answers))
            if inspect.isawaitable(combined):
                combined = await combined
            return combined, None

        return await remember(s.ctx, "aggregate", compute, kind="aggregate")
