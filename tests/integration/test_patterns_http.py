"""The five patterns with chat-model participants, run by the engine over real HTTP.

Every participant is an LLM agent (`ModelSpec`) talking to `podium.testing.ChatServer`
through the real `openai` client; each pattern is a step of a workflow run by
`run_workflow` with a SQLite store. The server answers each agent by its instructions (its
system prompt, "You are <name>."), so a test scripts every agent's replies and then checks
three things: the pattern's output, what the run recorded, and what the model was sent.
The point is the failure paths as they happen on the wire: an HTTP 500, a slow endpoint, a
body that is not JSON, a manager that answers garbage, a handoff to nobody.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from podium import (
    AgentSpec,
    ModelSpec,
    PatternSpec,
    RetryPolicy,
    Step,
    Workflow,
    resume_run,
    run_workflow,
)
from podium.model import CallRecorded, Event, RunStarted, StepAttemptFailed
from podium.runtime import RunResult
from podium.store import open_store
from podium.testing import ChatRequest, ChatServer, Reply, ToolCall

KEY_ENV = "PODIUM_PATTERN_TEST_KEY"
TASK = "Name the project."

# An agent's replies: in order, or a function of the request answering every time.
Replies = Sequence[Reply | str] | Callable[[ChatRequest], Reply | str]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-pattern-test")


def speaker(request: ChatRequest) -> str:
    """The agent asking, from its instructions: "You are billing." -> billing."""
    return request.system.split("You are ", 1)[1].split(".", 1)[0]


class Models:
    """Each agent's replies, in order, by the agent asking; a callable answers every time.

    An agent with no reply left gets none, so the server answers HTTP 500 saying so: a test
    that asks more than it scripted fails loudly.
    """

    def __init__(self, **replies: Replies) -> None:
        self.fixed = {who: r for who, r in replies.items() if callable(r)}
        self.queued = {who: deque(r) for who, r in replies.items() if not callable(r)}

    def __call__(self, request: ChatRequest) -> Reply | str | None:
        who = speaker(request)
        if who in self.fixed:
            return self.fixed[who](request)
        queue = self.queued.get(who)
        return queue.popleft() if queue else None


def serve(**replies: Replies) -> ChatServer:
    """A scripted server answering each agent from its own replies (see `Models`)."""
    return ChatServer(respond=Models(**replies))


def agents(server: ChatServer, *names: str, **options: Any) -> list[AgentSpec]:
    """Chat-model agents on the scripted server, each told who it is."""
    return [
        AgentSpec(
            name=name,
            model=ModelSpec(
                model="m",
                base_url=server.url,
                api_key_env=KEY_ENV,
                instructions=f"You are {name}.",
                **options,
            ),
        )
        for name in names
    ]


def workflow(
    kind: str,
    options: Mapping[str, Any],
    team: Sequence[AgentSpec],
    *,
    retry: RetryPolicy | None = None,
) -> Workflow:
    """One step `chat` running the pattern over `team`, with the task from the input.

    The step's timeout turns a pattern that would never stop into a failure of the test.
    """
    step = Step(
        id="chat",
        pattern=PatternSpec(kind, dict(options)),
        with_={"task": "${{ input.task }}"},
        retry=retry or RetryPolicy(),
        timeout=10,
    )
    return Workflow(name=kind, agents=list(team), steps=[step])


async def run(wf: Workflow, tmp_path: Path) -> RunResult:
    return await run_workflow(wf, {"task": TASK}, store=str(tmp_path / "p.db"), run_id="r")


def output(result: RunResult) -> dict[str, Any]:
    assert result.status == "succeeded", result.error
    out: dict[str, Any] = result.history.steps["chat"].output
    return out


async def events(tmp_path: Path) -> list[Event]:
    store = open_store(str(tmp_path / "p.db"))
    try:
        return list(await store.load("r"))
    finally:
        await store.close()


def recorded(log: Sequence[Event]) -> dict[str, CallRecorded]:
    return {e.name: e for e in log if isinstance(e, CallRecorded)}


def asked(server: ChatServer) -> list[str]:
    """Who asked the model, in order."""
    return [speaker(r) for r in server.requests]


def said(request: ChatRequest) -> list[tuple[str, str]]:
    """The request's messages as (role, content), the system prompt left out."""
    return [(m["role"], m["content"]) for m in request.messages if m["role"] != "system"]


