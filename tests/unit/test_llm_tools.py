"""Tools from typed Python callables: the schema a model is shown, and the arguments checked."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from podium.agents import StepContext, Tool
from podium.agents.tools import ToolArgumentsError


def ctx() -> StepContext:
    return StepContext(run_id="r", step="s", key="s", index=None, attempt=1, agent="a")


def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Everything after the first line is for people, not for the model.
    """
    return a + b


class Address(TypedDict):
    street: str
    zip: int


class Customer(BaseModel):
    name: str
    tags: list[str] = []


async def ship(
    address: Address,
    customer: Customer,
    items: list[int],
    note: str | None = None,
    express: bool = False,
) -> dict[str, Any]:
    """Ship items to an address."""
    return {
        "street": address["street"],
        "customer": customer.name,
        "items": sum(items),
        "note": note,
        "express": express,
    }


def test_a_typed_signature_becomes_the_tool_schema() -> None:
    tool = Tool.from_callable(add)
    assert tool.name == "add"
    assert tool.description == "Add two integers."
    assert tool.parameters == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert tool.as_openai() == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": dict(tool.parameters),
        },
    }


def test_optionals_lists_and_nested_types_are_described() -> None:
    schema = Tool.from_callable(ship).parameters
    properties = schema["properties"]
    assert schema["required"] == ["address", "customer", "items"]
    assert properties["items"] == {"type": "array", "items": {"type": "integer"}}
    assert properties["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert properties["note"]["default"] is None
    assert properties["express"] == {"type": "boolean", "default": False}
    # Nested types are described once, under $defs, and referred to.
    assert properties["address"] == {"$ref": "#/$defs/Address"}
    assert schema["$defs"]["Address"]["properties"]["zip"]["type"] == "integer"
    assert schema["$defs"]["Address"]["required"] == ["street", "zip"]
    assert schema["$defs"]["Customer"]["properties"]["tags"]["type"] == "array"


def described(
    city: Annotated[str, Field(description="where the weather is wanted")], ctx: StepContext
) -> str:
    return f"sunny in {city} for {ctx.agent}"


async def test_ctx_is_handed_to_the_tool_and_not_shown_to_the_model() -> None:
    tool = Tool.from_callable(described, name="weather", description="The weather.")
    assert tool.name == "weather"
    assert tool.description == "The weather."
    assert tool.parameters["properties"] == {
        "city": {"type": "string", "description": "where the weather is wanted"}
    }
    assert await tool.invoke({"city": "Oslo"}, ctx()) == "sunny in Oslo for a"


async def test_arguments_are_checked_and_converted_before_the_call() -> None:
    tool = Tool.from_callable(ship)
    result = await tool.invoke(
        {
            "address": {"street": "Main St", "zip": "1234"},  # lax: "1234" is an int
            "customer": {"name": "Ada"},
            "items": [1, 2, 3],
        },
        ctx(),
    )
    assert result == {
        "street": "Main St",
        "customer": "Ada",  # a Customer instance reached the function
        "items": 6,
        "note": None,
        "express": False,
    }
    assert await Tool.from_callable(add).invoke({"a": 40}, ctx()) == 42  # a sync function


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "a: Field required"),
        ({"a": "many"}, "a: Input should be a valid integer"),
        ({"a": 1, "c": 3}, "c: Extra inputs are not permitted"),
    ],
)
async def test_arguments_that_do_not_fit_say_what_is_wrong(
    arguments: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ToolArgumentsError, match=expected):
        await Tool.from_callable(add).invoke(arguments, ctx())


async def test_a_nested_mistake_names_where_it_is() -> None:
    arguments = {"address": {"street": "x"}, "customer": {"name": "A"}, "items": ["one"]}
    with pytest.raises(ToolArgumentsError) as raised:
        await Tool.from_callable(ship).invoke(arguments, ctx())
    assert "address.zip: Field required" in str(raised.value)
    assert "items.0: Input should be a valid integer" in str(raised.value)
    assert "(got 'one')" in str(raised.value)


def spread(*numbers: int) -> int:
    return sum(numbers)


def test_a_signature_that_cannot_be_described_is_refused() -> None:
    with pytest.raises(TypeError, match=r"\*numbers cannot be described"):
        Tool.from_callable(spread)
    with pytest.raises(TypeError, match="cannot be a tool name"):
        Tool.from_callable(lambda x: x)


class Echo:
    name = "echo"
    capabilities: frozenset[str] = frozenset()
    concurrency: int | None = None

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        return {"got": payload, "path": ctx.path}


async def test_an_agent_as_a_tool_takes_one_object_checked_against_its_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    tool = Tool.from_agent(Echo(), "Echoes.", parameters=schema)
    assert tool.as_openai()["function"] == {
        "name": "echo",
        "description": "Echoes.",
        "parameters": schema,
    }
    inner = ctx().within("a1/tool-1")
    assert await tool.invoke({"n": 3}, inner) == {"got": {"n": 3}, "path": "a1/tool-1/"}
    with pytest.raises(ToolArgumentsError, match=r"arguments\['n'\]: 'x' is not of type"):
        await tool.invoke({"n": "x"}, inner)
    anything = Tool.from_agent(Echo())
    assert anything.parameters == {"type": "object"}
    assert anything.description == "Ask the agent echo."
