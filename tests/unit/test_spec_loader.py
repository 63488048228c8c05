"""Reading workflow files: locations, every kind of mistake, round trips, and fuzzed input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podium.errors import CycleError, DefinitionError, Location
from podium.model import AgentSpec, RetryPolicy, Step, Workflow
from podium.spec import (
    load_workflow,
    validate_workflow,
    workflow_from_document,
    workflow_to_document,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: order-to-cash
description: Take an order to shipping.
input:
  type: object
  properties:
    order: {type: object}
max_parallel: 8
agents:
  inventory:
    uses: "shop.agents:check_stock"
    capabilities: [inventory.check, inventory.reserve]
    concurrency: 4
    description: The stock keeper.
steps:
  notify:
    needs: [reserve, backorder]
    trigger: one_success
    for_each: "${{ input.order.contacts }}"
    max_parallel: 8
    uses: "shop.agents:notify"
    with: {to: "${{ item }}", n: "${{ index }}", sent: 2024-05-01}
    retry: {attempts: 3, backoff: 200ms, factor: 2, max_backoff: 5s}
    timeout: 30s
    continue_on_error: true
    description: Tell everyone.
  check:
    agent: inventory
    with: {order: "${{ input.order }}"}
  reserve:
    needs: check
    if: "${{ steps.check.output.in_stock }}"
    capability: inventory.reserve
  backorder:
    needs: [check]
    if: not steps.check.output.in_stock
    uses: "shop.agents:backorder"
    retry: 2
output: {shipped: "${{ steps.reserve.status == 'succeeded' }}"}
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    """The problem lines for `text`, with the file name shortened to `wf.yaml`."""
    path = write(tmp_path, text)
    with pytest.raises(DefinitionError) as caught:
        load_workflow(path)
    return [line.replace(str(path), "wf.yaml") for line in caught.value.problems]


def test_loads_a_complete_workflow(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    wf = load_workflow(path)
    assert wf.name == "order-to-cash"
    assert wf.source == str(path)
    assert wf.base_dir == str(tmp_path.resolve())
    assert wf.max_parallel == 8
    assert wf.input_schema == {"type": "object", "properties": {"order": {"type": "object"}}}
    assert wf.agents["inventory"] == AgentSpec(
        name="inventory",
        uses="shop.agents:check_stock",
        capabilities=frozenset({"inventory.check", "inventory.reserve"}),
        concurrency=4,
        description="The stock keeper.",
    )
    assert list(wf.steps) == ["notify", "check", "reserve", "backorder"]
    notify = wf.steps["notify"]
    assert notify == Step(
        id="notify",
        uses="shop.agents:notify",
        needs=("reserve", "backorder"),
        trigger="one_success",
        for_each="${{ input.order.contacts }}",
        max_parallel=8,
        with_={"to": "${{ item }}", "n": "${{ index }}", "sent": "2024-05-01"},
        retry=RetryPolicy(attempts=3, backoff=0.2, factor=2.0, max_backoff=5.0),
        timeout=30.0,
        continue_on_error=True,
        description="Tell everyone.",
    )
    assert wf.steps["reserve"].needs == ("check",)
    assert wf.steps["reserve"].condition == "${{ steps.check.output.in_stock }}"
    assert wf.steps["backorder"].retry == RetryPolicy(attempts=2)
    assert wf.output == {"shipped": "${{ steps.reserve.status == 'succeeded' }}"}


def test_records_where_every_key_stands(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, GOOD))
    src = wf.source
    assert wf.locate() == Location(src, 1, 1)
    assert wf.locate("steps", "notify", "uses") == Location(src, 20, 5)
    assert wf.locate("steps", "notify", "needs", 1) == Location(src, 16, 22)
    assert wf.locate("steps", "notify", "with", "to") == Location(src, 21, 12)
    assert wf.locate("agents", "inventory", "capabilities") == Location(src, 11, 5)
    # A path not in the file falls back to its nearest enclosing key.
    assert wf.locate("steps", "check", "timeout") == Location(src, 26, 3)


def test_reads_json_files(tmp_path: Path) -> None:
    doc = {"name": "j", "steps": {"a": {"uses": "m:f", "with": {"x": [1, 2.5, None, True]}}}}
    wf = load_workflow(write(tmp_path, json.dumps(doc, indent=2), "wf.json"))
    assert wf.steps["a"].with_ == {"x": [1, 2.5, None, True]}
    assert wf.locate("steps", "a", "uses").line == 5


def test_yaml_merge_keys_and_aliases(tmp_path: Path) -> None:
    wf = load_workflow(
        write(
            tmp_path,
            """\
            name: m
            steps:
              a: &base {uses: "m:f", timeout: 5s}
              b:
                <<: *base
                timeout: 7s
            """,
        )
    )
    assert wf.steps["b"].uses == "m:f"
    assert wf.steps["b"].timeout == 7.0


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"missing\.yaml: no such file$"):
        load_workflow(tmp_path / "missing.yaml")
    with pytest.raises(DefinitionError, match="cannot read the file"):
        load_workflow(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DefinitionError, match="not UTF-8 text"):
        load_workflow(tmp_path / "bin.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "wf.yaml: the file is empty; a workflow is a mapping with `name` and `steps`"),
        (
            "- a\n- b\n",
            "wf.yaml:1:1: a workflow must be a mapping with `name` and `steps`, not a list",
        ),
        (
            "name: x\nsteps:\n  a: {uses: 'm:f'\n",
            "wf.yaml:4:1: YAML syntax error: did not find expected ',' or '}'",
        ),
        (
            "name: x\n\tsteps: 1\n",
            "wf.yaml:2:1: YAML syntax error: found a tab character that violates indentation",
        ),
        ("---\na: 1\n---\nb: 2\n", "wf.yaml:3:1: YAML syntax error: but found another document"),
    ],
)
def test_unreadable_documents(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("agnet: inv", "wf.yaml:4:5: unknown key 'agnet' in steps.a (did you mean 'agent'?)"),
        (
            "uses: m.f",
            (
                "wf.yaml:4:5: steps.a.uses must be a Python callable written "
                "'module:attribute', not 'm.f'"
            ),
        ),
        ("needs: 3", "wf.yaml:4:5: steps.a.needs must be a string or a list, not a number"),
        ("needs: [b, 2]", "wf.yaml:4:16: steps.a.needs[1] must be a string, not a number"),
        ("retry: 0", "wf.yaml:4:5: steps.a.retry must be at least 1, not 0"),
        (
            "retry: {attempts: true}",
            "wf.yaml:4:13: steps.a.retry.attempts must be an integer, not a boolean",
        ),
        (
            "retry: {backoff: soon}",
            (
                "wf.yaml:4:13: steps.a.retry.backoff: 'soon' is not a duration: write "
                "seconds as a number, or a duration such as 200ms, 1.5s, 10m, 2h, 1d "
                "or 1m30s"
            ),
        ),
        (
            "timeout: -1s",
            (
                "wf.yaml:4:5: steps.a.timeout: '-1s' is not a duration: write seconds "
                "as a number, or a duration such as 200ms, 1.5s, 10m, 2h, 1d or 1m30s"
            ),
        ),
        (
            "timeout: -3",
            "wf.yaml:4:5: steps.a.timeout: -3 is not a duration: it must be a finite number >= 0",
        ),
        ("timeout: 0", "wf.yaml:4:5: steps.a.timeout must be more than 0, not 0"),
        (
            "trigger: one_succes",
            (
                "wf.yaml:4:5: steps.a.trigger must be one of all_success, one_success, "
                "all_done, none_failed, not 'one_succes' (did you mean 'one_success'?)"
            ),
        ),
        ("max_parallel: 0", "wf.yaml:4:5: steps.a.max_parallel must be at least 1, not 0"),
        (
            "continue_on_error: maybe",
            "wf.yaml:4:5: steps.a.continue_on_error must be true or false, not a string",
        ),
        ("if: 3", "wf.yaml:4:5: steps.a.if must be a string or true or false, not a number"),
        (
            "with: !!binary aGVsbG8=",
            "wf.yaml:4:11: unsupported YAML tag !!binary; use plain JSON-like values",
        ),
        ("with: !env X", "wf.yaml:4:11: unsupported YAML tag !env; use plain JSON-like values"),
        (
            "timeout: 1s\n    timeout: 2s",
            "wf.yaml:5:5: duplicate key 'timeout' (first defined at line 4)",
        ),
    ],
)
def test_each_structural_mistake_is_located(tmp_path: Path, step: str, expected: str) -> None:
    text = f"name: x\nsteps:\n  a:\n    {step}\n    uses: 'm:f'\n  b: {{uses: 'm:f'}}\n"
    if step.startswith(("uses", "agnet")):
        text = f"name: x\nsteps:\n  a:\n    {step}\n  b: {{uses: 'm:f'}}\n"
    found = problems(tmp_path, text)
    assert expected in found
    assert len(found) == 1 or step.startswith("agnet"), found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "steps: {a: {uses: 'm:f'}}",
            ["wf.yaml:1:1: the workflow is missing the required key 'name'"],
        ),
        ("name: x\nsteps: {}", ["wf.yaml:2:1: steps must not be empty"]),
        (
            "name: x\nstep: {}",
            [
                "wf.yaml:1:1: the workflow is missing the required key 'steps'",
                "wf.yaml:2:1: unknown key 'step' in the workflow (did you mean 'steps'?)",
            ],
        ),
        (
            "name: x\nsteps:\n  9b: {uses: 'm:f'}",
            [
                (
                    "wf.yaml:3:3: '9b' is not a valid step id: use letters, digits, '_' "
                    "and '-', starting with a letter or '_'"
                ),
            ],
        ),
        (
            "name: x\nagents:\n  a: {capabilities: [x]}\nsteps:\n  s: {agent: a}",
            [
                "wf.yaml:3:3: agents.a is missing the required key 'uses'",
            ],
        ),
        (
            "name: x\ninput: {type: objec}\nsteps:\n  s: {uses: 'm:f'}",
            [
                (
                    "wf.yaml:2:9: input is not a valid JSON Schema: 'objec' is not valid "
                    "under any of the given schemas"
                ),
            ],
        ),
        (
            "name: x\nsteps:\n  a: {uses: 'm:f'}\n  a: {uses: 'm:g'}",
            [
                "wf.yaml:4:3: duplicate key 'a' (first defined at line 3)",
            ],
        ),
    ],
)
def test_workflow_level_mistakes(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


def test_semantic_mistakes_are_reported_together_in_file_order(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: bad
        agents:
          inv: {uses: "shop:check", capabilities: [stock]}
        steps:
          a:
            agent: invv
            needs: [a, c]
            with: "${{ steps.b.output }}"
          b:
            needs: [a, cc]
            capability: stok
          c:
            needs: b
            uses: "m:f"
            agent: inv
            with: "${{ item }}"
            if: "${{ inptu.x }}"
          d:
            needs: c
          e: {uses: "m:f", for_each: "${{ item }}", max_parallel: 2}
        output: "${{ steps.zz.output }}"
        """,
    )
    assert found == [
        "wf.yaml:3:9: cannot import module 'shop': No module named 'shop'",
        "wf.yaml:6:5: step 'a' uses unknown agent 'invv' (did you mean 'inv'?)",
        "wf.yaml:7:5: steps form a cycle: a -> b -> c -> a",
        "wf.yaml:7:13: step 'a' needs itself",
        "wf.yaml:10:16: step 'b' needs unknown step 'cc' (did you mean 'c'?)",
        (
            "wf.yaml:11:5: step 'b' needs capability 'stok', which no agent "
            "declares (did you mean 'stock'?)"
        ),
        (
            "wf.yaml:12:3: step 'c' must name exactly one of agent, capability, uses, workflow, "
            "pattern, sleep, wait_until or approval (it names agent and uses)"
        ),
        (
            "wf.yaml:16:5: step 'c' reads item or index in a step without "
            "for_each; they exist only in the `with` of a for_each step"
        ),
        (
            "wf.yaml:17:5: ${{ inptu.x }}: unknown name 'inptu' (did you mean "
            "'input'?); an expression can read input, steps, state, item, index, output "
            "and loop where they exist, and call the documented functions"
        ),
        (
            "wf.yaml:18:3: step 'd' must name exactly one of agent, capability, uses, workflow, "
            "pattern, sleep, wait_until or approval"
        ),
        (
            "wf.yaml:20:20: step 'e' reads item or index in its for_each; they "
            "exist only in the `with` of a for_each step"
        ),
        "wf.yaml:21:1: the output reads steps.zz, which is not a step",
    ]


