"""The language of failure policies, guards and built-in steps: keys, mistakes, round trips."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from podium.errors import DefinitionError
from podium.model import Step, Workflow
from podium.model.workflow import (
    AgentSpec,
    Approval,
    Call,
    CircuitPolicy,
    Guards,
    RetryPolicy,
)
from podium.spec import (
    load_workflow,
    validate_workflow,
    workflow_from_document,
    workflow_to_document,
)
from podium.spec.schema import _quick_valid

EVERYTHING = """\
name: release
max_steps: 500
deadline: 2h
max_output_bytes: 1000000
defaults:
  retry: {attempts: 2, backoff: 1s}
  timeout: 30s
agents:
  builder:
    uses: "ci:build"
    capabilities: [build]
    circuit: {failures: 3, window: 1m, cooldown: 30s}
    retry: {attempts: 4, jitter: 0.5, on: [TimeoutError, StepTimeout], not_on: [ValueError]}
    timeout: 5m
  spare:
    uses: "ci:spare"
    capabilities: [build, undo]
steps:
  build:
    agent: builder
    with: {ref: "${{ input.ref }}"}
    deadline: 20m
    fallback: {capability: build, with: {ref: "${{ input.ref }}", slow: true}}
    compensate:
      agent: spare
      with: {undo: "${{ steps.build.output.version }}"}
  nap:
    needs: build
    sleep: 10m
  until:
    needs: nap
    wait_until: "${{ input.at }}"
  ok:
    needs: [build, until]
    approval:
      prompt: "Ship ${{ steps.build.output.version }}?"
      schema: {type: object, required: [ticket]}
      timeout: 1h
      default: reject
  ship:
    needs: ok
    uses: "ci:ship"
    retry: 3
    timeout: 1m
  note:
    needs: ship
    capability: build
    for_each: "${{ input.targets }}"
    with: "${{ item }}"
    fallback: {uses: "ci:note", with: {target: "${{ item }}", n: "${{ index }}"}}
  ask: {needs: note, approval: "Done?"}
  at: {needs: ask, wait_until: 2026-11-24T18:00:00Z}
  epoch: {needs: at, wait_until: 1700000000}
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(DefinitionError) as caught:
        load_workflow(path)
    return [line.replace(str(path), "wf.yaml") for line in caught.value.problems]


def test_every_new_key_loads_into_the_model(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, EVERYTHING))
    assert wf.guards == Guards(max_steps=500, deadline=7200.0, max_output_bytes=1_000_000)
    builder = wf.agents["builder"]
    assert builder.circuit == CircuitPolicy(failures=3, window=60.0, cooldown=30.0)
    assert wf.agents["spare"].circuit is None
    steps = wf.steps
    assert steps["build"].retry == RetryPolicy(
        attempts=4, jitter=0.5, on=("TimeoutError", "StepTimeout"), not_on=("ValueError",)
    )
    assert steps["build"].timeout == 300.0
    assert steps["build"].deadline == 1200.0
    assert steps["build"].fallback == Call(
        capability="build", with_={"ref": "${{ input.ref }}", "slow": True}
    )
    assert steps["build"].compensate == Call(
        agent="spare", with_={"undo": "${{ steps.build.output.version }}"}
    )
    assert steps["nap"].sleep == 600.0
    assert steps["nap"].builtin == "sleep"
    assert steps["until"].wait_until == "${{ input.at }}"
    assert steps["ok"].approval == Approval(
        prompt="Ship ${{ steps.build.output.version }}?",
        schema={"type": "object", "required": ["ticket"]},
        timeout=3600.0,
        default="reject",
    )
    assert steps["ask"].approval == Approval(prompt="Done?")
    assert steps["at"].wait_until == "${{ '2026-11-24T18:00:00Z' }}"
    assert steps["epoch"].wait_until == "1700000000"
    assert steps["note"].fallback == Call(
        uses="ci:note", with_={"target": "${{ item }}", "n": "${{ index }}"}
    )


def test_built_in_steps_take_no_agent_policies(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, EVERYTHING))
    for sid in ("nap", "until", "ok", "ask", "at", "epoch"):
        assert wf.steps[sid].retry == RetryPolicy(), sid
        assert wf.steps[sid].timeout is None, sid


