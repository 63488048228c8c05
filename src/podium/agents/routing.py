"""Choosing among the agents that have a capability: a score from their live figures.

Each candidate is compared with the best candidate on four figures, each as a ratio (1 for
the best), and the score is the weighted sum of their logarithms:

    score = latency_w     * ln(latency / fastest latency)
          + cost_w        * ln(cost per call / cheapest cost per call)
          + reliability_w * ln(best success rate / success rate)
          + load_w        * ln(1 + calls in flight)

Lower is better; 0 means the best on every figure and idle. Ratios make the figures
comparable whatever their units: with every weight 1, an agent twice as slow as the
fastest is as bad as one with a call in flight, or one that succeeds half as often. A
figure not known yet (an agent never called) counts as the best, so a new agent gets tried.
Ties go to the agent declared first. The weights are a workflow's `routing:`
(`RoutingWeights`), or one of its presets: `balanced`, `fast`, `cheap`, `reliable`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from podium.model import Candidate, RoutingWeights


@dataclass(frozen=True, slots=True)
class Figures:
    """What routing knows of one candidate when it chooses."""

    agent: str
    in_flight: int
    latency: float | None
    success_rate: float
    cost: float | None


def score(candidates: Sequence[Figures], weights: RoutingWeights) -> list[Candidate]:
    """Each candidate with its score, in the order given."""
    fastest = min((f.latency for f in candidates if f.latency), default=None)
    cheapest = min((f.cost for f in candidates if f.cost), default=None)
    surest = max(f.success_rate for f in candidates)
    scored: list[Candidate] = []
    for f in candidates:
        total = weights.load * math.log1p(f.in_flight)
        if f.latency and fastest:
            total += weights.latency * math.log(f.latency / fastest)
        if f.cost and cheapest:
            total += weights.cost * math.log(f.cost / cheapest)
        total += weights.reliability * math.log(surest / max(f.success_rate, 1e-6))
        scored.append(
            Candidate(
                agent=f.agent,
                score=round(total, 4),
                in_flight=f.in_flight,
                latency=f.latency,
                success_rate=round(f.success_rate, 4),
                cost=f.cost,
            )
        )
    return scored


def best(scored: Sequence[Candidate]) -> Candidate:
    """The lowest score; the first declared among equals."""
    return min(scored, key=lambda c: c.score if c.score is not None else math.inf)


def why(chosen: Candidate, scored: Sequence[Candidate], capability: str) -> str:
    """The choice in words, for `StepStarted.reason`."""
    if len(scored) == 1:
        return f"only agent with {capability} that could take it"
    others = sorted(
        (c for c in scored if c.agent != chosen.agent),
        key=lambda c: c.score if c.score is not None else math.inf,
    )
    runner_up = others[0]
    return (
        f"best score for {capability}: {chosen.score:g} against {runner_up.agent} "
        f"{runner_up.score:g} ({len(scored)} could take it)"
    )
