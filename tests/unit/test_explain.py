"""The story of a run, from hand-built event logs: choices, branches, failures, time."""

from __future__ import annotations

from typing import Any

import pytest

from podium.cli.render import event_line
from podium.model import (
    Adapted,
    AgentSpec,
    CallRecorded,
    Candidate,
    CircuitChanged,
    ErrorInfo,
    Event,
    IterationStarted,
    LoopEnded,
    Repeat,
    RunFinished,
    RunResumed,
    RunStarted,
    Step,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepFellBack,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    Usage,
    Workflow,
)
from podium.model.explain import Explanation, explain, took

T0 = 1_700_000_000.0
BOOM = ErrorInfo(type="TimeoutError", message="gateway timed out")


class Log:
    """A run's events in order, each at T0 + `at` seconds, numbered as the store would."""

    def __init__(self, *, max_parallel: int | None = None, run_input: Any = None) -> None:
        self.events: list[Event] = []
        self.add(
            RunStarted,
            0,
            run_id="r1",
            workflow="t",
            definition={},
            max_parallel=max_parallel,
            input=run_input,
        )

    def add(self, event_type: type[Event], at: float, **fields: Any) -> Log:
        self.events.append(event_type(seq=len(self.events), at=T0 + at, **fields))
        return self

    def unit(
        self, step: str, start: float, end: float, agent: str = "worker", **fields: Any
    ) -> Log:
        """A unit that started at `start` and succeeded at `end`, first time."""
        index = fields.pop("index", None)
        output = fields.pop("output", None)
        self.add(StepStarted, start, step=step, index=index, agent=agent, **fields)
        return self.add(StepSucceeded, end, step=step, index=index, output=output)

    def finish(self, at: float, status: str = "succeeded") -> Log:
        return self.add(RunFinished, at, status=status)

    def explain(self, *steps: Step, **options: Any) -> Explanation:
        workflow = Workflow(name="t", steps=list(steps), **options) if steps else None
        return explain(self.events, workflow)


def step(step_id: str, *needs: str, **fields: Any) -> Step:
    return Step(id=step_id, agent=fields.pop("agent", "worker"), needs=needs, **fields)


# ---- who did what and why -------------------------------------------------------------------


def test_a_routed_choice_shows_the_chosen_score_against_the_others() -> None:
    candidates = (
        Candidate(agent="billing-1", score=0.91, latency=0.18),
        Candidate(agent="billing-2", score=0.42, latency=0.04),
        Candidate(agent="billing-3", excluded="circuit open"),
    )
    log = Log().unit("bill", 0, 1, agent="billing-2", reason="best score", candidates=candidates)
    unit = log.finish(1).explain(Step(id="bill", capability="billing")).units[0]

    assert unit.choice is not None
    assert unit.choice.text == (
        "billing-2 (score 0.42) over billing-1 (0.91: slower, 180ms vs 40ms) "
        "and billing-3 (excluded: circuit open)"
    )
    assert unit.why == unit.choice.text


def test_a_choice_names_each_figure_the_loser_was_worse_on() -> None:
    candidates = (
        Candidate(agent="a", score=0.0, in_flight=0, success_rate=1.0, cost=0.01),
        Candidate(agent="b", score=2.1, in_flight=2, success_rate=0.5, cost=0.03),
    )
    log = Log().unit("s", 0, 1, agent="a", candidates=candidates).finish(1)
    choice = log.explain(Step(id="s", capability="c")).units[0].choice

    assert choice is not None
    assert choice.others[0].why_not == (
        "busier, 2 in flight vs 0; less reliable, 50% vs 100% success; dearer, 0.03 vs 0.01 a call"
    )


def test_a_unit_named_by_its_step_gives_the_reason_and_no_choice() -> None:
    log = Log().unit("a", 0, 1, agent="clerk", reason="named by the step").finish(1)
    unit = log.explain(step("a", agent="clerk")).units[0]

    assert (unit.agent, unit.choice, unit.why) == ("clerk", None, "named by the step")
    assert (unit.at, unit.seconds, unit.attempts) == (0, 1, 1)


def test_a_pattern_step_tells_why_its_conversation_stopped_and_after_how_many_turns() -> None:
    output = {"answer": "ok", "messages": [{}, {}, {}], "stop_reason": "max_turns", "turns": 3}
    log = Log().unit("chat", 0, 2, agent="support", output=output).finish(2)
    unit = log.explain(step("chat", agent="support")).units[0]

    assert unit.conversation is not None
    assert (unit.conversation.stop_reason, unit.conversation.turns) == ("max_turns", 3)
    assert unit.why.endswith("stopped: max_turns after 3 turns")


