"""Group chat: participants take turns in one conversation; a policy picks who speaks next.

The policy is round robin, a Python function `(messages, participants) -> name | None`, or a
manager agent asked for a structured choice (next speaker and why, or finish with a final
message). Before every turn, the decision `route-n` is recorded: the termination conditions
and budget checked, then the speaker chosen. A function or a manager that picks someone who
cannot speak, or a manager whose replies do not fit after its retries, falls back to round
robin, and the decision says so (`fallback`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from podium.agents import Agent, StepContext
from podium.patterns.conversation import (
    NO_BUDGET,
    Budget,
    Message,
    OutOfTime,
    PatternAgent,
    Session,
    Stop,
    check_agents,
    check_names,
    check_positive,
)
from podium.patterns.manager import ask_manager
from podium.patterns.termination import Snapshot, Termination

# Picks the next speaker from the conversation and the participants' names; None finishes.
Selector = Callable[[Sequence[Message], Sequence[str]], str | None | Awaitable[str | None]]
ROUND_ROBIN = "round_robin"

SELECT_INSTRUCTION = (
    "You manage a group chat between {agents}. Read the conversation and choose who "
    "speaks next, among {candidates}: set next_speaker, and say why in reason. When the "
    "task is done, set finish to true instead and give the final_message."
)


def selection_schema(candidates: Sequence[str]) -> dict[str, Any]:
    """The structured choice a manager replies with."""
    return {
        "title": "speaker_selection",
        "type": "object",
        "properties": {
            "next_speaker": {
                "enum": list(candidates),
                "description": "who speaks next; required unless finish is true",
            },
            "reason": {"type": "string", "description": "why"},
            "finish": {"type": "boolean", "description": "true when the task is done"},
            "final_message": {"description": "the answer to the task, when finishing"},
        },
        "required": ["reason"],
        "additionalProperties": False,
    }


def _finishes_or_names(reply: Any) -> str | None:
    if reply.get("finish") is True or "next_speaker" in reply:
        return None
    return "next_speaker is required unless finish is true"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChat:
    """Participants take turns until a termination condition, the manager, or a limit ends it.

    `selector`: `"round_robin"`, a function `(messages, participants) -> name | None`
    (None finishes the chat), or the name of a manager participant. With
    `allow_repeated_speaker` false, nobody speaks twice in a row. `termination`: conditions
    from `podium.patterns.termination`, composed with `|` and `&`. `manager_retries`: how
    many more times a manager is asked when its reply does not fit, before round robin.
    """

    agents: Sequence[str]
    selector: str | Selector = ROUND_ROBIN
    max_rounds: int = 10
    allow_repeated_speaker: bool = True
    termination: Termination | None = None
    manager_retries: int = 2
    budget: Budget = NO_BUDGET

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))

    @property
    def participants(self) -> tuple[str, ...]:
        """Every participant this pattern names, for checking them before a run."""
        manager = self.selector if isinstance(self.selector, str) else ROUND_ROBIN
        return (*self.agents, *((manager,) if manager != ROUND_ROBIN else ()))

    def build(self, participants: Mapping[str, Agent], *, name: str) -> Agent:
        check_agents(name, self.agents, participants)
        if isinstance(self.selector, str) and self.selector != ROUND_ROBIN:
            check_names(name, "selector", [self.selector], participants)
        check_positive(name, max_rounds=self.max_rounds, manager_retries=self.manager_retries)
        return GroupChatAgent(self, name, participants)


class GroupChatAgent(PatternAgent):
    def __init__(self, spec: GroupChat, name: str, participants: Mapping[str, Agent]) -> None:
        super().__init__(name, participants)
        self.spec = spec

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        s = Session(self.name, ctx, payload, self.spec.budget)
        await s.begin()
        speakers: list[str] = []
        fallbacks: list[str] = []
        answer: Any = None
        try:
            while True:
                n = len(speakers) + 1

                async def route(n: int = n) -> dict[str, Any]:
                    return await self._route(s, n, speakers)

                decision = await s.decide(f"route-{n}", route)
                if "fallback" in decision:
                    fallbacks.append(f"route-{n}: {decision['fallback']}")
                if "stop" in decision:
                    if "final" in decision:
                        answer = decision["final"]
                        s.say(str(self.spec.selector), answer)
                    stop = Stop(decision["stop"], decision["detail"])
                    break
                who = decision["next"]
                reply = await s.turn(self.participants[who], f"turn-{n}")
                s.say(who, reply)
                speakers.append(who)
        except OutOfTime as exc:
            stop = Stop("timeout", f"{exc}: max_seconds reached")
        if answer is None:
            answer = s.last_content()
        return s.result(answer, stop, rounds=len(speakers), speakers=speakers, fallbacks=fallbacks)

    async def _route(self, s: Session, n: int, speakers: Sequence[str]) -> dict[str, Any]:
        """Stop, or who speaks in round `n`, and why. Runs inside the recorded decision."""
        spec = self.spec
        stop = s.over_budget()
        if stop is None and spec.termination is not None:
            snapshot = Snapshot(
                messages=s.messages, spent=s.spent, elapsed=s.elapsed(), rounds=len(speakers)
            )
            stop = spec.termination.check(snapshot)
        if stop is None and len(speakers) >= spec.max_rounds:
            stop = Stop("max_rounds", f"{len(speakers)} rounds (max_rounds {spec.max_rounds})")
        if stop is not None:
            return {"stop": stop.reason, "detail": stop.detail}
        last = speakers[-1] if speakers else None
        agents = tuple(spec.agents)
        candidates = agents
        if not spec.allow_repeated_speaker and last is not None and len(agents) > 1:
            candidates = tuple(a for a in agents if a != last)
        after = agents.index(last) + 1 if last is not None else 0
        rotated = agents[after:] + agents[:after]
        turn = next(a for a in rotated if a in candidates)
        round_robin = {"next": turn, "reason": "round robin"}
        selector = spec.selector
        if selector == ROUND_ROBIN:
            return round_robin
        if callable(selector):
            choice = selector(list(s.messages), spec.agents)
            if inspect.isawaitable(choice):
                choice = await choice
            if choice is None:
                return {"stop": "done", "detail": "the selector function finished the chat"}
            if choice in candidates:
                return {"next": choice, "reason": "chosen by the selector function"}
            why = "spoke last" if choice == last else "is not one of the agents"
            return {**round_robin, "fallback": f"the selector chose {choice!r}, who {why}"}
        return await self._ask(s, n, selector, candidates, round_robin)

    async def _ask(
        self,
        s: Session,
        n: int,
        manager: str,
        candidates: Sequence[str],
        round_robin: dict[str, Any],
    ) -> dict[str, Any]:
        spec = self.spec
        instruction = SELECT_INSTRUCTION.format(
            agents=", ".join(spec.agents), candidates=", ".join(candidates)
        )
        reply, problems = await ask_manager(
            s,
            self.participants[manager],
            f"route-{n}",
            schema=selection_schema(candidates),
            instruction=instruction,
            retries=spec.manager_retries,
            check=_finishes_or_names,
        )
        if reply is None:
            tries = len(problems)
            why = f"{manager}'s reply did not fit after {tries} tries ({problems[-1]})"
            return {**round_robin, "fallback": why}
        if reply.get("finish") is True:
            decided = {"stop": "done", "detail": f"{manager} finished: {reply['reason']}"}
            if "final_message" in reply:
                decided["final"] = reply["final_message"]
            return decided
        return {"next": reply["next_speaker"], "reason": f"{manager}: {reply['reason']}"}