def test_a_callable_that_cannot_be_imported_is_reported_with_structural_mistakes(
    tmp_path: Path,
) -> None:
    found = problems(
        tmp_path,
        """\
        name: bad
        agents:
          stock: {uses: "nowhere_xyz:check"}
        steps:
          a: {agent: stock, timeout: soon}
          b:
            uses: "m:nothing"
            fallback: {uses: "nowhere_xyz:other"}
          g:
            steps:
              inner: {uses: "m:f", compensate: {uses: "m:missing"}}
          c: {uses: "not a path"}
        """,
    )
    assert found == [
        "wf.yaml:3:11: cannot import module 'nowhere_xyz': No module named 'nowhere_xyz'",
        (
            "wf.yaml:5:21: steps.a.timeout: 'soon' is not a duration: write seconds as a "
            "number, or a duration such as 200ms, 1.5s, 10m, 2h, 1d or 1m30s"
        ),
        "wf.yaml:7:5: module 'm' has no attribute 'nothing'",
        "wf.yaml:8:16: cannot import module 'nowhere_xyz': No module named 'nowhere_xyz'",
        "wf.yaml:11:41: module 'm' has no attribute 'missing'",
        (
            "wf.yaml:12:7: steps.c.uses must be a Python callable written 'module:attribute', "
            "not 'not a path'"
        ),
    ]