def test_failure_policies_resolve_step_then_agent_then_defaults(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, EVERYTHING))
    steps = wf.steps
    # The step's own keys win.
    assert steps["ship"].retry == RetryPolicy(attempts=3)
    assert steps["ship"].timeout == 60.0
    # A step naming the agent takes the agent's.
    assert steps["build"].retry.attempts == 4
    assert steps["build"].timeout == 300.0
    # A step routed by capability does not name an agent: the workflow defaults apply.
    assert steps["note"].retry == RetryPolicy(attempts=2, backoff=1.0)
    assert steps["note"].timeout == 30.0


def test_agent_policies_fill_only_what_the_step_leaves_out(tmp_path: Path) -> None:
    wf = load_workflow(
        write(
            tmp_path,
            """\
            name: p
            defaults: {timeout: 10s}
            agents:
              a: {uses: "m:f", retry: 5}
              b: {uses: "m:f"}
            steps:
              one: {agent: a, timeout: 2s}
              two: {agent: a, retry: {attempts: 2}}
              three: {agent: b}
              four: {uses: "m:g"}
            """,
        )
    )
    got = {sid: (step.retry.attempts, step.timeout) for sid, step in wf.steps.items()}
    assert got == {"one": (5, 2.0), "two": (2, 10.0), "three": (1, 10.0), "four": (1, 10.0)}


def test_defaults_are_built_in_when_nothing_is_declared(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, "name: p\nsteps:\n  a: {uses: 'm:f'}\n"))
    assert wf.guards == Guards()
    assert wf.guards.max_output_bytes == 16 * 1024 * 1024
    assert wf.steps["a"].retry == RetryPolicy()
    assert wf.steps["a"].timeout is None
    assert wf.steps["a"].deadline is None


def test_round_trip_keeps_every_new_field(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, EVERYTHING))
    doc = workflow_to_document(wf)
    assert json.loads(json.dumps(doc)) == doc
    again = workflow_from_document(doc, source="stored", base_dir=wf.base_dir)
    assert again.steps == wf.steps
    assert again.agents == wf.agents
    assert again.guards == wf.guards
    assert workflow_to_document(again) == doc
    assert doc["steps"]["ask"]["approval"] == "Done?"  # the short form when it is enough


def undo(version: str) -> None:
    """A compensation given as a Python callable."""


def test_round_trip_of_a_python_built_workflow() -> None:
    wf = Workflow(
        name="py",
        agents=[
            AgentSpec(
                name="a",
                uses="m:f",
                capabilities=frozenset({"c"}),
                circuit=CircuitPolicy(failures=1, window=5, cooldown=2.5),
            )
        ],
        steps=[
            Step(
                id="s",
                agent="a",
                retry=RetryPolicy(attempts=3, jitter=0.25, on=("OSError",), not_on=("KeyError",)),
                deadline=9.0,
                fallback=Call(capability="c"),
                compensate=Call(uses=undo, with_={"version": "${{ steps.s.output }}"}),
            ),
            Step(id="w", needs=("s",), sleep=0.0),
            Step(id="t", needs=("w",), wait_until="${{ input.at }}"),
            Step(
                id="o", needs=("t",), approval=Approval(prompt="go?", timeout=5, default="approve")
            ),
        ],
        guards=Guards(max_steps=7, deadline=60.0, max_output_bytes=10),
    )
    validate_workflow(wf)
    doc = workflow_to_document(wf)
    again = workflow_from_document(doc, source="stored", base_dir="/")
    assert again.guards == wf.guards
    assert again.agents == wf.agents
    compensate = again.steps["s"].compensate
    assert compensate is not None
    assert compensate.uses == f"{undo.__module__}:{undo.__qualname__}"
    assert again.steps["s"].retry == wf.steps["s"].retry
    for sid in ("w", "t", "o"):
        assert again.steps[sid] == wf.steps[sid]
    assert workflow_to_document(again) == doc


def test_valid_documents_with_the_new_keys_take_the_quick_schema_check(tmp_path: Path) -> None:
    path = write(tmp_path, EVERYTHING)
    from podium.spec.loader import parse_yaml

    doc, _, _ = parse_yaml(path.read_text(), str(path))
    assert _quick_valid(doc)
    wrong = json.loads(json.dumps(doc))
    wrong["agents"]["builder"]["retry"]["jitter"] = 1.5
    assert not _quick_valid(wrong)


