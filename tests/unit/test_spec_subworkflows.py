"""Sub-workflows in the YAML language: `workflow:` on a step or an agent, as a file path or
an inline definition; the round trip of a stored definition; located errors; catalogs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from podium.errors import DefinitionError
from podium.model import AgentSpec, Step, Workflow
from podium.runtime import prepare
from podium.spec import (
    load_catalog,
    load_workflow,
    workflow_from_document,
    workflow_to_document,
)
from podium.spec.schema import catalog_schema, load_schema

CHILD = """\
name: child
steps:
  a: {uses: "json:dumps", with: {obj: "${{ input }}"}}
output: "${{ steps.a.output }}"
"""

PARENT = """\
name: parent
agents:
  research: {workflow: sub/child.yaml, capabilities: [research]}
  inner:
    workflow:
      name: inner
      steps: {x: {uses: "json:dumps", with: {obj: 1}}}
steps:
  filed: {workflow: sub/child.yaml, with: {x: 1}, retry: 2, timeout: 10s}
  inline:
    needs: filed
    workflow:
      name: inline
      steps:
        b: {uses: "json:loads", with: {s: "${{ input }}"}}
      output: "${{ steps.b.output }}"
    with: "${{ steps.filed.output }}"
  routed: {capability: research, with: 2, needs: inline}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(DefinitionError) as caught:
        load_workflow(path)
    return caught.value.problems


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    write(tmp_path / "sub" / "child.yaml", CHILD)
    return write(tmp_path / "parent.yaml", PARENT)


def test_both_forms_load_on_steps_and_agents(parent: Path) -> None:
    wf = load_workflow(parent)
    assert wf.steps["filed"].workflow == "sub/child.yaml"
    assert wf.steps["filed"].retry.attempts == 2
    inline = wf.steps["inline"].workflow
    assert isinstance(inline, Workflow)
    assert inline.name == "inline"
    assert inline.base_dir == wf.base_dir
    assert list(inline.steps) == ["b"]
    assert inline.locate("steps", "b", "uses").line == 15  # in the parent file
    assert inline.locate("steps", "b").file == str(parent)
    research = wf.agents["research"]
    assert research.uses is None
    assert research.workflow == "sub/child.yaml"
    assert research.capabilities == frozenset({"research"})
    assert isinstance(wf.agents["inner"].workflow, Workflow)
    prepare(wf)  # the file is found relative to the parent's folder


def test_a_stored_definition_rebuilds_identically(parent: Path) -> None:
    wf = load_workflow(parent)
    doc = workflow_to_document(wf)
    assert doc["steps"]["filed"]["workflow"] == "sub/child.yaml"
    assert doc["steps"]["inline"]["workflow"]["steps"]["b"] == {
        "uses": "json:loads",
        "with": {"s": "${{ input }}"},
    }
    assert doc["agents"]["research"] == {"workflow": "sub/child.yaml", "capabilities": ["research"]}
    again = workflow_from_document(doc, source="run r1", base_dir=wf.base_dir)
    assert workflow_to_document(again) == doc
    prepare(again)


def test_a_workflow_built_in_python_is_stored_inline() -> None:
    child = Workflow(name="kid", steps=[Step(id="a", uses="json:dumps", with_={"obj": 1})])
    wf = Workflow(
        name="p",
        steps=[Step(id="s", workflow=child), Step(id="t", agent="w", needs=("s",))],
        agents=[AgentSpec(name="w", workflow=child)],
    )
    doc = workflow_to_document(wf)
    assert doc["steps"]["s"] == {"workflow": workflow_to_document(child)}
    assert doc["agents"]["w"] == {"workflow": workflow_to_document(child)}
    again = workflow_from_document(doc, source="run r1", base_dir="/")
    assert workflow_to_document(again) == doc


