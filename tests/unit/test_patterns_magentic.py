"""Magentic: ledgers, stalls and replans, limits that still give a final answer, review."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from test_patterns_support import Bot, MemoryJournal, context, team

from podium.errors import DefinitionError
from podium.patterns import Budget, Magentic


def ledger(
    *,
    done: bool = False,
    progress: bool = True,
    loop: bool = False,
    who: str = "coder",
    says: str = "write the code",
) -> dict[str, Any]:
    def judged(answer: Any) -> dict[str, Any]:
        return {"reason": "because", "answer": answer}

    return {
        "is_request_satisfied": judged(done),
        "is_in_loop": judged(loop),
        "is_progress_being_made": judged(progress),
        "next_speaker": judged(who),
        "instruction_or_question": judged(says),
    }


class Orchestrator(Bot):
    """A manager whose progress ledgers come from a script, one a round."""

    def __init__(
        self,
        progress: list[Any],
        *,
        plan: Callable[[Mapping[str, Any]], Any] | None = None,
        final: Any = None,
    ) -> None:
        super().__init__("boss")
        self.progress = progress
        self.plan = plan
        self.final = final
        self.asked: list[str] = []

    async def call(self, payload: Any, ctx: Any) -> Any:
        await super().call(payload, ctx)
        title = payload["output_schema"]["title"]
        self.asked.append(title)
        if title == "task_ledger":
            if self.plan is not None:
                return self.plan(payload)
            before = re.search(r'"plan (\d+)"', payload["instruction"])  # when replanning
            made = 1 + int(before.group(1)) if before else 1
            return {"facts": [f"fact {made}"], "plan": [f"plan {made}"]}
        if title == "final_answer":
            if self.final is not None:
                return self.final
            return {"answer": f"final: {payload['instruction'].split('(')[1].split(')')[0]}"}
        return self.progress.pop(0) if len(self.progress) > 1 else self.progress[0]


def magentic(**options: Any) -> Magentic:
    return Magentic(agents=["coder", "tester"], manager="boss", **options)


async def run(spec: Magentic, boss: Bot, *others: Bot, journal: Any = None) -> Any:
    participants = team(boss, *(others or (Bot("coder"), Bot("tester"))))
    return await spec.build(participants, name="m").call({"task": "t"}, context(journal))


async def test_the_manager_plans_directs_and_gives_the_final_answer() -> None:
    boss = Orchestrator([ledger(who="tester", says="test it"), ledger(done=True)])
    tester = Bot("tester", ["all green"])
    journal = MemoryJournal()
    out = await run(magentic(), boss, Bot("coder"), tester, journal=journal)
    assert out["stop_reason"] == "done"
    assert out["answer"] == "final: request satisfied: because"
    assert out["ledger"] == {"facts": ["fact 1"], "plan": ["plan 1"]}
    assert tester.calls[0]["instruction"] == "test it"
    assert out["messages"] == [
        {"agent": "boss", "role": "assistant", "content": "test it"},
        {"agent": "tester", "role": "assistant", "content": "all green"},
    ]
    assert boss.asked == ["task_ledger", "progress_ledger", "progress_ledger", "final_answer"]
    assert '"plan 1"' in boss.calls[1]["instruction"]  # the progress question shows the plan
    assert journal.names == [
        "start",
        "ledger-1/try-1",
        "ledger-1",
        "route-1/try-1",
        "route-1",
        "turn-1",
        "route-2/try-1",
        "route-2",
        "final/try-1",
    ]


async def test_stalls_make_the_manager_replan_keeping_the_work_done() -> None:
    stuck = ledger(progress=False)
    boss = Orchestrator([stuck, ledger(loop=True), ledger(), ledger(done=True)])
    coder = Bot("coder", lambda p: f"code v{len(p['messages'])}")
    out = await run(magentic(max_stalls=2), boss, coder, Bot("tester"))
    assert out["resets"] == 1
    assert out["ledger"]["plan"] == ["plan 2"]
    replan = boss.calls[boss.asked.index("task_ledger", 1)]
    assert "The team is stuck" in replan["instruction"]
    assert '"plan 1"' in replan["instruction"]
    assert len(replan["messages"]) == 2  # the conversation is kept
    assert out["rounds"] == 2
    assert out["stop_reason"] == "done"


async def test_progress_pays_a_stall_back() -> None:
    stalls = [ledger(progress=False), ledger(), ledger(progress=False), ledger(done=True)]
    out = await run(magentic(max_stalls=2), Orchestrator(stalls))
    assert out["resets"] == 0
    assert out["stop_reason"] == "done"


async def test_after_max_resets_it_stops_but_still_answers() -> None:
    boss = Orchestrator([ledger(progress=False)])
    out = await run(magentic(max_stalls=1, max_resets=1), boss)
    assert out["stop_reason"] == "max_resets"
    assert out["resets"] == 1
    assert out["answer"].startswith("final: 1 stalls in a row after 1 replans")
    assert boss.asked[-1] == "final_answer"


async def test_with_no_resets_allowed_the_stall_limit_is_the_reason() -> None:
    out = await run(magentic(max_stalls=2, max_resets=0), Orchestrator([ledger(loop=True)]))
    assert out["stop_reason"] == "max_stalls"
    assert out["rounds"] == 1


async def test_max_rounds_ends_with_the_best_final_answer() -> None:
    boss = Orchestrator([ledger()])
    out = await run(magentic(max_rounds=3), boss)
    assert out["stop_reason"] == "max_rounds"
    assert out["answer"] == "final: 3 rounds "  # the manager was told why it had to answer
    assert out["rounds"] == 3


async def test_a_budget_stops_the_work_and_the_manager_still_answers() -> None:
    boss = Orchestrator([ledger()])
    coder = Bot("coder", model_tokens=40)
    out = await run(magentic(budget=Budget(max_tokens=100)), boss, coder, Bot("tester"))
    assert out["stop_reason"] == "budget"
    assert out["rounds"] == 3
    assert out["answer"].startswith("final: 120 tokens used")


async def test_a_progress_ledger_that_never_fits_counts_as_a_stall_and_goes_round_robin() -> None:
    boss = Orchestrator(["nonsense", "nonsense", ledger(done=True)])
    journal = MemoryJournal()
    out = await run(magentic(manager_retries=1, max_stalls=3), boss, journal=journal)
    decision = journal.output("route-1")
    assert decision["stalls"] == 1
    assert decision["next"] == "coder"
    assert out["fallbacks"][0].startswith("route-1: boss's progress ledger did not fit")
    assert out["stop_reason"] == "done"


async def test_a_task_ledger_that_never_fits_falls_back_to_taking_turns() -> None:
    boss = Orchestrator([ledger(done=True)], plan=lambda p: {"facts": "not a list"})
    out = await run(magentic(manager_retries=0), boss)
    assert out["ledger"]["plan"] == [
        "each agent in turn (coder, tester) works on the request",
    ]
    assert out["fallbacks"][0].startswith("ledger-1: boss's ledger did not fit")


async def test_a_final_answer_that_never_fits_gives_the_last_message() -> None:
    boss = Orchestrator([ledger(), ledger(done=True)], final="just text")
    out = await run(magentic(), boss, Bot("coder", ["the code"]), Bot("tester"))
    assert out["answer"] == "the code"
    assert out["fallbacks"][-1].startswith("final: boss's answer did not fit")


async def test_reviewing_the_plan_without_a_person_stops_with_the_plan() -> None:
    boss = Orchestrator([ledger()])
    out = await run(magentic(review_plan=True), boss)
    assert out["stop_reason"] == "human_requested"
    assert '"plan 1"' in out["question"]
    assert out["answer"] is None
    assert boss.asked == ["task_ledger"]


async def test_a_person_edits_the_plan_or_gives_feedback() -> None:
    person = Bot("ann", [{"plan": ["do it my way"]}, "careful with dates"])
    boss = Orchestrator([ledger(progress=False), ledger(done=True)])
    spec = magentic(review_plan=True, human="ann", max_stalls=1)
    participants = team(boss, Bot("coder"), Bot("tester"), person)
    journal = MemoryJournal()
    out = await spec.build(participants, name="m").call({"task": "t"}, context(journal))
    assert '"plan 1"' in person.calls[0]["question"]
    assert '"do it my way"' in boss.calls[1]["instruction"]  # the edited plan is used
    assert {"agent": "ann", "role": "user", "content": "careful with dates"} in out["messages"]
    assert {"review-1", "review-2"} <= set(journal.names)


async def test_a_replay_from_any_point_ends_the_same_calling_no_recorded_turn_again() -> None:
    def cast() -> tuple[Orchestrator, Bot, Bot]:
        boss = Orchestrator(
            [
                ledger(progress=False),
                ledger(who="tester"),
                ledger(progress=False),
                ledger(done=True),
            ]
        )
        return boss, Bot("coder", model_tokens=3), Bot("tester", tokens=2)

    journal = MemoryJournal()
    whole = await run(magentic(max_stalls=1), *cast(), journal=journal)
    assert whole["resets"] == 2
    for count in range(len(journal.names)):
        boss, coder, tester = cast()
        done = journal.names[:count]
        # the scripted manager answers in order: skip the answers already recorded
        boss.progress = boss.progress[sum(1 for n in done if re.fullmatch(r"route-\d+/try-1", n)) :]
        resumed = await run(magentic(max_stalls=1), boss, coder, tester, journal=journal.cut(count))
        assert resumed == whole
        remade = len(boss.calls) + len(coder.calls) + len(tester.calls)
        made_before = sum(1 for n in done if n.split("/")[-1].startswith(("try-", "turn-")))
        total = sum(1 for n in journal.names if n.split("/")[-1].startswith(("try-", "turn-")))
        assert remade == total - made_before


def test_magentic_checks_its_definition() -> None:
    participants = team(Bot("boss"), Bot("coder"), Bot("tester"))
    with pytest.raises(DefinitionError, match="manager 'chief'"):
        Magentic(agents=["coder"], manager="chief").build(participants, name="m")
    with pytest.raises(DefinitionError, match="is an agent"):
        Magentic(agents=["coder", "boss"], manager="boss").build(participants, name="m")
    with pytest.raises(DefinitionError, match="max_stalls"):
        magentic(max_stalls=0).build(participants, name="m")
    with pytest.raises(DefinitionError, match="human 'ann'"):
        magentic(human="ann").build(participants, name="m")
