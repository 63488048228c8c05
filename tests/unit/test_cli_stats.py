"""Agent statistics folded from run logs, as `podium agents` shows them."""

from __future__ import annotations

import pytest

from podium.cli.stats import AgentStats, agent_stats
from podium.model import (
    ErrorInfo,
    Event,
    RunStarted,
    StepAttemptFailed,
    StepFailed,
    StepStarted,
    StepSucceeded,
)

BOOM = ErrorInfo(type="ValueError", message="boom")


def started(
    seq: int, at: float, step: str, agent: str, *, index: int | None = None, attempt: int = 1
) -> StepStarted:
    return StepStarted(seq=seq, at=at, step=step, agent=agent, index=index, attempt=attempt)


def test_calls_failures_latency_and_last_use_over_several_runs() -> None:
    first: list[Event] = [
        RunStarted(seq=0, at=0.0, run_id="r1", workflow="w", definition={}),
        started(1, 1.0, "a", "writer"),
        started(2, 1.0, "b", "checker", index=0),
        started(3, 1.5, "b", "checker", index=1),
        StepSucceeded(seq=4, at=3.0, step="a", output=1),
        StepSucceeded(seq=5, at=2.0, step="b", index=0),
        StepFailed(seq=6, at=2.5, step="b", index=1, attempt=1, error=BOOM),
    ]
    second: list[Event] = [
        started(1, 10.0, "a", "writer"),
        StepAttemptFailed(seq=2, at=11.0, step="a", attempt=1, error=BOOM, retry_at=12.0),
        started(3, 12.0, "a", "writer", attempt=2),
        StepSucceeded(seq=4, at=15.0, step="a", attempt=2),
        started(5, 20.0, "c", "writer"),  # still running: a call, not ended
        StepFailed(seq=6, at=21.0, step="d", attempt=1, error=BOOM),  # never started
    ]
    stats = agent_stats([first, second])
    assert list(stats) == ["writer", "checker"]
    writer = stats["writer"]
    assert (writer.calls, writer.succeeded, writer.failed) == (4, 2, 1)
    assert writer.success_rate == pytest.approx(2 / 3)
    assert writer.mean_latency == pytest.approx((2.0 + 1.0 + 3.0) / 3)
    assert writer.last_used == 20.0
    checker = stats["checker"]
    assert (checker.calls, checker.succeeded, checker.failed) == (2, 1, 1)
    assert checker.success_rate == 0.5
    assert checker.mean_latency == pytest.approx((1.0 + 1.0) / 2)
    assert checker.as_json() == {
        "calls": 2,
        "failures": 1,
        "success_rate": 0.5,
        "mean_latency": pytest.approx(1.0),
        "last_used": 1.5,
    }


def test_the_same_unit_in_two_runs_is_two_calls() -> None:
    run = [started(1, 1.0, "a", "x"), StepSucceeded(seq=2, at=2.0, step="a")]
    assert agent_stats([run, run])["x"].calls == 2


def test_no_runs_no_statistics() -> None:
    assert agent_stats([]) == {}
    empty = AgentStats()
    assert (empty.success_rate, empty.mean_latency, empty.last_used) == (None, None, None)
