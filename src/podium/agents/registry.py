"""The catalogue of agents: who can do what, how busy each is, and how well it has done.

Routing by capability scores the agents that have the capability, room for another call
and a closed circuit, on their live figures (`podium.agents.routing`: latency, cost per
call, success rate, calls in flight), and picks the lowest score. The reason and every
candidate with its score are returned with the choice and recorded in `StepStarted`.
The figures are moving averages, so an agent that degrades loses its calls; one passed
over `PROBE_AFTER` times in a row gets a probe call, so that one that recovers wins them
back. The figures outlive the run in the store (`figures` / `load_figures`).

An agent with a circuit breaker is taken out of routing after too many failures within a
window; after a cool-down one call probes it. Every change of a circuit is returned to the
caller as a `CircuitChange`, which the engine records as an event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from podium.agents.protocol import Agent
from podium.agents.routing import Figures, best, score, why
from podium.model import Candidate, CircuitPolicy, RoutingWeights

NEWEST_WEIGHT = 0.2  # weight of the newest call in the moving averages
# An agent passed over this many times in a row gets one call, so that routing learns when
# an agent that did badly has recovered (its figures only change when it is called).
PROBE_AFTER = 10


def _moving(average: float | None, value: float) -> float:
    return value if average is None else average + NEWEST_WEIGHT * (value - average)


@dataclass(slots=True)
class AgentStats:
    """Live figures for one agent, kept by the registry from the calls it sees.

    `latency`, `success_rate` and `cost` are exponentially weighted moving averages (the
    newest call weighs `NEWEST_WEIGHT`), so they follow the agent as it changes.
    """

    in_flight: int = 0
    calls: int = 0
    failures: int = 0
    latency: float | None = None  # seconds
    success_rate: float = 1.0
    cost: float | None = None  # per call

    def saved(self) -> dict[str, Any]:
        """The figures that outlive a run (in flight does not)."""
        return {
            "calls": self.calls,
            "failures": self.failures,
            "latency": self.latency,
            "success_rate": self.success_rate,
            "cost": self.cost,
        }


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


@dataclass(frozen=True, slots=True)
class Routed:
    """A routing choice: the agent, the reason in words, and every candidate considered."""

    agent: Agent
    reason: str
    candidates: tuple[Candidate, ...]


class Registry:
    """Agents by name and by capability, with their live statistics and circuits."""

    def __init__(self, weights: RoutingWeights | None = None) -> None:
        self.agents: dict[str, Agent] = {}
        self.stats: dict[str, AgentStats] = {}
        self.weights = weights or RoutingWeights()
        self._by_capability: dict[str, list[Agent]] = {}
        self._circuits: dict[str, _Circuit] = {}
        # capability -> agent -> routed calls in a row it could have taken but did not get
        self._passed_over: dict[str, dict[str, int]] = {}

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

    def figures(self) -> dict[str, dict[str, Any]]:
        """Each agent's figures that outlive the run, for the store."""
        return {name: s.saved() for name, s in self.stats.items() if s.calls}

    def load_figures(self, saved: Mapping[str, Mapping[str, Any]]) -> None:
        """Start from figures an earlier run saved, for the agents this registry has."""
        for name, figures in saved.items():
            if name in self.stats:
                self.stats[name] = AgentStats(
                    calls=int(figures.get("calls") or 0),
                    failures=int(figures.get("failures") or 0),
                    latency=figures.get("latency"),
                    success_rate=float(figures.get("success_rate", 1.0)),
                    cost=figures.get("cost"),
                )

    def pick(self, capability: str, now: float) -> Routed | None:
        """The agent to route a `capability` call to, why, and the candidates it beat.

        None if no agent with the capability can take a call now.
        """
        open_: list[Agent] = []
        excluded: list[Candidate] = []
        for agent in self.capable(capability):
            if not self.has_room(agent):
                excluded.append(Candidate(agent=agent.name, excluded="no room"))
            elif not self.closed(agent, now):
                excluded.append(Candidate(agent=agent.name, excluded="circuit open"))
            else:
                open_.append(agent)
        if not open_:
            return None
        scored = score([self._figures(a.name) for a in open_], self.weights)
        chosen = best(scored)
        reason = why(chosen, scored, capability)
        passed_over = self._passed_over.setdefault(capability, {})
        stale = [c for c in scored if passed_over.get(c.agent, 0) >= PROBE_AFTER]
        if stale:  # its figures are old news: give it one call to learn how it does now
            chosen = stale[0]
            reason = (
                f"probe: passed over for the last {PROBE_AFTER} calls for {capability}, "
                f"so its figures may be stale (score {chosen.score:g})"
            )
        for candidate in scored:
            passed_over[candidate.agent] = (
                0 if candidate is chosen else passed_over.get(candidate.agent, 0) + 1
            )
        return Routed(
            agent=self.agents[chosen.agent], reason=reason, candidates=(*scored, *excluded)
        )

    def _figures(self, name: str) -> Figures:
        s = self.stats[name]
        return Figures(name, s.in_flight, s.latency, s.success_rate, s.cost)

    def started(self, agent: Agent) -> CircuitChange | None:
        self.stats[agent.name].in_flight += 1
        circuit = self._circuits.get(agent.name)
        if circuit is None or circuit.opened_at is None:
            return None
        circuit.probing = True
        return CircuitChange(agent.name, "half_open", "cool-down over: one call probes it")

    def finished(
        self, agent: Agent, *, ok: bool, seconds: float, now: float, cost: float = 0.0
    ) -> CircuitChange | None:
        s = self.stats[agent.name]
        s.in_flight -= 1
        s.calls += 1
        s.failures += not ok
        s.success_rate = _moving(s.success_rate, float(ok))  # from a prior of 1.0
        if ok:  # a failure's time says little about how long the work takes
            s.latency = _moving(s.latency, seconds)
        if cost or s.cost is not None:
            s.cost = _moving(s.cost, cost)
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
