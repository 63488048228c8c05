"""Tools a chat model may call: Python callables, and agents of the workflow.

A `Tool` is a name, a description, the JSON Schema of its arguments (one JSON object) and
an async `invoke(arguments, ctx)`. `Tool.from_callable` reads the schema off a typed
signature (pydantic does the work, and checks the arguments the model sends against it);
`Tool.from_agent` exposes an agent, the arguments object being the agent's input.

Arguments that do not fit raise `ToolArgumentsError`, whose message is meant for the model:
the LLM agent sends it back as the tool's result so that the model can correct itself.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from podium.agents.context import StepContext
from podium.agents.protocol import Agent

__all__ = ["Tool", "ToolArgumentsError"]

# What OpenAI-compatible endpoints accept as a function name.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Handler = Callable[[Mapping[str, Any], StepContext], Awaitable[Any]]


class ToolArgumentsError(ValueError):
    """The arguments a model sent do not fit the tool; the message says how, for the model."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """Something a chat model may call: `parameters` is the JSON Schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: Handler = field(repr=False, compare=False)

    async def invoke(self, arguments: Mapping[str, Any], ctx: StepContext) -> Any:
        """Check `arguments` and call the tool; raises `ToolArgumentsError` if they do not fit.

        `ctx` is the context the tool runs in: the LLM agent hands each call its own
        (`ctx.within("a1/tool-3")`), under which whatever the tool records is named.
        """
        return await self.handler(arguments, ctx)

    def as_openai(self) -> dict[str, Any]:
        """The tool as an entry of a chat-completions request's `tools`."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    @classmethod
    def from_callable(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """A tool that calls `fn` (sync or async) with the model's arguments, checked.

        Each parameter's annotation (ints, optionals, lists, TypedDicts from
        `typing_extensions`, pydantic models, `Annotated[..., Field(description=...)]`)
        becomes its schema; a default makes it optional; the docstring's first line is the
        description. A parameter named `ctx` receives the `StepContext` and is not shown to
        the model. Raises `TypeError` for a signature that cannot be described.
        """
        from typing import NotRequired

        from pydantic import ConfigDict, TypeAdapter
        from typing_extensions import TypedDict

        name = name or str(getattr(fn, "__name__", ""))
        if not _NAME.match(name):
            raise TypeError(
                f"{name!r} cannot be a tool name (letters, digits, _ and -, at most 64); "
                "give the tool a name"
            )
        try:
            signature = inspect.signature(fn)
            hints = typing.get_type_hints(fn, include_extras=True)
        except (TypeError, ValueError, NameError) as exc:
            raise TypeError(f"tool {name}: cannot read the signature of {fn!r}: {exc}") from None
        fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        positional: list[str] = []  # positional-only parameters, in order
        wants_ctx = False
        for parameter in signature.parameters.values():
            if parameter.name == "ctx":
                wants_ctx = True
                continue
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(
                    f"tool {name}: *{parameter.name} cannot be described as a tool argument; "
                    "name each argument"
                )
            if parameter.kind is parameter.POSITIONAL_ONLY:
                positional.append(parameter.name)
            annotation = hints.get(parameter.name, Any)
            if parameter.default is parameter.empty:
                fields[parameter.name] = annotation
            else:
                fields[parameter.name] = NotRequired[annotation]
                defaults[parameter.name] = parameter.default
        # A TypedDict rather than a model: any parameter name works, and the function's own
        # defaults apply to what the model leaves out.
        arguments_type: Any = typing.cast(Any, TypedDict)(f"{name}_arguments", fields)
        arguments_type.__pydantic_config__ = ConfigDict(extra="forbid")
        try:
            adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(arguments_type)
            schema = adapter.json_schema()
        except Exception as exc:  # pydantic's schema errors: an annotation it cannot describe
            raise TypeError(f"tool {name}: {exc}") from None
        _tidy(schema, defaults)
        is_async = inspect.iscoroutinefunction(fn)

        async def handler(arguments: Mapping[str, Any], ctx: StepContext) -> Any:
            from pydantic import ValidationError

            try:
                checked = adapter.validate_python(dict(arguments))
            except ValidationError as exc:
                raise ToolArgumentsError(_explain(exc)) from None
            args = [checked.pop(p) for p in positional if p in checked]
            if wants_ctx:
                checked["ctx"] = ctx
            if is_async:
                return await fn(*args, **checked)
            result = await asyncio.to_thread(fn, *args, **checked)
            if inspect.isawaitable(result):  # a partial or callable object of an async function
                result = await result
            return result

        if description is None:
            description = (inspect.getdoc(fn) or "").strip().split("\n")[0]
        return cls(name=name, description=description, parameters=schema, handler=handler)

    @classmethod
    def from_agent(
        cls,
        agent: Agent,
        description: str = "",
        *,
        parameters: Mapping[str, Any] | None = None,
    ) -> Tool:
        """A tool that calls `agent` with the arguments object as its input.

        `parameters` (a JSON Schema of an object) tells the model what the agent takes and
        is checked; without it the agent takes any object, or `{"task": ...}` if it is a
        chat model itself.
        """
        from podium.agents.llm import TASK_PARAMETERS, LLMAgent

        if parameters is None:
            parameters = TASK_PARAMETERS if isinstance(agent, LLMAgent) else {"type": "object"}
        checked = dict(parameters)

        async def handler(arguments: Mapping[str, Any], ctx: StepContext) -> Any:
            import jsonschema

            validator = jsonschema.validators.validator_for(checked)(checked)
            problem = jsonschema.exceptions.best_match(validator.iter_errors(dict(arguments)))
            if problem is not None:
                where = "".join(f"[{p!r}]" for p in problem.absolute_path)
                raise ToolArgumentsError(f"arguments{where}: {problem.message}")
            return await agent.call(dict(arguments), msgspec.structs.replace(ctx, agent=agent.name))

        text = description or f"Ask the agent {agent.name}."
        return cls(name=agent.name, description=text, parameters=checked, handler=handler)


def _tidy(schema: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """Drop pydantic's titles (noise to a model) and show the defaults that are JSON."""
    schema.pop("title", None)
    for name, prop in schema.get("properties", {}).items():
        prop.pop("title", None)
        if name in defaults and _is_json(defaults[name]):
            prop.setdefault("default", defaults[name])


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _explain(error: Any) -> str:
    """pydantic's validation errors as short lines a model can act on."""
    lines = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "arguments"
        got = problem.get("input")
        shown = "" if problem["type"] == "missing" else f" (got {got!r:.80})"
        lines.append(f"{where}: {problem['msg']}{shown}")
    return "; ".join(lines)
