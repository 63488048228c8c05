"""Agents that are chat models behind an OpenAI-compatible endpoint, with tools.

An `LLMAgent` runs one conversation per call: the system message is its instructions, the
user's turn comes from the payload (see `Conversation`), and the model may call tools (Python
callables, other agents, handoffs) until it answers. The agent runs that loop itself, bounded
by `max_tool_calls`. With an output schema the answer must be JSON valid against it; an
invalid answer is sent back with the error, up to `max_output_retries` times.

Every model call and every tool call goes through `ctx.remember`, named with the attempt
(`a1/model-2`, `a1/tool-3`): it is recorded before the loop goes on, so a unit run again after
a crash gets the recorded answers back without asking the model again, while a retry after a
failed attempt asks afresh. A model call is recorded with its usage (tokens, and cost from
the model's `price`), which is how it counts towards the run's budgets.

The `openai` SDK is the only way out, and its errors are translated here, in one place:

    HTTP 429                           -> RateLimited (retry_after from Retry-After)
    HTTP 408, 409, 5xx, connection,
    timeout, a body that is not JSON   -> AgentError, retryable
    any other HTTP 4xx                 -> AgentError, not retryable
    the key's variable is not set      -> AgentError, not retryable, naming the variable

The key is read from the environment at call time, handed to the client and nothing else:
it is in no message, event or error (a message that echoes it has it replaced by `***`).
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from podium.agents.context import Computed, StepContext
from podium.agents.tools import Tool, ToolArgumentsError
from podium.errors import (
    AgentError,
    ChildWaiting,
    DefinitionError,
    OutputInvalid,
    RateLimited,
)
from podium.model import ModelSpec, Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["TASK_PARAMETERS", "Conversation", "LLMAgent"]

# What a chat model takes when it is called as a tool: the request, in words.
TASK_PARAMETERS: Mapping[str, Any] = {
    "type": "object",
    "properties": {"task": {"type": "string", "description": "what to ask, in full"}},
    "required": ["task"],
}

_PAYLOAD_KEYS = ("task", "messages", "instruction", "handoffs", "output_schema")
_HANDOFF = "handoff_to_"
_DEFAULT_ENDPOINT = "https://api.openai.com/v1"


class LLMAgent:
    """A chat model with instructions, tools and an optional output schema (`ModelSpec`)."""

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        *,
        tools: Sequence[Tool] = (),
        capabilities: frozenset[str] = frozenset(),
        concurrency: int | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.capabilities = capabilities
        self.concurrency = concurrency
        self._tools: dict[str, Tool] = {}
        problem = _schema_problem(spec.output_schema)
        if problem:
            raise DefinitionError(f"agent {name}: output_schema is not a JSON Schema: {problem}")
        self.add_tools(tools)
        # The SDK is imported now, while the run is prepared: imported by the first call, its
        # fraction of a second would count against that call's timeout.
        import openai  # noqa: F401

    @property
    def tools(self) -> tuple[Tool, ...]:
        return tuple(self._tools.values())

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Offer more tools (agent tools are bound once every agent exists)."""
        for tool in tools:
            if tool.name in self._tools:
                raise DefinitionError(f"agent {self.name}: two tools are named {tool.name!r}")
            if tool.name.startswith(_HANDOFF):
                raise DefinitionError(
                    f"agent {self.name}: tool {tool.name!r}: names starting with "
                    f"{_HANDOFF!r} are kept for handoffs"
                )
            self._tools[tool.name] = tool

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        try:
            talk = Conversation.of(payload, self.name)
        except ValueError as exc:
            raise _final(f"{self.name}: {exc}") from None
        schema = self.spec.output_schema
        if talk.output_schema is not None:
            schema = talk.output_schema
            problem = _schema_problem(schema)
            if problem:
                raise _final(f"{self.name}: output_schema is not a JSON Schema: {problem}")
        system = _system(self.spec.instructions, schema)
        messages = [{"role": "system", "content": system}] if system else []
        messages += talk.messages
        if not messages:
            raise _final(f"{self.name}: nothing to say: no instructions and no input")
        endpoint = _Endpoint(self.name, self.spec)
        try:
            return await self._converse(messages, talk.handoffs, schema, ctx, endpoint)
        finally:
            await endpoint.close()

    async def _converse(
        self,
        messages: list[dict[str, Any]],
        handoffs: Sequence[str],
        schema: Mapping[str, Any] | None,
        ctx: StepContext,
        endpoint: _Endpoint,
    ) -> Any:
        """Ask, run the tools asked for, ask again... until a reply that fits, or a handoff."""
        offered = [tool.as_openai() for tool in self._tools.values()]
        offered += [_handoff_tool(name) for name in handoffs]
        offered_names = [tool["function"]["name"] for tool in offered]
        asked = tools_called = retries = told = 0
        while True:
            asked += 1
            request = self._request(messages, offered)

            async def ask(request: dict[str, Any] = request) -> Computed:
                return await endpoint.complete(request)

            # Recorded with what the model was told since the last call: the log holds the
            # whole conversation once, not once per call.
            reply: dict[str, Any] = await ctx.remember(
                f"a{ctx.attempt}/model-{asked}",
                ask,
                kind="model",
                input={"model": self.spec.model, "messages": messages[told:]},
            )
            messages.append(reply)
            told = len(messages)
            text: str = reply.get("content") or ""
            calls: list[dict[str, Any]] = reply.get("tool_calls") or []
            if calls:
                handoff = _handoff(calls, handoffs, text)
                if handoff is not None:
                    return handoff
                if tools_called + len(calls) > self.spec.max_tool_calls:
                    names = ", ".join(c["function"]["name"] for c in calls)
                    raise _final(
                        f"{self.name}: the model asked for more than max_tool_calls "
                        f"({self.spec.max_tool_calls}) tool calls (last asked for: {names})"
                    )
                for call in calls:
                    tools_called += 1
                    key = f"a{ctx.attempt}/tool-{tools_called}"
                    result = await self._use_tool(call, key, ctx, offered=offered_names)
                    messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
                continue
            if schema is None:
                return text
            value, problem = _check(text, schema)
            if problem is None:
                return value
            if retries >= self.spec.max_output_retries:
                raise OutputInvalid(
                    f"{self.name}: the reply does not fit the output schema after "
                    f"{retries + 1} tries: {problem}"
                )
            retries += 1
            feedback = f"Your reply is not valid: {problem}. Reply again with only the JSON value."
            messages.append({"role": "user", "content": feedback})

    def _request(self, messages: list[dict[str, Any]], tools: list[Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.spec.model, "messages": list(messages)}
        if tools:
            request["tools"] = tools
        if self.spec.temperature is not None:
            request["temperature"] = self.spec.temperature
        if self.spec.max_tokens is not None:
            request["max_tokens"] = self.spec.max_tokens
        return request

    async def _use_tool(
        self, call: dict[str, Any], name: str, ctx: StepContext, *, offered: Sequence[str]
    ) -> str:
        """Make (or recall) tool call `name`; what the model is told of its outcome."""

        async def run() -> Computed:
            return await self._run_tool(call, ctx.within(name), offered)

        arguments = _arguments(call)
        outcome = await ctx.remember(
            name,
            run,
            kind="tool",
            input={"name": call["function"]["name"], "arguments": arguments},
        )
        if "error" in outcome:
            return f"error: {outcome['error']}"
        return _as_text(outcome.get("result"))

    async def _run_tool(
        self, call: dict[str, Any], ctx: StepContext, offered: Sequence[str]
    ) -> Computed:
        """`{"result": ...}`, or `{"error": ...}` to tell the model: never a crash.

        A handoff the model was not offered lands here too; `offered` (the handoffs
        included) is what it is told it may call.
        """
        name = call["function"]["name"]
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(offered) or "none"
            return {"error": f"there is no tool named {name!r} (tools: {known})"}, None
        try:
            arguments = json.loads(call["function"]["arguments"] or "{}")
        except ValueError as exc:
            return {"error": f"the arguments are not valid JSON: {exc}"}, None
        if not isinstance(arguments, dict):
            return {"error": "the arguments must be a JSON object"}, None
        try:
            result = await tool.invoke(arguments, ctx)
        except ToolArgumentsError as exc:
            return {"error": f"the arguments do not fit tool {name}: {exc}"}, None
        except Exception as exc:  # the tool's own failure, told to the model
            _let_through(exc)
            return {"error": f"tool {name} failed: {type(exc).__name__}: {exc}"}, None
        return {"result": _jsonable(result)}, None


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """The user's side of a call, read from its payload (the conversation contract).

    A str is the one user message. A mapping may hold `task` (the request: a str as is,
    anything else as JSON), `messages` (the conversation so far, `{"agent", "role",
    "content"}` each: the agent's own become assistant messages, everyone else's user
    messages prefixed `[<agent>] `), `instruction` (the last user message), `handoffs`
    (names of agents it may hand over to) and `output_schema` (overriding the agent's). A
    mapping with none of these, or any other value, is sent as JSON.
    """

    messages: list[dict[str, Any]] = field(default_factory=lambda: [])
    handoffs: tuple[str, ...] = ()
    output_schema: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, payload: Any, agent: str) -> Conversation:
        """`payload` as seen by `agent`; raises `ValueError` for one that does not fit."""
        if payload is None:
            return cls()
        if not isinstance(payload, Mapping) or not any(k in payload for k in _PAYLOAD_KEYS):
            return cls(messages=[{"role": "user", "content": _as_text(payload)}])
        messages = []
        if payload.get("task") is not None:
            messages.append({"role": "user", "content": _as_text(payload["task"])})
        said = payload.get("messages") or []
        if not isinstance(said, list) or not all(isinstance(m, Mapping) for m in said):
            raise ValueError("`messages` must be a list of {agent, role, content}")
        for message in said:
            by = message.get("agent")
            content = _as_text(message.get("content"))
            if by == agent:
                messages.append({"role": "assistant", "content": content})
            elif by is None:  # not said by an agent: taken as its role says
                role = "assistant" if message.get("role") == "assistant" else "user"
                messages.append({"role": role, "content": content})
            else:
                messages.append({"role": "user", "content": f"[{by}] {content}"})
        if payload.get("instruction") is not None:
            messages.append({"role": "user", "content": _as_text(payload["instruction"])})
        handoffs = payload.get("handoffs") or []
        if not isinstance(handoffs, list) or not all(isinstance(h, str) for h in handoffs):
            raise ValueError("`handoffs` must be a list of agent names")
        schema = payload.get("output_schema")
        if schema is not None and not isinstance(schema, Mapping):
            raise ValueError("`output_schema` must be a JSON Schema (an object)")
        return cls(messages=messages, handoffs=tuple(dict.fromkeys(handoffs)), output_schema=schema)


