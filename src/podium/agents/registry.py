"""The catalogue of agents: who can do what, how busy each is, and how well it has done.

Routing by capability picks, among the agents that have the capability and room for another
call, the least loaded; ties go to the higher success rate, then the lower latency, then the
name (so that the choice is deterministic). The reason is returned with the choice and
recorded in the `StepStarted` event.
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.agents.protocol import Agent

LATENCY_WEIGHT = 0.2  # weight of the newest call in the moving latency estimate


@dataclass(slots=True)
class AgentStats:
    """Live figures for one agent, kept by the registry from the calls it sees."""

    in_flight: int = 0
    calls: int = 0
    failures: int = 0
    latency: float | None = None  # exponentially weighted moving average, seconds

    @property
    def success_rate(self) -> float:
        return 1.0 if self.calls == 0 else 1.0 - self.failures / self.calls


class Registry:
    """Agents by name and by capability, with their live statistics."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.stats: dict[str, AgentStats] = {}
        self._by_capability: dict[str, list[Agent]] = {}

    def add(self, agent: Agent) -> None:
        self.agents[agent.name] = agent
        self.stats[agent.name] = AgentStats()
        for capability in sorted(agent.capabilities):
            self._by_capability.setdefault(capability, []).append(agent)

    def capable(self, capability: str) -> list[Agent]:
        return self._by_capability.get(capability, [])

    def has_room(self, agent: Agent) -> bool:
        return agent.concurrency is None or self.stats[agent.name].in_flight < agent.concurrency

    def pick(self, capability: str) -> tuple[Agent, str] | None:
        """The agent to route a `capability` call to, and why; None if all are busy."""
        candidates = [a for a in self.capable(capability) if self.has_room(a)]
        if not candidates:
            return None

        def rank(agent: Agent) -> tuple[int, float, float, str]:
            s = self.stats[agent.name]
            return (s.in_flight, -s.success_rate, s.latency or 0.0, agent.name)

        best = min(candidates, key=rank)
        total = len(self.capable(capability))
        if total == 1:
            return best, f"only agent with {capability}"
        s = self.stats[best.name]
        latency = "no calls yet" if s.latency is None else f"{s.latency * 1000:.0f}ms"
        limit = "" if best.concurrency is None else f"/{best.concurrency}"
        return best, (
            f"least loaded of {total} with {capability} (in flight {s.in_flight}{limit}, "
            f"success {s.success_rate:.0%}, latency {latency})"
        )

    def started(self, agent: Agent) -> None:
        self.stats[agent.name].in_flight += 1

    def finished(self, agent: Agent, *, ok: bool, seconds: float) -> None:
        s = self.stats[agent.name]
        s.in_flight -= 1
        s.calls += 1
        s.failures += not ok
        s.latency = (
            seconds if s.latency is None else s.latency + LATENCY_WEIGHT * (seconds - s.latency)
        )