def tokens(requests: int) -> dict[str, Any]:
    """The usage of that many scripted answers (10 tokens read and 5 written each)."""
    return {"tokens": 15 * requests, "cost": 0.0}


# ---- sequential -----------------------------------------------------------------------------


async def test_sequential_each_model_is_shown_what_came_before(tmp_path: Path) -> None:
    with serve(
        writer=["Draft: Podium conducts agents."], editor=["Podium: agents, in concert."]
    ) as server:
        team = agents(server, "writer", "editor")
        out = output(
            await run(workflow("sequential", {"agents": ["writer", "editor"]}, team), tmp_path)
        )
    assert out["answer"] == "Podium: agents, in concert."
    assert out["stop_reason"] == "done"
    assert out["messages"] == [
        {"agent": "writer", "role": "assistant", "content": "Draft: Podium conducts agents."},
        {"agent": "editor", "role": "assistant", "content": "Podium: agents, in concert."},
    ]
    assert out["usage"] == tokens(2)
    writer, editor = server.requests
    assert said(writer) == [("user", TASK)]
    assert said(editor) == [("user", TASK), ("user", "[writer] Draft: Podium conducts agents.")]
    calls = recorded(await events(tmp_path))
    assert calls["turn-1/a1/model-1"].agent == "writer"
    assert calls["turn-2/a1/model-1"].agent == "editor"


async def test_sequential_a_server_error_fails_the_attempt_and_the_retry_asks_only_the_rest(
    tmp_path: Path,
) -> None:
    with serve(
        writer=["Draft."],  # one reply only: asking the writer again would fail the run
        editor=[Reply.error(500, "overloaded"), "Edited."],
        checker=["Checked."],
    ) as server:
        url = server.url
        team = agents(server, "writer", "editor", "checker")
        spec = {"agents": ["writer", "editor", "checker"]}
        result = await run(
            workflow("sequential", spec, team, retry=RetryPolicy(attempts=2)), tmp_path
        )
    out = output(result)
    assert out["answer"] == "Checked."
    assert [m["agent"] for m in out["messages"]] == ["writer", "editor", "checker"]
    assert result.history.steps["chat"].attempts == 2
    assert Counter(asked(server)) == {"writer": 1, "editor": 2, "checker": 1}
    first, again = [r for r in server.requests if speaker(r) == "editor"]
    assert said(first) == said(again) == [("user", TASK), ("user", "[writer] Draft.")]
    log = await events(tmp_path)
    [failed] = [e for e in log if isinstance(e, StepAttemptFailed)]
    assert failed.error.type == "AgentError"
    assert failed.error.message == (
        "pattern 'sequential:chat': participant 'editor' failed in turn-2: "
        f"AgentError: editor: {url} answered HTTP 500: overloaded (agent sequential:chat)"
    )
    models = [name for name, call in recorded(log).items() if call.kind == "model"]
    assert models == ["turn-1/a1/model-1", "turn-2/a2/model-1", "turn-3/a2/model-1"]
    assert out["usage"] == tokens(3)  # the failed request reported no usage


async def test_sequential_a_client_error_fails_the_step_without_a_retry(tmp_path: Path) -> None:
    with serve(writer=["Draft."], editor=[Reply.error(400, "unknown model m"), "never"]) as server:
        team = agents(server, "writer", "editor")
        wf = workflow(
            "sequential", {"agents": ["writer", "editor"]}, team, retry=RetryPolicy(attempts=3)
        )
        result = await run(wf, tmp_path)
    assert result.status == "failed"
    error = result.history.steps["chat"].error
    assert error is not None
    assert "participant 'editor' failed in turn-2" in error.message
    assert "answered HTTP 400: unknown model m" in error.message
    assert asked(server) == ["writer", "editor"]  # as final as its cause: not asked again


