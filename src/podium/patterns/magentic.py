"""Magentic: a manager plans, directs the agents round by round, and replans when stuck.

As in Magentic-One, the manager keeps a task ledger (the facts, and a plan) and, before
every round, fills in a progress ledger: is the request satisfied, are we in a loop, is
progress being made, who speaks next and with what instruction. A round without progress
(or in a loop) is a stall; `max_stalls` stalls in a row (progress pays one back) make the
manager replan: new facts and a new plan, keeping the conversation and so the work already
done. After `max_resets` replans, or `max_rounds` rounds, or at a budget, the manager is
still asked for the best final answer it can give from what the team has.

Recorded: `ledger-k` (the k-th task ledger, with its tries `ledger-k/try-j`), `review-k`
(a person's review of it), `route-n` (the progress ledger and what was decided),
`turn-n` (the agent's turn), `final` tries (`final/try-j`).
"""

from __future__ import annotations

import json
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
    check_agents,
    check_names,
    check_positive,
)
from podium.patterns.manager import ask_manager

TASK_LEDGER_SCHEMA: dict[str, Any] = {
    "title": "task_ledger",
    "type": "object",
    "properties": {
        "facts": {"type": "array", "items": {"type": "string"}},
        "plan": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["facts", "plan"],
    "additionalProperties": False,
}
FINAL_ANSWER_SCHEMA: dict[str, Any] = {
    "title": "final_answer",
    "type": "object",
    "properties": {"answer": {"description": "the final answer to the request"}},
    "required": ["answer"],
    "additionalProperties": False,
}

FACTS_AND_PLAN = (
    "Before the team ({agents}) begins, list the facts: those given in the request, those "
    "to look up, those to derive, and educated guesses. Then devise a short plan, one step a "
    "line, saying which agent does what."
)
REPLAN = (
    "The team is stuck: no progress is being made, or it is going round in a loop. Update "
    "the facts with what has been learned, and devise a new plan that gets past the "
    "difficulty. Keep the work already completed; do not repeat it.\n\nThe current ledger:\n"
    "{ledger}"
)
PROGRESS = (
    "The facts and the plan:\n{ledger}\n\nJudge the conversation so far: is the request "
    "fully satisfied; are we in a loop (the same requests and replies again and again); are "
    "we making progress; who among {agents} speaks next; what instruction or question do "
    "you give them. Answer each with a reason."
)
FINAL = (
    "The work ends here ({why}). From the conversation, give the best final answer to the "
    "request that the team's work supports."
)
REVIEW = "Please review the plan for the task. Reply to approve it, or give a new plan."


def progress_schema(agents: Sequence[str]) -> dict[str, Any]:
    """The progress ledger the manager fills in before every round, as in Magentic-One."""

    def judged(answer: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"reason": {"type": "string"}, "answer": answer},
            "required": ["reason", "answer"],
            "additionalProperties": False,
        }

    questions = {
        "is_request_satisfied": judged({"type": "boolean"}),
        "is_in_loop": judged({"type": "boolean"}),
        "is_progress_being_made": judged({"type": "boolean"}),
        "next_speaker": judged({"enum": list(agents)}),
        "instruction_or_question": judged({"type": "string"}),
    }
    return {
        "title": "progress_ledger",
        "type": "object",
        "properties": questions,
        "required": list(questions),
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Magentic:
    """A manager that plans, picks the next speaker and instruction each round, and replans.

    `manager` names the participant that keeps the ledgers; it is called with
    `output_schema` titled `task_ledger`, `progress_ledger` or `final_answer`. With
    `review_plan`, each plan goes to `human` (a participant standing for a person) before
    work starts; without `human`, the pattern stops with `human_requested` and the plan.
    """

    agents: Sequence[str]
    manager: str
    max_rounds: int = 20
    max_stalls: int = 3
    max_resets: int = 2
    manager_retries: int = 2
    human: str | None = None
    review_plan: bool = False
    budget: Budget = NO_BUDGET

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))

    @property
    def participants(self) -> tuple[str, ...]:
        """Every participant this pattern names, for checking them before a run."""
        return (*self.agents, self.manager, *((self.human,) if self.human else ()))

    def build(self, participants: Mapping[str, Agent], *, name: str) -> Agent:
        check_agents(name, self.agents, participants)
        check_names(name, "manager", [self.manager], participants)
        if self.manager in self.agents:
            raise DefinitionError(f"pattern {name!r}: the manager {self.manager!r} is an agent")
        if self.human is not None:
            check_names(name, "human", [self.human], participants)
        check_positive(
            name,
            max_rounds=self.max_rounds,
            max_resets=self.max_resets,
            manager_retries=self.manager_retries,
        )
        if self.max_stalls < 1:
            raise DefinitionError(f"pattern {name!r}: max_stalls must be at least 1")
        return MagenticAgent(self, name, participants)