def test_an_inline_child_with_a_mistake_is_located_in_the_parent(tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        """\
        name: p
        steps:
          s:
            workflow:
              name: kid
              steps:
                a: {uses: "json:dumps", tiemout: 1}
        """,
    )
    assert problems(wf) == (
        f"{wf}:7:33: unknown key 'tiemout' in steps.s.workflow.steps.a (did you mean 'timeout'?)",
    )
    write(wf, "name: p\nsteps:\n  t: {workflow: 7}\n")
    assert problems(wf) == (
        f"{wf}:3:7: steps.t.workflow must be a string or a mapping, not a number",
    )


def test_semantic_mistakes_of_an_inline_child_are_located(tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        """\
        name: p
        steps:
          s:
            workflow:
              name: kid
              steps:
                a: {uses: "json:dumps", with: "${{ steps.zz.output }}"}
        """,
    )
    assert problems(wf) == (f"{wf}:7:33: step 'a' reads steps.zz, which is not a step",)


def test_an_agent_names_exactly_one_of_uses_or_workflow(tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        """\
        name: p
        agents:
          both: {uses: "json:dumps", workflow: kid.yaml}
          neither: {capabilities: [x]}
        steps:
          s: {agent: both}
        """,
    )
    assert problems(wf) == (
        f"{wf}:3:3: agent 'both' must have exactly one of uses, workflow or model",
        f"{wf}:4:3: agents.neither is missing the required key 'uses'",
    )
    with pytest.raises(DefinitionError, match="agent 'w' must have exactly one of uses, work"):
        prepare(Workflow(name="p", steps=[Step(id="s", agent="w")], agents=[AgentSpec(name="w")]))


def test_a_catalog_workflow_path_is_made_absolute_against_the_catalog(tmp_path: Path) -> None:
    write(tmp_path / "shared" / "flows" / "child.yaml", CHILD)
    catalog = load_catalog(
        write(
            tmp_path / "shared" / "agents.yaml",
            """\
            agents:
              research: {workflow: flows/child.yaml, capabilities: [research]}
            """,
        )
    )
    flow = write(
        tmp_path / "elsewhere" / "wf.yaml",
        "name: p\nsteps:\n  s: {capability: research, with: 1}\n",
    )
    wf = load_workflow(flow, catalog=catalog)
    child = wf.agents["research"].workflow
    assert child == str(tmp_path / "shared" / "flows" / "child.yaml")
    prepare(wf)
    assert catalog.documents["research"]["workflow"] == "flows/child.yaml"  # left as written


def test_the_schema_offers_workflow_and_the_catalog_keeps_the_inline_form() -> None:
    step = load_schema()["$defs"]["step"]["properties"]
    assert step["workflow"] == {
        "$ref": "#/$defs/workflow_ref",
        "description": "Run this workflow as a child run of its own, `with` as its input.",
    }
    inline = catalog_schema()["$defs"]["workflow"]
    assert inline["required"] == ["name", "steps"]


def test_cli_validate_reports_missing_bad_and_cyclic_child_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "name: a\nsteps:\n  go: {workflow: b.yaml}\n")
    write(tmp_path / "b.yaml", "name: b\nsteps:\n  go: {workflow: a.yaml}\n")
    write(tmp_path / "sub" / "bad.yaml", 'name: bad\nsteps:\n  a: {uses: "json:dumps", x: 1}\n')
    write(
        tmp_path / "m.yaml",
        "name: m\nsteps:\n  go: {workflow: nope.yaml}\n  bad: {workflow: sub/bad.yaml}\n",
    )

    def validate(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "podium", "validate", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    cyclic = validate("a.yaml")
    assert cyclic.returncode == 2
    assert "b.yaml:3:8: sub-workflows include each other: a.yaml -> b.yaml -> a.yaml" in (
        cyclic.stderr
    )
    broken = validate("m.yaml")
    assert broken.returncode == 2
    assert "m.yaml:3:8: no workflow file 'nope.yaml'" in broken.stderr
    assert f"{tmp_path / 'sub' / 'bad.yaml'}:3:27: unknown key 'x' in steps.a" in broken.stderr
