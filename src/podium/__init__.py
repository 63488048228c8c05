"""podium: a durable, observable orchestration engine for AI agents.

    wf = podium.Workflow.from_yaml("order.yaml")
    result = await wf.run({"order": {...}}, store="podium.db")

The engine, stores and CLI load on first use, so `import podium` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podium.errors import (
    AgentError,
    CycleError,
    DefinitionError,
    ExpressionError,
    InputError,
    PodiumError,
    RateLimited,
    RunBusy,
    RunError,
    RunNotFound,
    StepFailed,
    StepTimeout,
    StoreError,
)
from podium.model import (
    AgentSpec,
    Approval,
    ModelSpec,
    PatternSpec,
    Price,
    RetryPolicy,
    Step,
    Workflow,
)
from podium.model.workflow import agent

if TYPE_CHECKING:
    from podium.agents import StepContext
    from podium.runtime import (
        RunResult,
        approve,
        cancel_run,
        fork_run,
        read_result,
        resume_run,
        run_workflow,
    )

__all__ = [
    "AgentError",
    "AgentSpec",
    "Approval",
    "CycleError",
    "DefinitionError",
    "ExpressionError",
    "InputError",
    "ModelSpec",
    "PatternSpec",
    "PodiumError",
    "Price",
    "RateLimited",
    "RetryPolicy",
    "RunBusy",
    "RunError",
    "RunNotFound",
    "RunResult",
    "Step",
    "StepContext",
    "StepFailed",
    "StepTimeout",
    "StoreError",
    "Workflow",
    "agent",
    "approve",
    "cancel_run",
    "fork_run",
    "read_result",
    "resume_run",
    "run_workflow",
]

_LAZY = {
    "RunResult": "podium.runtime",
    "approve": "podium.runtime",
    "cancel_run": "podium.runtime",
    "fork_run": "podium.runtime",
    "read_result": "podium.runtime",
    "resume_run": "podium.runtime",
    "run_workflow": "podium.runtime",
    "StepContext": "podium.agents",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'podium' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
