"""What the store knows about each agent: calls, failures, latency and last use.

`agent_stats` folds the event logs of runs into one `AgentStats` per agent name. A call is a
`StepStarted`; it ends with the `StepSucceeded`, `StepAttemptFailed` or `StepFailed` of the
same unit (step and index) and attempt, and the time between the two is its latency. A call
that has not ended (running, or cut short by a crash) counts as a call and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from podium.model import Event, StepAttemptFailed, StepFailed, StepStarted, StepSucceeded

__all__ = ["AgentStats", "agent_stats"]


@dataclass(slots=True)
class AgentStats:
    """The calls of one agent over the runs looked at."""

    calls: int = 0
    succeeded: int = 0
    failed: int = 0  # attempts that failed, retried or not
    latency_total: float = 0.0  # seconds, over the calls that ended
    last_used: float | None = None  # epoch seconds of the latest start

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed

    @property
    def success_rate(self) -> float | None:
        """Succeeded calls per ended call; None if none has ended."""
        return self.succeeded / self.ended if self.ended else None

    @property
    def mean_latency(self) -> float | None:
        """Mean seconds from start to end of the calls that ended; None if none has."""
        return self.latency_total / self.ended if self.ended else None

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failures": self.failed,
            "success_rate": self.success_rate,
            "mean_latency": self.mean_latency,
            "last_used": self.last_used,
        }


def agent_stats(runs: Iterable[Sequence[Event]]) -> dict[str, AgentStats]:
    """Statistics per agent name over the event logs in `runs`, in order of first call."""
    stats: dict[str, AgentStats] = {}
    for events in runs:
        open_calls: dict[tuple[str, int | None, int], tuple[AgentStats, float]] = {}
        for event in events:
            if isinstance(event, StepStarted):
                agent = stats.setdefault(event.agent, AgentStats())
                agent.calls += 1
                if agent.last_used is None or event.at > agent.last_used:
                    agent.last_used = event.at
                open_calls[(event.step, event.index, event.attempt)] = (agent, event.at)
            elif isinstance(event, StepSucceeded | StepAttemptFailed | StepFailed):
                call = open_calls.pop((event.step, event.index, event.attempt), None)
                if call is None:
                    continue  # ended without a start: it never reached an agent
                agent, started = call
                if isinstance(event, StepSucceeded):
                    agent.succeeded += 1
                else:
                    agent.failed += 1
                agent.latency_total += max(0.0, event.at - started)
    return stats
