"""Sequential: agents in order, each seeing the task and what came before.

    writer -> editor -> fact_checker

Each turn is preceded by a recorded decision (`route-n`: go on, or stop because the budget
is spent), so a stop that depended on the time is taken again, identically, on replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from podium.agents import Agent, StepContext
from podium.errors import DefinitionError
from podium.patterns.conversation import (
    NO_BUDGET,
    Budget,
    Message,
    OutOfTime,
    PatternAgent,
    Session,
    Stop,
    check_agents,
)

# Builds a participant's payload from the task and the conversation so far.
ContextFn = Callable[[Any, Sequence[Message]], Any]
CONTEXT_MODES = ("full", "previous")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sequential:
    """Agents called one after the other; the last one's reply is the answer.

    `context` is what each agent sees: `"full"` (the task and the whole conversation),
    `"previous"` (the task and only the previous agent's message), or a function
    `(task, messages) -> payload` that builds the payload itself.
    """

    agents: Sequence[str]
    context: Literal["full", "previous"] | ContextFn = "full"
    budget: Budget = NO_BUDGET

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))

    @property
    def participants(self) -> tuple[str, ...]:
        """Every participant this pattern names, for checking them before a run."""
        return tuple(self.agents)

    def build(self, participants: Mapping[str, Agent], *, name: str) -> Agent:
        check_agents(name, self.agents, participants)
        if isinstance(self.context, str) and self.context not in CONTEXT_MODES:
            raise DefinitionError(
                f"pattern {name!r}: context {self.context!r} is not one of "
                f"{', '.join(CONTEXT_MODES)} (or a function)"
            )
        return SequentialAgent(self, name, participants)


class SequentialAgent(PatternAgent):
    def __init__(self, spec: Sequential, name: str, participants: Mapping[str, Agent]) -> None:
        super().__init__(name, participants)
        self.spec = spec

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        spec = self.spec
        s = Session(self.name, ctx, payload, spec.budget)
        await s.begin()
        try:
            for n, who in enumerate(spec.agents, 1):

                async def route(who: str = who) -> dict[str, Any]:
                    stop = s.over_budget()
                    if stop is not None:
                        return {"stop": stop.reason, "detail": stop.detail}
                    return {"next": who, "reason": "next in order"}

                decision = await s.decide(f"route-{n}", route)
                if "stop" in decision:
                    return s.result(s.last_content(), Stop(decision["stop"], decision["detail"]))
                reply = await s.turn(self.participants[who], f"turn-{n}", self._payload(s))
                s.say(who, reply)
        except OutOfTime as exc:
            return s.result(s.last_content(), Stop("timeout", f"{exc}: max_seconds reached"))
        done = Stop("done", f"all {len(spec.agents)} agents took their turn")
        return s.result(s.last_content(), done)

    def _payload(self, s: Session) -> Any:
        context = self.spec.context
        if context == "full":
            return s.payload()
        if context == "previous":
            return {"task": s.task, "messages": s.messages[-1:]}
        assert callable(context)
        return context(s.task, list(s.messages))