# ---- branches ---------------------------------------------------------------------------------


def test_a_skipped_branch_shows_its_condition_and_the_values_it_read() -> None:
    condition = "${{ steps.check.output.in_stock and input.rush }}"
    log = Log(run_input={"rush": True, "id": 7}).unit(
        "check", 0, 1, output={"in_stock": False, "short": ["sku-1"]}
    )
    log.add(StepSkipped, 1, step="ship", cause="condition", reason=f"if {condition} was False")
    log.unit("backorder", 1, 2).finish(2)
    story = log.explain(
        step("check"),
        step("ship", "check", condition=condition),
        step("backorder", "check", condition="${{ not steps['check'].output.in_stock }}"),
    )

    ship, backorder = story.branches
    assert (ship.step, ship.outcome, ship.cause, ship.condition) == (
        "ship",
        "skipped",
        "condition",
        condition,
    )
    assert ship.reason == f"if {condition} was False"
    assert [(r.path, r.value) for r in ship.reads] == [
        ("steps.check.output.in_stock", "false"),
        ("input.rush", "true"),
    ]
    assert (backorder.outcome, backorder.reads[0].path) == ("taken", "steps.check.output.in_stock")
    assert any(m.kind == "skipped" and m.subject == "ship" for m in story.timeline)


def test_a_condition_that_reads_past_the_recorded_value_shows_where_the_value_ends() -> None:
    condition = "${{ steps.check.output.lines | length > 2 }}"
    log = Log().unit("check", 0, 1, output={"lines": [1, 2, 3, 4, 5, 6, 7, 8, 9] * 10})
    log.add(StepSkipped, 1, step="big", cause="condition", reason="no").finish(1)
    story = log.explain(step("check"), step("big", "check", condition=condition))

    (reading,) = story.branches[0].reads
    assert reading.path == "steps.check.output.lines"
    assert reading.value.startswith("[1, 2, 3")
    assert reading.value.endswith("…")
    assert len(reading.value) == 60


def test_a_trigger_rule_branch_shows_how_each_need_ended() -> None:
    log = Log().unit("a", 0, 1)
    log.add(StepSkipped, 1, step="b", cause="condition", reason="if false")
    log.unit("c", 1, 2).finish(2)
    story = log.explain(
        step("a"),
        step("b", "a", condition="${{ false }}"),
        step("c", "a", "b", trigger="none_failed"),
    )

    trigger = story.branches[-1]
    assert (trigger.step, trigger.outcome, trigger.trigger) == ("c", "taken", "none_failed")
    assert [(r.path, r.value) for r in trigger.reads] == [("a", "succeeded"), ("b", "skipped")]


def test_a_loop_iteration_reads_its_own_iteration_s_siblings() -> None:
    loop = Step(
        id="polish",
        steps={
            "draft": step("draft"),
            "review": step("review", "draft", condition="${{ steps.draft.output.words > 3 }}"),
        },
        repeat=Repeat(until="${{ true }}", max_iterations=2),
    )
    log = Log().add(IterationStarted, 0, step="polish", iteration=1)
    log.unit("draft#1", 0, 1, output={"words": 2})
    log.add(StepSkipped, 1, step="review#1", cause="condition", reason="if false")
    log.add(IterationStarted, 1, step="polish", iteration=2)
    log.unit("draft#2", 1, 2, output={"words": 5}).unit("review#2", 2, 3)
    log.add(LoopEnded, 3, step="polish", iterations=2, stopped="until").finish(3)
    story = log.explain(loop)

    first, second = (b for b in story.branches if b.step.startswith("review"))
    assert (first.outcome, first.reads[0].value) == ("skipped", "2")
    assert (second.outcome, second.reads[0].value) == ("taken", "5")
    assert any(m.kind == "loop" and "2 iterations" in m.text for m in story.timeline)


# ---- failures -----------------------------------------------------------------------------------


def test_a_retry_then_success_is_told_with_the_error_and_the_delay() -> None:
    log = Log().add(StepStarted, 0, step="charge", agent="payments")
    log.add(StepAttemptFailed, 1, step="charge", attempt=1, error=BOOM, retry_at=T0 + 1.2)
    log.add(StepStarted, 1.2, step="charge", attempt=2, agent="payments")
    log.add(StepSucceeded, 2, step="charge", attempt=2).finish(2)
    story = log.explain(step("charge", agent="payments"))

    (failure,) = story.failures
    assert (failure.kind, failure.attempt, failure.agent, failure.at) == (
        "retried",
        1,
        "payments",
        1,
    )
    assert failure.retry_in == pytest.approx(0.2)
    assert failure.text == (
        "charge attempt 1 on payments failed: TimeoutError: gateway timed out; retry in 200ms"
    )
    unit = story.units[0]
    assert (unit.status, unit.attempts, unit.seconds) == ("succeeded", 2, 2)
    assert [m.kind for m in story.timeline] == ["retried", "finished"]


