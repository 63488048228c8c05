"""The scheduler as a pure state machine: hand-built events, no event loop, no I/O."""

from __future__ import annotations

import pytest

from podium.errors import CycleError
from podium.model import (
    ErrorInfo,
    Event,
    RunResumed,
    Step,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    Trigger,
    Workflow,
)
from podium.scheduler import ActiveRun, Plan, Unit


def noop() -> None:
    return None


def workflow(*steps: Step) -> Workflow:
    return Workflow(name="t", steps=list(steps))


def step(
    step_id: str,
    *needs: str,
    trigger: Trigger = "all_success",
    for_each: str | None = None,
    max_parallel: int | None = None,
    continue_on_error: bool = False,
) -> Step:
    return Step(
        id=step_id,
        uses=noop,
        needs=needs,
        trigger=trigger,
        for_each=for_each,
        max_parallel=max_parallel,
        continue_on_error=continue_on_error,
    )


class Log:
    """Builds events with increasing seqs and applies them, like the runtime does."""

    def __init__(self, active: ActiveRun) -> None:
        self.active = active
        self.events: list[Event] = []

    def add(self, event_type: type[Event], **fields: object) -> None:
        event = event_type(seq=len(self.events), at=float(len(self.events)), **fields)
        self.events.append(event)
        self.active.apply(event)

    def start(self, unit: Unit) -> None:
        self.add(StepStarted, step=unit.step, index=unit.index, attempt=unit.attempt, agent="a")

    def succeed(self, unit: Unit, output: object = None) -> None:
        self.add(StepSucceeded, step=unit.step, index=unit.index, output=output)

    def fail(self, unit: Unit) -> None:
        error = ErrorInfo(type="Boom", message="boom")
        self.add(StepFailed, step=unit.step, index=unit.index, attempt=unit.attempt, error=error)


def judge_all(active: ActiveRun) -> list[str]:
    """Activate every step awaiting a verdict, as the runtime does for plain steps."""
    judged: list[str] = []
    while decisions := active.decisions():
        for step_id in decisions:
            active.activate(step_id)
            judged.append(step_id)
    return judged


def test_a_chain_runs_one_step_at_a_time_in_order() -> None:
    active = ActiveRun(Plan.from_workflow(workflow(step("a"), step("b", "a"), step("c", "b"))))
    log = Log(active)
    order = []
    while not active.is_complete:
        judge_all(active)
        units = list(active.ready(10))
        assert len(units) == 1
        log.start(units[0])
        log.succeed(units[0], units[0].step)
        order.append(units[0].step)
    assert order == ["a", "b", "c"]
    assert active.scope["c"] == {"output": "c", "status": "succeeded"}


def test_a_dependent_waits_for_every_need() -> None:
    active = ActiveRun(Plan.from_workflow(workflow(step("a"), step("b"), step("c", "a", "b"))))
    log = Log(active)
    judge_all(active)
    a, b = list(active.ready(10))
    log.start(a)
    log.start(b)
    log.succeed(a)
    assert active.decisions() == []
    log.succeed(b)
    assert active.decisions() == ["c"]


def test_ready_respects_the_limit_and_leaves_the_rest_queued() -> None:
    active = ActiveRun(Plan.from_workflow(workflow(*(step(f"s{i}") for i in range(5)))))
    judge_all(active)
    first = list(active.ready(2))
    assert [u.step for u in first] == ["s0", "s1"]
    for unit in first:
        Log(active).start(unit)
    assert [u.step for u in active.ready(10)] == ["s2", "s3", "s4"]


def test_deferred_units_wait_until_unblocked() -> None:
    active = ActiveRun(Plan.from_workflow(workflow(step("a"), step("b"))))
    judge_all(active)
    a, b = list(active.ready(10))
    active.defer(a, "agent-x")
    active.defer(b, "agent-x")
    assert list(active.ready(10)) == []
    assert not active.is_complete
    active.unblock("agent-x")
    assert [u.step for u in active.ready(10)] == ["a", "b"]


def test_skipped_need_skips_default_trigger_but_not_all_done() -> None:
    wf = workflow(step("a"), step("b", "a"), step("c", "a", trigger="all_done"))
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    assert active.decisions() == ["a"]
    log.add(StepSkipped, step="a", cause="condition", reason="if false")
    assert active.decisions() == ["b", "c"]
    assert active.trigger_met("b") == (False, "needs a did not succeed")
    assert active.trigger_met("c") == (True, "")


