"""The async driver: binds a workflow, executes runs under a lease, resumes them from the log."""

from podium.runtime.api import (
    approve,
    cancel_run,
    fork_run,
    read_result,
    resume_run,
    run_workflow,
)
from podium.runtime.clock import Clock, SystemClock
from podium.runtime.prepare import Prepared, prepare
from podium.runtime.result import RunResult

__all__ = [
    "Clock",
    "Prepared",
    "RunResult",
    "SystemClock",
    "approve",
    "cancel_run",
    "fork_run",
    "prepare",
    "read_result",
    "resume_run",
    "run_workflow",
]
