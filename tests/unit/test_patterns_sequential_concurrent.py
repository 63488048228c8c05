"""Sequential and concurrent: order, context modes, aggregation, quorum, timeouts, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from test_patterns_support import Bot, MemoryJournal, context, team

from podium.agents import Agent
from podium.errors import AgentError, DefinitionError
from podium.patterns import Budget, Concurrent, Handoff, Message, Sequential

# ---- sequential -----------------------------------------------------------------------------


async def test_sequential_calls_each_agent_in_order_with_the_full_conversation() -> None:
    writer, editor = Bot("writer", ["draft"]), Bot("editor", ["edited draft"])
    journal = MemoryJournal()
    spec = Sequential(agents=["writer", "editor"])
    out = await spec.build(team(writer, editor), name="doc").call({"task": "t"}, context(journal))
    assert out["answer"] == "edited draft"
    assert out["stop_reason"] == "done"
    assert editor.calls[0] == {
        "task": "t",
        "messages": [{"agent": "writer", "role": "assistant", "content": "draft"}],
    }
    assert journal.names == ["start", "route-1", "turn-1", "route-2", "turn-2"]
    assert writer.paths == ["turn-1/"]  # its own calls are recorded under its turn


async def test_previous_context_shows_only_the_previous_agents_message() -> None:
    bots = [Bot("a", ["A"]), Bot("b", ["B"]), Bot("c", ["C"])]
    spec = Sequential(agents=["a", "b", "c"], context="previous")
    await spec.build(team(*bots), name="s").call({"task": "t"}, context())
    assert bots[0].calls[0]["messages"] == []
    assert bots[2].calls[0]["messages"] == [{"agent": "b", "role": "assistant", "content": "B"}]


async def test_a_custom_context_function_builds_the_payload() -> None:
    def only_text(task: Any, messages: Sequence[Message]) -> Any:
        return {"text": messages[-1]["content"] if messages else task}

    bots = [Bot("a", ["A"]), Bot("b", ["B"])]
    spec = Sequential(agents=["a", "b"], context=only_text)
    await spec.build(team(*bots), name="s").call({"task": "t"}, context())
    assert bots[0].calls[0] == {"text": "t"}
    assert bots[1].calls[0] == {"text": "A"}


async def test_a_sequential_step_stops_at_its_token_budget_with_the_best_answer_so_far() -> None:
    bots = [Bot("a", ["A"], model_tokens=30), Bot("b", ["B"], model_tokens=30), Bot("c")]
    spec = Sequential(agents=["a", "b", "c"], budget=Budget(max_tokens=50))
    out = await spec.build(team(*bots), name="s").call({"task": "t"}, context(MemoryJournal()))
    assert out["stop_reason"] == "budget"
    assert out["answer"] == "B"
    assert out["usage"] == {"tokens": 60, "cost": 0.0}
    assert bots[2].calls == []


async def test_a_sequential_agent_that_raises_fails_the_pattern() -> None:
    bots = [Bot("a"), Bot("b", raises=ValueError("bad input"))]
    with pytest.raises(AgentError, match="'b' failed in turn-2: ValueError: bad input"):
        await Sequential(agents=["a", "b"]).build(team(*bots), name="s").call("t", context())


def test_sequential_checks_its_definition() -> None:
    with pytest.raises(DefinitionError, match="agent 'x' is not among the participants"):
        Sequential(agents=["x"]).build(team(Bot("a")), name="s")
    with pytest.raises(DefinitionError, match="lists agent 'a' twice"):
        Sequential(agents=["a", "a"]).build(team(Bot("a")), name="s")
    with pytest.raises(DefinitionError, match="at least one agent"):
        Sequential(agents=[]).build(team(Bot("a")), name="s")
    with pytest.raises(DefinitionError, match="context 'all'"):
        Sequential(agents=["a"], context="all").build(team(Bot("a")), name="s")  # type: ignore[arg-type]


# ---- concurrent -----------------------------------------------------------------------------


async def test_concurrent_gives_everyone_the_task_and_lists_the_answers_in_order() -> None:
    bots = [Bot("a", ["A"], delay=0.02), Bot("b", ["B"]), Bot("c", ["C"], delay=0.01)]
    journal = MemoryJournal()
    out = (
        await Concurrent(agents=["a", "b", "c"])
        .build(team(*bots), name="all")
        .call({"task": "t"}, context(journal))
    )
    assert out["answer"] == ["A", "B", "C"]
    assert out["stop_reason"] == "done"
    assert all(bot.calls[0] == {"task": "t", "messages": []} for bot in bots)
    assert journal.output("gather")["statuses"] == {"a": "ok", "b": "ok", "c": "ok"}
    assert journal.names[-1] == "gather"


async def test_one_failed_and_one_slow_agent_do_not_sink_the_step() -> None:
    bots = [Bot("a", ["A"]), Bot("b", raises=RuntimeError("down")), Bot("c", ["C"], delay=5)]
    journal = MemoryJournal()
    spec = Concurrent(agents=["a", "b", "c"], agent_timeout=0.05)
    out = await spec.build(team(*bots), name="all").call({"task": "t"}, context(journal))
    assert out["answer"] == ["A"]
    assert out["stop_reason"] == "done"
    assert out["failures"] == [
        {"agent": "b", "status": "failed", "error": "RuntimeError: down"},
        {"agent": "c", "status": "timeout", "error": "no answer within 0.05s"},
    ]
    assert journal.output("turn-3") == {"status": "timeout", "error": "no answer within 0.05s"}


async def test_a_quorum_stops_waiting_and_cancels_the_rest() -> None:
    cancelled = asyncio.Event()

    class Stuck(Bot):
        async def call(self, payload: Any, ctx: Any) -> Any:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return None

    bots = [Bot("a", ["A"]), Stuck("b"), Bot("c", ["C"], delay=0.01)]
    journal = MemoryJournal()
    spec = Concurrent(agents=["a", "b", "c"], quorum=2)
    out = await spec.build(team(*bots), name="all").call({"task": "t"}, context(journal))
    assert out["stop_reason"] == "quorum"
    assert out["answer"] == ["A", "C"]
    assert cancelled.is_set()
    assert journal.output("gather")["statuses"] == {"a": "ok", "b": "cancelled", "c": "ok"}
    assert "turn-2" not in journal.names


async def test_a_quorum_not_reached_says_so() -> None:
    bots = [Bot("a", ["A"]), Bot("b", raises=RuntimeError("x")), Bot("c", raises=OSError("y"))]
    spec = Concurrent(agents=["a", "b", "c"], quorum=2)
    out = await spec.build(team(*bots), name="all").call({"task": "t"}, context())
    assert out["stop_reason"] == "no_quorum"
    assert out["answer"] == ["A"]


async def test_when_nobody_answers_there_is_no_answer() -> None:
    bots = [Bot("a", raises=RuntimeError("x"))]
    out = await Concurrent(agents=["a"]).build(team(*bots), name="all").call("t", context())
    assert (out["stop_reason"], out["answer"]) == ("all_failed", None)


async def test_the_wall_time_budget_stops_waiting_for_the_slow_ones() -> None:
    bots = [Bot("a", ["A"]), Bot("b", ["B"], delay=5)]
    spec = Concurrent(agents=["a", "b"], budget=Budget(max_seconds=0.05))
    out = await spec.build(team(*bots), name="all").call({"task": "t"}, context())
    assert out["stop_reason"] == "timeout"
    assert out["answer"] == ["A"]
    assert out["results"]["b"]["status"] == "cancelled"


async def test_a_function_aggregator_gets_the_answers_by_agent() -> None:
    def vote(task: Any, answers: Mapping[str, Any]) -> Any:
        return max(set(answers.values()), key=list(answers.values()).count)

    bots = [Bot("a", ["yes"]), Bot("b", ["no"]), Bot("c", ["yes"])]
    journal = MemoryJournal()
    spec = Concurrent(agents=["a", "b", "c"], aggregator=vote)
    out = await spec.build(team(*bots), name="vote").call({"task": "t"}, context(journal))
    assert out["answer"] == "yes"
    assert journal.kinds["aggregate"] == "aggregate"


async def test_an_agent_aggregator_summarises_the_answers_as_a_conversation() -> None:
    summariser = Bot("sum", lambda p: " + ".join(m["content"] for m in p["messages"]))
    bots = [Bot("a", ["A"]), Bot("b", ["B"]), summariser]
    spec = Concurrent(agents=["a", "b"], aggregator="sum")
    out = await spec.build(team(*bots), name="s").call({"task": "t"}, context(MemoryJournal()))
    assert out["answer"] == "A + B"
    assert "Combine" in summariser.calls[0]["instruction"]
    assert summariser.paths == ["aggregate/"]


async def test_a_replay_reads_the_outcomes_back_and_calls_nobody() -> None:
    journal = MemoryJournal()
    first = [Bot("a", ["A"]), Bot("b", raises=RuntimeError("x")), Bot("c", ["C"], delay=5)]
    spec = Concurrent(agents=["a", "b", "c"], quorum=1, agent_timeout=1)
    whole = await spec.build(team(*first), name="s").call({"task": "t"}, context(journal))
    again = [Bot("a", ["other"]), Bot("b"), Bot("c")]
    replayed = await spec.build(team(*again), name="s").call({"task": "t"}, context(journal))
    assert replayed == whole
    assert [len(b.calls) for b in again] == [0, 0, 0]


def test_concurrent_checks_its_definition() -> None:
    bots = team(Bot("a"), Bot("b"))
    with pytest.raises(DefinitionError, match="quorum 3"):
        Concurrent(agents=["a", "b"], quorum=3).build(bots, name="s")
    with pytest.raises(DefinitionError, match="aggregator 'x'"):
        Concurrent(agents=["a", "b"], aggregator="x").build(bots, name="s")
    with pytest.raises(DefinitionError, match="timeout"):
        Concurrent(agents=["a"], agent_timeout=0).build(bots, name="s")
    with pytest.raises(DefinitionError, match="max_turns 1"):
        Concurrent(agents=["a", "b"], budget=Budget(max_turns=1)).build(bots, name="s")


# ---- shared behaviour -----------------------------------------------------------------------


async def test_a_resume_does_not_reset_the_wall_time_budget() -> None:
    journal = MemoryJournal()
    spec = Sequential(agents=["a"], budget=Budget(max_seconds=50))
    await spec.build(team(Bot("a")), name="s").call({"task": "t"}, context(journal))
    crashed = journal.cut(1)  # only the start was recorded ...
    crashed.calls["p", "start"] = (time.time() - 100, None)  # ... 100 s ago
    late = Bot("a")
    out = await spec.build(team(late), name="s").call({"task": "t"}, context(crashed))
    assert out["stop_reason"] == "timeout"
    assert late.calls == []


async def test_a_pattern_can_be_a_participant_of_another() -> None:
    inner = Handoff(agents=["x", "y"]).build(
        team(Bot("x", [{"handoff_to": "y"}]), Bot("y", ["y did it"], model_tokens=4)), name="desk"
    )
    outer = Sequential(agents=["desk", "z"])
    z = Bot("z", lambda p: f"z saw {p['messages'][0]['content']['answer']}")
    journal = MemoryJournal()
    participants: dict[str, Agent] = {"desk": inner, "z": z}
    out = await outer.build(participants, name="s").call({"task": "t"}, context(journal))
    assert out["answer"] == "z saw y did it"
    assert out["usage"]["tokens"] == 4
    assert "turn-1/turn-2/model-1" in journal.names  # the inner pattern's calls, nested
    replayed = await outer.build(participants, name="s").call({"task": "t"}, context(journal))
    assert replayed == out  # usage too: what the nested calls spent is read back