# ---- concurrent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quorum", "status", "error", "stop_reason"),
    [
        (None, "timeout", "no answer within 0.5s", "done"),
        (2, "cancelled", "no longer waited for", "quorum"),
    ],
)
async def test_concurrent_a_slow_model_does_not_hold_up_the_others(
    tmp_path: Path, quorum: int | None, status: str, error: str, stop_reason: str
) -> None:
    with serve(
        ann=["ann: Podium"],
        slow=[Reply.text("slow: too late", delay=1.5)],
        bob=["bob: Baton"],
    ) as server:
        team = agents(server, "ann", "slow", "bob")
        spec: dict[str, Any] = {"agents": ["ann", "slow", "bob"], "agent_timeout": 0.5}
        if quorum is not None:
            spec["quorum"] = quorum
        out = output(await run(workflow("concurrent", spec, team), tmp_path))
    assert sorted(asked(server)) == ["ann", "bob", "slow"]  # each was asked once, at once
    assert out["answer"] == ["ann: Podium", "bob: Baton"]
    assert out["stop_reason"] == stop_reason
    assert out["results"]["slow"] == {"status": status, "error": error}
    assert out["failures"] == [{"agent": "slow", "status": status, "error": error}]
    assert out["usage"] == tokens(2)
    assert [m["agent"] for m in out["messages"]] == ["ann", "bob"]


async def test_concurrent_a_body_that_is_not_json_is_one_agents_failure_within_the_quorum(
    tmp_path: Path,
) -> None:
    broken_asked = threading.Event()

    def after_broken(text: str) -> Callable[[ChatRequest], Reply]:
        # Answers only once the broken agent has been asked, and then takes a while: its
        # failure is in before the quorum is, so it is reported rather than cancelled.
        def answer(request: ChatRequest) -> Reply:
            assert broken_asked.wait(timeout=5)
            return Reply.text(text, delay=0.3)

        return answer

    def broken(request: ChatRequest) -> Reply:
        broken_asked.set()
        return Reply.malformed()

    with serve(
        ann=after_broken("ann: Podium"), broken=broken, bob=after_broken("bob: Baton")
    ) as server:
        url = server.url
        team = agents(server, "ann", "broken", "bob")
        spec = {"agents": ["ann", "broken", "bob"], "quorum": 2}
        out = output(await run(workflow("concurrent", spec, team), tmp_path))
    assert sorted(asked(server)) == ["ann", "bob", "broken"]
    assert out["answer"] == ["ann: Podium", "bob: Baton"]
    assert out["stop_reason"] == "done"
    assert out["detail"] == "2 answered, 1 did not"
    [failure] = out["failures"]
    assert failure["agent"] == "broken"
    assert failure["status"] == "failed"
    assert failure["error"].startswith(
        f"AgentError: broken: {url} answered with a body that is not a chat completion"
    )
    assert out["results"]["broken"] == {"status": "failed", "error": failure["error"]}
    calls = recorded(await events(tmp_path))
    assert calls["turn-2"].output == {"output": out["results"]["broken"]}
    assert calls["gather"].output["output"]["statuses"] == {
        "ann": "ok",
        "broken": "failed",
        "bob": "ok",
    }


# ---- handoff --------------------------------------------------------------------------------


def hand_off(to: str, content: str | None = None, reason: str | None = None) -> Reply:
    """A model reply calling the handoff tool for `to`."""
    arguments = {"reason": reason} if reason is not None else {}
    return Reply.calls(ToolCall(name=f"handoff_to_{to}", arguments=arguments), content=content)