def test_a_single_cycle_raises_cycle_error_naming_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: loop
        steps:
          c: {uses: "m:f", needs: b}
          a: {uses: "m:f", needs: c}
          b: {uses: "m:f", needs: a}
          z: {uses: "m:f", needs: c}
        """,
    )
    with pytest.raises(CycleError) as caught:
        load_workflow(path)
    assert caught.value.cycle == ("c", "a", "b", "c")
    assert str(caught.value) == f"{path}:3:20: steps form a cycle: c -> a -> b -> c"


def test_two_separate_cycles_are_both_named(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        name: loops
        steps:
          a: {uses: "m:f", needs: b}
          b: {uses: "m:f", needs: a}
          x: {uses: "m:f", needs: [y]}
          y: {uses: "m:f", needs: [x]}
        """,
    )
    assert found == [
        "wf.yaml:3:20: steps form a cycle: a -> b -> a",
        "wf.yaml:5:20: steps form a cycle: x -> y -> x",
    ]


def test_validates_workflows_built_in_python() -> None:
    wf = Workflow(
        name="py",
        steps=[
            Step(id="a", uses=print, max_parallel=0, retry=RetryPolicy(attempts=0)),
            Step(id="b", agent="nobody", needs=("a", "zz"), with_="${{ steps.a.output }}"),
            Step(id="bad id", uses="m:f", with_="${{ steps.b.output }}", timeout=-1),
        ],
        agents=[AgentSpec(name="ag", uses="m:f", concurrency=0)],
        max_parallel=0,
    )
    with pytest.raises(DefinitionError) as caught:
        validate_workflow(wf)
    assert list(caught.value.problems) == [
        "<python>: agents.ag.concurrency must be at least 1, not 0",
        "<python>: steps.a.max_parallel must be at least 1, not 0",
        "<python>: steps.a.retry.attempts must be at least 1, not 0",
        "<python>: step 'b' uses unknown agent 'nobody'",
        "<python>: step 'b' needs unknown step 'zz'",
        "<python>: 'bad id' is not a valid step id: use letters, digits, '_' and '-', "
        "starting with a letter or '_'",
        "<python>: step 'bad id': timeout must be more than 0, not -1",
        "<python>: step 'bad id' reads steps.b but does not need it, so it may not have run "
        "yet: add 'b' to its needs",
        "<python>: max_parallel must be at least 1, not 0",
    ]