class _Endpoint:
    """The model's endpoint for one call of the agent: the client opens on first use.

    A call whose every model answer is recorded (a resume) needs neither client nor key.
    """

    def __init__(self, agent: str, spec: ModelSpec) -> None:
        self._agent = agent
        self._spec = spec
        self._client: AsyncOpenAI | None = None
        self._key = ""
        self.url = spec.base_url or os.environ.get("OPENAI_BASE_URL") or _DEFAULT_ENDPOINT

    def _open(self) -> AsyncOpenAI:
        if self._client is None:
            from openai import AsyncOpenAI

            key = os.environ.get(self._spec.api_key_env)
            if not key:
                error = AgentError(
                    f"{self._agent}: the environment variable {self._spec.api_key_env} "
                    f"that holds the API key for {self.url} is not set"
                )
                error.retryable = False
                raise error
            self._key = key
            # No retries in the SDK: the step's `retry` policy decides, and records each one.
            self._client = AsyncOpenAI(api_key=key, base_url=self._spec.base_url, max_retries=0)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def complete(self, request: dict[str, Any]) -> Computed:
        """Ask the model; the assistant message as plain JSON, and the call's usage."""
        import openai

        client = self._open()
        body = ""
        failure: AgentError | None = None
        try:
            # The raw body, parsed here: a body that is not what was promised becomes one
            # clear error rather than whatever the SDK's lenient parsing makes of it.
            raw = await client.chat.completions.with_raw_response.create(**request)
            body = raw.http_response.text
        except openai.APIStatusError as exc:
            failure = self._status_error(exc)
        except openai.APIConnectionError as exc:  # timeouts included
            failure = AgentError(f"{self._agent}: cannot reach {self.url}: {exc}")
        except openai.OpenAIError as exc:
            failure = AgentError(self._scrub(f"{self._agent}: {self.url}: {exc}"))
        if failure is not None:
            # Raised out here, so the SDK's exception (which holds the request, key and all)
            # is not chained to it.
            raise failure
        try:
            data = json.loads(body)
            message = data["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError("the message is not an object")
            reply = _assistant(message)
        except (ValueError, LookupError, TypeError) as exc:
            raise AgentError(
                self._scrub(
                    f"{self._agent}: {self.url} answered with a body that is not a chat "
                    f"completion ({exc}): {body[:200]!r}"
                )
            ) from None
        return reply, self._usage(data.get("usage"))

    def _usage(self, usage: Any) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        read = int(usage.get("prompt_tokens") or 0)
        written = int(usage.get("completion_tokens") or 0)
        price = self._spec.price
        cost = (read * price.input + written * price.output) / 1e6 if price else 0.0
        return Usage(tokens=read + written, cost=cost)

    def _status_error(self, exc: Any) -> AgentError:
        status: int = exc.status_code
        body = exc.body
        detail = body.get("message") if isinstance(body, dict) else None
        if detail is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = body["error"].get("message")
        detail = str(detail if detail is not None else (body or ""))[:300]
        message = self._scrub(f"{self._agent}: {self.url} answered HTTP {status}: {detail}")
        if status == 429:
            return RateLimited(message, retry_after=_retry_after(exc.response.headers))
        error = AgentError(message)
        error.retryable = status >= 500 or status in (408, 409)
        return error

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _assistant(message: dict[str, Any]) -> dict[str, Any]:
    """The assistant message as it goes back into the conversation, and into the log."""
    content = message.get("content")
    reply: dict[str, Any] = {"role": "assistant", "content": content}
    if content is not None and not isinstance(content, str):
        reply["content"] = json.dumps(content)
    calls = []
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        arguments = function.get("arguments")
        calls.append(
            {
                "id": str(call.get("id") or f"call_{i + 1}"),
                "type": "function",
                "function": {
                    "name": str(function["name"]),
                    "arguments": arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments or {}),
                },
            }
        )
    if calls:
        reply["tool_calls"] = calls
    return reply