async def test_handoff_the_model_hands_off_with_a_tool_call_and_the_target_answers(
    tmp_path: Path,
) -> None:
    with serve(
        triage=[hand_off("billing", "Passing you to billing.", reason="an invoice")],
        billing=["Your invoice is corrected."],
    ) as server:
        team = agents(server, "triage", "billing", "tech")
        spec = {"agents": ["triage", "billing", "tech"], "graph": {"triage": ["billing", "tech"]}}
        out = output(await run(workflow("handoff", spec, team), tmp_path))
    assert out["answer"] == "Your invoice is corrected."
    assert out["stop_reason"] == "done"
    assert out["detail"] == "billing answered"
    assert (out["holder"], out["path"], out["handoffs"]) == ("billing", ["triage", "billing"], 1)
    assert out["messages"][0] == {
        "agent": "triage",
        "role": "assistant",
        "content": {
            "handoff_to": "billing",
            "reason": "an invoice",
            "content": "Passing you to billing.",
        },
    }
    triage, billing = server.requests
    assert triage.tools == ["handoff_to_billing", "handoff_to_tech"]  # as the graph says
    assert "tools" not in billing.body  # billing is not in the graph: it may only answer
    handed = json.dumps(out["messages"][0]["content"])  # the handoff, as billing reads it
    assert said(billing) == [("user", TASK), ("user", f"[triage] {handed}")]
    calls = recorded(await events(tmp_path))
    assert calls["route-2"].output == {
        "output": {"next": "billing", "reason": "handoff from triage: an invoice"}
    }
    assert out["usage"] == tokens(2)


async def test_handoff_models_that_hand_back_and_forth_stop_with_ping_pong(
    tmp_path: Path,
) -> None:
    with serve(ann=lambda r: hand_off("bob"), bob=lambda r: hand_off("ann")) as server:
        team = agents(server, "ann", "bob")
        out = output(await run(workflow("handoff", {"agents": ["ann", "bob"]}, team), tmp_path))
    assert out["stop_reason"] == "ping_pong"
    assert out["detail"] == "ann and bob handed off back and forth saying nothing new"
    assert asked(server) == ["ann", "bob", "ann"]  # the third handoff is the ping-pong
    assert out["path"] == ["ann", "bob", "ann"]
    assert out["handoffs"] == 3
    assert out["answer"] is None  # nobody said anything
    assert server.requests[0].tools == ["handoff_to_bob"]
    assert server.requests[1].tools == ["handoff_to_ann"]


async def test_handoff_a_tool_call_to_an_agent_that_cannot_be_handed_to_is_told_to_the_model(
    tmp_path: Path,
) -> None:
    with serve(
        triage=[
            hand_off("legal"),  # no such agent
            hand_off("tech"),  # an agent, but not one triage may hand off to
            hand_off("billing", "Over to billing."),
        ],
        billing=["Refunded."],
    ) as server:
        team = agents(server, "triage", "billing", "tech")
        spec = {"agents": ["triage", "billing", "tech"], "graph": {"triage": ["billing"]}}
        out = output(await run(workflow("handoff", spec, team), tmp_path))
    assert out["answer"] == "Refunded."
    assert out["stop_reason"] == "done"
    assert out["path"] == ["triage", "billing"]
    assert asked(server) == ["triage", "triage", "triage", "billing"]
    second, third = server.requests[1:3]
    told = [m["content"] for m in third.messages if m["role"] == "tool"]
    assert told == [
        "error: there is no tool named 'handoff_to_legal' (tools: handoff_to_billing)",
        "error: there is no tool named 'handoff_to_tech' (tools: handoff_to_billing)",
    ]
    assert second.tools == third.tools == ["handoff_to_billing"]
    calls = recorded(await events(tmp_path))
    assert calls["turn-1/a1/tool-1"].input == {"name": "handoff_to_legal", "arguments": {}}


# ---- group chat -----------------------------------------------------------------------------