STEP = "name: x\nagents:\n  ag: {uses: 'm:f', capabilities: [cap]}\nsteps:\n  a:\n    BODY\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("sleep: soon", "wf.yaml:6:5: steps.a.sleep: 'soon' is not a duration"),
        (
            "sleep: 1s\n    with: 3",
            "wf.yaml:7:5: step 'a' is a built-in sleep step and cannot have `with`",
        ),
        (
            "sleep: 1s\n    retry: 2",
            "wf.yaml:7:5: step 'a' is a built-in sleep step and cannot have `retry`",
        ),
        (
            "approval: go?\n    fallback: {agent: ag}",
            "wf.yaml:7:5: step 'a' is a built-in approval step and cannot have `fallback`",
        ),
        (
            "wait_until: 1\n    compensate: {agent: ag}",
            "wf.yaml:7:5: step 'a' is a built-in wait_until step and cannot have `compensate`",
        ),
        (
            "wait_until: [1]",
            "wf.yaml:6:5: steps.a.wait_until must be a string or a number, not a list",
        ),
        (
            "wait_until: 2026-13-45T00:00:00Z",
            "wf.yaml:6:5: steps.a.wait_until: '2026-13-45T00:00:00Z' is not an ISO 8601 time",
        ),
        ("wait_until: '${{ inptu.at }}'", "wf.yaml:6:5: ${{ inptu.at }}: unknown name 'inptu'"),
        (
            "approval: 3",
            "wf.yaml:6:5: steps.a.approval must be a string or a mapping, not a number",
        ),
        (
            "approval: {timeout: 1h}",
            "wf.yaml:6:5: steps.a.approval is missing the required key 'prompt'",
        ),
        (
            "approval: {prompt: p, default: approve}",
            "wf.yaml:6:27: step 'a': approval.default needs a timeout",
        ),
        (
            "approval: {prompt: p, default: maybe, timeout: 1h}",
            "wf.yaml:6:27: steps.a.approval.default must be one of approve, reject, not 'maybe'",
        ),
        (
            "approval: {prompt: p, timeout: 0}",
            "wf.yaml:6:27: steps.a.approval.timeout must be more than 0, not 0",
        ),
        (
            "approval: {prompt: p, schema: {type: objec}}",
            "wf.yaml:6:36: step 'a': approval.schema is not a valid JSON Schema",
        ),
        (
            "approval: 'Ship ${{ steps.b.output }}?'\n  b: {uses: 'm:f'}",
            "wf.yaml:6:5: step 'a' reads steps.b but does not need it",
        ),
        (
            "uses: 'm:f'\n    deadline: 0",
            "wf.yaml:7:5: steps.a.deadline must be more than 0, not 0",
        ),
        (
            "uses: 'm:f'\n    deadline: later",
            "wf.yaml:7:5: steps.a.deadline: 'later' is not a duration",
        ),
        (
            "uses: 'm:f'\n    retry: {jitter: 2}",
            "wf.yaml:7:13: steps.a.retry.jitter must be at most 1, not 2",
        ),
        (
            "uses: 'm:f'\n    retry: {jitter: -0.1}",
            "wf.yaml:7:13: steps.a.retry.jitter must be at least 0, not -0.1",
        ),
        (
            "uses: 'm:f'\n    retry: {on: TimeoutError}",
            "wf.yaml:7:13: steps.a.retry.on must be a list, not a string",
        ),
        (
            "uses: 'm:f'\n    retry: {not_on: ['no such']}",
            (
                "wf.yaml:7:22: steps.a.retry.not_on[0] must be an error type name such "
                "as TimeoutError, not 'no such'"
            ),
        ),
        (
            "uses: 'm:f'\n    fallback: {agent: agg}",
            "wf.yaml:7:16: step 'a': fallback uses unknown agent 'agg' (did you mean 'ag'?)",
        ),
        (
            "uses: 'm:f'\n    fallback: {capability: cpa}",
            (
                "wf.yaml:7:16: step 'a': fallback needs capability 'cpa', which no "
                "agent declares (did you mean 'cap'?)"
            ),
        ),
        (
            "uses: 'm:f'\n    compensate: {agent: ag, uses: 'm:g'}",
            (
                "wf.yaml:7:5: step 'a': compensate must name exactly one of agent, "
                "capability or uses (it names agent and uses)"
            ),
        ),
        (
            "uses: 'm:f'\n    compensate: {with: 1}",
            "wf.yaml:7:5: step 'a': compensate must name exactly one",
        ),
        (
            "uses: 'm:f'\n    fallback: {uses: m.g}",
            "wf.yaml:7:16: steps.a.fallback.uses must be a Python callable",
        ),
        (
            "uses: 'm:f'\n    fallback: {agnet: ag}",
            "wf.yaml:7:16: unknown key 'agnet' in steps.a.fallback (did you mean 'agent'?)",
        ),
        (
            "uses: 'm:f'\n    fallback: {agent: ag, with: '${{ item }}'}",
            "wf.yaml:7:27: step 'a' reads item or index in a step without for_each",
        ),
        (
            (
                "uses: 'm:f'\n    compensate: {agent: ag, with: '${{ steps.b.output "
                "}}'}\n  b: {uses: 'm:f'}"
            ),
            "wf.yaml:7:29: step 'a' reads steps.b but does not need it",
        ),
        (
            "uses: 'm:f'\n    fallback: {agent: ag, with: '${{ steps.a.output }}'}",
            "wf.yaml:7:27: step 'a' reads steps.a but does not need it",
        ),
    ],
)
def test_step_mistakes_are_located(tmp_path: Path, body: str, expected: str) -> None:
    found = problems(tmp_path, STEP.replace("BODY", body))
    assert any(line.startswith(expected) for line in found), found


