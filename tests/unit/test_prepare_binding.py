"""What preparing shares between steps, and the figures and order it derives from them."""

from __future__ import annotations

from podium.model import AgentSpec, Call, Step, Workflow
from podium.runtime.prepare import prepare
from podium.scheduler import Plan
from podium.scheduler.ranks import recorded


def noop() -> None:
    return None


def other() -> None:
    return None


def test_calls_without_input_share_one_call_per_target_and_render_null() -> None:
    wf = Workflow(
        name="t",
        steps=[
            Step(id="a", uses=noop),
            Step(id="b", uses=noop, needs=("a",)),
            Step(id="c", uses=other, needs=("b",), fallback=Call(uses=noop)),
            Step(id="d", uses=noop, with_={"x": 1}),
        ],
    )
    steps = prepare(wf).steps
    a, b, c, d = (steps[step_id].call for step_id in "abcd")
    assert a is not None
    assert c is not None
    assert d is not None
    assert a is b is steps["c"].fallback
    assert c.target.endswith(":other")
    assert a.payload.render({}) is None
    assert d.payload.render({}) == {"x": 1}


def test_a_need_named_twice_orders_its_step_as_if_named_once() -> None:
    wf = Workflow(
        name="t",
        steps=[
            Step(id="a", uses=noop),
            Step(id="b", uses=noop, needs=("a", "c", "a")),
            Step(id="c", uses=noop, needs=("a",)),
            Step(id="d", uses=noop, needs=("a",)),
        ],
    )
    plan = Plan.from_workflow(wf)
    assert plan.order == ("a", "c", "d", "b")
    assert plan.steps["a"].dependents == ("b", "b", "c", "d")


def test_recorded_figures_go_to_the_steps_whose_agents_have_them() -> None:
    wf = Workflow(
        name="t",
        agents=[
            AgentSpec(name="fast", uses=noop, capabilities=frozenset({"draft"})),
            AgentSpec(name="slow", uses=noop, capabilities=frozenset({"draft"})),
        ],
        steps=[
            Step(id="routed", capability="draft"),
            Step(id="named", agent="slow"),
            Step(id="inline", uses="pkg.mod:fn"),
            Step(id="group", steps={"inner": Step(id="inner", agent="fast")}),
        ],
    )
    figures: dict[str, dict[str, object]] = {
        "fast": {"latency": 2},
        "slow": {"latency": 5.0},
        "pkg.mod:fn": {"latency": 0},
    }
    assert recorded(wf, figures, "latency") == {
        "routed": 2.0,
        "named": 5.0,
        "inner": 2.0,
    }  # a zero is no figure: `inline` is left to the default
    assert recorded(wf, figures, "cost") == {}
    assert recorded(wf, {}, "latency") == {}