@pytest.mark.parametrize(
    ("trigger", "statuses", "met"),
    [
        ("all_success", ("succeeded", "succeeded"), True),
        ("all_success", ("succeeded", "skipped"), False),
        ("one_success", ("failed", "succeeded"), True),
        ("one_success", ("failed", "skipped"), False),
        ("none_failed", ("succeeded", "skipped"), True),
        ("none_failed", ("succeeded", "failed"), False),
        ("all_done", ("failed", "skipped"), True),
    ],
)
def test_trigger_rules(trigger: Trigger, statuses: tuple[str, str], met: bool) -> None:
    wf = workflow(
        step("x", continue_on_error=True),
        step("y", continue_on_error=True),
        step("z", "x", "y", trigger=trigger),
    )
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    judge_all(active)
    units = {u.step: u for u in active.ready(10)}
    for step_id, status in zip(("x", "y"), statuses, strict=True):
        unit = units[step_id]
        if status == "skipped":
            continue
        log.start(unit)
        log.succeed(unit) if status == "succeeded" else log.fail(unit)
    for step_id, status in zip(("x", "y"), statuses, strict=True):
        if status == "skipped":  # a skip is a verdict on a step not yet activated
            active.state[step_id] = "deciding"
            log.add(StepSkipped, step=step_id, cause="condition", reason="no")
    assert active.decisions() == ["z"]
    assert active.trigger_met("z")[0] is met


def test_for_each_items_are_fed_up_to_max_parallel_and_output_keeps_item_order() -> None:
    active = ActiveRun(Plan.from_workflow(workflow(step("f", for_each="x", max_parallel=2))))
    log = Log(active)
    assert active.decisions() == ["f"]
    log.add(StepExpanded, step="f", count=5)
    first = list(active.ready(10))
    assert [u.key for u in first] == ["f[0]", "f[1]"]
    for unit in first:
        log.start(unit)
    log.succeed(first[1], 1)
    (nxt,) = active.ready(10)
    assert nxt.key == "f[2]"
    log.start(nxt)
    log.succeed(first[0], 0)
    log.succeed(nxt, 2)
    rest = list(active.ready(10))
    assert [u.key for u in rest] == ["f[3]", "f[4]"]
    for unit in reversed(rest):
        log.start(unit)
        log.succeed(unit, unit.index)
    assert active.is_complete
    assert active.scope["f"] == {"output": [0, 1, 2, 3, 4], "status": "succeeded"}


def test_empty_for_each_succeeds_with_an_empty_list() -> None:
    active = ActiveRun(Plan.from_workflow(workflow(step("f", for_each="x"), step("g", "f"))))
    log = Log(active)
    log.add(StepExpanded, step="f", count=0)
    assert active.scope["f"] == {"output": [], "status": "succeeded"}
    assert active.decisions() == ["g"]


def test_a_retry_waits_for_its_time() -> None:
    active = ActiveRun(Plan.from_workflow(workflow(step("a"))))
    log = Log(active)
    judge_all(active)
    (unit,) = active.ready(1)
    log.start(unit)
    error = ErrorInfo(type="Flaky", message="try again")
    log.add(StepAttemptFailed, step="a", attempt=1, error=error, retry_at=100.0)
    assert active.next_wake() == 100.0
    active.wake(99.0)
    assert list(active.ready(1)) == []
    active.wake(100.0)
    (again,) = active.ready(1)
    assert again.attempt == 2


def test_a_failure_halts_new_starts_but_all_done_steps_still_run() -> None:
    wf = workflow(step("a"), step("b"), step("c", "b"), step("cleanup", "a", trigger="all_done"))
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    judge_all(active)
    a, b = list(active.ready(10))
    log.start(a)
    log.start(b)
    log.fail(a)
    assert active.halted_by == "a"
    assert active.decisions() == ["cleanup"]  # all_done may start after a failure
    log.succeed(b)
    assert active.decisions() == ["cleanup"]  # c is held: nothing new starts
    judge_all(active)
    (cleanup,) = active.ready(10)
    log.start(cleanup)
    log.succeed(cleanup)
    assert active.is_complete
    assert active.state["c"] == "deciding"


def test_continue_on_error_does_not_halt() -> None:
    wf = workflow(step("a", continue_on_error=True), step("b"))
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    judge_all(active)
    a, _ = list(active.ready(10))
    log.start(a)
    log.fail(a)
    assert active.halted_by is None
    assert active.scope["a"]["status"] == "failed"


def halted_by(active: ActiveRun) -> str | None:
    return active.halted_by