def test_a_fallback_names_both_agents_and_what_it_fell_back_to() -> None:
    log = Log().add(StepStarted, 0, step="pay", agent="primary")
    log.add(StepFellBack, 1, step="pay", attempt=1, error=BOOM, to="agent 'backup'")
    log.add(StepStarted, 1, step="pay", attempt=2, agent="backup", reason="fallback")
    log.add(StepSucceeded, 2, step="pay", attempt=2).finish(2)
    story = log.explain(step("pay", agent="primary"))

    (failure,) = story.failures
    assert failure.kind == "fell_back"
    assert failure.text.endswith("; falls back to agent 'backup'")
    assert story.units[0].agents == ("primary", "backup")
    assert story.units[0].agent == "backup"


def test_a_failure_for_good_circuits_and_resumes_are_in_the_timeline() -> None:
    log = Log().add(StepStarted, 0, step="a", agent="svc")
    log.add(StepFailed, 1, step="a", attempt=1, error=BOOM)
    log.add(CircuitChanged, 1, agent="svc", state="open", reason="5 failures in 60s")
    log.add(RunFinished, 1, status="failed", error=BOOM)
    log.add(RunResumed, 5, redrive=True)
    log.add(StepStarted, 5, step="a", attempt=2, agent="svc")
    log.add(StepSucceeded, 6, step="a", attempt=2).finish(6)
    story = log.explain(step("a", agent="svc"))

    kinds = [(m.at, m.kind) for m in story.timeline]
    assert kinds == [
        (1, "failed"),
        (1, "circuit"),
        (1, "finished"),
        (5, "resumed"),
        (6, "finished"),
    ]
    assert "circuit of svc open: 5 failures in 60s" in story.timeline[1].text
    assert story.timeline[3].text == "resumed, failed steps go again (redrive)"
    assert (story.run.status, story.run.resumes) == ("succeeded", 1)


# ---- adaptations ------------------------------------------------------------------------------


def test_an_adaptation_is_told_with_its_change_and_reason_in_the_timeline() -> None:
    log = Log().unit("a", 0, 1, agent="llm")
    log.add(
        Adapted,
        0.5,
        policy="rate_limit",
        subject="llm",
        setting="concurrency",
        old=8,
        new=4,
        reason="3 answers of HTTP 429 in 10s",
    )
    story = log.finish(1).explain(step("a", agent="llm"))

    (change,) = story.adaptations
    assert change.text == "rate_limit: llm concurrency 8 → 4: 3 answers of HTTP 429 in 10s"
    assert (story.timeline[0].at, story.timeline[0].kind) == (0.5, "adapted")
    assert story.timeline[0].text == change.text


def test_podium_events_has_a_line_for_an_adaptation() -> None:
    event = Adapted(
        seq=3,
        at=T0,
        policy="reroute",
        subject="billing",
        setting="prefer",
        old="b1",
        new="b2",
        reason="b1 slow",
    )
    assert "reroute: billing prefer 'b1' -> 'b2': b1 slow" in event_line(event)


# ---- where the time went ------------------------------------------------------------------------


def diamond() -> Log:
    """a (0-1) -> b (1-2) and c (1-4) -> d, which starts half a second after c ends."""
    log = Log().unit("a", 0, 1, agent="fast").unit("b", 1, 2, agent="fast")
    return log.unit("c", 1, 4, agent="slow").unit("d", 4.5, 5, agent="fast").finish(5)


