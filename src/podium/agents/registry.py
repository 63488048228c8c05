"""The catalogue of agents: who can do what, how busy each is, and how well it has done.

Routing by capability scores the agents that have the capability, room for another call
and a closed circuit, on their live figures (`podium.agents.routing`: latency, cost per
call, success rate, calls in flight), and picks the lowest score. The reason and every
candidate with its score are returned with the choice and recorded in `StepStarted`.
The figures are moving averages, so an agent that degrades loses its calls; one passed
over `PROBE_AFTER` times in a row gets a probe call, so that one that recovers wins them
back. The figures outlive the run in the store (`figures` / `load_figures`).

Which agents a circuit breaker has taken out is the adaptation controller's to say
(`podium.runtime.circuits`): `pick` asks it through `closed`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from podium.agents.protocol import Agent
from podium.agents.routing import Figures, best, score, why
from podium.model import Candidate, RoutingWeights

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


def _always(agent: str, now: float) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Routed:
    """A routing choice: the agent, the reason in words, and every candidate considered."""

    agent: Agent
    reason: str
    candidates: tuple[Candidate, ...]


class Registry:
    """Agents by name and by capability, with their live statistics."""

    def __init__(self, weights: RoutingWeights | None = None) -> None:
        self.agents: dict[str, Agent] = {}
        self.stats: dict[str, AgentStats] = {}
        self.weights = weights or RoutingWeights()
        self._by_capability: dict[str, list[Agent]] = {}
        # capability -> agent -> routed calls in a row it could have taken but did not get
        self._passed_over: dict[str, dict[str, int]] = {}

    def add(self, agent: Agent) -> None:
        self.agents[agent.name] = agent
        self.stats[agent.name] = AgentStats()
        for capability in sorted(agent.capabilities):
            self._by_capability.setdefault(capability, []).append(agent)

    def capable(self, capability: str) -> list[Agent]:
        return self._by_capability.get(capability, [])

    def has_room(self, agent: Agent) -> bool:
        return agent.concurrency is None or self.stats[agent.name].in_flight < agent.concurrency

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

    def pick(
        self, capability: str, now: float, *, closed: Callable[[str, float], bool] = _always
    ) -> Routed | None:
        """The agent to route a `capability` call to, why, and the candidates it beat.

        `closed` says whether an agent's circuit lets a call through now. None if no agent
        with the capability can take a call now.
        """
        open_: list[Agent] = []
        excluded: list[Candidate] = []
        for agent in self.capable(capability):
            if not self.has_room(agent):
                excluded.append(Candidate(agent=agent.name, excluded="no room"))
            elif not closed(agent.name, now):
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

    def started(self, agent: Agent) -> None:
        self.stats[agent.name].in_flight += 1

    def finished(self, agent: Agent, *, ok: bool, seconds: float, cost: float = 0.0) -> None:
        s = self.stats[agent.name]
        s.in_flight -= 1
        s.calls += 1
        s.failures += not ok
        s.success_rate = _moving(s.success_rate, float(ok))  # from a prior of 1.0
        if ok:  # a failure's time says little about how long the work takes
            s.latency = _moving(s.latency, seconds)
        if cost or s.cost is not None:
            s.cost = _moving(s.cost, cost)
