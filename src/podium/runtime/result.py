"""What a finished (or waiting) run hands back to its caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podium.model import ErrorInfo, RunHistory, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """The outcome of `run_workflow` / `resume_run`, read back from the run's log."""

    run_id: str
    status: RunStatus
    output: Any
    error: ErrorInfo | None
    history: RunHistory

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
