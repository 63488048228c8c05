"""Approval steps: asking a person, and turning the answer into the step's outcome.

A decision reaches the run as a signal in the store (`podium approve` writes it), so a
person can answer while the run executes elsewhere, or while it waits with no process at
all. The engine reads signals when it starts and while it runs; a decision becomes an
`ApprovalDecided` event followed by the step's success (approved) or failure (rejected).
Everything is keyed by the unit key, and a request already in the log is never repeated, so
resuming a waiting run asks nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from podium.errors import InputError, RunError
from podium.model import ApprovalDecided, ApprovalRequested, Event
from podium.scheduler import Unit

APPROVAL = "approval"  # the `kind` of an approval signal


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A person's answer to an approval, as carried by a signal."""

    key: str
    approved: bool
    by: str
    decided_at: float
    data: Any = None
    reason: str = ""

    def as_signal(self) -> dict[str, Any]:
        return {
            "kind": APPROVAL,
            "key": self.key,
            "approved": self.approved,
            "by": self.by,
            "decided_at": self.decided_at,
            "data": self.data,
            "reason": self.reason,
        }

    @classmethod
    def from_signal(cls, body: dict[str, Any]) -> Decision | None:
        if body.get("kind") != APPROVAL:
            return None
        return cls(
            key=str(body["key"]),
            approved=bool(body["approved"]),
            by=str(body.get("by", "")),
            decided_at=float(body.get("decided_at", 0.0)),
            data=body.get("data"),
            reason=str(body.get("reason", "")),
        )


class Approvals:
    """The approvals of one run: asked, awaited, and decided."""

    def __init__(self, history: Iterable[Event]) -> None:
        self.requested: dict[str, ApprovalRequested] = {}
        self.decided: set[str] = set()
        for event in history:
            if isinstance(event, ApprovalRequested):
                self.requested[event.key] = event
            elif isinstance(event, ApprovalDecided):
                self.decided.add(event.key)
        self.awaiting: dict[str, Unit] = {}
        self._signals_seen = 0
        self._ready: list[Decision] = []

    def await_decision(self, unit: Unit) -> None:
        self.awaiting[unit.key] = unit

    def take_signals(self, signals: list[dict[str, Any]]) -> None:
        """Note the decisions among signals not seen before (the list only ever grows)."""
        for body in signals[self._signals_seen :]:
            decision = Decision.from_signal(body)
            if decision is not None:
                self._ready.append(decision)
        self._signals_seen = len(signals)

    def next_deadline(self) -> float | None:
        """When the earliest awaited approval with a default decision times out."""
        if not self.awaiting:
            return None
        deadlines = [
            request.timeout_at
            for key in self.awaiting
            if (request := self.requested.get(key)) is not None
            and request.timeout_at is not None
            and request.default is not None
        ]
        return min(deadlines, default=None)

    def decisions_pending(self, now: float) -> bool:
        """Whether `decisions(now)` would hand out anything."""
        if not self.awaiting:  # the common case: a run with no approval in flight
            return False
        if any(d.key in self.awaiting and d.key not in self.decided for d in self._ready):
            return True
        deadline = self.next_deadline()
        return deadline is not None and deadline <= now

    def decisions(self, now: float) -> list[tuple[Unit, Decision]]:
        """Decisions that can be applied now: signalled ones, then timed-out defaults."""
        if not self.awaiting and not self._ready:
            return []
        found: list[tuple[Unit, Decision]] = []
        pending, self._ready = self._ready, []
        for decision in pending:
            unit = self.awaiting.get(decision.key)
            if decision.key in self.decided:
                continue
            if unit is None:  # decided before the step asked (or before this resume)
                self._ready.append(decision)
                continue
            found.append((unit, decision))
            self._settle(decision.key)
        for key, unit in list(self.awaiting.items()):
            request = self.requested.get(key)
            if request is None or request.default is None or request.timeout_at is None:
                continue
            if request.timeout_at <= now:
                found.append(
                    (
                        unit,
                        Decision(
                            key=key,
                            approved=request.default == "approve",
                            by="timeout",
                            decided_at=request.timeout_at,
                            reason=f"no decision within the timeout: default {request.default}",
                        ),
                    )
                )
                self._settle(key)
        return found

    def _settle(self, key: str) -> None:
        self.decided.add(key)
        self.awaiting.pop(key, None)


def check_decision(
    events: list[Event], key: str, data: Any, *, approved: bool
) -> ApprovalRequested:
    """The request a decision answers; raises a clear error if there is none to answer.

    The data of an approval is checked against the request's schema, so a bad answer is
    refused at the door rather than failing the run later; a rejection needs no data.
    """
    request: ApprovalRequested | None = None
    decided = False
    for event in events:
        if isinstance(event, ApprovalRequested) and event.key == key:
            request, decided = event, False
        elif isinstance(event, ApprovalDecided) and event.key == key:
            decided = True
    if request is None:
        asked = sorted({e.key for e in events if isinstance(e, ApprovalRequested)})
        hint = f"; it waits on: {', '.join(asked)}" if asked else ""
        raise RunError(f"step {key!r} of this run is not asking for approval{hint}")
    if decided:
        raise RunError(f"step {key!r} was already decided")
    if approved and request.schema is not None:
        import jsonschema

        problems = list(jsonschema.Draft202012Validator(request.schema).iter_errors(data))
        if problems:
            raise InputError(
                f"the data for {key!r} does not fit its schema: "
                + "; ".join(problem.message for problem in problems)
            )
    return request