def _final(message: str) -> AgentError:
    """An error another attempt would only repeat."""
    error = AgentError(message)
    error.retryable = False
    return error


def _system(instructions: str, schema: Mapping[str, Any] | None) -> str:
    if schema is None:
        return instructions
    asked = "Reply with only a JSON value (no other text) valid against this JSON Schema:"
    return f"{instructions}\n\n{asked}\n{json.dumps(schema)}".lstrip()


def _handoff(calls: list[dict[str, Any]], handoffs: Sequence[str], text: str) -> Any:
    """The handoff the model asked for, if it did (it wins over any other call)."""
    for call in calls:
        name: str = call["function"]["name"]
        if name.startswith(_HANDOFF) and name.removeprefix(_HANDOFF) in handoffs:
            arguments = _arguments(call)
            reason = arguments.get("reason") if isinstance(arguments, dict) else None
            return {
                "handoff_to": name.removeprefix(_HANDOFF),
                "reason": reason if isinstance(reason, str) else None,
                "content": text,
            }
    return None


def _handoff_tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": _HANDOFF + name,
            "description": f"Hand the conversation over to {name}, who answers next.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "why, briefly"}},
            },
        },
    }


def _arguments(call: dict[str, Any]) -> Any:
    """The call's arguments as JSON if they parse, else as the text the model sent."""
    text = call["function"]["arguments"]
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def _retry_after(headers: Mapping[str, str]) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _check(text: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The reply parsed and validated, or what is wrong with it."""
    import jsonschema

    body = text.strip()
    if body.startswith("```"):  # a fenced block: models add them even when told not to
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        value = json.loads(body)
    except ValueError as exc:
        return None, f"it is not JSON ({exc})"
    validator = jsonschema.validators.validator_for(schema)(schema)
    problem = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if problem is None:
        return value, None
    where = "".join(f"[{p!r}]" for p in problem.absolute_path)
    return None, f"at reply{where}: {problem.message}"


def _schema_problem(schema: Mapping[str, Any] | None) -> str | None:
    if schema is None:
        return None
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.exceptions.SchemaError as exc:
        return exc.message
    return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    """A tool's result as JSON data (a dataclass, a model, a date...), for the log."""
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(value)
    except Exception:  # not describable as JSON: its text will do for the model
        return str(value)


def _let_through(exc: Exception) -> None:
    """Re-raise what is the engine's business rather than the tool's failure.

    A sub-workflow called as a tool that waits for a person makes the whole unit wait.
    """
    if isinstance(exc, ChildWaiting):
        raise exc