@dataclass(slots=True, kw_only=True)
class _Progress:
    """Where the team stands; rebuilt from the recorded decisions on replay."""

    ledger: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] | None = None
    stalls: int = 0
    resets: int = 0
    rounds: int = 0
    fallbacks: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class MagenticAgent(PatternAgent):
    def __init__(self, spec: Magentic, name: str, participants: Mapping[str, Agent]) -> None:
        super().__init__(name, participants)
        self.spec = spec
        self.manager = participants[spec.manager]

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        s = Session(self.name, ctx, payload, self.spec.budget)
        await s.begin()
        team = _Progress()
        try:
            stop = await self._plan(s, team)
            if stop is None:
                stop = await self._work(s, team)
        except OutOfTime as exc:
            stop = Stop("timeout", f"{exc}: max_seconds reached")
        answer = None
        if stop.reason != "human_requested":
            answer = await self._final(s, team, stop)
        return s.result(
            answer,
            stop,
            ledger=team.ledger,
            progress=team.progress,
            rounds=team.rounds,
            resets=team.resets,
            stalls=team.stalls,
            fallbacks=team.fallbacks,
            **team.extra,
        )

    async def _plan(self, s: Session, team: _Progress) -> Stop | None:
        """Make (or remake) the task ledger, and have a person review it if asked to."""
        k = team.resets + 1
        before = team.ledger

        async def decide() -> dict[str, Any]:
            if k == 1:
                told = FACTS_AND_PLAN.format(agents=", ".join(self.spec.agents))
            else:
                told = REPLAN.format(ledger=_show(before))
            ledger, problems = await ask_manager(
                s,
                self.manager,
                f"ledger-{k}",
                schema=TASK_LEDGER_SCHEMA,
                instruction=told,
                retries=self.spec.manager_retries,
            )
            if ledger is not None:
                return {"facts": ledger["facts"], "plan": ledger["plan"]}
            kept = "kept the previous plan" if before else "the agents take turns"
            turns = f"each agent in turn ({', '.join(self.spec.agents)}) works on the request"
            return {
                "facts": list(before.get("facts", [])),
                "plan": list(before.get("plan", [turns])),
                "fallback": f"{self.spec.manager}'s ledger did not fit ({problems[-1]}); {kept}",
            }

        decided = await s.decide(f"ledger-{k}", decide)
        if "fallback" in decided:
            team.fallbacks.append(f"ledger-{k}: {decided['fallback']}")
        team.ledger = {"facts": decided["facts"], "plan": decided["plan"]}
        if self.spec.review_plan:
            return await self._review(s, team, k)
        return None

    async def _review(self, s: Session, team: _Progress, k: int) -> Stop | None:
        question = f"{REVIEW}\n\n{_show(team.ledger)}"
        if self.spec.human is None:
            team.extra = {"question": question, "asked_by": self.spec.manager}
            return Stop("human_requested", "the plan awaits a person's review")
        human = self.participants[self.spec.human]
        said = await s.ask_human(human, f"review-{k}", question, self.spec.manager)
        if isinstance(said, Mapping) and ("plan" in said or "facts" in said):
            edited = {key: said[key] for key in ("facts", "plan") if key in said}
            team.ledger = {**team.ledger, **edited}
        elif not _approves(said):
            s.say(self.spec.human, said, role="user")  # feedback the whole team should hear
        return None

    async def _work(self, s: Session, team: _Progress) -> Stop:
        n = 0
        while True:
            n += 1

            async def route(n: int = n) -> dict[str, Any]:
                return await self._route(s, team, n)

            decision = await s.decide(f"route-{n}", route)
            team.stalls = decision.get("stalls", team.stalls)
            if "progress" in decision:
                team.progress = decision["progress"]
            if "fallback" in decision:
                team.fallbacks.append(f"route-{n}: {decision['fallback']}")
            if "stop" in decision:
                return Stop(decision["stop"], decision["detail"])
            if decision.get("replan"):
                team.resets += 1
                team.stalls = 0
                stop = await self._plan(s, team)
                if stop is not None:
                    return stop
                continue
            who, instruction = decision["next"], decision["instruction"]
            s.say(self.spec.manager, instruction)
            reply = await s.turn(self.participants[who], f"turn-{n}", instruction=instruction)
            s.say(who, reply)
            team.rounds += 1

    async def _route(self, s: Session, team: _Progress, n: int) -> dict[str, Any]:
        """The progress ledger, and what follows from it. Runs inside `route-n`."""
        spec = self.spec
        stop = s.over_budget()
        if stop is None and team.rounds >= spec.max_rounds:
            stop = Stop("max_rounds", f"{team.rounds} rounds (max_rounds {spec.max_rounds})")
        if stop is not None:
            return {"stop": stop.reason, "detail": stop.detail}
        told = PROGRESS.format(ledger=_show(team.ledger), agents=", ".join(spec.agents))
        progress, problems = await ask_manager(
            s,
            self.manager,
            f"route-{n}",
            schema=progress_schema(spec.agents),
            instruction=told,
            retries=spec.manager_retries,
        )
        decided: dict[str, Any] = {}
        if progress is None:  # no usable ledger: count a stall, let the next agent go on
            decided["fallback"] = (
                f"{spec.manager}'s progress ledger did not fit ({problems[-1]}); "
                "counted as a stall, round robin"
            )
            stalled = True
            last = team.rounds % len(spec.agents)
            who, instruction = spec.agents[last], "Continue with the task."
        else:
            decided["progress"] = progress
            if progress["is_request_satisfied"]["answer"]:
                why = progress["is_request_satisfied"]["reason"]
                return {**decided, "stop": "done", "detail": f"request satisfied: {why}"}
            stalled = (
                progress["is_in_loop"]["answer"] or not progress["is_progress_being_made"]["answer"]
            )
            who = progress["next_speaker"]["answer"]
            instruction = progress["instruction_or_question"]["answer"]
        stalls = team.stalls + 1 if stalled else max(team.stalls - 1, 0)
        decided["stalls"] = stalls
        if stalls < spec.max_stalls:
            return {**decided, "next": who, "instruction": instruction}
        if team.resets < spec.max_resets:
            return {**decided, "replan": True}
        reason = "max_resets" if spec.max_resets > 0 else "max_stalls"
        detail = (
            f"{stalls} stalls in a row after {team.resets} replans (max_resets {spec.max_resets})"
        )
        return {**decided, "stop": reason, "detail": detail}

    async def _final(self, s: Session, team: _Progress, stop: Stop) -> Any:
        """The best final answer the manager can give; the last message if it cannot."""
        reply, problems = await ask_manager(
            s,
            self.manager,
            "final",
            schema=FINAL_ANSWER_SCHEMA,
            instruction=FINAL.format(why=stop.detail),
            retries=self.spec.manager_retries,
            timed=False,
        )
        if reply is None:
            team.fallbacks.append(
                f"final: {self.spec.manager}'s answer did not fit ({problems[-1]}); "
                "the last message is the answer"
            )
            return s.last_content()
        return reply["answer"]


def _approves(said: Any) -> bool:
    """Whether a person's reply to a plan is a plain yes (no edits, no feedback)."""
    if isinstance(said, Mapping):
        return said.get("approved") is True and len(said) == 1
    return said in (None, True, "")


def _show(ledger: Mapping[str, Any]) -> str:
    return json.dumps(dict(ledger), indent=2, ensure_ascii=False)
