"""Steps read from a file are the values `Step(...)` makes, and go back to the same document."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from podium.model.workflow import (
    Approval,
    Call,
    PatternSpec,
    Repeat,
    RetryPolicy,
    Step,
    Workflow,
    step_with,
)
from podium.spec import load_workflow, workflow_from_document, workflow_to_document

WORKFLOW = """\
name: steps
defaults:
  timeout: 30s
steps:
  a:
    uses: json:dumps
  b:
    uses: json:dumps
    needs: a
    retry: 3
    if: true
    description: second
  c:
    sleep: 1m
    needs: [a, b]
"""


def test_a_step_made_from_its_fields_equals_the_constructed_one() -> None:
    made = step_with({"id": "s", "uses": "json:dumps", "needs": ("a",)})
    built = Step(id="s", uses="json:dumps", needs=("a",))
    assert made == built
    assert repr(made) == repr(built)
    assert made.retry == RetryPolicy()
    assert dataclasses.replace(made, needs=()) == Step(id="s", uses="json:dumps")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = "t"  # type: ignore[misc]


def test_steps_read_from_a_file_equal_those_built_in_python(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    wf = load_workflow(path)
    assert wf.steps == {
        "a": Step(id="a", uses="json:dumps", timeout=30.0),
        "b": Step(
            id="b",
            uses="json:dumps",
            needs=("a",),
            retry=RetryPolicy(attempts=3),
            timeout=30.0,
            condition="true",
            description="second",
        ),
        "c": Step(id="c", sleep=60.0, needs=("a", "b")),
    }


def test_document_of_steps_keeps_only_what_differs_from_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    doc = workflow_to_document(load_workflow(path))
    assert doc["steps"] == {
        "a": {"uses": "json:dumps", "timeout": 30.0},
        "b": {
            "uses": "json:dumps",
            "needs": ["a"],
            "if": "true",
            "retry": {"attempts": 3, "backoff": 0.0, "factor": 2.0, "max_backoff": 300.0},
            "timeout": 30.0,
            "description": "second",
        },
        "c": {"sleep": 60.0, "needs": ["a", "b"]},
    }
    again = workflow_from_document(doc, source="stored", base_dir=str(tmp_path))
    assert workflow_to_document(again) == doc


def test_pattern_options_left_unset_are_not_stored() -> None:
    options = {"agents": ["a"], "context": None}
    wf = Workflow(name="w", steps=[Step(id="p", pattern=PatternSpec("sequential", options))])
    assert workflow_to_document(wf)["steps"] == {"p": {"pattern": "sequential", "agents": ["a"]}}


def test_every_field_a_step_sets_is_stored() -> None:
    inner = Step(id="inner", uses="json:dumps")
    step = Step(
        id="s",
        agent="a",
        capability="c",
        uses="json:dumps",
        needs=("x",),
        with_={"k": 1},
        condition="true",
        trigger="all_done",
        for_each="${{ [1] }}",
        max_parallel=2,
        retry=RetryPolicy(attempts=3),
        timeout=1.0,
        continue_on_error=True,
        description="d",
        sleep=1.0,
        wait_until="${{ 0 }}",
        approval=Approval(prompt="ok?"),
        deadline=2.0,
        fallback=Call(uses="json:dumps"),
        compensate=Call(uses="json:loads"),
        workflow="child.yaml",
        writes={"k": "${{ output }}"},
        repeat=Repeat(until="true", max_iterations=2),
        steps={"inner": inner},
        pattern=PatternSpec("sequential", {"agents": ["a"]}),
        estimate=3.0,
        uses_resources={"gpu": 1},
    )
    unset = [
        field.name
        for field in dataclasses.fields(Step)
        if getattr(step, field.name) == field.default and field.name != "id"
    ]
    assert not unset, f"give these fields a value that is not their default: {unset}"
    stored = workflow_to_document(Workflow(name="w", steps=[step]))["steps"]["s"]
    keys = {field.name for field in dataclasses.fields(Step)} - {"id", "with_", "condition"}
    assert stored.keys() == keys | {"with", "if", "agents"}  # `agents`: the pattern's option
