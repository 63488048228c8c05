"""Plain immutable data: the workflow, its steps and policies, and the events of a run.

No I/O and no asyncio here; every other package depends on this one, and it depends on none.
"""

from podium.model.events import (
    ErrorInfo,
    Event,
    RunFinished,
    RunResumed,
    RunStarted,
    RunStatus,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    decode_event,
    encode_event,
    step_key,
)
from podium.model.history import RunHistory, StepRecord, StepStatus
from podium.model.workflow import (
    AgentSpec,
    RetryPolicy,
    Step,
    Trigger,
    Workflow,
)

__all__ = [
    "AgentSpec",
    "ErrorInfo",
    "Event",
    "RetryPolicy",
    "RunFinished",
    "RunHistory",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "Step",
    "StepAttemptFailed",
    "StepExpanded",
    "StepFailed",
    "StepRecord",
    "StepSkipped",
    "StepStarted",
    "StepStatus",
    "StepSucceeded",
    "Trigger",
    "Workflow",
    "decode_event",
    "encode_event",
    "step_key",
]
