"""Every error podium raises on purpose, in one tree.

    PodiumError                   anything podium reports to a user; never a traceback
    ├── DefinitionError           the workflow text or object is wrong (exit code 2)
    │   └── CycleError            `needs` form a loop; `.cycle` names the steps
    ├── InputError                the run input (or a CLI argument) is wrong (exit code 2)
    ├── RunError                  a run could not do what was asked
    │   ├── StepFailed            a step failed for good; `.step`, `.cause`
    │   ├── ExpressionError       an expression failed on the run's data (missing key, bad type)
    │   ├── RunNotFound           no run with that id in the store
    │   ├── RunBusy               another process is executing that run right now
    │   └── StateError            a state write of the wrong kind, or outside its schema
    ├── AgentError                an agent call went wrong; `.retryable`
    │   ├── StepTimeout           an attempt ran past its `timeout`
    │   ├── DeadlineExceeded      a step's `deadline` passed (not retried)
    │   ├── OutputTooLarge        a result over `max_output_bytes` (not retried)
    │   ├── CircuitOpen           the agent's circuit breaker is open
    │   ├── OutputInvalid         a reply did not fit the agent's output schema (not retried)
    │   └── RateLimited           the endpoint said HTTP 429; `.retry_after`
    └── StoreError                the store could not read or write; backend errors are
                                  translated into this at the backend's boundary

A message names the file (with line and column), the step or the agent at fault, and what to
do about it. `str(error)` is the one line a user sees.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AgentError",
    "CircuitOpen",
    "CycleError",
    "DeadlineExceeded",
    "DefinitionError",
    "ExpressionError",
    "InputError",
    "Location",
    "OutputTooLarge",
    "PodiumError",
    "RateLimited",
    "RunBusy",
    "RunError",
    "RunNotFound",
    "StateError",
    "StepFailed",
    "StepTimeout",
    "StoreError",
]


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a definition file something stands (1-based line and column)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


class PodiumError(Exception):
    """The root of every error podium raises for a user to read."""


class DefinitionError(PodiumError):
    """The workflow definition is wrong; `problems` holds one line per mistake found."""

    def __init__(self, message: str, *, where: Location | None = None) -> None:
        self.where = where
        self.problems: tuple[str, ...] = (f"{where}: {message}" if where else message,)
        super().__init__(self.problems[0])

    @classmethod
    def collect(cls, problems: list[DefinitionError]) -> DefinitionError:
        """One error that reports every problem in `problems`, in order."""
        if len(problems) == 1:
            return problems[0]
        combined = cls(f"{len(problems)} problems")
        combined.problems = tuple(line for p in problems for line in p.problems)
        combined.args = ("\n".join(combined.problems),)
        return combined


class CycleError(DefinitionError):
    """The steps' `needs` form a cycle; `.cycle` lists it, first step repeated at the end."""

    def __init__(self, cycle: list[str], *, where: Location | None = None) -> None:
        self.cycle = tuple(cycle)
        super().__init__(f"steps form a cycle: {' -> '.join(cycle)}", where=where)


class InputError(PodiumError):
    """The run input or a command-line argument is not acceptable."""


class RunError(PodiumError):
    """A run could not do what was asked."""


class ExpressionError(RunError):
    """An expression could not be evaluated on the run's data; names the step and field."""


class RunNotFound(RunError):
    """The store has no run with this id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r} in this store (list them: podium runs)")


class RunBusy(RunError):
    """Another live process holds the run's lease."""

    def __init__(self, run_id: str, owner: str) -> None:
        self.run_id = run_id
        self.owner = owner
        super().__init__(f"run {run_id!r} is being executed by {owner}; wait for it or cancel it")


class StepFailed(RunError):
    """A step failed for good: its attempts are spent or its error is not retryable."""

    def __init__(self, step: str, cause: str) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"step {step!r} failed: {cause}")


class StateError(RunError):
    """A write to the run's state was refused: the wrong kind of value for the key's
    reducer, or a value outside the key's schema."""


class AgentError(PodiumError):
    """An agent call failed. `retryable` says whether another attempt may succeed."""

    retryable: bool = True


class StepTimeout(AgentError):
    """An attempt ran past the step's `timeout` and was cancelled."""


class DeadlineExceeded(AgentError):
    """The step's `deadline` (all attempts together) has passed."""

    retryable = False


class OutputTooLarge(AgentError):
    """An agent returned more than the workflow's `max_output_bytes`."""

    retryable = False


class CircuitOpen(AgentError):
    """The agent's circuit breaker is open: it failed too often and is cooling down."""


class OutputInvalid(AgentError):
    """The agent's reply did not fit its output schema, even after it was asked again."""

    retryable = False


class RateLimited(AgentError):
    """The agent's endpoint refused the call for now (HTTP 429): slow down and retry.

    `retry_after` is the wait the endpoint asked for, in seconds, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(PodiumError):
    """The store could not read or write."""


class ChildWaiting(Exception):
    """The child run waits for a person: the parent's unit waits with it, no failure.

    Whatever calls an agent on behalf of another (a pattern, a model's tool loop) lets it
    pass unchanged: the engine catches it at the unit and puts the run to wait.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"sub-workflow run {run_id} is waiting for a decision")
