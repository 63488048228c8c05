"""Fuzzing definitions and expressions: a `Workflow`, or an error that says where; nothing else.

Four generators feed `load_workflow` and the expression compiler:

- generated documents: random nested mappings and lists built from the language's own keys
  (name, steps, needs, uses, with, if, for_each, retry, timeout…), random scalars and
  `${{ }}` expressions made of random tokens, written as YAML or JSON;
- mutated valid workflows: keys deleted, renamed, duplicated, values swapped for other
  types, expressions injected, lines of the YAML text duplicated or dropped;
- random bytes, alone or spliced into a valid file;
- random expressions compiled with `compile_template` and rendered on random scopes.

The only exception allowed is `DefinitionError` (loading, compiling) or `ExpressionError`
(rendering), and every line of a `DefinitionError` starts with the file's name, mostly as
`FILE:LINE:COL:`. A workflow that loads also survives a round trip through its document.

Examples per test: `PODIUM_FUZZ_EXAMPLES` (300 by default, which `make test` uses; `make fuzz`
runs 25,000 per test, 100,000 in all). Without the variable the examples are derandomized, so
`make test` is deterministic; `make fuzz` explores afresh on every run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from podium.errors import DefinitionError, ExpressionError, Location
from podium.spec import (
    compile_template,
    load_workflow,
    workflow_from_document,
    workflow_to_document,
)

EXAMPLES = int(os.environ.get("PODIUM_FUZZ_EXAMPLES", "300"))
FUZZING = "PODIUM_FUZZ_EXAMPLES" in os.environ

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not FUZZING,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

# ---- the vocabulary ------------------------------------------------------------------------

WORKFLOW_KEYS = [
    "name",
    "description",
    "input",
    "steps",
    "agents",
    "output",
    "max_parallel",
    "guards",
]
STEP_KEYS = [
    "needs",
    "uses",
    "with",
    "if",
    "for_each",
    "retry",
    "timeout",
    "agent",
    "capability",
    "trigger",
    "max_parallel",
    "continue_on_error",
    "description",
    "sleep",
    "wait_until",
    "approval",
    "deadline",
    "fallback",
    "compensate",
]
OTHER_KEYS = [
    "attempts",
    "backoff",
    "factor",
    "max_backoff",
    "jitter",
    "on",
    "not_on",
    "capabilities",
    "concurrency",
    "circuit",
    "failures",
    "window",
    "cooldown",
    "prompt",
    "schema",
    "default",
    "max_steps",
    "max_output_bytes",
    "type",
    "properties",
    "required",
    "items",
    "<<",
]
ALL_KEYS = WORKFLOW_KEYS + STEP_KEYS + OTHER_KEYS
STEP_IDS = ["a", "b", "c", "check", "notify", "a-b", "1", "steps", "input", ""]

EXPRESSION_TOKENS = [
    *["input", "steps", "item", "index", "steps.a", "steps.a.output", "steps.b.status"],
    *["input.x", "input.items", "input['k']", "steps.c.output[0]", "item.name", "x", "loop"],
    *["length", "keys", "values", "tojson", "range", "dict", "null", "true", "false", "none"],
    *["not", "and", "or", "in", "is", "if", "else", "defined", "none", "string", "number"],
    *["(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "+", "-", "*", "**", "/", "//", "%"],
    *["~", "==", "!=", "<", ">=", "'a'", '"x"', "'%s'", "0", "1", "-1", "2.5", "7", "1e308"],
    *["1000000", "__class__", "__globals__", "__init__", "default", "upper", "join", "map"],
    *["select", "sort", "list", "first", "last", "int", "float", "abs", "round", "sum", "min"],
    *["max", "unique", "reverse", "replace", "trim", "lower", "batch", "slice", "center"],
    *["format", "lipsum", "cycler", "self", "namespace", "attr", "safe", "random", "{{", "}}"],
    *["${{", "'", '"', "\\", "\n", "#", "=", "!", "@", "$", "`"],
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(
        [
            *["m:f", "shop.agents:notify", "5s", "200ms", "1h", "2024-05-01", "one_success"],
            *["all_done", "none_failed", "all_success", "a", "b", "steps.a", "input.x"],
        ]
    ),
)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """`${{ … }}` around random tokens, sometimes with text around it or left unclosed."""
    tokens = draw(st.lists(st.sampled_from(EXPRESSION_TOKENS), min_size=0, max_size=8))
    glue = draw(st.sampled_from([" ", "", " | ", "."]))
    body = glue.join(tokens)
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return body  # a bare expression, as `if` and `for_each` allow
    if shape == 1:
        return "${{ " + body  # never closed
    if shape == 2:
        return "before ${{ " + body + " }} after ${{ input }}"
    return "${{ " + body + " }}"


leaves = st.one_of(scalars, expressions())
keys = st.one_of(st.sampled_from(ALL_KEYS + STEP_IDS), st.text(max_size=6))
values: st.SearchStrategy[Any] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=24,
)


@st.composite
def steps(draw: st.DrawFn) -> Any:
    """A step mapping from step keys (usually) with random values, or something else."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    doc: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(STEP_KEYS), max_size=6, unique=True)):
        if key == "needs":
            doc[key] = draw(
                st.one_of(
                    st.sampled_from(STEP_IDS),
                    st.lists(st.sampled_from(STEP_IDS), max_size=3),
                    values,
                )
            )
        elif key in ("with", "if", "for_each", "wait_until"):
            doc[key] = draw(st.one_of(expressions(), values))
        elif key == "uses":
            doc[key] = draw(st.one_of(st.sampled_from(["m:f", "pkg.mod:fn", "m:", ":f"]), scalars))
        else:
            doc[key] = draw(values)
    return doc


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A workflow-shaped mapping most of the time; now and then any value at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        doc["name"] = draw(st.one_of(st.just("wf"), scalars))
    step_ids = draw(st.lists(st.sampled_from(STEP_IDS), max_size=5, unique=True))
    doc["steps"] = {step_id: draw(steps()) for step_id in step_ids}
    for key in draw(st.lists(st.sampled_from(WORKFLOW_KEYS + OTHER_KEYS), max_size=3, unique=True)):
        doc[key] = draw(st.one_of(expressions(), values))
    return doc