def test_a_compensation_may_read_its_own_step(tmp_path: Path) -> None:
    wf = load_workflow(
        write(
            tmp_path,
            STEP.replace(
                "BODY", "uses: 'm:f'\n    compensate: {agent: ag, with: '${{ steps.a.output }}'}"
            ),
        )
    )
    assert wf.steps["a"].compensate == Call(agent="ag", with_="${{ steps.a.output }}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_steps: 0", "wf.yaml:1:1: max_steps must be at least 1, not 0"),
        ("max_steps: 1.5", "wf.yaml:1:1: max_steps must be an integer, not a number"),
        ("deadline: 0s", "wf.yaml:1:1: deadline must be more than 0, not '0s'"),
        ("max_output_bytes: 0", "wf.yaml:1:1: max_output_bytes must be at least 1, not 0"),
        (
            "defaults: {retries: 3}",
            "wf.yaml:1:12: unknown key 'retries' in defaults (did you mean 'retry'?)",
        ),
        ("defaults: {timeout: -1}", "wf.yaml:1:12: defaults.timeout: -1 is not a duration"),
        ("defaults: {retry: 0}", "wf.yaml:1:12: defaults.retry must be at least 1, not 0"),
    ],
)
def test_workflow_level_mistakes_are_located(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, f"{text}\nname: x\nsteps:\n  a: {{uses: 'm:f'}}\n")
    assert any(line.startswith(expected) for line in found), found


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (
            "circuit: {failures: 0}",
            "wf.yaml:4:15: agents.ag.circuit.failures must be at least 1, not 0",
        ),
        (
            "circuit: {window: 0}",
            "wf.yaml:4:15: agents.ag.circuit.window must be more than 0, not 0",
        ),
        (
            "circuit: {cooldown: soon}",
            "wf.yaml:4:15: agents.ag.circuit.cooldown: 'soon' is not a duration",
        ),
        (
            "circuit: {fails: 1}",
            "wf.yaml:4:15: unknown key 'fails' in agents.ag.circuit (did you mean 'failures'?)",
        ),
        (
            "retry: {attempts: 0}",
            "wf.yaml:4:13: agents.ag.retry.attempts must be at least 1, not 0",
        ),
        ("timeout: 0", "wf.yaml:4:5: agents.ag.timeout must be more than 0, not 0"),
    ],
)
def test_agent_mistakes_are_located(tmp_path: Path, agent: str, expected: str) -> None:
    text = f"name: x\nagents:\n  ag:\n    {agent}\n    uses: 'm:f'\nsteps:\n  a: {{agent: ag}}\n"
    found = problems(tmp_path, text)
    assert any(line.startswith(expected) for line in found), found


