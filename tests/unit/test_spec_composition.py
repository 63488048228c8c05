"""State keys, writes, groups and loops in the language: what is accepted, what is refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from podium.errors import DefinitionError
from podium.model import Repeat, StateKey, Step, Workflow
from podium.spec import load_workflow, workflow_from_document
from podium.spec.document import workflow_to_document

GOOD = """\
name: refine
state:
  drafts: append
  total: {reducer: sum, initial: 10}
  notes: {reducer: merge, schema: {type: object}}
steps:
  start: {uses: "m:f", writes: {total: "${{ 1 }}"}}
  refine:
    needs: [start]
    repeat: {until: "${{ steps.critique.output.ok }}", max_iterations: 4, on_max: continue}
    steps:
      draft:
        uses: "m:f"
        with: {n: "${{ loop.iteration }}", last: "${{ loop.previous }}", s: "${{ state.total }}"}
        writes: {drafts: "${{ output }}"}
      critique: {needs: [draft], uses: "m:f", with: "${{ steps.draft.output }}"}
  again:
    needs: [refine]
    uses: "m:f"
    repeat: {until: "${{ output > 3 }}", max_iterations: 3}
    with: {n: "${{ loop.iteration }}"}
output: {last: "${{ steps.refine.last }}", drafts: "${{ state.drafts }}"}
"""


def load(tmp_path: Path, text: str) -> Workflow:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text))
    return load_workflow(path)


def problems(tmp_path: Path, text: str) -> tuple[str, ...]:
    with pytest.raises(DefinitionError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_a_good_definition_loads_and_round_trips(tmp_path: Path) -> None:
    wf = load(tmp_path, GOOD)
    assert wf.state["total"] == StateKey(name="total", reducer="sum", initial=10)
    assert wf.steps["refine"].repeat == Repeat(
        until="${{ steps.critique.output.ok }}", max_iterations=4, on_max="continue"
    )
    steps = wf.steps["refine"].steps
    assert steps is not None
    assert list(steps) == ["draft", "critique"]
    doc = workflow_to_document(wf)
    again = workflow_from_document(doc, source="stored", base_dir=str(tmp_path))
    assert workflow_to_document(again) == doc


BAD = [
    (
        "reads an undeclared state key",
        "state: {a: append}\nsteps:\n  s: {uses: 'm:f', with: '${{ state.b }}'}\n",
        "wf.yaml:4:20: step 's' reads state.b, which is not a declared state key: declare it "
        "under `state:`",
    ),
    (
        "writes an undeclared key",
        "state: {drafts: append}\nsteps:\n  s: {uses: 'm:f', writes: {draft: '${{ output }}'}}\n",
        "wf.yaml:4:29: step 's' writes state key 'draft', which is not declared (did you mean "
        "'drafts'?): declare it under `state:`",
    ),
    (
        "a reducer that is not one",
        "state: {a: {reducer: concat}}\nsteps:\n  s: {uses: 'm:f'}\n",
        "wf.yaml:2:9: state.a must be one of replace, append, extend, merge, sum, max, min, "
        "not {'reducer': 'concat'}",
    ),
    (
        "a loop without max_iterations",
        "steps:\n  s: {uses: 'm:f', repeat: {until: 'true'}}\n",
        "wf.yaml:3:20: steps.s.repeat is missing the required key 'max_iterations'",
    ),
    (
        "two racing replace writes",
        "state: {a: replace}\nsteps:\n  s: {uses: 'm:f', writes: {a: '${{ 1 }}'}}\n"
        "  t: {uses: 'm:f', writes: {a: '${{ 2 }}'}}\n",
        "wf.yaml:5:29: steps 's' and 't' may run at the same time and both write replace key "
        "'a': which value wins would depend on timing; make one need the other, or give the "
        "key a reducer (append, merge, sum, ...)",
    ),
    (
        "a for_each writing a replace key",
        "state: {a: replace}\nsteps:\n  s: {uses: 'm:f', for_each: '${{ [1, 2] }}', "
        "writes: {a: '${{ item }}'}}\n",
        "wf.yaml:4:56: step 's' writes replace key 'a' from every for_each item, and the items "
        "run at the same time: use a reducer such as append, or max_parallel: 1",
    ),
    (
        "output outside writes",
        "steps:\n  s: {uses: 'm:f', with: '${{ output }}'}\n",
        "wf.yaml:3:20: step 's' reads output in its with; output exists only in `writes` and "
        "`repeat.until` (elsewhere, read steps.<id>.output)",
    ),
    (
        "loop outside a loop",
        "steps:\n  s: {uses: 'm:f', with: '${{ loop.iteration }}'}\n",
        "wf.yaml:3:20: step 's' reads loop in its with; loop exists only in a repeated step and "
        "in the steps of a group",
    ),
    (
        "a group inside a group",
        "steps:\n  g:\n    steps:\n      h:\n        steps:\n          i: {uses: 'm:f'}\n",
        "wf.yaml:5:7: step 'h' is a group inside group 'g': groups do not nest; make the inner "
        "group a sub-workflow (`workflow:`)",
    ),
    (
        "a group that also calls",
        "steps:\n  g: {uses: 'm:f', steps: {h: {uses: 'm:f'}}}\n",
        "wf.yaml:3:3: step 'g' has steps, so it cannot also name uses",
    ),
    (
        "a group step needing a step outside",
        "steps:\n  a: {uses: 'm:f'}\n  g:\n    steps:\n      h: {uses: 'm:f', needs: [a]}\n",
        "wf.yaml:6:32: step 'h' needs unknown step 'a' in group 'g'",
    ),
    (
        "a step outside reading inside a group",
        "steps:\n  g:\n    steps:\n      h: {uses: 'm:f'}\n  t: {needs: [g], uses: 'm:f', "
        "with: '${{ steps.h.output }}'}\n",
        "wf.yaml:6:32: step 't' reads steps.h, which is not a step",
    ),
    (
        "a cycle inside a group",
        "steps:\n  g:\n    steps:\n      h: {uses: 'm:f', needs: [i]}\n"
        "      i: {uses: 'm:f', needs: [h]}\n",
        "wf.yaml:5:24: steps form a cycle: h -> i -> h",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD, ids=[c[0] for c in BAD])
def test_mistakes_are_located(tmp_path: Path, case: str, text: str, expected: str) -> None:
    found = [problem.rpartition("/")[2] for problem in problems(tmp_path, "name: w\n" + text)]
    assert expected in found, found


def test_python_api_racing_writes_inside_a_group_are_refused() -> None:
    group = {
        "a": Step(id="a", uses="m:f", writes={"k": "${{ 1 }}"}),
        "b": Step(id="b", uses="m:f", writes={"k": "${{ 2 }}"}),
    }
    wf = Workflow(
        name="w",
        state=[StateKey(name="k")],
        steps=[Step(id="g", steps=group, repeat=Repeat(until="true", max_iterations=2))],
    )
    from podium.spec import validate_workflow

    with pytest.raises(DefinitionError, match="steps 'a' and 'b' may run at the same time"):
        validate_workflow(wf)