DIAMOND = (step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"))


def test_the_critical_path_of_a_diamond_goes_through_the_need_that_finished_last() -> None:
    path = diamond().explain(*DIAMOND).critical_path

    assert path is not None
    assert [(link.key, link.at, link.seconds, link.gap) for link in path.links] == [
        ("a", 0, 1, 0),
        ("c", 1, 3, 0),
        ("d", 4.5, 0.5, 0.5),
    ]
    assert (path.seconds, path.working) == (5, 4.5)


def test_a_unit_that_queued_after_its_needs_were_done_is_a_notable_wait() -> None:
    story = diamond().explain(*DIAMOND, max_parallel=1)

    assert {unit.key: unit.waited for unit in story.units} == {"a": 0, "b": 0, "c": 0, "d": 0.5}
    (wait,) = story.waits
    assert (wait.key, wait.seconds) == ("d", 0.5)


def test_a_wait_names_the_limits_that_could_have_held_the_unit() -> None:
    log = Log(max_parallel=4).unit("list", 0, 1).add(StepExpanded, 1, step="each", count=2)
    log.unit("each", 1, 2, agent="east", index=0).unit("each", 2, 3, agent="east", index=1)
    story = log.finish(3).explain(
        step("list"),
        step(
            "each",
            "list",
            agent="east",
            for_each="${{ [1, 2] }}",
            max_parallel=1,
            uses_resources={"gpu": 1},
        ),
        agents=[AgentSpec(name="east", uses="m:f", concurrency=1)],
        resources={"gpu": 2},
    )

    (wait,) = story.waits
    assert (wait.key, wait.seconds) == ("each[1]", 1)
    assert wait.limits == (
        "agent east takes 1 at a time",
        "each runs 1 item at a time",
        "it holds 1 of gpu (of 2)",
        "the run runs 4 units at a time",
    )
    path = story.critical_path
    assert path is not None
    assert [link.key for link in path.links] == ["list", "each[1]"]


def test_the_critical_path_goes_through_a_loop_s_iterations() -> None:
    loop = Step(
        id="polish",
        needs=("start",),
        steps={"draft": step("draft"), "review": step("review", "draft")},
        repeat=Repeat(until="${{ true }}", max_iterations=2),
    )
    log = Log().unit("start", 0, 1).add(IterationStarted, 1, step="polish", iteration=1)
    log.unit("draft#1", 1, 2).unit("review#1", 2, 3)
    log.add(IterationStarted, 3, step="polish", iteration=2)
    log.unit("draft#2", 3, 4).unit("review#2", 4, 6)
    log.add(LoopEnded, 6, step="polish", iterations=2, stopped="until")
    log.unit("end", 6, 7).finish(7)
    story = log.explain(step("start"), loop, step("end", "polish"))

    path = story.critical_path
    assert path is not None
    keys = [link.key for link in path.links]
    assert keys == ["start", "draft#1", "review#1", "draft#2", "review#2", "end"]
    assert path.seconds == 7
    polish = next(unit for unit in story.units if unit.key == "polish")
    assert (polish.iterations, polish.why, polish.waited) == (2, "2 iterations", None)


def test_time_by_agent_sums_each_attempt_and_the_usage_reported() -> None:
    log = Log().add(StepStarted, 0, step="a", agent="llm")
    log.add(
        StepAttemptFailed,
        1,
        step="a",
        attempt=1,
        error=BOOM,
        retry_at=T0 + 1,
        usage=Usage(tokens=5),
    )
    log.add(StepStarted, 1, step="a", attempt=2, agent="llm")
    log.add(StepSucceeded, 3, step="a", attempt=2, usage=Usage(tokens=10, cost=0.02))
    log.unit("b", 3, 3.5, agent="tool")
    log.add(CallRecorded, 3.5, step="b", name="turn-1", kind="turn", agent="helper", seconds=0.25)
    story = log.finish(3.5).explain(step("a", agent="llm"), step("b", "a", agent="tool"))

    rows = [(t.agent, t.calls, t.failures, t.busy, t.tokens, t.cost) for t in story.time_by_agent]
    assert rows == [
        ("llm", 2, 1, 3, 15, 0.02),
        ("tool", 1, 0, 0.5, 0, 0),
        ("helper", 1, 0, 0.25, 0, 0),
    ]
    assert (story.run.tokens, story.run.cost) == (15, 0.02)


# ---- the story as a whole ---------------------------------------------------------------------


def test_without_its_definition_a_run_still_tells_who_did_what() -> None:
    log = Log().unit("a", 0, 1).add(StepSkipped, 1, step="b", cause="trigger", reason="a failed")
    story = log.finish(1).explain()

    assert [unit.key for unit in story.units] == ["a", "b"]
    assert story.critical_path is None
    assert story.units[0].waited is None
    (branch,) = story.branches
    assert (branch.step, branch.outcome, branch.cause, branch.condition) == (
        "b",
        "skipped",
        "trigger",
        None,
    )


def test_the_json_form_has_stable_keys_and_is_plain_json() -> None:
    import json

    document = diamond().explain(*DIAMOND).as_json()

    assert list(document) == [
        "run",
        "units",
        "branches",
        "failures",
        "adaptations",
        "timeline",
        "critical_path",
        "time_by_agent",
        "waits",
    ]
    assert document["run"]["seconds"] == 5
    assert [link["key"] for link in document["critical_path"]["steps"]] == ["a", "c", "d"]
    assert json.loads(json.dumps(document)) == document


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "40ms"), (1.25, "1.25s"), (123.4, "2m03.4s")])
def test_durations_read_as_precisely_as_a_person_needs(seconds: float, text: str) -> None:
    assert took(seconds) == text
