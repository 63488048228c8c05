"""The controller's `circuit` policy: agents that fail too often are taken out of routing.

An agent with a `circuit` (failures, window, cooldown) opens after `failures` failed calls
within `window` seconds: no call goes to it (a step naming it fails the attempt with
`CircuitOpen`; routing by capability passes it over). After `cooldown` seconds one call
probes it (half open): success closes the circuit, failure opens it for another cooldown.
Every change is returned as a `CircuitChange`, which the engine records as `circuit_changed`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from podium.model import CircuitPolicy

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


class CircuitBreakers:
    """The circuits of the agents that declare one."""

    def __init__(self, policies: Mapping[str, CircuitPolicy]) -> None:
        self._circuits = {agent: _Circuit(policy) for agent, policy in policies.items()}

    def closed(self, agent: str, now: float) -> bool:
        """Whether the agent's circuit lets a call through now (a probe counts)."""
        circuit = self._circuits.get(agent)
        if circuit is None or circuit.opened_at is None:
            return True
        return not circuit.probing and now >= circuit.opened_at + circuit.policy.cooldown

    def started(self, agent: str) -> CircuitChange | None:
        """A call goes to `agent`: if its circuit was open, this call is the probe."""
        circuit = self._circuits.get(agent)
        if circuit is None or circuit.opened_at is None:
            return None
        circuit.probing = True
        return CircuitChange(agent, "half_open", "cool-down over: one call probes it")

    def finished(self, agent: str, *, ok: bool, now: float) -> CircuitChange | None:
        """Count a call's outcome against the circuit; the change of state it causes, if any."""
        circuit = self._circuits.get(agent)
        if circuit is None:
            return None
        policy = circuit.policy
        if circuit.probing:
            circuit.probing = False
            if ok:
                circuit.opened_at = None
                circuit.failures.clear()
                return CircuitChange(agent, "closed", "the probe call succeeded")
            circuit.opened_at = now
            return CircuitChange(agent, "open", f"the probe failed: out for {policy.cooldown:g}s")
        if ok:
            return None
        circuit.failures.append(now)
        while circuit.failures and circuit.failures[0] < now - policy.window:
            circuit.failures.popleft()
        if circuit.opened_at is None and len(circuit.failures) >= policy.failures:
            circuit.opened_at = now
            return CircuitChange(
                agent,
                "open",
                f"{len(circuit.failures)} failures within {policy.window:g}s: "
                f"out of routing for {policy.cooldown:g}s",
            )
        return None