def choose(who: str, reason: str = "their turn") -> Reply:
    return Reply.json({"next_speaker": who, "reason": reason})


def instruction(request: ChatRequest) -> str:
    """The last user message: the instruction a manager is given for this call."""
    content: str = request.messages[-1]["content"]
    return content


async def test_group_chat_a_manager_that_answers_garbage_is_asked_again_then_round_robin(
    tmp_path: Path,
) -> None:
    with serve(
        chair=[
            "ann should start, I think.",  # route-1: not JSON,
            Reply.json({"next_speaker": "dan", "reason": "dan knows"}),  # nor a speaker: fallback
            "Hmm.",  # route-2: not JSON; then a choice that fits
            choose("ann", "ann is not done"),
            choose("bob"),  # route-3
        ],
        ann=["ann: Podium", "ann: Podium, surely"],
        bob=["bob: Baton"],
    ) as server:
        team = [
            *agents(server, "ann", "bob"),
            *agents(server, "chair", max_output_retries=0),  # its own retries: none
        ]
        spec = {
            "agents": ["ann", "bob"],
            "selector": "chair",
            "max_rounds": 3,
            "manager_retries": 1,
        }
        out = output(await run(workflow("group_chat", spec, team), tmp_path))
    assert asked(server) == ["chair", "chair", "ann", "chair", "chair", "ann", "chair", "bob"]
    assert out["speakers"] == ["ann", "ann", "bob"]  # round robin, then the chair's choices
    assert out["stop_reason"] == "max_rounds"
    assert out["detail"] == "3 rounds (max_rounds 3)"
    assert out["answer"] == "bob: Baton"
    [fallback] = out["fallbacks"]
    assert fallback.startswith("route-1: chair's reply did not fit after 2 tries (")
    assert fallback.endswith("at reply['next_speaker']: 'dan' is not one of ['ann', 'bob'])")
    # What the manager was sent: the schema to fit; after a miss, what was wrong.
    first_try, second_try = server.requests[:2]
    assert '"title": "speaker_selection"' in first_try.system
    assert "Your previous reply was not accepted" not in instruction(first_try)
    retold = instruction(second_try)
    assert retold.startswith(instruction(first_try))
    assert "Your previous reply was not accepted (chair: the reply does not fit" in retold
    assert "it is not JSON" in retold
    assert said(server.requests[3])[:2] == [("user", TASK), ("user", "[ann] ann: Podium")]
    log = await events(tmp_path)
    calls = recorded(log)
    assert calls["route-1"].output["output"]["fallback"] == fallback.removeprefix("route-1: ")
    assert calls["route-1"].output["output"]["next"] == "ann"
    assert calls["route-2"].output["output"] == {"next": "ann", "reason": "chair: ann is not done"}
    assert [calls[f"route-1/try-{j}"].kind for j in (1, 2)] == ["manager", "manager"]
    assert "route-4/try-1" not in calls  # max_rounds stops before asking the manager
    assert out["usage"] == tokens(8)


# ---- magentic -------------------------------------------------------------------------------

LEDGER = {"facts": ["the project orchestrates agents"], "plan": ["coder proposes a name"]}


def progress(
    *, satisfied: bool = False, progressing: bool = True, instruction: str = "Propose a name."
) -> Reply:
    """A progress ledger, as the manager is asked for it, giving the floor to the coder."""

    def judged(answer: Any) -> dict[str, Any]:
        return {"reason": "judged", "answer": answer}

    return Reply.json(
        {
            "is_request_satisfied": judged(satisfied),
            "is_in_loop": judged(False),
            "is_progress_being_made": judged(progressing),
            "next_speaker": judged("coder"),
            "instruction_or_question": judged(instruction),
        }
    )


def asked_for(request: ChatRequest) -> str:
    """Which structured reply the manager was asked for: the title of its schema."""
    schema = json.loads(request.system.split("JSON Schema:\n", 1)[1])
    title: str = schema["title"]
    return title