def test_round_trip_through_a_document(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, GOOD))
    doc = workflow_to_document(wf)
    assert json.loads(json.dumps(doc)) == doc
    again = workflow_from_document(doc, source="stored", base_dir=wf.base_dir)
    assert again.steps == wf.steps
    assert again.agents == wf.agents
    assert (again.name, again.description, again.input_schema, again.output) == (
        wf.name,
        wf.description,
        wf.input_schema,
        wf.output,
    )
    assert again.max_parallel == wf.max_parallel
    assert workflow_to_document(again) == doc


def test_document_of_python_callables_uses_import_paths() -> None:
    wf = Workflow(
        name="py",
        steps=[Step(id="a", uses=json.dumps, with_=("x", {"k": (1,)}), condition="true")],
    )
    doc = workflow_to_document(wf)
    assert doc == {
        "name": "py",
        "steps": {"a": {"uses": "json:dumps", "with": ["x", {"k": [1]}], "if": "true"}},
    }
    assert workflow_from_document(doc, source="s", base_dir="/").steps["a"].uses == "json:dumps"


def test_document_problems_without_locations_name_the_source() -> None:
    with pytest.raises(DefinitionError) as caught:
        workflow_from_document({"name": "x", "steps": {"a": {}}}, source="run r1", base_dir="/")
    assert caught.value.problems == (
        "run r1: step 'a' must name exactly one of agent, capability, uses, workflow, "
        "pattern, sleep, wait_until or approval",
    )
    with pytest.raises(DefinitionError, match=r"^run r1: a workflow must be a mapping"):
        workflow_from_document(None, source="run r1", base_dir="/")


