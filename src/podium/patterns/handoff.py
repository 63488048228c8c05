"""Handoff: one agent holds the conversation; it answers, or hands it to another.

    triage -> billing -> refunds -> (answer)

The holder is called with `handoffs`, the agents it may hand off to. Its reply is the
content of its message; a reply `{"handoff_to": "billing", "reason": ..., "content": ...}`
passes the conversation on, and `{"ask_human": "question"}` asks a person. Each turn
(`turn-n`) and who holds the conversation next (`route-n`) are recorded.

A conversation that goes A -> B -> A -> B with nothing new said is not going anywhere: it
stops with `ping_pong` rather than spending the budget on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podium.agents import Agent, StepContext
from podium.errors import DefinitionError
from podium.patterns.conversation import (
    NO_BUDGET,
    Budget,
    OutOfTime,
    PatternAgent,
    Session,
    Stop,
    as_text,
    check_agents,
    check_names,
    check_positive,
)

PING_PONG_HANDOFFS = 3  # A->B, B->A, A->B: the third brings them back where they were


@dataclass(frozen=True, slots=True, kw_only=True)
class Handoff:
    """Agents that pass a conversation between them until one of them answers.

    `start` holds the conversation first (default: the first agent). `graph` maps an agent
    to the agents it may hand off to; without it, every agent may hand off to every other;
    an agent missing from a given graph may only answer. Asking for handoff number
    `max_handoffs + 1` stops the conversation. `human` names the participant that answers
    for a person when an agent asks for one; without it, such a request stops the
    conversation with `human_requested` and the question.
    """

    agents: Sequence[str]
    start: str | None = None
    graph: Mapping[str, Sequence[str]] | None = None
    max_handoffs: int = 10
    human: str | None = None
    budget: Budget = NO_BUDGET

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))
        if self.graph is not None:
            graph = {a: tuple(targets) for a, targets in self.graph.items()}
            object.__setattr__(self, "graph", graph)

    @property
    def first(self) -> str:
        return self.start if self.start is not None else self.agents[0]

    def targets(self, agent: str) -> tuple[str, ...]:
        """Whom `agent` may hand off to."""
        if self.graph is None:
            return tuple(a for a in self.agents if a != agent)
        return tuple(self.graph.get(agent, ()))

    @property
    def participants(self) -> tuple[str, ...]:
        """Every participant this pattern names, for checking them before a run."""
        return (*self.agents, *((self.human,) if self.human else ()))

    def build(self, participants: Mapping[str, Agent], *, name: str) -> Agent:
        check_agents(name, self.agents, participants)
        check_names(name, "start agent", [self.first], participants)
        check_names(name, "start agent", [self.first], self.agents, "the pattern's agents")
        check_positive(name, max_handoffs=self.max_handoffs)
        for source, targets in (self.graph or {}).items():
            among = "the pattern's agents"
            check_names(name, "handoff graph agent", [source], self.agents, among)
            check_names(name, f"handoff target of {source!r}", list(targets), self.agents, among)
            if source in targets:
                raise DefinitionError(f"pattern {name!r}: {source!r} may not hand off to itself")
        if self.human is not None:
            check_names(name, "human", [self.human], participants)
        return HandoffAgent(self, name, participants)


class HandoffAgent(PatternAgent):
    def __init__(self, spec: Handoff, name: str, participants: Mapping[str, Agent]) -> None:
        super().__init__(name, participants)
        self.spec = spec

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        s = Session(self.name, ctx, payload, self.spec.budget)
        await s.begin()
        state = _Held(holder=self.spec.first, why="the start agent", path=[self.spec.first])
        state.said = {as_text(m["content"]) for m in s.messages}
        try:
            stop = await self._converse(s, state)
        except OutOfTime as exc:
            stop = Stop("timeout", f"{exc}: max_seconds reached")
        answer = state.answer if stop.reason == "done" else _best(s)
        return s.result(
            answer,
            stop,
            holder=state.holder,
            path=state.path,
            handoffs=len(state.chain),
            **state.extra,
        )

    async def _converse(self, s: Session, state: _Held) -> Stop:
        n = 0
        while True:
            n += 1

            async def route(holder: str = state.holder, why: str = state.why) -> dict[str, Any]:
                stop = s.over_budget()
                if stop is not None:
                    return {"stop": stop.reason, "detail": stop.detail}
                return {"next": holder, "reason": why}

            decision = await s.decide(f"route-{n}", route)
            if "stop" in decision:
                return Stop(decision["stop"], decision["detail"])
            holder = state.holder
            targets = self.spec.targets(holder)
            reply = await s.turn(self.participants[holder], f"turn-{n}", handoffs=list(targets))
            s.say(holder, reply)
            if isinstance(reply, Mapping) and "handoff_to" in reply:
                stop = self._hand_off(state, reply, targets)
            elif isinstance(reply, Mapping) and "ask_human" in reply:
                stop = await self._ask(s, state, reply["ask_human"], n)
            else:
                state.answer = reply
                stop = Stop("done", f"{holder} answered")
            if stop is not None:
                return stop

    def _hand_off(
        self, state: _Held, reply: Mapping[str, Any], targets: Sequence[str]
    ) -> Stop | None:
        holder, target = state.holder, reply["handoff_to"]
        if target not in targets:
            allowed = ", ".join(targets) or "nobody"
            detail = f"{holder} handed off to {target!r}; it may hand off to {allowed}"
            return Stop("invalid_handoff", detail)
        content = reply.get("content")
        text = as_text(content) if content not in (None, "") else ""
        state.chain.append((holder, target, bool(text) and text not in state.said))
        state.said.add(text)
        if _ping_pong(state.chain):
            detail = f"{holder} and {target} handed off back and forth saying nothing new"
            return Stop("ping_pong", detail)
        limit = self.spec.max_handoffs
        if len(state.chain) > limit:
            detail = f"{holder} asked for handoff {len(state.chain)} (max_handoffs {limit})"
            return Stop("max_handoffs", detail)
        note = reply.get("reason")
        state.why = f"handoff from {holder}" + (f": {note}" if note else "")
        state.holder = target
        state.path.append(target)
        return None

    async def _ask(self, s: Session, state: _Held, question: Any, n: int) -> Stop | None:
        """A person answers the holder's question, which keeps the conversation."""
        holder, human = state.holder, self.spec.human
        if human is None:
            state.extra = {"question": question, "asked_by": holder}
            return Stop("human_requested", f"{holder} asked for a person")
        answer = await s.ask_human(self.participants[human], f"human-{n}", question, holder)
        s.say(human, answer, role="user")
        state.said.add(as_text(answer))
        state.why = f"{human} answered {holder}'s question"
        return None


@dataclass(slots=True, kw_only=True)
class _Held:
    """Who holds the conversation, and how it got there."""

    holder: str
    why: str
    path: list[str]
    chain: list[tuple[str, str, bool]] = field(default_factory=list)  # from, to, said new
    said: set[str] = field(default_factory=set)
    answer: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _ping_pong(chain: Sequence[tuple[str, str, bool]]) -> bool:
    """Whether the last handoffs went A->B->A->B with nothing new said on the way."""
    if len(chain) < PING_PONG_HANDOFFS:
        return False
    last = chain[-PING_PONG_HANDOFFS:]
    a, b = last[0][0], last[0][1]
    expected = [(a, b), (b, a), (a, b)]
    return [(f, t) for f, t, _ in last] == expected and not any(new for _, _, new in last)


def _best(s: Session) -> Any:
    """The best answer a stopped conversation has: the last thing someone actually said."""
    for m in reversed(s.messages):
        content = m["content"]
        if isinstance(content, Mapping) and ("handoff_to" in content or "ask_human" in content):
            if content.get("content") not in (None, ""):
                return content["content"]
            continue
        return content
    return None
