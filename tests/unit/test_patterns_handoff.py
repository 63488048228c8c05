"""Handoff: the holder answers or passes the conversation on; loops and limits stop it."""

from __future__ import annotations

from typing import Any

import pytest
from test_patterns_support import Bot, MemoryJournal, context, handoff_to, team

from podium.errors import AgentError, DefinitionError
from podium.patterns import Budget, Handoff


async def test_the_holder_hands_off_and_the_target_answers() -> None:
    triage = Bot("triage", [handoff_to("billing", reason="an invoice question")])
    billing = Bot("billing", ["refunded"])
    journal = MemoryJournal()
    support = Handoff(agents=["triage", "billing"], start="triage").build(
        team(triage, billing), name="support"
    )
    out = await support.call({"task": "my invoice is wrong"}, context(journal))
    assert out["answer"] == "refunded"
    assert out["stop_reason"] == "done"
    assert out["path"] == ["triage", "billing"]
    assert out["handoffs"] == 1
    assert [m["agent"] for m in out["messages"]] == ["triage", "billing"]
    assert triage.calls[0]["handoffs"] == ["billing"]
    assert billing.calls[0]["messages"][0]["content"]["handoff_to"] == "billing"
    assert journal.names == ["start", "route-1", "turn-1", "route-2", "turn-2"]
    assert journal.output("route-2") == {
        "next": "billing",
        "reason": "handoff from triage: an invoice question",
    }


async def test_an_explicit_graph_limits_the_targets_and_a_wrong_target_stops() -> None:
    triage = Bot("triage", [handoff_to("refunds")])
    graph = {"triage": ["billing"], "billing": ["refunds"]}
    spec = Handoff(agents=["triage", "billing", "refunds"], graph=graph)
    agents = team(triage, Bot("billing"), Bot("refunds"))
    out = await spec.build(agents, name="s").call({"task": "t"}, context())
    assert triage.calls[0]["handoffs"] == ["billing"]
    assert out["stop_reason"] == "invalid_handoff"
    assert "'refunds'; it may hand off to billing" in out["detail"]


async def test_ping_pong_without_new_content_stops_with_a_clear_status() -> None:
    a = Bot("a", [handoff_to("b")])
    b = Bot("b", [handoff_to("a")])
    out = (
        await Handoff(agents=["a", "b"], max_handoffs=50)
        .build(team(a, b), name="s")
        .call({"task": "t"}, context())
    )
    assert out["stop_reason"] == "ping_pong"
    assert out["handoffs"] == 3  # a->b, b->a, a->b
    assert (len(a.calls), len(b.calls)) == (2, 1)


async def test_handing_back_and_forth_with_new_content_each_time_is_not_ping_pong() -> None:
    a = Bot("a", lambda p: handoff_to("b", content=f"a-note {len(p['messages'])}"))
    b = Bot("b", lambda p: handoff_to("a", content=f"b-note {len(p['messages'])}"))
    out = (
        await Handoff(agents=["a", "b"], max_handoffs=4)
        .build(team(a, b), name="s")
        .call({"task": "t"}, context())
    )
    assert out["stop_reason"] == "max_handoffs"
    assert out["handoffs"] == 5
    assert out["answer"] == "a-note 4"  # the last thing said, not the handoff itself


async def test_max_handoffs_zero_forbids_any_handoff() -> None:
    a = Bot("a", [handoff_to("b", content="partial")])
    out = (
        await Handoff(agents=["a", "b"], max_handoffs=0)
        .build(team(a, Bot("b")), name="s")
        .call("plain task", context())
    )
    assert out["stop_reason"] == "max_handoffs"
    assert out["answer"] == "partial"


async def test_asking_for_a_person_without_a_human_stops_with_the_question() -> None:
    a = Bot("a", [{"ask_human": "which invoice?"}])
    out = await Handoff(agents=["a"]).build(team(a), name="s").call({"task": "t"}, context())
    assert out["stop_reason"] == "human_requested"
    assert out["question"] == "which invoice?"
    assert out["asked_by"] == "a"


async def test_a_human_participant_answers_and_the_asker_keeps_the_conversation() -> None:
    a = Bot("a", [{"ask_human": "which invoice?"}, "invoice 7 refunded"])
    person = Bot("person", ["number 7"])
    journal = MemoryJournal()
    spec = Handoff(agents=["a"], human="person")
    out = await spec.build(team(a, person), name="s").call({"task": "t"}, context(journal))
    assert out["answer"] == "invoice 7 refunded"
    assert person.calls[0]["question"] == "which invoice?"
    assert person.calls[0]["asked_by"] == "a"
    assert a.calls[1]["messages"][-1] == {"agent": "person", "role": "user", "content": "number 7"}
    assert {"asked-human-1", "human-1"} <= set(journal.names)
    assert journal.kinds["human-1"] == "human"


