"""The adaptation controller: small policies that change how a run goes on, and say why.

Each policy watches one kind of feedback and returns `Change`s, which the engine applies
and records as `Adapted` events (policy, subject, setting, old -> new, reason):

- `RateLimitPolicy` (`rate_limit`): an endpoint answering HTTP 429 gets fewer calls at
  once — halved, at most once per round of calls (those started before the cut do not cut
  again) — then one more each time as many calls succeed as the limit allows (additive
  increase, multiplicative decrease), up to where it was.
- `ReroutePolicy` (`reroute`): routing's scores move all the time; this policy records
  when the agent they prefer for a capability (on its figures, load aside) changes, and
  when it changes back, with the figures that made it.
- `CircuitBreakers` (`podium.runtime.circuits`, an agent's `circuit:`): an agent failing
  too often is taken out of routing, then probed after a cool-down.
- `DeadlinePolicy` (`deadline`): once the work left (its critical path, or all of it
  spread over the slots, whichever is longer) no longer fits before the run's `deadline`,
  the run gets twice the parallelism and routing starts preferring fast agents.

A workflow turns a policy off with `adapt: {rate_limit: false}`. Policies keep their own
state; nothing here does I/O or reads a clock. `Controller` is what the engine talks to:
it admits units (resources, rate limits, throttles: `podium.runtime.admission`) and hands
each piece of feedback to the policies that want it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from podium.agents.routing import Figures, score
from podium.errors import RateLimited
from podium.model import Candidate, RoutingWeights, Workflow
from podium.runtime.admission import Admission
from podium.runtime.circuits import CircuitBreakers, CircuitChange


@dataclass(frozen=True, slots=True)
class Change:
    """What a policy changed: becomes an `Adapted` event."""

    policy: str
    subject: str
    setting: str
    old: Any
    new: Any
    reason: str


@dataclass(slots=True)
class RateLimitPolicy:
    """AIMD on an endpoint's concurrency, driven by 429 answers and successes."""

    admission: Admission
    _cut_at: dict[str, float] = field(default_factory=lambda: {})
    _credit: dict[str, float] = field(default_factory=lambda: {})

    def after_call(
        self, endpoint: str, *, rate_limited: bool, started: float, now: float, ceiling: int | None
    ) -> Change | None:
        throttle = self.admission.throttles.get(endpoint)
        if rate_limited:
            if started < self._cut_at.get(endpoint, -math.inf):
                return None  # it was sent before the last cut: that cut answered it
            in_flight = self.admission.in_flight(endpoint) + 1  # this call counts
            old = int(throttle.limit) if throttle is not None else (ceiling or in_flight)
            new = max(1, old // 2)
            top = throttle.ceiling if throttle is not None else float(max(old, 1))
            self.admission.throttle(endpoint, float(new), top)
            self._cut_at[endpoint] = now
            self._credit[endpoint] = 0.0
            if new == old:
                return None
            return Change(
                "rate_limit",
                endpoint,
                "concurrency",
                old,
                new,
                f"HTTP 429 (rate limited): calls at once halved, {old} -> {new}",
            )
        if throttle is None or throttle.limit >= throttle.ceiling:
            return None
        # One more call at once for each full round of successes at the current limit.
        credit = self._credit.get(endpoint, 0.0) + 1.0
        if credit < throttle.limit:
            self._credit[endpoint] = credit
            return None
        self._credit[endpoint] = 0.0
        old = int(throttle.limit)
        self.admission.throttle(endpoint, throttle.limit + 1.0, throttle.ceiling)
        return Change(
            "rate_limit",
            endpoint,
            "concurrency",
            old,
            old + 1,
            f"{old} calls in a row succeeded: one more at once, {old} -> {old + 1}",
        )


@dataclass(slots=True)
class ReroutePolicy:
    """Notes when the agent routing prefers for a capability changes, and why."""

    weights: RoutingWeights
    _preferred: dict[str, Candidate] = field(default_factory=lambda: {})

    def after_route(self, capability: str, candidates: Sequence[Candidate]) -> Change | None:
        scored = [c for c in candidates if not c.excluded]
        if len(scored) < 2:
            return None
        # Load aside: which agent's own figures are best, not which one is idle.
        idle = [Figures(c.agent, 0, c.latency, c.success_rate, c.cost) for c in scored]
        ranked = score(idle, replace(self.weights, load=0.0))
        best = min(ranked, key=lambda c: c.score if c.score is not None else math.inf)
        before = self._preferred.get(capability)
        self._preferred[capability] = best
        if before is None or before.agent == best.agent:
            return None
        was = next((c for c in ranked if c.agent == before.agent), before)
        return Change(
            "reroute",
            f"capability:{capability}",
            "preferred agent",
            before.agent,
            best.agent,
            f"{best.agent} now scores {best.score:g} ({_figures(best)}) against "
            f"{was.agent} {was.score:g} ({_figures(was)})",
        )


@dataclass(slots=True)
class DeadlinePolicy:
    """Speeds a run up, once, when what is left of it will not fit before its deadline."""

    fired: bool = False

    def check(
        self, *, left: float, to_deadline: float, max_parallel: int | None, fast: bool
    ) -> list[Change]:
        if self.fired or left <= to_deadline:
            return []
        self.fired = True
        why = f"{left:.3g}s of work left and {max(to_deadline, 0.0):.3g}s to the deadline"
        changes: list[Change] = []
        if max_parallel is not None:
            changes.append(
                Change(
                    "deadline",
                    "run",
                    "max_parallel",
                    max_parallel,
                    max_parallel * 2,
                    f"{why}: twice as many at once",
                )
            )
        if not fast:
            changes.append(
                Change("deadline", "run", "routing", "as declared", "fast", f"{why}: fast agents")
            )
        return changes


def _figures(c: Candidate) -> str:
    latency = "latency unknown" if c.latency is None else f"{c.latency * 1000:.0f}ms"
    cost = "" if c.cost is None else f", {c.cost:.4f}/call"
    return f"{latency}, {c.success_rate:.0%} success{cost}"


class Controller:
    """Admission of units and the workflow's adaptation policies, for one run."""

    def __init__(self, workflow: Workflow) -> None:
        self.admission = Admission(workflow.resources)
        self._endpoint = {name: spec.endpoint for name, spec in workflow.agents.items()}
        self._ceiling = {name: spec.concurrency for name, spec in workflow.agents.items()}
        # The bucket a call takes from: the agent's own rate limit, else its endpoint's.
        self._bucket: dict[str, str] = {}
        for name, spec in workflow.agents.items():
            if spec.rate_limit is not None:
                self._bucket[name] = f"agent:{name}"
                self.admission.add_limit(f"agent:{name}", spec.rate_limit)
            elif spec.model is not None and spec.model.rate_limit is not None:
                self._bucket[name] = spec.endpoint
                self.admission.add_limit(spec.endpoint, spec.model.rate_limit)
        self._circuits = CircuitBreakers(
            {name: spec.circuit for name, spec in workflow.agents.items() if spec.circuit}
        )
        adapt = workflow.adaptation
        self._rate = RateLimitPolicy(self.admission) if adapt.rate_limit else None
        self._reroute = ReroutePolicy(workflow.routing) if adapt.reroute else None
        self.deadline = DeadlinePolicy() if adapt.deadline else None

    def endpoint(self, agent: str) -> str:
        return self._endpoint.get(agent, f"agent:{agent}")

    def closed(self, agent: str, now: float) -> bool:
        """Whether `agent`'s circuit lets a call through now."""
        return self._circuits.closed(agent, now)

    def started(self, agent: str) -> CircuitChange | None:
        """A call goes to `agent`: the circuit change it makes (a probe of an open one)."""
        return self._circuits.started(agent)

    def admit(
        self, key: str, agent: str, needs: Mapping[str, int] | None, now: float
    ) -> str | None:
        """Start unit `key` on `agent` holding `needs`: None, or the token to wait on."""
        bucket = self._bucket.get(agent)
        return self.admission.admit(key, self.endpoint(agent), needs, now, bucket=bucket)

    def after_route(self, capability: str, candidates: Sequence[Candidate]) -> list[Change]:
        if self._reroute is None:
            return []
        change = self._reroute.after_route(capability, candidates)
        return [] if change is None else [change]

    def after_call(
        self,
        key: str,
        agent: str,
        error: BaseException | None,
        *,
        started: float,
        tokens: int,
        now: float,
    ) -> tuple[list[str], list[Change | CircuitChange]]:
        """A unit ended: the tokens that may go again, and what the policies changed.

        `error` None is a success; a child run that waits for a person counts as one too.
        """
        freed = self.admission.released(key, tokens, now)
        changes: list[Change | CircuitChange] = []
        circuit = self._circuits.finished(agent, ok=error is None, now=now)
        if circuit is not None:
            changes.append(circuit)
        if self._rate is not None:
            change = self._rate.after_call(
                self.endpoint(agent),
                rate_limited=isinstance(error, RateLimited),
                started=started,
                now=now,
                ceiling=self._ceiling.get(agent),
            )
            if change is not None:
                changes.append(change)
        return freed, changes

    def next_due(self, now: float) -> float | None:
        return self.admission.next_refill(now)

    def refilled(self, now: float) -> list[str]:
        return self.admission.refilled(now)
