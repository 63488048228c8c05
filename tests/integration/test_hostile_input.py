"""Hostile definitions and inputs: nothing escapes the sandbox, nothing ends in a traceback.

- Expressions that reach for Python internals (`__class__`, `__globals__`, `lipsum`,
  `cycler`, `self`) or try to make huge values are a `DefinitionError` when the workflow is
  loaded or an `ExpressionError` when the step would run, and the step's agent (a canary
  here) is never called.
- A deeply nested run input gives a result or a `PodiumError`, through the API and the CLI,
  never an escaping `RecursionError`.
- A `uses:` that cannot be imported, or a harmless callable given the wrong `with`, is a
  clear error; an agent returning 50 MB fails its step with `OutputTooLarge`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from podium import (
    DefinitionError,
    ExpressionError,
    InputError,
    PodiumError,
    RetryPolicy,
    Step,
    Workflow,
    run_workflow,
)
from podium.errors import Location
from podium.model import Guards
from podium.runtime import RunResult
from podium.spec import compile_template, load_workflow

called: list[Any] = []  # the canary: anything in it means an agent ran


def canary(value: Any = None) -> str:
    called.append(value)
    return "the canary was called"


@pytest.fixture(autouse=True)
def _quiet_canary() -> None:
    called.clear()


SCOPE: dict[str, Any] = {
    "input": {"n": 3, "s": "abc", "items": [1, 2, 3], "nested": {"k": "v"}},
    "steps": {"a": {"output": {"x": 1}, "status": "succeeded"}},
}

# Each reaches for Python internals: refused at compile time or failing at render time.
ESCAPES = [
    "${{ ''.__class__ }}",
    "${{ ''.__class__.__mro__[1].__subclasses__() }}",
    "${{ input.__class__.__mro__ }}",
    "${{ (1).__class__.__subclasses__() }}",
    "${{ steps.__init__ }}",
    "${{ steps.a.__init__.__globals__ }}",
    "${{ steps.a.output.__class__.__base__ }}",
    "${{ lipsum.__globals__ }}",
    "${{ lipsum.__globals__['os'].system('true') }}",
    "${{ cycler.__init__.__globals__.os }}",
    "${{ joiner.__init__.__globals__ }}",
    "${{ namespace.__init__.__globals__ }}",
    "${{ self }}",
    "${{ self.__init__.__globals__ }}",
    "${{ config }}",
    "${{ request.application.__globals__ }}",
    "${{ range.__self__ }}",
    "${{ dict.__init__.__globals__ }}",
    "${{ input | attr('__class__') }}",
    "${{ input['__class__'] }}",
    "${{ input.s.upper() }}",
    "${{ input.s.format(input) }}",
    "${{ {'a': 1}.items() }}",
    "${{ input.items.pop() }}",
    "${{ input.items | map(attribute='__class__') | list }}",
    "${{ input.items | map('attr', '__class__') | list }}",
    "${{ input.items | selectattr('__class__') | list }}",
    "${{ input.items | sort(attribute='__class__') }}",
    "${{ input | groupby('__class__') }}",
    "${{ input.s | e }}",
    "${{ input.s | safe }}",
    "${{ input.s | random }}",
    "${{ input.s | xmlattr }}",
    "${{ __import__('os') }}",
    "${{ range(10**9) | list }}",
    "${{ range(10**9) | length }}",
]

# Each would build a value far beyond the sandbox's 1,000,000-element limit on `*`, or compute
# a number far beyond its exponent limit on `**`; a run must refuse them, not build them.
BOMBS = [
    "${{ 'a' * 1000000000 }}",
    "${{ 'a' * 1000000 * 1000000 }}",
    "${{ ('ab' * 500000) * 3 }}",
    "${{ input.items * 100000000 }}",
    "${{ [input] * 10000000 }}",
    "${{ 9 ** 100000000 }}",
    "${{ 'a' | center(20000000) }}",
    "${{ '%20000000d' | format(1) }}",
    "${{ '%20000000d' % 1 }}",
    "${{ '%s' % input }}",
    "${{ range(20) | join('x' * 1000000) }}",
    "${{ ('a' * 1000) | replace('a', 'b' * 20000) }}",
    "${{ ('\\n' * 1000) | indent(20000, blank=true) }}",
    "${{ ((2 ** 1024) ** 1024) ** 64 > 1 }}",
]

WHERE = Location("hostile.yaml", 7, 9)


def refused(expression: str) -> str:
    """How `expression` is refused: "definition" or "expression"; fails if it renders."""
    try:
        template = compile_template({"value": expression}, where=WHERE)
    except DefinitionError as exc:
        problems = exc.problems
    else:
        with pytest.raises(ExpressionError) as caught:
            template.render(SCOPE)
        assert expression.strip() in str(caught.value)  # the message quotes the expression
        return "expression"
    assert all(line.startswith("hostile.yaml:7:9:") for line in problems), problems
    return "definition"


@pytest.mark.parametrize("expression", ESCAPES)
def test_an_expression_cannot_reach_python_internals(expression: str) -> None:
    refused(expression)
    assert not called


@pytest.mark.parametrize("expression", BOMBS)
def test_an_expression_cannot_build_a_huge_value(expression: str) -> None:
    began = time.perf_counter()
    refused(expression)
    assert time.perf_counter() - began < 2.0, "refused, but only after building it"


def hostile_workflow(expression: str) -> Workflow:
    return Workflow(
        name="hostile",
        steps=[Step(id="s", uses=canary, with_={"value": expression})],
        output="${{ steps.s.output }}",
    )


@pytest.mark.parametrize("expression", [*ESCAPES, *BOMBS[:6]])
async def test_a_hostile_step_fails_before_its_agent_is_called(expression: str) -> None:
    try:
        result = await asyncio.wait_for(run_workflow(hostile_workflow(expression), {"n": 1}), 10)
    except DefinitionError:
        pass  # refused when the workflow was checked
    else:
        assert result.status == "failed"
        assert result.error is not None
        assert result.error.type == "ExpressionError", result.error
        assert result.error.step == "s"
    assert not called


@pytest.mark.parametrize("expression", ESCAPES)
def test_a_hostile_expression_in_a_file_is_refused_or_loads_inert(
    tmp_path: Path, expression: str
) -> None:
    """Loading never evaluates anything with data: it refuses the text or compiles it."""
    path = tmp_path / "hostile.yaml"
    path.write_text(
        "name: hostile\nsteps:\n  s:\n    uses: 'os:getcwd'\n"
        f"    with: {{value: {json.dumps(expression)}}}\n",
        encoding="utf-8",
    )
    problems: tuple[str, ...] = ()
    try:
        load_workflow(path)
    except DefinitionError as exc:
        problems = exc.problems
    assert all(line.startswith(f"{path}:5:") for line in problems), problems
    assert not called


# ---- deeply nested input ----------------------------------------------------------------

DEPTH = 5000


def nested(kind: str, depth: int = DEPTH) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def echo(value: Any) -> Any:
    return value


def ignore(value: Any) -> str:
    return "ignored"


@pytest.mark.parametrize("store", [":memory:", "sqlite"])
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("agent", [echo, ignore])
async def test_a_deeply_nested_input_gives_a_result_or_a_podium_error(
    tmp_path: Path, store: str, kind: str, agent: Any
) -> None:
    wf = Workflow(
        name="deep",
        steps=[Step(id="s", uses=agent, with_={"value": "${{ input }}"})],
        output="${{ steps.s.output }}",
    )
    where = ":memory:" if store == ":memory:" else str(tmp_path / "p.db")
    outcome = await result_or_error(run_workflow(wf, nested(kind), store=where))
    if isinstance(outcome, PodiumError):
        assert str(outcome), "a PodiumError says what went wrong"
        return
    assert outcome.status in ("succeeded", "failed")
    if outcome.error is not None:
        assert outcome.error.message


@pytest.mark.parametrize("store", [":memory:", "sqlite"])
async def test_an_input_that_is_not_json_data_is_an_input_error(tmp_path: Path, store: str) -> None:
    """Refused up front on every store: a memory run must not accept what SQLite cannot."""
    wf = Workflow(name="odd", steps=[Step(id="s", uses=ignore, with_={"value": 1})])
    where = ":memory:" if store == ":memory:" else str(tmp_path / "p.db")
    with pytest.raises(InputError, match="input"):
        await asyncio.wait_for(run_workflow(wf, {"when": object()}, store=where), 10)
    assert not called


async def result_or_error(call: Coroutine[Any, Any, RunResult]) -> RunResult | PodiumError:
    try:
        return await asyncio.wait_for(call, 30)
    except PodiumError as exc:
        return exc


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "podium", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("db", [":memory:", "p.db"])
def test_the_cli_reports_a_deeply_nested_input_without_a_traceback(
    tmp_path: Path, kind: str, db: str
) -> None:
    (tmp_path / "deep_agents.py").write_text("def echo(value):\n    return value\n")
    (tmp_path / "wf.yaml").write_text(
        "name: deep\nsteps:\n  s:\n    uses: 'deep_agents:echo'\n"
        "    with: {value: '${{ input }}'}\noutput: '${{ steps.s.output }}'\n"
    )
    text = ("[" * DEPTH + "]" * DEPTH) if kind == "list" else ('{"a":' * DEPTH + "1" + "}" * DEPTH)
    (tmp_path / "deep.json").write_text(text)
    done = run_cli(tmp_path, "run", "wf.yaml", "--input-file", "deep.json", "--json", "--db", db)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.returncode in (0, 1, 2), (done.returncode, done.stderr[-2000:])
    if done.returncode != 0:
        assert done.stderr.startswith("error: "), done.stderr[-2000:]


def test_a_deeply_nested_definition_is_a_definition_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(
        "name: deep\nsteps:\n  s:\n    uses: 'os:getcwd'\n    with: "
        + "[" * DEPTH
        + "]" * DEPTH
        + "\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_workflow(path)
    assert all(line.startswith(str(path)) for line in caught.value.problems)


# ---- callables that cannot be called, outputs too large --------------------------------


@pytest.mark.parametrize(
    ("uses", "expected"),
    [
        ("nosuch.module:fn", r":4:\d+: cannot import module 'nosuch.module'"),
        ("os:nosuch", r":4:\d+: module 'os' has no attribute 'nosuch'"),
        ("os:", r":4:\d+: steps.s.uses must be a Python callable written 'module:attribute'"),
        ("os", r":4:\d+: steps.s.uses must be a Python callable written 'module:attribute'"),
        (":getcwd", r":4:\d+: steps.s.uses must be a Python callable written 'module:attribute'"),
    ],
)
async def test_a_uses_that_cannot_be_imported_is_a_located_definition_error(
    tmp_path: Path, uses: str, expected: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(f"name: u\nsteps:\n  s:\n    uses: {uses!r}\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        await run_workflow(load_workflow(path))  # refused when loaded, or when prepared
    assert re.match(re.escape(str(path)) + expected, str(caught.value)), str(caught.value)


@pytest.mark.parametrize(
    ("with_", "expected"),
    [
        ("{x: 1}", "`with` does not fit getcwd(): got an unexpected keyword argument 'x'"),
        ("[1, 2]", "`with` does not fit getcwd(): too many positional arguments"),
    ],
)
async def test_a_harmless_callable_given_the_wrong_with_fails_its_step_clearly(
    tmp_path: Path, with_: str, expected: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"name: u\nsteps:\n  s:\n    uses: 'os:getcwd'\n    with: {with_}\n", encoding="utf-8"
    )
    result = await run_workflow(load_workflow(path))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.step == "s"
    assert expected in result.error.message
    assert "(agent os:getcwd)" in result.error.message


def huge() -> str:
    return "x" * 50_000_000


@pytest.mark.parametrize(("guards", "limit"), [(None, "16,777,216"), (1_000_000, "1,000,000")])
async def test_an_agent_returning_50_mb_fails_its_step_with_output_too_large(
    tmp_path: Path, guards: int | None, limit: str
) -> None:
    wf = Workflow(
        name="big",
        steps=[Step(id="s", uses=huge, retry=RetryPolicy(attempts=3))],
        guards=None if guards is None else Guards(max_output_bytes=guards),
    )
    result = await asyncio.wait_for(run_workflow(wf, store=str(tmp_path / "p.db")), 30)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "OutputTooLarge"
    assert "max_output_bytes" in result.error.message
    assert limit in result.error.message
    assert result.history.steps["s"].attempts == 1  # not retried: it would be as large again
