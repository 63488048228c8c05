"""`podium events` describes every kind of event, not only the step basics."""

from __future__ import annotations

import pytest

from podium.cli.render import event_line
from podium.model import (
    ApprovalDecided,
    ApprovalRequested,
    CircuitChanged,
    CompensationEnded,
    CompensationStarted,
    ErrorInfo,
    Event,
    RunWaiting,
    StepFellBack,
    TimerStarted,
)

BOOM = ErrorInfo(type="ValueError", message="boom", step="s")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (RunWaiting(seq=1, at=0, waiting_for=["ok", "gate"]), "run_waiting          for ok, gate"),
        (TimerStarted(seq=1, at=0, step="nap", index=2, wake_at=0), "nap[2] until "),
        (
            ApprovalRequested(seq=1, at=0, step="ok", prompt="Ship 1.4?"),
            "approval_requested   ok: Ship 1.4?",
        ),
        (
            ApprovalDecided(
                seq=1, at=0, step="ok", approved=False, by="bo", decided_at=0, reason="freeze"
            ),
            "ok rejected by bo: freeze",
        ),
        (
            StepFellBack(seq=1, at=0, step="s", attempt=2, error=BOOM, to="backup"),
            "s to backup after ValueError: boom",
        ),
        (
            CircuitChanged(seq=1, at=0, agent="svc", state="open", reason="5 failures"),
            "svc open: 5 failures",
        ),
        (CompensationStarted(seq=1, at=0, step="charge", agent="refund"), "charge on refund"),
        (CompensationEnded(seq=1, at=0, step="charge", error=BOOM), "charge: ValueError: boom"),
    ],
)
def test_each_event_kind_says_what_matters(event: Event, expected: str) -> None:
    assert expected in event_line(event)
