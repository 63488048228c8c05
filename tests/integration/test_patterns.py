"""Patterns inside real runs: turns recorded in the journal, read back after a crash.

A crash is simulated as `test_journal.py` does: the log of a finished run is cut after its
k-th recorded call and copied into a fresh store, and the run is resumed from there. The
resumed run must call no participant for a turn already recorded, and end exactly as the
run that was never interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from podium import (
    Approval,
    RetryPolicy,
    Step,
    StepContext,
    Workflow,
    approve,
    resume_run,
    run_workflow,
)
from podium.agents import Agent, PythonAgent
from podium.model import CallRecorded, Event, RunStarted, Usage
from podium.patterns import (
    Budget,
    Concurrent,
    GroupChat,
    Handoff,
    Magentic,
    MaxMessages,
    Sequential,
    TextMention,
)
from podium.runtime.subworkflow import WorkflowAgent
from podium.store import open_store

Spec = Sequential | Concurrent | Handoff | GroupChat | Magentic


class Scripted:
    """A participant whose replies are a function of the payload; counts its calls."""

    capabilities: frozenset[str] = frozenset()
    concurrency: int | None = None

    def __init__(
        self,
        name: str,
        reply: Callable[[Mapping[str, Any]], Any],
        tokens: int = 0,
        model_tokens: int = 0,
    ) -> None:
        self.name = name
        self.reply = reply
        self.tokens = tokens  # reported, as a Python agent does
        self.model_tokens = model_tokens  # spent in a recorded inner call, as an LLM agent does
        self.calls = 0

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        self.calls += 1
        if self.tokens:
            ctx.report_usage(tokens=self.tokens)
        if self.model_tokens:
            spent = Usage(tokens=self.model_tokens)

            async def model() -> tuple[Any, Usage | None]:
                return "thinking", spent

            await ctx.remember("model-1", model, kind="model")
        return self.reply(payload)


def workflow(spec: Spec, participants: Mapping[str, Agent], *, retry: int = 1) -> Workflow:
    """A workflow whose one step runs the pattern, as a user would write it."""
    chat = spec.build(participants, name="chat")

    async def run_chat(ctx: StepContext, **task: Any) -> Any:
        return await chat.call(task, ctx)

    step = Step(
        id="chat",
        uses=run_chat,
        with_={"task": "${{ input.msg }}"},
        retry=RetryPolicy(attempts=retry),
    )
    return Workflow(name="p", steps=[step], output="${{ steps.chat.output }}")


async def load(db: str, run_id: str) -> list[Event]:
    store = open_store(db)
    events = await store.load(run_id)
    await store.close()
    return events


async def crashed_after(events: list[Event], k: int, db: str) -> list[str]:
    """Copy the log up to and including its k-th recorded call; the names recorded."""
    calls = [i for i, e in enumerate(events) if isinstance(e, CallRecorded)]
    cut = calls[k - 1]
    store = open_store(db)
    first = events[0]
    assert isinstance(first, RunStarted)
    await store.create_run(first)
    await store.append(first.run_id, events[1 : cut + 1])
    await store.close()
    return [e.name for e in events[: cut + 1] if isinstance(e, CallRecorded)]


async def check_resumes(
    tmp_path: Path, make: Callable[[], tuple[Spec, dict[str, Scripted]]], cuts: list[int]
) -> dict[str, Any]:
    """Run once whole; then, for each cut, resume a crashed copy and compare."""
    spec, bots = make()
    db = str(tmp_path / "whole.db")
    whole = await run_workflow(workflow(spec, bots), {"msg": "help"}, store=db, run_id="r")
    assert whole.status == "succeeded", whole.error
    total = sum(b.calls for b in bots.values())
    events = await load(db, "r")
    for k in cuts:
        crashed = str(tmp_path / f"crashed-{k}.db")
        recorded = await crashed_after(events, k, crashed)
        spec, bots = make()
        resumed = await resume_run("r", store=crashed, workflow=workflow(spec, bots))
        assert resumed.status == "succeeded", resumed.error
        assert resumed.output == whole.output
        assert resumed.history.usage == whole.history.usage
        # a turn, a manager's try, a person's answer: each recorded one is not made again
        made = sum(1 for name in recorded if _is_participant_call(name))
        assert sum(b.calls for b in bots.values()) == total - made, (k, recorded)
    output: dict[str, Any] = whole.output
    return output


def _is_participant_call(name: str) -> bool:
    last = name.rsplit("/", 1)[-1]
    return last.startswith(("turn-", "try-", "human-")) or last == "aggregate"


async def test_handoff_resumes_after_a_crash_without_repeating_turns(tmp_path: Path) -> None:
    def make() -> tuple[Spec, dict[str, Scripted]]:
        bots = {
            "triage": Scripted("triage", lambda p: {"handoff_to": "billing", "content": "inv"}),
            "billing": Scripted(
                "billing", lambda p: {"handoff_to": "refunds", "content": "refund it"}, tokens=7
            ),
            "refunds": Scripted("refunds", lambda p: f"refunded after {len(p['messages'])}"),
        }
        return Handoff(agents=list(bots), start="triage", max_handoffs=6), bots

    out = await check_resumes(tmp_path, make, cuts=[1, 2, 3, 4, 5, 6])
    assert out["answer"] == "refunded after 2"
    assert out["usage"] == {"tokens": 7, "cost": 0.0}


async def test_the_turns_are_recorded_under_the_step_with_their_usage_once(tmp_path: Path) -> None:
    bots = {
        "a": Scripted("a", lambda p: "first", tokens=3),
        "b": Scripted("b", lambda p: "second", tokens=4),
    }
    db = str(tmp_path / "s.db")
    wf = workflow(Sequential(agents=["a", "b"]), bots)
    result = await run_workflow(wf, {"msg": "go"}, store=db, run_id="s")
    assert result.output["answer"] == "second"
    assert result.history.usage.tokens == 7  # the engine counted each turn's usage once
    recorded = [e for e in await load(db, "s") if isinstance(e, CallRecorded)]
    assert [(e.key, e.name, e.kind) for e in recorded] == [
        ("chat", "start", "clock"),
        ("chat", "route-1", "route"),
        ("chat", "turn-1", "turn"),
        ("chat", "route-2", "route"),
        ("chat", "turn-2", "turn"),
    ]
    assert recorded[2].input == {"agent": "a"}


async def test_group_chat_resumes_with_its_manager_choices_and_fallbacks(tmp_path: Path) -> None:
    def make() -> tuple[Spec, dict[str, Scripted]]:
        def manager(p: Mapping[str, Any]) -> Any:
            spoken = len(p["messages"])
            if spoken == 1:
                return "garbage"  # never fits: the second round falls back to round robin
            if spoken >= 3:
                return {"finish": True, "reason": "enough", "final_message": "all done"}
            return {"next_speaker": "writer", "reason": "start with the draft"}

        bots = {
            "writer": Scripted("writer", lambda p: "draft"),
            "critic": Scripted("critic", lambda p: "looks fine"),
            "boss": Scripted("boss", manager),
        }
        chat = GroupChat(agents=["writer", "critic"], selector="boss", manager_retries=1)
        return chat, bots

    out = await check_resumes(tmp_path, make, cuts=[2, 3, 5, 7, 9])
    assert out["answer"] == "all done"
    assert out["speakers"] == ["writer", "critic", "writer"]
    assert out["fallbacks"][0].startswith("route-2: boss's reply did not fit after 2 tries")


async def test_magentic_resumes_after_a_crash_and_replans_identically(tmp_path: Path) -> None:
    def make() -> tuple[Spec, dict[str, Scripted]]:
        def manager(p: Mapping[str, Any]) -> Any:
            title = p["output_schema"]["title"]
            rounds = sum(1 for m in p["messages"] if m["agent"] == "coder")
            if title == "task_ledger":
                return {"facts": ["f"], "plan": [f"plan after {rounds} rounds"]}
            if title == "final_answer":
                return {"answer": f"final after {rounds} rounds"}
            judged = {"reason": "r", "answer": False}
            # stuck after the first round, until the plan has been remade
            progress = rounds != 1 or "plan after 1 rounds" in p["instruction"]
            return {
                "is_request_satisfied": {"reason": "r", "answer": rounds >= 3},
                "is_in_loop": judged,
                "is_progress_being_made": {"reason": "r", "answer": progress},
                "next_speaker": {"reason": "r", "answer": "coder"},
                "instruction_or_question": {"reason": "r", "answer": "write code"},
            }

        bots = {
            "coder": Scripted("coder", lambda p: f"code {len(p['messages'])}", tokens=2),
            "orchestrator": Scripted("orchestrator", manager),
        }
        return Magentic(agents=["coder"], manager="orchestrator", max_stalls=1), bots

    out = await check_resumes(tmp_path, make, cuts=[1, 3, 4, 6, 8, 10])
    assert out["stop_reason"] == "done"
    assert out["answer"] == "final after 3 rounds"
    assert out["resets"] == 1
    assert out["ledger"]["plan"] == ["plan after 1 rounds"]


def says_yes(name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda p: f"{name} says yes"


async def test_concurrent_resume_keeps_the_quorum_it_decided(tmp_path: Path) -> None:
    def make() -> tuple[Spec, dict[str, Scripted]]:
        bots = {name: Scripted(name, says_yes(name)) for name in "abc"}
        return Concurrent(agents=["a", "b", "c"], quorum=3), bots

    out = await check_resumes(tmp_path, make, cuts=[1, 2, 3, 4])
    assert out["answer"] == ["a says yes", "b says yes", "c says yes"]


async def test_a_failed_attempt_is_retried_and_reads_the_turns_back(tmp_path: Path) -> None:
    failures = {"left": 1}

    def flaky(p: Mapping[str, Any]) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the model endpoint dropped the connection")
        return "second try"

    bots = {"a": Scripted("a", lambda p: "first"), "b": Scripted("b", flaky)}
    wf = workflow(Sequential(agents=["a", "b"]), bots, retry=2)
    result = await run_workflow(wf, {"msg": "go"}, store=str(tmp_path / "f.db"))
    assert result.status == "succeeded"
    assert result.output["answer"] == "second try"
    assert bots["a"].calls == 1  # the retry read a's turn back
    assert bots["b"].calls == 2


async def test_a_participant_failure_fails_the_step_naming_it(tmp_path: Path) -> None:
    def broken(p: Mapping[str, Any]) -> Any:
        raise ValueError("no such invoice")

    bots = {"a": Scripted("a", broken)}
    result = await run_workflow(workflow(Handoff(agents=["a"]), bots), {"msg": "x"})
    assert result.status == "failed"
    assert result.error is not None
    assert "participant 'a' failed in turn-1: ValueError: no such invoice" in result.error.message


async def test_a_handoff_waits_durably_for_a_person_and_goes_on_after_approval(
    tmp_path: Path,
) -> None:
    asked = Workflow(
        name="ask",
        steps=[Step(id="answer", approval=Approval(prompt="${{ input.question }}"))],
        output="${{ steps.answer.output.data }}",
    )

    def make() -> dict[str, Any]:
        return {
            "agent": Scripted(
                "agent",
                lambda p: (
                    f"refunding invoice {p['messages'][-1]['content']}"
                    if p["messages"]
                    else {"ask_human": "which invoice?"}
                ),
            ),
            "person": WorkflowAgent(asked, name="person"),
        }

    db = str(tmp_path / "h.db")
    bots = make()
    spec = Handoff(agents=["agent"], human="person")
    waiting = await run_workflow(workflow(spec, bots), {"msg": "refund"}, store=db, run_id="h")
    assert waiting.status == "waiting"
    await approve("h/chat/human-1", "answer", store=db, data="INV-7", by="ann")
    bots = make()
    done = await resume_run("h", store=db, workflow=workflow(spec, bots))
    assert done.status == "succeeded", done.error
    assert done.output["answer"] == "refunding invoice INV-7"
    assert bots["agent"].calls == 1  # the question was not asked again
    assert done.output["messages"][1] == {"agent": "person", "role": "user", "content": "INV-7"}


async def test_a_python_agent_participant_gets_the_conversation_as_keywords() -> None:
    async def echo(task: str, messages: list[Any], ctx: StepContext) -> str:
        return f"{task} after {len(messages)}"

    bots: dict[str, Agent] = {"e": PythonAgent("e", echo), "f": PythonAgent("f", echo)}
    chat = GroupChat(agents=["e", "f"], termination=MaxMessages(2) | TextMention("never"))
    result = await run_workflow(workflow(chat, bots), {"msg": "hi"})
    assert result.output["answer"] == "hi after 1"
    assert result.output["stop_reason"] == "max_messages"


def count_messages(p: Mapping[str, Any]) -> str:
    return str(len(p["messages"]))


@pytest.mark.parametrize("limit", [1, 2])
@pytest.mark.parametrize("how", ["reported", "model"])
async def test_a_budget_holds_across_a_resume(tmp_path: Path, limit: int, how: str) -> None:
    def make() -> tuple[Spec, dict[str, Scripted]]:
        spend = {"tokens": 10} if how == "reported" else {"model_tokens": 10}
        bots = {n: Scripted(n, count_messages, **spend) for n in "ab"}
        return GroupChat(agents=["a", "b"], budget=Budget(max_tokens=10 * limit + 5)), bots

    out = await check_resumes(tmp_path, make, cuts=[3, 4, 5, 6])
    assert out["stop_reason"] == "budget"
    assert out["rounds"] == limit + 1
