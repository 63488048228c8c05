"""The catalogue of agents: who can do what, how busy each is, and how well it has done.

Routing by capability picks, among the agents that have the capability, room for another
call and a closed circuit, the least loaded; ties go to the higher success rate, then the
lower latency, then the name (so that the choice is deterministic). The reason is returned
with the choice and recorded in the `StepStarted` event.

An agent with a circuit breaker is taken out of routing after too many failures within a
window; after a cool-down one call probes it. Every change of a circuit is returned to the
caller as a `CircuitChange`, which the engine records as an event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from podium.agents.protocol import Agent
from podium.model import CircuitPolicy

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


CircuitState = Literal["open", "half_open", "closed"]


@dataclass(frozen=True, slots=True)
class CircuitChange:
    agent: str
    state: CircuitState
    reason: str


@dataclass(slots=True)
class _Circuit:
    policy: CircuitPolicy
    failures: deque[float] = field(default_factory=lambda: deque())
    opened_at: float | None = None
    probing: bool = False


class Registry:
    """Agents by name and by capability, with their live statistics and circuits."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.stats: dict[str, AgentStats] = {}
        self._by_capability: dict[str, list[Agent]] = {}
        self._circuits: dict[str, _Circuit] = {}

    def add(self, agent: Agent, *, circuit: CircuitPolicy | None = None) -> None:
        self.agents[agent.name] = agent
        self.stats[agent.name] = AgentStats()
        if circuit is not None:
            self._circuits[agent.name] = _Circuit(circuit)
        for capability in sorted(agent.capabilities):
            self._by_capability.setdefault(capability, []).append(agent)

    def capable(self, capability: str) -> list[Agent]:
        return self._by_capability.get(capability, [])

    def has_room(self, agent: Agent) -> bool:
        return agent.concurrency is None or self.stats[agent.name].in_flight < agent.concurrency

    def closed(self, agent: Agent, now: float) -> bool:
        """Whether the agent's circuit lets a call through now (a probe counts)."""
        circuit = self._circuits.get(agent.name)
        if circuit is None or circuit.opened_at is None:
            return True
        return not circuit.probing and now >= circuit.opened_at + circuit.policy.cooldown

    def pick(self, capability: str, now: float) -> tuple[Agent, str] | None:
        """The agent to route a `capability` call to, and why; None if none can take it."""
        candidates = [
            a for a in self.capable(capability) if self.has_room(a) and self.closed(a, now)
        ]
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

    def started(self, agent: Agent) -> CircuitChange | None:
        self.stats[agent.name].in_flight += 1
        circuit = self._circuits.get(agent.name)
        if circuit is None or circuit.opened_at is None:
            return None
        circuit.probing = True
        return CircuitChange(agent.name, "half_open", "cool-down over: one call probes it")

    def finished(
        self, agent: Agent, *, ok: bool, seconds: float, now: float
    ) -> CircuitChange | None:
        s = self.stats[agent.name]
        s.in_flight -= 1
        s.calls += 1
        s.failures += not ok
        s.latency = (
            seconds if s.latency is None else s.latency + LATENCY_WEIGHT * (seconds - s.latency)
        )
        circuit = self._circuits.get(agent.name)
        return None if circuit is None else _trip(agent.name, circuit, ok=ok, now=now)


def _trip(name: str, circuit: _Circuit, *, ok: bool, now: float) -> CircuitChange | None:
    """Count a call's outcome against the circuit; the change of state it causes, if any."""
    policy = circuit.policy
    if circuit.probing:
        circuit.probing = False
        if ok:
            circuit.opened_at = None
            circuit.failures.clear()
            return CircuitChange(name, "closed", "the probe call succeeded")
        circuit.opened_at = now
        return CircuitChange(name, "open", f"the probe failed: out for {policy.cooldown:g}s")
    if ok:
        return None
    circuit.failures.append(now)
    while circuit.failures and circuit.failures[0] < now - policy.window:
        circuit.failures.popleft()
    if circuit.opened_at is None and len(circuit.failures) >= policy.failures:
        circuit.opened_at = now
        return CircuitChange(
            name,
            "open",
            f"{len(circuit.failures)} failures within {policy.window:g}s: "
            f"out of routing for {policy.cooldown:g}s",
        )
    return None