def test_published_schema_is_the_packaged_one() -> None:
    packaged = ROOT / "src" / "podium" / "spec" / "workflow.schema.json"
    published = ROOT / "docs" / "schema" / "workflow.schema.json"
    assert packaged.read_text(encoding="utf-8") == published.read_text(encoding="utf-8")


def test_alias_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["name: x", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    lines += ["steps: {a: {uses: 'm:f', with: *a7}}"]
    found = problems(tmp_path, "\n".join(lines) + "\n")
    assert len(found) == 1
    assert "more than 1000000 values once aliases are expanded" in found[0]


def _problems_if_any(path: Path) -> tuple[str, ...]:
    """The problem lines of loading `path`; none if it is a valid workflow."""
    try:
        load_workflow(path)
    except DefinitionError as exc:
        return exc.problems
    return ()


_YAML_BITS = [
    "name: x\n",
    "steps:\n",
    "  a:\n",
    "    uses: 'm:f'\n",
    "    needs: [b]\n",
    "  b: {uses: 'm:f'}\n",
    "    with: '${{ input.x }}'\n",
    "    if: '${{ steps.a.output }}'\n",
    "    timeout: 5s\n",
    "    retry: {attempts: 2}\n",
    "- ",
    "&a ",
    "*a ",
    "!!binary ",
    "<<: *a\n",
    "{",
    "}",
    "[",
    "]",
    ": ",
    "'",
    '"',
    "\t",
    "\n",
    "---\n",
    "${{ ",
    " }}",
    "2024-01-01",
    "~",
    "? ",
    "%YAML 1.1\n",
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(st.sampled_from(_YAML_BITS), st.text(max_size=8)), max_size=25))
def test_any_text_gives_a_workflow_or_a_definition_error(tmp_path: Path, bits: list[str]) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text("".join(bits), encoding="utf-8", errors="surrogatepass")
    assert all(line.startswith(str(path)) for line in _problems_if_any(path))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_definition_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    with pytest.raises(DefinitionError):
        load_workflow(path)


_EDITS = st.sampled_from(
    [*"{}[]:,'\"-$ \n\t#&*!|>%?~09az.", "${{", "}}", "steps.", "item", "input.", "needs: x\n"]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 3), _EDITS), max_size=6))
def test_mutated_workflows_give_a_workflow_or_a_definition_error(
    tmp_path: Path, edits: list[tuple[int, int, str]]
) -> None:
    text = GOOD
    for position, cut, insert in edits:
        text = text[:position] + insert + text[position + cut :]
    path = tmp_path / "mutated.yaml"
    path.write_text(text, encoding="utf-8")
    assert all(line.startswith(str(path)) for line in _problems_if_any(path))
