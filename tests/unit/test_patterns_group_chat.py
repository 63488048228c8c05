"""Group chat: speaker selection, fallbacks, limits, and termination conditions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from test_patterns_support import Bot, MemoryJournal, context, team

from podium.errors import AgentError, DefinitionError
from podium.model import Usage
from podium.patterns import (
    AllOf,
    AnyOf,
    Budget,
    ExternalStop,
    GroupChat,
    MaxMessages,
    Message,
    Snapshot,
    StopWhen,
    TextMention,
    Timeout,
    TokenBudget,
)


def chat(**options: Any) -> GroupChat:
    return GroupChat(agents=["a", "b", "c"], **options)


def bots(*extra: Bot, **tokens: int) -> dict[str, Bot]:
    return team(Bot("a", tokens=tokens.get("a", 0)), Bot("b"), Bot("c"), *extra)


async def run(spec: GroupChat, participants: Mapping[str, Bot], journal: Any = None) -> Any:
    return await spec.build(participants, name="chat").call({"task": "t"}, context(journal))


async def test_round_robin_until_max_rounds() -> None:
    journal = MemoryJournal()
    out = await run(chat(max_rounds=4), bots(), journal)
    assert out["speakers"] == ["a", "b", "c", "a"]
    assert out["stop_reason"] == "max_rounds"
    assert out["answer"] == "a #2"
    assert journal.output("route-5") == {"stop": "max_rounds", "detail": "4 rounds (max_rounds 4)"}


async def test_a_selector_function_picks_the_speaker_and_none_finishes() -> None:
    def pick(messages: Sequence[Message], agents: Sequence[str]) -> str | None:
        assert agents == ("a", "b", "c")
        return ["c", "c", "b", None][len(messages)]

    out = await run(chat(selector=pick), bots())
    assert out["speakers"] == ["c", "c", "b"]
    assert out["stop_reason"] == "done"


async def test_a_selector_picking_the_last_speaker_falls_back_when_repeats_are_forbidden() -> None:
    def always_a(messages: Sequence[Message], agents: Sequence[str]) -> str:
        return "a"

    out = await run(chat(selector=always_a, allow_repeated_speaker=False, max_rounds=3), bots())
    assert out["speakers"] == ["a", "b", "a"]
    assert out["fallbacks"] == ["route-2: the selector chose 'a', who spoke last"]


async def test_an_async_selector_naming_a_stranger_falls_back_to_round_robin() -> None:
    async def stranger(messages: Sequence[Message], agents: Sequence[str]) -> str:
        return "zed"

    out = await run(chat(selector=stranger, max_rounds=2), bots())
    assert out["speakers"] == ["a", "b"]
    assert "'zed', who is not one of the agents" in out["fallbacks"][0]


async def test_a_manager_chooses_with_a_structured_reply_and_finishes() -> None:
    def manage(p: Mapping[str, Any]) -> Any:
        said = len(p["messages"])
        assert p["output_schema"]["properties"]["next_speaker"]["enum"] == ["a", "b", "c"]
        if said == 2:
            return {"finish": True, "reason": "done", "final_message": "the answer"}
        return {"next_speaker": "c", "reason": "c knows"}

    journal = MemoryJournal()
    manager = Bot("boss", manage)
    out = await run(chat(selector="boss"), bots(manager), journal)
    assert out["speakers"] == ["c", "c"]
    assert out["answer"] == "the answer"
    assert out["stop_reason"] == "done"
    assert out["messages"][-1] == {"agent": "boss", "role": "assistant", "content": "the answer"}
    assert journal.output("route-1") == {"next": "c", "reason": "boss: c knows"}
    assert journal.kinds["route-1/try-1"] == "manager"
    assert manager.paths[0] == "route-1/try-1/"


async def test_garbage_from_the_manager_is_retried_then_round_robin_with_a_record() -> None:
    replies = iter(["not json", {"next_speaker": "nobody", "reason": "?"}, {"reason": "no one"}])
    manager = Bot("boss", lambda p: next(replies, {"next_speaker": "c", "reason": "ok"}))
    journal = MemoryJournal()
    out = await run(chat(selector="boss", manager_retries=2, max_rounds=2), bots(manager), journal)
    assert out["speakers"] == ["a", "c"]
    fallback = journal.output("route-1")["fallback"]
    assert fallback.startswith("boss's reply did not fit after 3 tries")
    assert "next_speaker is required unless finish is true" in fallback
    assert "Your previous reply was not accepted" in manager.calls[1]["instruction"]
    assert out["fallbacks"] == [f"route-1: {fallback}"]


async def test_without_repeats_the_manager_is_offered_everyone_but_the_last_speaker() -> None:
    manager = Bot("boss", lambda p: {"next_speaker": "a", "reason": "a again"})
    out = await run(
        chat(selector="boss", allow_repeated_speaker=False, max_rounds=3), bots(manager)
    )
    assert manager.calls[1]["output_schema"]["properties"]["next_speaker"]["enum"] == ["b", "c"]
    assert out["speakers"] == ["a", "b", "a"]  # "a" right after "a" is refused: round robin


async def test_a_manager_that_raises_fails_the_chat_naming_it() -> None:
    manager = Bot("boss", raises=RuntimeError("quota"))
    with pytest.raises(AgentError, match="'boss' failed in route-1/try-1"):
        await run(chat(selector="boss"), bots(manager))


async def test_termination_conditions_combine_with_or_and_and() -> None:
    said = {"a": ["hello"], "b": ["TERMINATE soon"], "c": ["bye"]}
    participants = team(*(Bot(n, s) for n, s in said.items()))
    out = await run(chat(termination=TextMention("TERMINATE") | MaxMessages(5)), participants)
    assert (out["stop_reason"], out["rounds"]) == ("mention", 2)
    both = TextMention("TERMINATE") & MaxMessages(4)
    out = await run(chat(termination=both), team(*(Bot(n, s) for n, s in said.items())))
    assert (out["stop_reason"], out["rounds"]) == ("mention&max_messages", 4)


async def test_a_token_budget_condition_reads_what_the_turns_spent() -> None:
    out = await run(chat(termination=TokenBudget(max_tokens=10)), bots(a=10))
    assert (out["stop_reason"], out["rounds"]) == ("budget", 1)
    assert out["usage"]["tokens"] == 10


async def test_an_external_stop_is_polled_between_turns() -> None:
    stop = ExternalStop()

    def then_stop(p: Mapping[str, Any]) -> str:
        stop.set()
        return "stopping"

    participants = team(Bot("a"), Bot("b", then_stop), Bot("c"))
    out = await run(chat(termination=stop), participants)
    assert (out["stop_reason"], out["speakers"]) == ("external", ["a", "b"])


async def test_a_wall_time_budget_cuts_a_slow_turn() -> None:
    participants = team(Bot("a"), Bot("b", delay=5), Bot("c"))
    out = await run(chat(budget=Budget(max_seconds=0.05)), participants)
    assert out["stop_reason"] == "timeout"
    assert out["speakers"] == ["a"]


async def test_a_replay_takes_the_same_road_without_asking_anyone() -> None:
    journal = MemoryJournal()
    flips = iter([True, False, True, False, True])

    def moody(messages: Sequence[Message], agents: Sequence[str]) -> str:
        return "a" if next(flips) else "b"  # not deterministic: only the record is

    whole = await run(chat(selector=moody, max_rounds=4), bots(), journal)
    participants = bots()
    replayed = await run(chat(selector=lambda m, a: "c", max_rounds=4), participants, journal)
    assert replayed == whole
    assert all(not bot.calls for bot in participants.values())


def test_group_chat_checks_its_definition() -> None:
    with pytest.raises(DefinitionError, match="selector 'boss'"):
        chat(selector="boss").build(bots(), name="s")
    with pytest.raises(DefinitionError, match="max_rounds must not be negative"):
        chat(max_rounds=-1).build(bots(), name="s")


# ---- conditions on their own ----------------------------------------------------------------


def snapshot(*contents: str, tokens: int = 0, elapsed: float = 0.0) -> Snapshot:
    messages: list[Message] = [
        {"agent": f"agent{i}", "role": "assistant", "content": c} for i, c in enumerate(contents)
    ]
    return Snapshot(messages=messages, spent=Usage(tokens=tokens), elapsed=elapsed, rounds=0)


def test_or_and_and_flatten_and_report_the_conditions_met() -> None:
    either = MaxMessages(2) | TextMention("X") | Timeout(5)
    assert isinstance(either, AnyOf)
    assert len(either.conditions) == 3
    both = MaxMessages(2) & TextMention("X") & TokenBudget(max_tokens=1)
    assert isinstance(both, AllOf)
    assert len(both.conditions) == 3
    assert both.check(snapshot("X", "y")) is None  # no tokens spent yet
    met = both.check(snapshot("X", "y", tokens=1))
    assert met is not None
    assert met.reason == "max_messages&mention&budget"
    stop = either.check(snapshot("y", elapsed=6))
    assert stop is not None
    assert stop.reason == "timeout"
    assert (MaxMessages(3) | TextMention("X")).check(snapshot("a", "b")) is None


def test_a_mention_can_be_limited_to_some_sources() -> None:
    assert TextMention("DONE", sources=("agent1",)).check(snapshot("DONE", "no")) is None
    stop = TextMention("DONE", sources=("agent1",)).check(snapshot("no", "DONE"))
    assert stop is not None
    assert stop.detail == "agent1 said 'DONE'"
    assert TextMention("7").check(snapshot({"n": 7})) is not None  # type: ignore[arg-type]


def test_a_function_condition_may_say_why() -> None:
    def long(messages: Sequence[Message]) -> str | None:
        return "too long" if len(messages) > 1 else None

    assert StopWhen(long).check(snapshot("a")) is None
    stop = StopWhen(long).check(snapshot("a", "b"))
    assert stop is not None
    assert (stop.reason, stop.detail) == ("function", "too long")


def test_external_stops_poll_events_and_callables() -> None:
    event = asyncio.Event()
    assert ExternalStop(event).check(snapshot()) is None
    event.set()
    assert ExternalStop(event).check(snapshot()) is not None
    flag = threading.Event()
    flag.set()
    assert ExternalStop(flag).check(snapshot()) is not None
    assert ExternalStop(lambda: True).check(snapshot()) is not None
    with pytest.raises(TypeError):
        ExternalStop(lambda: False).set()
