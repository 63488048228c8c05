"""Critical-path ranks, and the virtual-clock simulator that drives the real scheduler.

Schedules are checked for what any valid schedule must satisfy: every unit after the units
of its needs, never more units at once than slots, no makespan under the critical path or
the work spread over the slots, and (list scheduling never leaves a slot idle while a unit
is ready) none over Graham's bound. No timing is asserted.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podium.model import Repeat, Step, Workflow
from podium.scheduler import (
    ActiveRun,
    Plan,
    Ranks,
    Simulation,
    estimates,
    fifo,
    simulate,
)

STG = Path(__file__).resolve().parents[3] / "shared" / "data" / "stg"


def step(
    step_id: str,
    *needs: str,
    estimate: float | None = None,
    for_each: str | None = None,
    max_parallel: int | None = None,
    condition: str | None = None,
    repeat: Repeat | None = None,
) -> Step:
    return Step(
        id=step_id,
        uses="tasks:run",
        needs=needs,
        estimate=estimate,
        for_each=for_each,
        max_parallel=max_parallel,
        condition=condition,
        repeat=repeat,
    )


def plan_of(*steps: Step) -> Plan:
    return Plan.from_workflow(Workflow(name="t", steps=list(steps)))


# ---- ranks ---------------------------------------------------------------------------


def test_rank_is_the_duration_plus_the_longest_rank_below() -> None:
    plan = plan_of(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"))
    ranks = Ranks.of(plan, {"a": 1, "b": 5, "c": 2, "d": 3})
    assert ranks.rank == {"d": 3, "c": 5, "b": 8, "a": 9}
    assert ranks.critical_path() == ("a", "b", "d")
    assert ranks.length == 9


def test_work_below_shares_a_diamonds_bottom_between_its_needs() -> None:
    plan = plan_of(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"))
    ranks = Ranks.of(plan, {"a": 1, "b": 1, "c": 1, "d": 2})
    assert ranks.work == {"d": 2, "c": 2, "b": 2, "a": 5}


def test_steps_without_an_estimate_take_the_default() -> None:
    plan = plan_of(step("a"), step("b", "a"))
    assert Ranks.of(plan).rank == {"a": 2.0, "b": 1.0}
    assert Ranks.of(plan, default=3.0).rank == {"a": 6.0, "b": 3.0}


def test_a_ready_long_path_step_goes_before_a_short_one() -> None:
    # `short` comes first in the plan and becomes ready first, but `long` leads further.
    plan = plan_of(step("short"), step("long"), step("next", "long"), step("last", "next"))
    for slots in (None, 1):
        active = ActiveRun(plan, priority=Ranks.of(plan).priority(slots))
        for step_id in active.decisions():
            active.activate(step_id)
        assert [unit.step for unit in active.ready(1)] == ["long"]
    fifo_run = ActiveRun(plan, priority=fifo)
    for step_id in fifo_run.decisions():
        fifo_run.activate(step_id)
    assert [unit.step for unit in fifo_run.ready(1)] == ["short"]


def test_an_estimate_outweighs_a_longer_chain_of_quick_steps() -> None:
    plan = plan_of(step("slow"), step("quick"), step("then", "quick"))
    priority = Ranks.of(plan, {"slow": 10, "quick": 1, "then": 1}).priority()
    assert priority("slow") < priority("quick") < priority("then")


def test_equal_ranks_go_in_plan_order() -> None:
    plan = plan_of(step("b"), step("a"), step("c"))
    priority = Ranks.of(plan).priority(2)
    assert [priority(s) for s in ("b", "a", "c")] == [0.0, 1.0, 2.0]


def test_with_few_slots_the_step_that_opens_more_work_goes_first() -> None:
    # Both have rank 3; `wide` opens four steps, `narrow` one chain.
    steps = [step("narrow"), step("wide"), step("n1", "narrow"), step("n2", "n1")]
    steps += [step(f"w{i}", "wide", estimate=2) for i in range(4)]
    wf = Workflow(name="t", steps=steps)
    ranks = Ranks.of(Plan.from_workflow(wf), estimates(wf))
    assert ranks.rank["wide"] == ranks.rank["narrow"]
    priority = ranks.priority(2)
    assert priority("wide") < priority("narrow")
    unlimited = ranks.priority(None)
    assert unlimited("narrow") < unlimited("wide")  # rank alone: plan order breaks the tie


def test_a_loops_iteration_steps_rank_as_their_body_steps() -> None:
    body = {"draft": step("draft", estimate=4), "review": step("review", "draft")}
    loop = Step(id="loop", steps=body, repeat=Repeat(until="true", max_iterations=3))
    wf = Workflow(name="t", steps=[loop, step("other", estimate=2), step("after", "loop")])
    ranks = Ranks.of(Plan.from_workflow(wf), estimates(wf))
    assert ranks.duration["loop"] == 5  # the body's critical path
    assert ranks.rank["draft"] == 4 + 1 + 1  # then review, then `after`
    priority = ranks.priority(1)
    assert priority("draft#2") == priority("draft")
    assert priority("review#7") == priority("review")
    assert priority("draft") < priority("other")
    assert priority("nowhere") == len(ranks.order)  # unknown steps go last


def test_estimates_include_the_steps_of_groups_and_sleeps() -> None:
    body = {"inner": step("inner", estimate=2.5)}
    nap, slept = Step(id="nap", sleep=30), Step(id="slept", sleep=30, estimate=5)
    wf = Workflow(name="t", steps=[step("a", estimate=1), step("b"), Step(id="g", steps=body)])
    assert estimates(wf) == {"a": 1, "inner": 2.5}
    assert estimates(Workflow(name="t", steps=[nap, slept])) == {"nap": 30, "slept": 5}


# ---- the simulator -------------------------------------------------------------------


DIAMOND = plan_of(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"))
DIAMOND_SECONDS = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 1.0}


def test_a_diamond_takes_its_critical_path_or_its_work_on_one_slot() -> None:
    assert simulate(DIAMOND, DIAMOND_SECONDS).makespan == 5
    one = simulate(DIAMOND, DIAMOND_SECONDS, slots=1)
    assert one.makespan == 7
    assert [(p.key, p.start, p.end, p.slot) for p in one.schedule] == [
        ("a", 0, 1, 0),
        ("b", 1, 4, 0),
        ("c", 4, 6, 0),
        ("d", 6, 7, 0),
    ]
    assert one.critical_path == ("a", "b", "d")
    assert one.critical_length == 5


def test_the_simulated_log_replays_to_a_complete_run() -> None:
    run = simulate(DIAMOND, DIAMOND_SECONDS, slots=2)
    replayed = ActiveRun(DIAMOND)
    for event in run.events:
        replayed.apply(event)
    assert replayed.is_complete
    assert all(replayed.state[s] == "succeeded" for s in DIAMOND.order)
    assert [e.seq for e in run.events] == list(range(len(run.events)))


def test_for_each_items_loops_and_skipped_steps() -> None:
    wf = Workflow(
        name="t",
        steps=[
            step("fan", for_each="${{ input.xs }}", max_parallel=2, estimate=2),
            step("gated", "fan", condition="${{ input.go }}"),
            step("after_gate", "gated"),
            step("fix", "fan", repeat=Repeat(until="true", max_iterations=5)),
        ],
    )
    plan, items, iterations = Plan.from_workflow(wf), {"fan": 5}, {"fix": 3}
    run = simulate(plan, estimates(wf), items=items, iterations=iterations, skipped={"gated"})
    keys = [p.key for p in run.schedule]
    assert keys == ["fan[0]", "fan[1]", "fan[2]", "fan[3]", "fan[4]", "fix#1", "fix#2", "fix#3"]
    assert run.makespan == 3 * 2 + 3
    assert_valid(plan, run, items, iterations, skipped={"gated", "after_gate"})


# ---- properties ----------------------------------------------------------------------


def assert_valid(
    plan: Plan,
    run: Simulation,
    items: dict[str, int] | None = None,
    iterations: dict[str, int] | None = None,
    *,
    skipped: set[str] | None = None,
) -> None:
    """Needs before dependents, every unit once, capacity, and the makespan's lower bounds.

    Loops are expected to be steps that are their own body (not groups).
    """
    items, iterations, skipped = items or {}, iterations or {}, skipped or set()
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for placed in run.schedule:
        spans[placed.step.rpartition("#")[0] or placed.step].append((placed.start, placed.end))
        assert placed.slot >= 0
        assert run.slots is None or placed.slot < run.slots
    for step_id in plan.order:
        expected = iterations.get(step_id, items.get(step_id, 1))
        assert len(spans[step_id]) == (0 if step_id in skipped else expected), step_id
        for need in plan.steps[step_id].needs:
            if spans[need] and spans[step_id]:
                assert min(s for s, _ in spans[step_id]) >= max(e for _, e in spans[need])
    # On each slot, units follow one another; across slots, never more than `slots` at once.
    by_slot: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for placed in run.schedule:
        by_slot[placed.slot].append((placed.start, placed.end))
    for intervals in by_slot.values():
        intervals.sort()
        for (_, end), (start, _) in pairwise(intervals):
            assert start >= end
    if run.slots is not None:
        instants = sorted({p.start for p in run.schedule})
        for instant in instants:
            busy = sum(p.start <= instant < p.end for p in run.schedule)
            assert busy <= run.slots
    assert run.makespan == max((p.end for p in run.schedule), default=0.0)
    if not skipped:  # else the plan's critical path may not have run at all
        work = sum(p.end - p.start for p in run.schedule)
        slots = run.slots or max(1, len(run.schedule))
        assert run.makespan >= max(run.critical_length, work / slots) - 1e-9


@st.composite
def dags(draw: st.DrawFn) -> tuple[Plan, dict[str, float], dict[str, int]]:
    """A random DAG of up to 30 steps, integer durations (zero too), some of them fan out."""
    size = draw(st.integers(1, 30))
    steps: list[Step] = []
    items: dict[str, int] = {}
    for i in range(size):
        earlier = [f"s{j}" for j in range(i)]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=4)) if i else []
        fans_out = draw(st.booleans()) and draw(st.integers(0, 3)) == 0
        steps.append(step(f"s{i}", *needs, for_each="${{ input }}" if fans_out else None))
        if fans_out:
            items[f"s{i}"] = draw(st.integers(0, 4))
    seconds = {s.id: float(draw(st.integers(0, 10))) for s in steps}
    return plan_of(*steps), seconds, items


@settings(max_examples=150, deadline=None)
@given(dags(), st.one_of(st.none(), st.integers(1, 6)), st.booleans())
def test_random_dags_get_valid_schedules(
    dag: tuple[Plan, dict[str, float], dict[str, int]], slots: int | None, use_fifo: bool
) -> None:
    plan, seconds, items = dag
    run = simulate(plan, seconds, slots=slots, items=items, priority=fifo if use_fifo else None)
    empty = {s for s, n in items.items() if n == 0}
    assert_valid(plan, run, items, skipped=empty)
    # Graham: a list schedule never idles a slot while a unit is ready.
    work = sum(p.end - p.start for p in run.schedule)
    if slots is None:
        assert run.makespan <= run.critical_length
    else:
        assert run.makespan <= work / slots + (1 - 1 / slots) * run.critical_length + 1e-9


def read_stg(path: Path) -> tuple[Plan, dict[str, float]]:
    rows = [r for r in (line.split() for line in path.read_text().splitlines()) if r]
    rows = [r for r in rows if not r[0].startswith("#")]
    steps = [step(f"t{r[0]}", *(f"t{p}" for p in r[3 : 3 + int(r[2])])) for r in rows[1:]]
    return plan_of(*steps), {f"t{r[0]}": float(r[1]) for r in rows[1:]}


STG_SAMPLE = [f"{size}/rand{number:04d}.stg" for size in (50, 100) for number in range(0, 180, 12)]


@pytest.mark.skipif(not STG.is_dir(), reason=f"no Standard Task Graph Set at {STG}")
@pytest.mark.parametrize("graph", STG_SAMPLE)
def test_stg_graphs_get_valid_schedules(graph: str) -> None:
    plan, seconds = read_stg(STG / graph)
    for slots in (1, 2, 4, 8, 16, None):
        run = simulate(plan, seconds, slots=slots)
        assert_valid(plan, run)
        if slots is None:
            assert run.makespan == run.critical_length