async def test_magentic_a_model_manager_plans_directs_a_worker_and_answers(
    tmp_path: Path,
) -> None:
    with serve(
        boss=[
            Reply.json(LEDGER),
            progress(instruction="Propose a name."),
            progress(satisfied=True),
            Reply.json({"answer": "Podium"}),
        ],
        coder=["How about Podium?"],
    ) as server:
        team = agents(server, "coder", "boss")
        spec = {"agents": ["coder"], "manager": "boss"}
        out = output(await run(workflow("magentic", spec, team), tmp_path))
    assert out["answer"] == "Podium"
    assert out["stop_reason"] == "done"
    assert out["detail"] == "request satisfied: judged"
    assert (out["rounds"], out["stalls"], out["resets"], out["fallbacks"]) == (1, 0, 0, [])
    assert out["ledger"] == LEDGER
    assert out["messages"] == [
        {"agent": "boss", "role": "assistant", "content": "Propose a name."},
        {"agent": "coder", "role": "assistant", "content": "How about Podium?"},
    ]
    assert asked(server) == ["boss", "boss", "coder", "boss", "boss"]
    manager = [r for r in server.requests if speaker(r) == "boss"]
    assert [asked_for(r) for r in manager] == [
        "task_ledger",
        "progress_ledger",
        "progress_ledger",
        "final_answer",
    ]
    assert json.dumps(LEDGER, indent=2) in instruction(manager[1])  # the plan, shown back
    coder = server.requests[2]
    assert said(coder) == [
        ("user", TASK),
        ("user", "[boss] Propose a name."),
        ("user", "Propose a name."),  # the instruction, for this turn
    ]
    calls = recorded(await events(tmp_path))
    assert calls["ledger-1"].output == {"output": LEDGER, "spent": tokens(1)}  # its model call
    assert calls["route-1"].output["output"]["next"] == "coder"
    assert calls["turn-1"].input == {"agent": "coder", "instruction": "Propose a name."}
    assert out["usage"] == tokens(5)


async def test_magentic_at_max_rounds_the_manager_still_gives_a_final_answer(
    tmp_path: Path,
) -> None:
    with serve(
        boss=[Reply.json(LEDGER), progress(), progress(), Reply.json({"answer": "Baton"})],
        coder=["Podium?", "Baton?"],
    ) as server:
        team = agents(server, "coder", "boss")
        spec = {"agents": ["coder"], "manager": "boss", "max_rounds": 2}
        out = output(await run(workflow("magentic", spec, team), tmp_path))
    assert out["stop_reason"] == "max_rounds"
    assert out["detail"] == "2 rounds (max_rounds 2)"
    assert out["answer"] == "Baton"
    assert out["rounds"] == 2
    assert asked(server) == ["boss", "boss", "coder", "boss", "coder", "boss"]
    final = server.requests[-1]
    assert asked_for(final) == "final_answer"
    assert instruction(final).startswith("The work ends here (2 rounds (max_rounds 2)).")
    calls = recorded(await events(tmp_path))
    assert calls["route-3"].output == {
        "output": {"stop": "max_rounds", "detail": "2 rounds (max_rounds 2)"}
    }
    assert "route-3/try-1" not in calls  # the limit is checked before asking for a ledger