def test_python_built_workflows_are_held_to_the_same_rules() -> None:
    wf = Workflow(
        name="py",
        agents=[AgentSpec(name="a", uses="m:f", circuit=CircuitPolicy(failures=0, window=0))],
        steps=[
            Step(id="s", sleep=-1, with_=1, retry=RetryPolicy(attempts=2)),
            Step(id="o", approval=Approval(prompt="", default="approve")),
            Step(id="f", uses="m:f", retry=RetryPolicy(jitter=1.5), fallback=Call()),
        ],
        guards=Guards(max_steps=0, deadline=-1, max_output_bytes=0),
    )
    with pytest.raises(DefinitionError) as caught:
        validate_workflow(wf)
    assert set(caught.value.problems) == {
        "<python>: agents.a.circuit.failures must be at least 1, not 0",
        "<python>: agents.a.circuit.window must be more than 0, not 0",
        "<python>: step 's': sleep must be 0 or more, not -1",
        "<python>: step 's' is a built-in sleep step and cannot have `with`",
        "<python>: step 's' is a built-in sleep step and cannot have `retry`",
        "<python>: step 'o': approval needs a prompt",
        "<python>: step 'o': approval.default needs a timeout (the default decision applies "
        "once the timeout has passed)",
        "<python>: step 'f': retry.jitter must be between 0 and 1, not 1.5",
        "<python>: step 'f': fallback must name exactly one of agent, capability or uses",
        "<python>: max_steps must be at least 1, not 0",
        "<python>: deadline must be more than 0, not -1",
        "<python>: max_output_bytes must be at least 1, not 0",
    }


SHOP = '''\
"""Agents for the test workflow."""

calls = []


def build(ref):
    calls.append("build")
    raise RuntimeError("the build farm is down")


def spare(ref, slow):
    calls.append("spare")
    return {"version": ref + "-spare"}


def ship(ticket):
    calls.append("ship")
    raise ValueError("no ship today")


def undo(version):
    calls.append("undo " + version)
'''

HUMAN = """\
name: human
agents:
  farm: {uses: "shop_under_test:build", capabilities: [build]}
  spare: {uses: "shop_under_test:spare", capabilities: [build]}
steps:
  build:
    agent: farm
    with: {ref: "${{ input.ref }}"}
    fallback: {agent: spare, with: {ref: "${{ input.ref }}", slow: true}}
    compensate: {uses: "shop_under_test:undo", with: {version: "${{ steps.build.output.version }}"}}
  nap: {needs: build, sleep: 10m}
  ok:
    needs: nap
    approval:
      prompt: "Ship ${{ steps.build.output.version }}?"
      schema: {type: object, required: [ticket]}
  ship:
    needs: ok
    uses: "shop_under_test:ship"
    with: {ticket: "${{ steps.ok.output.data.ticket }}"}
"""


async def test_a_yaml_workflow_with_sleep_approval_fallback_and_compensate_runs(
    tmp_path: Path,
) -> None:
    import sys

    from podium import approve, resume_run, run_workflow
    from podium.testing import VirtualClock

    (tmp_path / "shop_under_test.py").write_text(SHOP, encoding="utf-8")
    wf = load_workflow(write(tmp_path, HUMAN))
    db = str(tmp_path / "runs.db")
    try:
        waiting = await run_workflow(
            wf, {"ref": "v1"}, store=db, run_id="r", clock=VirtualClock(start=0.0)
        )
        assert waiting.status == "waiting"
        await approve("r", "ok", store=db, data={"ticket": "T-1"}, by="ana")
        done = await resume_run("r", store=db, clock=VirtualClock(start=10_000.0))
        assert done.status == "failed"
        assert done.error is not None
        assert done.error.type == "ValueError"
        shop = sys.modules["shop_under_test"]
        assert shop.calls == ["build", "spare", "ship", "undo v1-spare"]
    finally:
        sys.modules.pop("shop_under_test", None)


def test_budgets_load_round_trip_and_refuse_bad_values(tmp_path: Path) -> None:
    good = tmp_path / "budget.yaml"
    good.write_text("name: b\nmax_tokens: 1000\nmax_cost: 0.5\nsteps:\n  a: {sleep: 1s}\n")
    wf = load_workflow(good)
    assert (wf.guards.max_tokens, wf.guards.max_cost) == (1000, 0.5)
    again = workflow_from_document(workflow_to_document(wf), source="again", base_dir=".")
    assert again.guards == wf.guards
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nmax_tokens: 0\nmax_cost: -1\nsteps:\n  a: {sleep: 1s}\n")
    with pytest.raises(DefinitionError) as caught:
        load_workflow(bad)
    assert caught.value.problems == (
        f"{bad}:2:1: max_tokens must be at least 1, not 0",
        f"{bad}:3:1: max_cost must be more than 0, not -1",
    )