def dump(doc: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(doc, ensure_ascii=False, allow_nan=True)
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# ---- the properties --------------------------------------------------------------------------


def check_load(path: Path) -> None:
    """`path` loads, or fails with every line naming the file; a loaded one round-trips."""
    try:
        workflow = load_workflow(path)
    except DefinitionError as exc:
        lines = [*exc.problems, *str(exc).splitlines()]
        bad = [line for line in lines if not line.startswith(str(path))]
        assert not bad, f"problem lines that do not start with the file name: {bad}"
        return
    document = workflow_to_document(workflow)
    again = workflow_from_document(
        json.loads(json.dumps(document)), source=str(path), base_dir=workflow.base_dir
    )
    assert workflow_to_document(again) == document


@fuzz
@given(doc=documents(), as_json=st.booleans())
@example(doc={"name": "\x7f", "steps": {}}, as_json=True)  # valid JSON, refused by PyYAML
def test_generated_documents_load_or_fail_with_located_errors(
    tmp_path: Path, doc: Any, as_json: bool
) -> None:
    path = tmp_path / ("fuzz.json" if as_json else "fuzz.yaml")
    path.write_text(dump(doc, as_json), encoding="utf-8")
    check_load(path)


VALID: list[dict[str, Any]] = [
    {
        "name": "order",
        "input": {"type": "object", "properties": {"order": {"type": "object"}}},
        "max_parallel": 4,
        "agents": {
            "inventory": {
                "uses": "shop.agents:check_stock",
                "capabilities": ["inventory.check"],
                "concurrency": 2,
            }
        },
        "steps": {
            "check": {"agent": "inventory", "with": {"order": "${{ input.order }}"}},
            "reserve": {
                "needs": "check",
                "if": "${{ steps.check.output.in_stock }}",
                "capability": "inventory.check",
            },
            "backorder": {
                "needs": ["check"],
                "if": "not steps.check.output.in_stock",
                "uses": "shop.agents:backorder",
                "retry": 2,
            },
            "notify": {
                "needs": ["reserve", "backorder"],
                "trigger": "one_success",
                "for_each": "${{ input.order.contacts }}",
                "uses": "shop.agents:notify",
                "with": {"to": "${{ item }}", "n": "${{ index }}"},
                "retry": {"attempts": 3, "backoff": "200ms", "factor": 2, "max_backoff": "5s"},
                "timeout": "30s",
                "continue_on_error": True,
            },
        },
        "output": {"shipped": "${{ steps.reserve.status == 'succeeded' }}"},
    },
    {
        "name": "chain",
        "steps": {
            "a": {"uses": "m:f", "with": "${{ input }}"},
            "b": {"uses": "m:f", "needs": ["a"], "with": ["${{ steps.a.output }}", 1]},
            "nap": {"needs": "b", "sleep": "1h"},
            "c": {"uses": "m:f", "needs": ["nap"], "with": {"x": "${{ steps.b.output | length }}"}},
        },
        "output": "${{ steps.c.output }}",
    },
    {
        "name": "people",
        "steps": {
            "ask": {
                "approval": {"prompt": "ship ${{ input.n }}?", "timeout": "1d", "default": "reject"}
            },
            "go": {"uses": "m:f", "needs": ["ask"], "if": "${{ steps.ask.output.approved }}"},
            "later": {"needs": ["go"], "wait_until": "${{ input.when }}", "trigger": "all_done"},
        },
    },
]


def paths_in(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value`, the root excluded."""
    found: list[tuple[Any, ...]] = []
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        found.append((*path, key))
        found.extend(paths_in(child, (*path, key)))
    return found


def parent_of(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def mutate(doc: Any, data: st.DataObject) -> Any:
    """One structural edit of `doc`, in place where possible; returns the new document."""
    paths = paths_in(doc)
    if not paths:
        return data.draw(values)
    path = data.draw(st.sampled_from(paths))
    parent, key = parent_of(doc, path), path[-1]
    edit = data.draw(
        st.sampled_from(["delete", "rename", "duplicate", "swap", "inject", "wrap", "root"])
    )
    if edit == "delete":
        del parent[key]
    elif edit == "rename" and isinstance(parent, dict):
        parent[data.draw(keys)] = parent.pop(key)
    elif edit == "duplicate":
        if isinstance(parent, dict):
            parent[f"{key}{data.draw(st.sampled_from(['', '_', '2']))}"] = parent[key]
        else:
            parent.insert(key, parent[key])
    elif edit == "swap":
        parent[key] = data.draw(values)
    elif edit == "inject":
        parent[key] = data.draw(expressions())
    elif edit == "wrap":
        parent[key] = data.draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
    elif edit == "root":
        return data.draw(st.sampled_from([[doc], None, "text", 3]))
    return doc


def mutate_text(text: str, data: st.DataObject) -> str:
    """Duplicate, drop, or splice into a line: duplicate keys, bad indentation, stray syntax."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    index = data.draw(st.integers(0, len(lines) - 1))
    edit = data.draw(st.sampled_from(["duplicate", "drop", "splice", "indent", "none"]))
    if edit == "duplicate":
        lines.insert(index, lines[index])
    elif edit == "drop":
        del lines[index]
    elif edit == "splice":
        line = lines[index]
        at = data.draw(st.integers(0, len(line)))
        bit = data.draw(st.sampled_from([*":{}[],'\"-&*!|>%?#\t", "${{ ", " }}", "<<: *a"]))
        lines[index] = line[:at] + bit + line[at:]
    elif edit == "indent":
        lines[index] = " " + lines[index]
    return "".join(lines)


@fuzz
@given(data=st.data())
def test_mutated_workflows_load_or_fail_with_located_errors(
    tmp_path: Path, data: st.DataObject
) -> None:
    doc = json.loads(json.dumps(data.draw(st.sampled_from(VALID))))  # a fresh deep copy
    for _ in range(data.draw(st.integers(1, 4))):
        doc = mutate(doc, data)
    as_json = data.draw(st.booleans())
    text = dump(doc, as_json)
    for _ in range(data.draw(st.integers(0, 2))):
        text = mutate_text(text, data)
    path = tmp_path / ("mutated.json" if as_json else "mutated.yaml")
    path.write_text(text, encoding="utf-8")
    check_load(path)


@fuzz
@given(data=st.binary(max_size=400), base=st.sampled_from(VALID), at=st.floats(0, 1))
def test_random_bytes_load_or_fail_with_located_errors(
    tmp_path: Path, data: bytes, base: dict[str, Any], at: float
) -> None:
    """Bytes alone, or spliced into a valid YAML file at a random place."""
    path = tmp_path / "bytes.yaml"
    valid = dump(base, as_json=False).encode()
    cut = int(len(valid) * at)
    path.write_bytes(data if len(data) % 2 else valid[:cut] + data + valid[cut:])
    check_load(path)


json_data: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.floats(allow_nan=False),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
STATUSES = ["succeeded", "failed", "skipped", "running"]
scopes = st.fixed_dictionaries(
    {
        "input": st.one_of(
            json_data, st.fixed_dictionaries({"x": json_data, "items": st.lists(json_data)})
        ),
        "steps": st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.fixed_dictionaries({"output": json_data, "status": st.sampled_from(STATUSES)}),
        ),
    },
    optional={"item": json_data, "index": st.integers(0, 10)},
)
WHERE = Location("expr.yaml", 3, 5)


@fuzz
@given(
    template=st.one_of(
        expressions(),
        st.lists(expressions(), max_size=3),
        st.dictionaries(st.sampled_from(["a", "b"]), expressions(), max_size=2),
    ),
    scope=scopes,
)
@example(template="before ${{ input \n input }} after", scope={"input": None, "steps": {}})
def test_random_expressions_compile_and_render_or_fail_cleanly(
    template: Any, scope: dict[str, Any]
) -> None:
    try:
        compiled = compile_template(template, where=WHERE)
    except DefinitionError as exc:
        lines = [*exc.problems, *str(exc).splitlines()]
        bad = [line for line in lines if not line.startswith("expr.yaml")]
        assert not bad, f"problem lines that do not start with the file name: {bad}"
        return
    try:
        value = compiled.render(scope)
    except ExpressionError as exc:
        message = str(exc)
    else:
        json.dumps(value, allow_nan=True)  # a result is always plain JSON data
        return
    assert message.startswith("${{"), message  # it quotes the expression that failed


@pytest.mark.parametrize("capabilities", ["[[a]]", "[{a: 1}]"])
def test_found_by_fuzzing_a_capability_that_is_not_text_is_a_definition_error(
    tmp_path: Path, capabilities: str
) -> None:
    """`make fuzz` found this one: an agent's capabilities holding a list or a mapping."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: x\nagents:\n  inv:\n    uses: 'm:f'\n"
        f"    capabilities: {capabilities}\nsteps:\n  s: {{agent: inv}}\n",
        encoding="utf-8",
    )
    with pytest.raises(DefinitionError) as caught:
        load_workflow(path)
    assert str(caught.value).startswith(f"{path}:5:"), str(caught.value)