async def test_magentic_stalls_replan_then_stop_and_a_garbled_final_answer_falls_back(
    tmp_path: Path,
) -> None:
    new_plan = {"facts": ["names are hard"], "plan": ["coder tries a shorter name"]}
    stuck = progress(progressing=False)
    with serve(
        boss=[
            Reply.json(LEDGER),
            stuck,  # route-1: a stall (1 of 2); the coder goes on
            stuck,  # route-2: the second stall in a row: replan
            Reply.json(new_plan),
            stuck,  # route-3: a stall (1 of 2) under the new plan
            stuck,  # route-4: two again, and no replan left
            "The answer is Podium.",  # the final answer: not the JSON asked for,
            "Podium!",  # twice: the last message is the answer
        ],
        coder=["Podium?", "Pod?"],
    ) as server:
        team = [*agents(server, "coder"), *agents(server, "boss", max_output_retries=0)]
        spec = {
            "agents": ["coder"],
            "manager": "boss",
            "max_stalls": 2,
            "max_resets": 1,
            "manager_retries": 1,
        }
        out = output(await run(workflow("magentic", spec, team), tmp_path))
    assert out["stop_reason"] == "max_resets"
    assert out["detail"] == "2 stalls in a row after 1 replans (max_resets 1)"
    assert out["answer"] == "Pod?"
    assert (out["rounds"], out["resets"], out["stalls"]) == (2, 1, 2)
    assert out["ledger"] == new_plan
    [fallback] = out["fallbacks"]
    assert fallback.startswith("final: boss's answer did not fit (")
    assert fallback.endswith("); the last message is the answer")
    manager = [r for r in server.requests if speaker(r) == "boss"]
    assert [asked_for(r) for r in manager] == [
        "task_ledger",
        "progress_ledger",
        "progress_ledger",
        "task_ledger",
        "progress_ledger",
        "progress_ledger",
        "final_answer",
        "final_answer",
    ]
    replan = instruction(manager[3])
    assert replan.startswith("The team is stuck")
    assert json.dumps(LEDGER, indent=2) in replan  # shown the ledger it is to remake
    assert ("user", "[coder] Podium?") in said(manager[3])  # and the work done so far
    assert asked(server).count("coder") == 2


# ---- a crash, and the resume ----------------------------------------------------------------


def chairing(request: ChatRequest) -> Reply:
    """The chair picks bob, then ann, then finishes: by how many have spoken."""
    spoken = sum(1 for _, content in said(request) if content.startswith(("[ann]", "[bob]")))
    if spoken < 2:
        return choose(["bob", "ann"][spoken])
    return Reply.json({"finish": True, "reason": "agreed", "final_message": "Podium it is."})


def heard(request: ChatRequest) -> str:
    return f"{speaker(request)} heard {len(said(request))}"


async def crashed_copy(log: Sequence[Event], k: int, db: Path) -> list[CallRecorded]:
    """A store holding the log as a crash right after its k-th recorded call left it."""
    at = [i for i, e in enumerate(log) if isinstance(e, CallRecorded)][k - 1]
    first = log[0]
    assert isinstance(first, RunStarted)
    store = open_store(str(db))
    try:
        await store.create_run(first)
        await store.append(first.run_id, list(log[1 : at + 1]))
    finally:
        await store.close()
    return [e for e in log[: at + 1] if isinstance(e, CallRecorded)]


async def test_group_chat_resumed_after_a_crash_asks_the_model_only_what_it_had_not_recorded(
    tmp_path: Path,
) -> None:
    with serve(chair=chairing, ann=heard, bob=heard) as server:
        team = agents(server, "ann", "bob", "chair")
        wf = workflow("group_chat", {"agents": ["ann", "bob"], "selector": "chair"}, team)
        whole = await run(wf, tmp_path)
        out = output(whole)
        assert out["answer"] == "Podium it is."
        assert out["speakers"] == ["bob", "ann"]
        assert asked(server) == ["chair", "bob", "chair", "ann", "chair"]
        log = await events(tmp_path)
        for k in range(1, len(recorded(log)) + 1):
            before = len(server.requests)
            kept = await crashed_copy(log, k, tmp_path / f"crashed-{k}.db")
            resumed = await resume_run("r", store=str(tmp_path / f"crashed-{k}.db"), workflow=wf)
            assert resumed.history.steps["chat"].output == out, k
            assert resumed.history.usage == whole.history.usage, k
            models = sum(1 for call in kept if call.kind == "model")
            assert len(server.requests) - before == 5 - models, [c.name for c in kept]
