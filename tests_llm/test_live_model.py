"""podium's chat agents and its five patterns, run against a real model on SQLite.

`tests/` checks, against a scripted server, what podium sends and how it reads exact replies.
This suite runs the same paths on replies nobody wrote: llama.cpp's OpenAI-compatible server,
its chat template and token counts, SmolLM2-135M's text. Such a small model is not smart,
so the assertions are structural: the run ends (a pattern that hits a limit stops cleanly,
naming it), the output has its keys, usage was counted, and every model call is a
`CallRecorded` event in the run's log. Budgets are small (64 tokens a reply, two rounds) to
keep the suite to minutes on two cores.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from podium import (
    AgentSpec,
    ModelSpec,
    Step,
    StepContext,
    Workflow,
    fork_run,
    resume_run,
    run_workflow,
)
from podium.agents import Agent, LLMAgent, PythonAgent
from podium.model import CallRecorded, Event, RunStarted
from podium.patterns import (
    Concurrent,
    GroupChat,
    Handoff,
    Magentic,
    Pattern,
    Sequential,
)
from podium.store import open_store

KEY_ENV = "PODIUM_LLM_TEST_KEY"  # llama.cpp asks for no key, but the agent sends one
TASK = "Name one fruit that is yellow."
# Every pattern's output has these; `turns` counts participants' turns.
OUTPUT_KEYS = {"answer", "messages", "stop_reason", "detail", "usage", "turns"}


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "no-key-needed")


def model(url: str, instructions: str, **options: Any) -> ModelSpec:
    """Greedy and short: the same prompt gets the same reply, in a few seconds at most."""
    return ModelSpec(
        model="smollm2",
        base_url=url,
        api_key_env=KEY_ENV,
        instructions=instructions,
        temperature=0.0,
        max_tokens=64,
        **options,
    )


def team(url: str, roles: Mapping[str, str]) -> dict[str, Agent]:
    """One chat agent per name, instructed with its role."""
    return {name: LLMAgent(name, model(url, role)) for name, role in roles.items()}


def pattern_workflow(spec: Pattern, participants: Mapping[str, Agent]) -> Workflow:
    """The pattern as one step, then a plain step after it, as docs/patterns.md builds it."""
    chat = spec.build(participants, name="chat")

    async def run_chat(ctx: StepContext, **task: Any) -> Any:
        return await chat.call(task, ctx)

    async def report(answer: Any) -> str:
        return f"reported: {answer}"

    return Workflow(
        name="live",
        steps=[
            Step(id="chat", uses=run_chat, with_={"task": "${{ input.task }}"}),
            Step(
                id="report",
                uses=report,
                needs=("chat",),
                with_={"answer": "${{ steps.chat.output.answer }}"},
            ),
        ],
        output="${{ steps.chat.output }}",
    )


async def log_of(db: str, run_id: str) -> list[Event]:
    store = open_store(db)
    try:
        return list(await store.load(run_id))
    finally:
        await store.close()


def model_calls(log: list[Event]) -> list[CallRecorded]:
    return [e for e in log if isinstance(e, CallRecorded) and e.kind == "model"]


async def run_pattern(
    tmp_path: Path, spec: Pattern, participants: Mapping[str, Agent], stops: set[str]
) -> tuple[dict[str, Any], list[CallRecorded]]:
    """Run the pattern to its end; check what every pattern promises; its output and calls."""
    db = str(tmp_path / "live.db")
    result = await run_workflow(
        pattern_workflow(spec, participants), {"task": TASK}, store=db, run_id="r"
    )
    assert result.status == "succeeded", result.error
    output: dict[str, Any] = result.output
    assert output.keys() >= OUTPUT_KEYS, output
    assert output["stop_reason"] in stops, output["detail"]
    assert output["answer"] is not None
    assert output["messages"], "no participant said anything"
    assert output["usage"]["tokens"] > 0
    assert result.history.usage.tokens >= output["usage"]["tokens"]
    calls = model_calls(await log_of(db, "r"))
    # each model call is recorded with the tokens the server counted for it
    assert calls
    assert all(c.usage is not None and c.usage.tokens > 0 for c in calls)
    assert sum(c.usage.tokens for c in calls if c.usage) == result.history.usage.tokens
    assert result.history.steps["report"].output == f"reported: {output['answer']}"
    return output, calls


# ---- one agent, with a tool ---------------------------------------------------------------


async def test_an_agent_with_a_tool_ends_and_records_its_calls(
    model_url: str, tmp_path: Path
) -> None:
    looked_up: list[str] = []

    def order_status(order_id: str) -> str:
        """Look up the delivery status of an order by its id."""
        looked_up.append(order_id)
        return f"order {order_id} has shipped"

    clerk = AgentSpec(
        name="clerk",
        model=model(
            model_url,
            "You answer questions about orders. Use the order_status tool.",
            tools=(order_status,),
            max_tool_calls=3,
        ),
    )
    wf = Workflow(
        name="clerk",
        agents=[clerk],
        steps=[Step(id="ask", agent="clerk", with_="What is the status of order A-7?")],
    )
    db = str(tmp_path / "live.db")
    result = await run_workflow(wf, store=db, run_id="r")
    log = await log_of(db, "r")
    calls = model_calls(log)
    tools = [e for e in log if isinstance(e, CallRecorded) and e.kind == "tool"]
    assert calls
    assert all(c.name.startswith("a1/model-") for c in calls)
    assert result.history.usage.tokens > 0
    # a call that reached the function is recorded with what it returned, once
    ran = [t for t in tools if "result" in t.output]
    assert len(ran) == len(looked_up)
    if result.status == "succeeded":
        # the model answered in words, after at most max_tool_calls calls
        assert result.history.steps["ask"].output == calls[-1].output["content"]
        assert "tool_calls" not in calls[-1].output
    else:
        # the only way it may fail: a model that keeps calling tools past the limit
        assert result.status == "failed"
        assert result.error is not None
        assert "max_tool_calls" in result.error.message, result.error


# ---- the five patterns --------------------------------------------------------------------

WRITER = "You write one short sentence answering the task."
EDITOR = "You rewrite the last sentence you were given to make it clearer. Be brief."


async def test_sequential_runs_each_agent_in_order(model_url: str, tmp_path: Path) -> None:
    agents = team(model_url, {"writer": WRITER, "editor": EDITOR})
    spec = Sequential(agents=["writer", "editor"])
    output, calls = await run_pattern(tmp_path, spec, agents, {"done"})
    assert [m["agent"] for m in output["messages"]] == ["writer", "editor"]
    assert output["answer"] == output["messages"][-1]["content"]
    assert [c.name for c in calls] == ["turn-1/a1/model-1", "turn-2/a1/model-1"]


async def test_concurrent_lists_every_agents_answer(model_url: str, tmp_path: Path) -> None:
    agents = team(model_url, {"a": WRITER, "b": "You answer the task in three words."})
    spec = Concurrent(agents=["a", "b"])
    output, calls = await run_pattern(tmp_path, spec, agents, {"done"})
    assert len(output["answer"]) == 2  # the default aggregator: the answers, in order
    assert {r["status"] for r in output["results"].values()} == {"ok"}
    assert output["failures"] == []
    assert len(calls) == 2


async def test_handoff_ends_with_an_answer_or_a_limit(model_url: str, tmp_path: Path) -> None:
    agents = team(
        model_url,
        {
            "triage": "You route questions. Hand fruit questions to the grocer.",
            "grocer": "You answer questions about fruit in one sentence.",
        },
    )
    spec = Handoff(agents=["triage", "grocer"], start="triage", max_handoffs=2)
    stops = {"done", "max_handoffs", "ping_pong", "invalid_handoff"}
    output, calls = await run_pattern(tmp_path, spec, agents, stops)
    assert output["path"][0] == "triage"
    assert output["handoffs"] <= 2
    assert len(calls) >= output["turns"] >= 1


async def test_group_chat_takes_turns_for_two_rounds(model_url: str, tmp_path: Path) -> None:
    agents = team(model_url, {"writer": WRITER, "critic": "You criticise the last answer."})
    spec = GroupChat(agents=["writer", "critic"], max_rounds=2)
    output, calls = await run_pattern(tmp_path, spec, agents, {"max_rounds"})
    assert output["speakers"] == ["writer", "critic"]
    assert output["rounds"] == 2
    assert len(calls) == 2


MANAGER = "You manage a team. Reply with JSON only, as asked."


async def test_magentic_with_a_model_as_manager_answers_at_a_limit(
    model_url: str, tmp_path: Path
) -> None:
    agents = team(model_url, {"researcher": WRITER, "orchestrator": MANAGER})
    spec = Magentic(agents=["researcher"], manager="orchestrator", max_rounds=2, manager_retries=1)
    stops = {"done", "max_rounds", "max_stalls", "max_resets"}
    output, calls = await run_pattern(tmp_path, spec, agents, stops)
    assert output["rounds"] <= 2
    names = [c.name for c in calls]
    assert any(n.startswith("ledger-1/") for n in names), names
    assert any(n.startswith("final/") for n in names), names


async def test_magentic_directs_a_model_to_its_round_limit(model_url: str, tmp_path: Path) -> None:
    """The manager is scripted, so that the rounds happen; the researcher is the model.

    It never judges the request satisfied, so the work stops at `max_rounds`; its final
    answer does not fit, so the answer is the last thing the researcher said.
    """

    def orchestrator(output_schema: Mapping[str, Any], **_: Any) -> Any:
        title = output_schema["title"]
        if title == "task_ledger":
            return {"facts": ["fruit can be yellow"], "plan": ["researcher names a fruit"]}
        if title == "progress_ledger":
            no, yes = {"reason": "-", "answer": False}, {"reason": "-", "answer": True}
            return {
                "is_request_satisfied": no,
                "is_in_loop": no,
                "is_progress_being_made": yes,
                "next_speaker": {"reason": "-", "answer": "researcher"},
                "instruction_or_question": {"reason": "-", "answer": "Name a yellow fruit."},
            }
        return "no answer of my own"

    agents = team(model_url, {"researcher": WRITER}) | {
        "orchestrator": PythonAgent("orchestrator", orchestrator)
    }
    spec = Magentic(agents=["researcher"], manager="orchestrator", max_rounds=2, manager_retries=0)
    output, calls = await run_pattern(tmp_path, spec, agents, {"max_rounds"})
    assert output["rounds"] == 2
    assert output["ledger"]["plan"] == ["researcher names a fruit"]
    said = [m for m in output["messages"] if m["agent"] == "researcher"]
    assert len(said) == len(calls) == 2
    assert output["answer"] == said[-1]["content"]
    assert output["fallbacks"], "the final answer that did not fit is listed"


# ---- resuming: what was recorded is not asked again ---------------------------------------


async def test_a_crashed_run_resumes_without_asking_again(
    model_url: str, closed_url: str, tmp_path: Path
) -> None:
    """The log is cut after the writer's turn, as a kill -9 would leave it, and resumed.

    The writer now points at a port where nothing listens: had the resume asked it again,
    the call would be refused and the run would fail.
    """
    roles = {"writer": WRITER, "editor": EDITOR}
    spec = Sequential(agents=["writer", "editor"])
    whole_db = str(tmp_path / "whole.db")
    whole = await run_workflow(
        pattern_workflow(spec, team(model_url, roles)), {"task": TASK}, store=whole_db, run_id="r"
    )
    assert whole.status == "succeeded", whole.error
    events = await log_of(whole_db, "r")
    cut = next(
        i for i, e in enumerate(events) if isinstance(e, CallRecorded) and e.name == "turn-1"
    )
    crashed_db = str(tmp_path / "crashed.db")
    store = open_store(crashed_db)
    started = events[0]
    assert isinstance(started, RunStarted)
    await store.create_run(started)
    await store.append("r", events[1 : cut + 1])
    await store.close()

    agents = team(model_url, roles) | team(closed_url, {"writer": WRITER})
    resumed = await resume_run("r", store=crashed_db, workflow=pattern_workflow(spec, agents))
    assert resumed.status == "succeeded", resumed.error
    assert resumed.output["messages"][0] == whole.output["messages"][0]
    assert resumed.output["stop_reason"] == "done"
    names = [c.name for c in model_calls(await log_of(crashed_db, "r"))]
    assert names == ["turn-1/a1/model-1", "turn-2/a1/model-1"]  # turn-1's, read back once


async def test_a_fork_after_the_pattern_makes_no_model_call(
    model_url: str, closed_url: str, tmp_path: Path
) -> None:
    """Forked at the step after the pattern, with every agent unreachable: nothing is asked."""
    roles = {"writer": WRITER, "editor": EDITOR}
    spec = Sequential(agents=["writer", "editor"])
    db = str(tmp_path / "live.db")
    first = await run_workflow(
        pattern_workflow(spec, team(model_url, roles)), {"task": TASK}, store=db, run_id="r"
    )
    assert first.status == "succeeded", first.error
    fork = await fork_run(
        "r",
        "report",
        store=db,
        new_run_id="f",
        workflow=pattern_workflow(spec, team(closed_url, roles)),
    )
    assert fork.status == "succeeded", fork.error
    assert fork.output == first.output
    assert fork.history.steps["report"].output == first.history.steps["report"].output
    assert len(model_calls(await log_of(db, "f"))) == len(model_calls(await log_of(db, "r")))