def replay(wf: Workflow, events: list[Event]) -> ActiveRun:
    active = ActiveRun(Plan.from_workflow(wf))
    for event in events:
        active.apply(event)
    return active


def test_crash_rebuild_from_events_and_continue() -> None:
    wf = workflow(step("a"), step("b", "a"), step("f", "a", for_each="x"), step("z", "b", "f"))
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    judge_all(active)
    (a,) = active.ready(10)
    log.start(a)
    log.succeed(a, "A")
    assert active.decisions() == ["b", "f"]
    active.activate("b")
    log.add(StepExpanded, step="f", count=3)
    units = list(active.ready(10))
    assert [u.key for u in units] == ["b", "f[0]", "f[1]", "f[2]"]
    for unit in units:
        log.start(unit)
    log.succeed(units[1], 0)
    log.succeed(units[3], 2)
    # The process dies here: b and f[1] were in flight. Rebuild from the log.
    rebuilt = replay(wf, log.events)
    assert rebuilt.in_flight == 2
    log2 = Log(rebuilt)
    log2.events = list(log.events)
    log2.add(RunResumed)
    requeued = list(rebuilt.ready(10))
    assert sorted(u.key for u in requeued) == ["b", "f[1]"]
    assert all(u.attempt == 1 for u in requeued)
    for unit in requeued:
        log2.start(unit)
        log2.succeed(unit, unit.index)
    judge_all(rebuilt)
    (z,) = rebuilt.ready(10)
    assert z.step == "z"
    log2.start(z)
    log2.succeed(z)
    assert rebuilt.is_complete
    assert rebuilt.scope["f"]["output"] == [0, 1, 2]


def test_replaying_a_log_gives_the_state_the_live_run_had() -> None:
    wf = workflow(step("a"), step("f", "a", for_each="x", max_parallel=1), step("c", "f"))
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    judge_all(active)
    (a,) = active.ready(10)
    log.start(a)
    log.succeed(a)
    assert active.decisions() == ["f"]
    log.add(StepExpanded, step="f", count=2)
    (f0,) = active.ready(10)
    log.start(f0)
    error = ErrorInfo(type="E", message="m")
    log.add(StepAttemptFailed, step="f", index=0, attempt=1, error=error, retry_at=5.0)
    rebuilt = replay(wf, log.events)
    assert rebuilt.state == active.state
    assert rebuilt.scope == active.scope
    assert rebuilt.next_wake() == active.next_wake() == 5.0
    assert rebuilt.in_flight == active.in_flight == 0


def test_redrive_reruns_failed_units_and_keeps_succeeded_ones() -> None:
    wf = workflow(step("a"), step("f", "a", for_each="x"), step("c", "f"))
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    judge_all(active)
    (a,) = active.ready(10)
    log.start(a)
    log.succeed(a)
    log.add(StepExpanded, step="f", count=3)
    f0, f1, f2 = active.ready(10)
    for unit in (f0, f1, f2):
        log.start(unit)
    log.succeed(f0, 0)
    log.fail(f1)
    log.succeed(f2, 2)
    assert active.is_complete
    assert active.state["f"] == "failed"
    assert active.halted_by == "f[1]"
    log.add(RunResumed, redrive=True)
    assert halted_by(active) is None  # read through a call: mypy keeps the narrowing above
    (again,) = active.ready(10)
    assert again.key == "f[1]"
    log.start(again)
    log.succeed(again, 1)
    assert active.scope["f"] == {"output": [0, 1, 2], "status": "succeeded"}
    assert active.decisions() == ["c"]


def test_redrive_replays_to_the_same_state() -> None:
    wf = workflow(step("a"), step("b", "a"))
    active = ActiveRun(Plan.from_workflow(wf))
    log = Log(active)
    judge_all(active)
    (a,) = active.ready(10)
    log.start(a)
    log.fail(a)
    log.add(RunResumed, redrive=True)
    judge_all(active)
    (a2,) = active.ready(10)
    log.start(a2)
    log.succeed(a2)
    rebuilt = replay(wf, log.events)
    assert rebuilt.state == active.state
    assert rebuilt.decisions() == active.decisions() == ["b"]


def test_a_cycle_is_named() -> None:
    wf = workflow(step("a", "c"), step("b", "a"), step("c", "b"))
    with pytest.raises(CycleError) as caught:
        Plan.from_workflow(wf)
    assert set(caught.value.cycle) == {"a", "b", "c"}
    assert caught.value.cycle[0] == caught.value.cycle[-1]
