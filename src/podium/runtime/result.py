"""What a finished (or waiting) run hands back to its caller."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from podium.model import ErrorInfo, Event, RunFinished, RunHistory, RunStatus


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """The outcome of `run_workflow` / `resume_run`, read back from the run's log."""

    run_id: str
    status: RunStatus
    output: Any
    error: ErrorInfo | None
    events: Sequence[Event]  # the run's log

    @classmethod
    def of(cls, run_id: str, events: Sequence[Event]) -> RunResult:
        """The result that the log `events` records."""
        last = events[-1]
        status: RunStatus
        if isinstance(last, RunFinished):  # the outcome is the last word: no need to fold
            status, output, error = last.status, last.output, last.error
        else:
            history = RunHistory.fold(events)
            status, output, error = history.status, history.output, history.error
        return cls(run_id=run_id, status=status, output=output, error=error, events=events)

    @cached_property
    def history(self) -> RunHistory:
        """Every step's record, folded from the log when first asked for (a caller that only
        wants the outcome, like `podium run --json`, does not pay for it)."""
        return RunHistory.fold(self.events)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def as_json(self) -> dict[str, Any]:
        """The object `podium run --json` prints."""
        error = None
        if self.error is not None:
            error = {
                "step": self.error.step,
                "type": self.error.type,
                "message": self.error.message,
            }
        return {"run_id": self.run_id, "status": self.status, "output": self.output, "error": error}