async def test_a_participant_that_raises_fails_naming_it_and_keeps_retryability() -> None:
    boom = AgentError("db down")
    boom.retryable = False
    a = Bot("a", [handoff_to("b")])
    spec = Handoff(agents=["a", "b"])
    with pytest.raises(AgentError, match="'b' failed in turn-2") as caught:
        await spec.build(team(a, Bot("b", raises=boom)), name="s").call({"task": "t"}, context())
    assert caught.value.retryable is False


async def test_a_retry_after_a_failure_reads_the_turns_taken_back() -> None:
    journal = MemoryJournal()
    a = Bot("a", [handoff_to("b")], model_tokens=5)
    flaky = Bot("b", raises=RuntimeError("flaky"))
    spec = Handoff(agents=["a", "b"])
    with pytest.raises(AgentError):
        await spec.build(team(a, flaky), name="s").call({"task": "t"}, context(journal))
    fine = Bot("b", ["done"])
    ctx = context(journal)
    out = await spec.build(team(a, fine), name="s").call({"task": "t"}, ctx)
    assert out["answer"] == "done"
    assert len(a.calls) == 1  # not called again
    assert out["usage"]["tokens"] == 5  # its recorded model call still counts


async def test_the_budget_stops_the_conversation_between_turns() -> None:
    a = Bot("a", [handoff_to("b", content="x1")], tokens=40)
    b = Bot("b", [handoff_to("a", content="x2")], tokens=40)
    spec = Handoff(agents=["a", "b"], budget=Budget(max_tokens=70))
    journal = MemoryJournal()
    ctx = context(journal)
    out = await spec.build(team(a, b), name="s").call({"task": "t"}, ctx)
    assert out["stop_reason"] == "budget"
    assert out["usage"] == {"tokens": 80, "cost": 0.0}
    assert ctx.usage.tokens == 0  # moved onto the turns' records: counted once
    assert journal.calls["p", "turn-1"][1] is not None


async def test_max_turns_is_a_budget_too() -> None:
    a = Bot("a", lambda p: handoff_to("b", content=str(len(p["messages"]))))
    b = Bot("b", lambda p: handoff_to("a", content=str(len(p["messages"]))))
    spec = Handoff(agents=["a", "b"], budget=Budget(max_turns=3))
    out = await spec.build(team(a, b), name="s").call({"task": "t"}, context())
    assert out["stop_reason"] == "max_turns"
    assert out["turns"] == 3


async def test_a_turn_past_max_seconds_is_cut_short() -> None:
    slow = Bot("a", ["late"], delay=5)
    spec = Handoff(agents=["a"], budget=Budget(max_seconds=0.05))
    out = await spec.build(team(slow), name="s").call({"task": "t"}, context())
    assert out["stop_reason"] == "timeout"
    assert out["answer"] is None


async def test_a_crash_resumes_without_calling_the_completed_turns_again() -> None:
    def build(*bots: Bot) -> Any:
        return Handoff(agents=["a", "b", "c"]).build(team(*bots), name="s")

    script: dict[str, list[Any]] = {
        "a": [handoff_to("b", content="to b")],
        "b": [handoff_to("c", content="to c")],
        "c": ["answer"],
    }
    journal = MemoryJournal()
    whole = await build(*(Bot(n, s) for n, s in script.items())).call(
        {"task": "t"}, context(journal)
    )
    for count in range(len(journal.names)):
        bots = [Bot(n, s) for n, s in script.items()]
        resumed = await build(*bots).call({"task": "t"}, context(journal.cut(count)))
        assert resumed == whole
        taken = sum(1 for name in journal.names[:count] if name.startswith("turn-"))
        assert sum(len(bot.calls) for bot in bots) == 3 - taken


def test_build_names_what_is_wrong() -> None:
    agents = team(Bot("a"), Bot("b"))
    with pytest.raises(DefinitionError, match="start agent 'z'"):
        Handoff(agents=["a", "b"], start="z").build(agents, name="s")
    with pytest.raises(DefinitionError, match="agent 'c' is not among"):
        Handoff(agents=["a", "c"]).build(agents, name="s")
    with pytest.raises(DefinitionError, match="handoff target of 'a' 'q'"):
        Handoff(agents=["a", "b"], graph={"a": ["q"]}).build(agents, name="s")
    with pytest.raises(DefinitionError, match="human 'h'"):
        Handoff(agents=["a", "b"], human="h").build(agents, name="s")
    with pytest.raises(DefinitionError, match="itself"):
        Handoff(agents=["a", "b"], graph={"a": ["a"]}).build(agents, name="s")
