"""Agents that are chat models, run by the engine against a scripted server over real HTTP.

The agent talks to `podium.testing.ChatServer` through the real `openai` client; the server
records what it was sent, so each test checks both what the run did and what the model saw.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from openai import AsyncOpenAI

from podium import (
    AgentError,
    AgentSpec,
    Approval,
    DefinitionError,
    ModelSpec,
    Price,
    RateLimited,
    RetryPolicy,
    Step,
    Workflow,
    approve,
    resume_run,
    run_workflow,
)
from podium.agents import LLMAgent, StepContext, Tool
from podium.model import CallRecorded, Event, RunStarted, StepAttemptFailed
from podium.runtime import RunResult
from podium.store import open_store
from podium.testing import ChatRequest, ChatServer, Reply, ToolCall

KEY = "sk-podium-test-7c41d09e5b"  # distinctive: it must turn up nowhere but in the header
KEY_ENV = "PODIUM_TEST_KEY"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as running:
        yield running


def model(server: ChatServer, **options: Any) -> ModelSpec:
    return ModelSpec(model="m", base_url=server.url, api_key_env=KEY_ENV, **options)


def workflow(
    server: ChatServer,
    with_: Any,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    agents: Sequence[AgentSpec] = (),
    **options: Any,
) -> Workflow:
    """One step `s` in which agent `writer`, a chat model, gets `with_`."""
    writer = AgentSpec(name="writer", model=model(server, **options))
    step = Step(id="s", agent="writer", with_=with_, retry=retry or RetryPolicy(), timeout=timeout)
    return Workflow(name="llm", agents=[writer, *agents], steps=[step])


async def run(wf: Workflow, tmp_path: Path, run_id: str = "r") -> RunResult:
    return await run_workflow(wf, store=str(tmp_path / "x.db"), run_id=run_id)


async def events(tmp_path: Path, run_id: str = "r", db: str = "x.db") -> list[Event]:
    store = open_store(str(tmp_path / db))
    try:
        return list(await store.load(run_id))
    finally:
        await store.close()


def calls(log: list[Event]) -> list[CallRecorded]:
    return [e for e in log if isinstance(e, CallRecorded)]


def tool_messages(request: ChatRequest) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] == "tool"]


def context() -> StepContext:
    return StepContext(run_id="r", step="s", key="s", index=None, attempt=1, agent="writer")


# ---- answers, tools, agents as tools ------------------------------------------------------


async def test_a_plain_answer(server: ChatServer, tmp_path: Path) -> None:
    server.add("Paris.")
    wf = workflow(server, "What is the capital of France?", instructions="Answer briefly.")
    result = await run(wf, tmp_path)
    assert result.status == "succeeded"
    assert result.output is None  # the workflow declares no output; the step's is the answer
    assert result.history.steps["s"].output == "Paris."
    [request] = server.requests
    assert request.model == "m"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.messages == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert "tools" not in request.body
    [model_call] = calls(await events(tmp_path))
    assert (model_call.name, model_call.kind) == ("a1/model-1", "model")
    assert model_call.output == {"role": "assistant", "content": "Paris."}
    assert model_call.input == {"model": "m", "messages": request.messages}


added: list[tuple[int, int]] = []


def add(a: int, b: int = 0) -> int:
    """Add two integers."""
    added.append((a, b))
    return a + b


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


async def test_the_tool_loop_feeds_results_and_mistakes_back_to_the_model(
    server: ChatServer, tmp_path: Path
) -> None:
    added.clear()
    server.add(
        Reply.calls(
            ToolCall(name="add", arguments={"a": 2, "b": 3}),
            ToolCall(name="explode", arguments={"reason": "on purpose"}),
            ToolCall(name="subtract", arguments={"a": 1}),
            ToolCall(name="add", arguments='{"a": 2,'),  # does not parse
            ToolCall(name="add", arguments={"a": "two"}),  # does not validate
        ),
        "2 + 3 = 5",
    )
    result = await run(workflow(server, "Add 2 and 3.", tools=(add, explode)), tmp_path)
    assert result.status == "succeeded"
    assert result.history.steps["s"].output == "2 + 3 = 5"
    assert added == [(2, 3)]  # only the call that fits reached the function
    first, second = server.requests
    assert first.tools == ["add", "explode"]
    told = tool_messages(second)
    assert told[0] == "5"
    assert told[1] == "error: tool explode failed: RuntimeError: exploded: on purpose"
    assert told[2] == "error: there is no tool named 'subtract' (tools: add, explode)"
    assert told[3].startswith("error: the arguments are not valid JSON")
    assert told[4].startswith("error: the arguments do not fit tool add: a: Input should be")
    # Each answer goes with the call it answers.
    asked = second.messages[1]["tool_calls"]
    answered = [m["tool_call_id"] for m in second.messages if m["role"] == "tool"]
    assert answered == [call["id"] for call in asked]
    recorded = calls(await events(tmp_path))
    assert [c.name for c in recorded] == [
        "a1/model-1",
        *(f"a1/tool-{n}" for n in range(1, 6)),
        "a1/model-2",
    ]
    assert recorded[1].input == {"name": "add", "arguments": {"a": 2, "b": 3}}
    assert recorded[1].output == {"result": 5}
    assert recorded[2].output == {
        "error": "tool explode failed: RuntimeError: exploded: on purpose"
    }


async def test_more_tool_calls_than_allowed_fail_the_step(
    server: ChatServer, tmp_path: Path
) -> None:
    added.clear()
    one = ToolCall(name="add", arguments={"a": 1})
    server.add(Reply.calls(one), Reply.calls(one, one), "never asked for")
    wf = workflow(server, "Add.", tools=(add,), max_tool_calls=2, retry=RetryPolicy(attempts=3))
    result = await run(wf, tmp_path)
    assert result.status == "failed"
    error = result.history.steps["s"].error
    assert error is not None
    assert error.type == "AgentError"
    assert "the model asked for more than max_tool_calls (2) tool calls" in error.message
    assert "writer" in error.message
    assert added == [(1, 0)]  # the calls over the limit were not made
    assert len(server.requests) == 2  # and the step was not retried: it would do the same
    assert server.pending == 1


def lookup(order: str) -> dict[str, str]:
    return {"order": order, "status": "shipped"}


def route_by_agent(request: ChatRequest) -> Reply | None:
    """The expert answers from its own script; the writer takes the queued replies."""
    if request.system == "You are the expert.":
        return Reply.text(f"expert says: {request.messages[-1]['content']}")
    return None


async def test_agents_of_the_workflow_are_tools(tmp_path: Path) -> None:
    orders = Workflow(
        name="orders",
        input_schema={
            "type": "object",
            "properties": {"order": {"type": "string"}},
            "required": ["order"],
        },
        steps=[Step(id="find", uses=lookup, with_={"order": "${{ input.order }}"})],
        output="${{ steps.find.output }}",
    )
    with ChatServer(respond=route_by_agent) as server:
        server.add(
            Reply.calls(
                ToolCall(name="expert", arguments={"task": "Is it late?"}),
                ToolCall(name="orders", arguments={"order": "A-7"}),
                ToolCall(name="orders", arguments={"id": "A-7"}),  # not its input schema
            ),
            "It shipped.",
        )
        agents = [
            AgentSpec(name="expert", model=model(server, instructions="You are the expert.")),
            AgentSpec(name="orders", workflow=orders, description="Finds an order."),
        ]
        wf = workflow(server, "Where is A-7?", agents=agents, agent_tools=("expert", "orders"))
        result = await run(wf, tmp_path)
        requests = server.requests
    assert result.status == "succeeded", result.error
    assert result.history.steps["s"].output == "It shipped."
    writer_first = requests[0]
    assert writer_first.tools == ["expert", "orders"]
    offered = {t["function"]["name"]: t["function"] for t in writer_first.body["tools"]}
    assert offered["orders"]["description"] == "Finds an order."
    assert offered["orders"]["parameters"]["required"] == ["order"]
    assert offered["expert"]["parameters"]["required"] == ["task"]
    told = tool_messages(requests[-1])
    assert told[0] == "expert says: Is it late?"
    assert json.loads(told[1]) == {"order": "A-7", "status": "shipped"}
    assert told[2].startswith("error: the arguments do not fit tool orders: arguments:")
    assert "'order' is a required property" in told[2]
    # The expert's own model call is recorded within the writer's tool call; the workflow
    # ran as a child run named after it.
    names = [c.name for c in calls(await events(tmp_path))]
    assert "a1/tool-1/a1/model-1" in names
    assert await events(tmp_path, "r/s/a1/tool-2") != []


async def test_a_workflow_tool_that_waits_for_a_person_makes_the_step_wait(
    server: ChatServer, tmp_path: Path
) -> None:
    gate = Workflow(
        name="gate",
        input_schema={"type": "object"},
        steps=[Step(id="ok", approval=Approval(prompt="Refund?"))],
        output="${{ steps.ok.output.approved }}",
    )
    server.add(Reply.calls(ToolCall(name="gate", arguments={})), "Refunded.")
    wf = workflow(
        server, "Refund me.", agents=[AgentSpec(name="gate", workflow=gate)], agent_tools=("gate",)
    )
    waiting = await run(wf, tmp_path)
    assert waiting.status == "waiting"  # not a tool failure told to the model
    assert len(server.requests) == 1
    db = str(tmp_path / "x.db")
    await approve("r/s/a1/tool-1", "ok", store=db)
    done = await resume_run("r", store=db, workflow=wf)
    assert done.status == "succeeded"
    assert done.history.steps["s"].output == "Refunded."
    assert len(server.requests) == 2  # the first answer came from the log
    assert tool_messages(server.requests[1]) == ["true"]


async def test_an_unknown_agent_tool_is_a_definition_error(
    server: ChatServer, tmp_path: Path
) -> None:
    with pytest.raises(DefinitionError, match="no agent 'nobody' to call as a tool"):
        await run(workflow(server, "hi", agent_tools=("nobody",)), tmp_path)
    assert server.requests == []


# ---- structured output ----------------------------------------------------------------------

TITLE = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
}


async def test_a_structured_reply_is_parsed(server: ChatServer, tmp_path: Path) -> None:
    server.add(Reply.text('```json\n{"title": "Dune"}\n```'))  # a fence is tolerated
    result = await run(workflow(server, "Name a book.", output_schema=TITLE), tmp_path)
    assert result.history.steps["s"].output == {"title": "Dune"}
    system = server.requests[0].system
    assert "JSON" in system
    assert json.dumps(TITLE) in system


async def test_an_invalid_reply_is_sent_back_with_the_error_until_it_fits(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add("Sure! Here it is.", Reply.json({"title": 3}), Reply.json({"title": "Dune"}))
    result = await run(workflow(server, "Name a book.", output_schema=TITLE), tmp_path)
    assert result.status == "succeeded"
    assert result.history.steps["s"].output == {"title": "Dune"}
    _, second, third = server.requests
    assert second.messages[-2] == {"role": "assistant", "content": "Sure! Here it is."}
    assert second.messages[-1]["role"] == "user"
    assert "Your reply is not valid: it is not JSON" in second.messages[-1]["content"]
    assert "at reply['title']: 3 is not of type 'string'" in third.messages[-1]["content"]


async def test_a_reply_that_never_fits_fails_the_step_for_good(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add(Reply.json({"name": "Dune"}), Reply.json({"name": "Dune"}), "spare")
    wf = workflow(
        server,
        "Name a book.",
        output_schema=TITLE,
        max_output_retries=1,
        retry=RetryPolicy(attempts=3),
    )
    result = await run(wf, tmp_path)
    assert result.status == "failed"
    error = result.history.steps["s"].error
    assert error is not None
    assert error.message.startswith("writer: the reply does not fit the output schema after 2")
    assert "'title' is a required property" in error.message
    assert len(server.requests) == 2  # not retryable: the step's retry policy did not apply


# ---- the conversation contract --------------------------------------------------------------


async def test_a_conversation_is_shown_from_the_agents_point_of_view(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add("Draft 2.")
    payload = {
        "task": "Write a slogan.",
        "messages": [
            {"agent": "writer", "role": "assistant", "content": "Draft 1."},
            {"agent": "critic", "role": "assistant", "content": {"score": 3}},
        ],
        "instruction": "Revise it.",
    }
    result = await run(workflow(server, payload, instructions="You write."), tmp_path)
    assert result.history.steps["s"].output == "Draft 2."
    assert server.requests[0].messages == [
        {"role": "system", "content": "You write."},
        {"role": "user", "content": "Write a slogan."},
        {"role": "assistant", "content": "Draft 1."},
        {"role": "user", "content": '[critic] {"score": 3}'},
        {"role": "user", "content": "Revise it."},
    ]


async def test_a_mapping_without_contract_keys_is_sent_as_json(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add("ok")
    await run(workflow(server, {"order": "A-7", "qty": 2}), tmp_path)
    assert server.requests[0].messages == [
        {"role": "user", "content": '{"order": "A-7", "qty": 2}'}
    ]


async def test_a_handoff_tool_ends_the_turn_with_the_handoff(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add(
        Reply.calls(
            ToolCall(name="handoff_to_billing", arguments={"reason": "a refund"}),
            content="Passing you on.",
        )
    )
    payload = {"task": "I want my money back.", "handoffs": ["billing", "support"]}
    result = await run(workflow(server, payload, tools=(add,)), tmp_path)
    assert result.history.steps["s"].output == {
        "handoff_to": "billing",
        "reason": "a refund",
        "content": "Passing you on.",
    }
    assert server.requests[0].tools == ["add", "handoff_to_billing", "handoff_to_support"]


async def test_the_payloads_output_schema_overrides_the_agents(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add(Reply.json({"title": "Dune"}), Reply.json(["Dune", "Emma"]))
    payload = {"task": "Name two books.", "output_schema": {"type": "array", "minItems": 2}}
    result = await run(workflow(server, payload, output_schema=TITLE), tmp_path)
    assert result.history.steps["s"].output == ["Dune", "Emma"]
    assert "is not of type 'array'" in server.requests[1].messages[-1]["content"]


# ---- usage and cost -------------------------------------------------------------------------


async def test_usage_and_cost_are_recorded_with_each_model_call(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add(
        Reply.calls(
            ToolCall(name="add", arguments={"a": 1}), prompt_tokens=100, completion_tokens=20
        ),
        Reply.text("1", prompt_tokens=300, completion_tokens=10),
    )
    price = Price(input=2.0, output=10.0)  # per million tokens
    result = await run(workflow(server, "Add.", tools=(add,), price=price), tmp_path)
    cost = (400 * 2.0 + 30 * 10.0) / 1e6
    assert result.history.usage.tokens == 430
    assert result.history.usage.cost == pytest.approx(cost)
    assert result.history.steps["s"].usage.tokens == 430  # counted once, not twice
    assert result.history.steps["s"].usage.cost == pytest.approx(cost)
    usages = [
        (c.kind, c.usage and (c.usage.tokens, round(c.usage.cost * 1e6, 6)))
        for c in calls(await events(tmp_path))
    ]
    assert usages == [  # cost in millionths: prompt * 2 + completion * 10
        ("model", (120, 100 * 2 + 20 * 10)),
        ("tool", None),
        ("model", (310, 300 * 2 + 10 * 10)),
    ]


# ---- errors at the endpoint -----------------------------------------------------------------


async def test_http_429_is_rate_limited_with_the_wait_asked_for(server: ChatServer) -> None:
    server.add(Reply.error(429, "slow down", retry_after=7))
    agent = LLMAgent("writer", model(server))
    with pytest.raises(RateLimited) as raised:
        await agent.call("hi", context())
    assert raised.value.retry_after == 7.0
    assert raised.value.retryable
    assert str(raised.value) == f"writer: {server.url} answered HTTP 429: slow down"


async def test_a_rate_limited_step_is_retried_by_its_policy(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add(Reply.error(429, retry_after=0), "ok")
    result = await run(workflow(server, "hi", retry=RetryPolicy(attempts=2)), tmp_path)
    assert result.status == "succeeded"
    assert result.history.steps["s"].attempts == 2
    [failed] = [e for e in await events(tmp_path) if isinstance(e, StepAttemptFailed)]
    assert failed.error.type == "RateLimited"
    assert len(server.requests) == 2


async def test_a_server_error_is_retried_and_the_retry_asks_the_model_afresh(
    server: ChatServer, tmp_path: Path
) -> None:
    added.clear()
    one = Reply.calls(ToolCall(name="add", arguments={"a": 1}))
    server.add(one, Reply.error(500, "overloaded"), one, "1")
    wf = workflow(server, "Add.", tools=(add,), retry=RetryPolicy(attempts=2))
    result = await run(wf, tmp_path)
    assert result.status == "succeeded"
    assert result.history.steps["s"].output == "1"
    assert len(server.requests) == 4
    assert added == [(1, 0), (1, 0)]
    log = await events(tmp_path)
    [failed] = [e for e in log if isinstance(e, StepAttemptFailed)]
    assert failed.error.type == "AgentError"
    assert "answered HTTP 500: overloaded" in failed.error.message
    assert [c.name for c in calls(log)] == [
        "a1/model-1",
        "a1/tool-1",
        "a2/model-1",
        "a2/tool-1",
        "a2/model-2",
    ]


async def test_a_client_error_is_not_retried(server: ChatServer, tmp_path: Path) -> None:
    server.add(Reply.error(400, "unknown model m"), "never asked for")
    result = await run(workflow(server, "hi", retry=RetryPolicy(attempts=3)), tmp_path)
    assert result.status == "failed"
    error = result.history.steps["s"].error
    assert error is not None
    assert "answered HTTP 400: unknown model m" in error.message
    assert len(server.requests) == 1


async def test_a_body_that_is_not_json_is_a_retryable_failure(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add(Reply.malformed(), "ok")
    result = await run(workflow(server, "hi", retry=RetryPolicy(attempts=2)), tmp_path)
    assert result.status == "succeeded"
    assert result.history.steps["s"].output == "ok"
    [failed] = [e for e in await events(tmp_path) if isinstance(e, StepAttemptFailed)]
    assert "answered with a body that is not a chat completion" in failed.error.message


async def test_a_model_slower_than_the_steps_timeout_is_cut_off(
    server: ChatServer, tmp_path: Path
) -> None:
    server.add(Reply.text("late", delay=1.0), "in time")
    wf = workflow(server, "hi", timeout=0.2, retry=RetryPolicy(attempts=2))
    result = await run(wf, tmp_path)
    assert result.status == "succeeded"
    assert result.history.steps["s"].output == "in time"
    [failed] = [e for e in await events(tmp_path) if isinstance(e, StepAttemptFailed)]
    assert failed.error.type == "StepTimeout"


async def test_a_missing_key_names_the_variable(
    server: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    result = await run(workflow(server, "hi", retry=RetryPolicy(attempts=3)), tmp_path)
    assert result.status == "failed"
    error = result.history.steps["s"].error
    assert error is not None
    assert f"the environment variable {KEY_ENV} that holds the API key" in error.message
    assert server.requests == []


async def test_the_key_is_never_stored_or_shown(server: ChatServer, tmp_path: Path) -> None:
    server.add(
        Reply.calls(ToolCall(name="add", arguments={"a": 1})),
        Reply.error(401, f"Incorrect API key provided: {KEY}"),  # an endpoint that echoes it
    )
    result = await run(workflow(server, "Add.", tools=(add,)), tmp_path)
    assert result.status == "failed"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was used
    error = result.history.steps["s"].error
    assert error is not None
    assert "answered HTTP 401: Incorrect API key provided: ***" in error.message
    log = await events(tmp_path)
    assert len(calls(log)) == 2
    for event in log:
        assert KEY not in msgspec.json.encode(event).decode()
    for file in tmp_path.iterdir():  # the database and its journal, byte for byte
        assert KEY.encode() not in file.read_bytes()
    # Nor in the exception raised at the boundary, its chain or its traceback.
    server.add(Reply.error(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(AgentError) as raised:
        await LLMAgent("writer", model(server)).call("hi", context())
    shown = "".join(traceback.format_exception(raised.value))
    assert "***" in shown
    assert KEY not in shown
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None
    assert not raised.value.retryable


# ---- durability -----------------------------------------------------------------------------


async def test_a_crash_after_a_model_call_resumes_without_asking_again(
    server: ChatServer, tmp_path: Path
) -> None:
    added.clear()
    server.add(Reply.calls(ToolCall(name="add", arguments={"a": 4, "b": 5})), "9")
    wf = workflow(server, "Add 4 and 5.", tools=(add,))
    done = await run(wf, tmp_path, "j")
    assert done.history.steps["s"].output == "9"
    log = await events(tmp_path, "j")
    # The log as a process killed right after the first model call was recorded left it.
    cut = next(i for i, e in enumerate(log) if isinstance(e, CallRecorded))
    assert calls(log)[0].name == "a1/model-1"
    crashed = open_store(str(tmp_path / "crashed.db"))
    first = log[0]
    assert isinstance(first, RunStarted)
    await crashed.create_run(first)
    await crashed.append("j", log[1 : cut + 1])
    await crashed.close()
    before = len(server.requests)
    server.add("9")
    resumed = await resume_run("j", store=str(tmp_path / "crashed.db"), workflow=wf)
    assert resumed.status == "succeeded"
    assert resumed.history.steps["s"].output == "9"
    after = server.requests[before:]
    assert len(after) == 1  # model-1 came from the log: only model-2 was asked
    assert tool_messages(after[0]) == ["9"]
    assert added == [(4, 5), (4, 5)]  # the tool call was not recorded: it ran again
    # The resumed run counts model-1's usage once, from the log, and model-2's.
    assert resumed.history.usage == done.history.usage


# ---- the scripted server itself -------------------------------------------------------------


async def test_the_scripted_server_streams_for_clients_that_ask() -> None:
    reply = Reply.calls(
        ToolCall(name="add", arguments={"a": 1, "b": 22}),
        content="Let me add those numbers.",
        prompt_tokens=7,
        completion_tokens=3,
    )
    with ChatServer(reply) as server:
        async with AsyncOpenAI(api_key="k", base_url=server.url, max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            content = ""
            arguments = ""
            names: list[str] = []
            finish = None
            usage = None
            async for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    content += choice.delta.content or ""
                    for call in choice.delta.tool_calls or []:
                        if call.function and call.function.name:
                            names.append(call.function.name)
                        arguments += (call.function.arguments or "") if call.function else ""
                    finish = choice.finish_reason or finish
        assert server.requests[0].stream
    assert content == "Let me add those numbers."
    assert names == ["add"]
    assert json.loads(arguments) == {"a": 1, "b": 22}
    assert finish == "tool_calls"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 3)


async def test_a_request_the_script_has_no_reply_for_is_an_error(
    server: ChatServer, tmp_path: Path
) -> None:
    result = await run(workflow(server, "hi"), tmp_path)
    assert result.status == "failed"
    error = result.history.steps["s"].error
    assert error is not None
    assert "has no reply for this request" in error.message


def test_two_tools_of_one_name_are_a_definition_error() -> None:
    tool = Tool.from_callable(add)
    assert LLMAgent("writer", ModelSpec(model="m"), tools=[tool]).tools == (tool,)
    with pytest.raises(DefinitionError, match="agent writer: two tools are named 'add'"):
        LLMAgent("writer", ModelSpec(model="m"), tools=[tool, tool])
