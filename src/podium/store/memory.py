"""The in-process store (`:memory:`): runs live in dicts and lists and die with the process.

It is what tests and benchmarks run on, so an append is a dict lookup, a seq check and a list
extend: a few microseconds, no encoding. Events are frozen structs, so they are kept as given
and `load` hands out a copy of the list, never the list itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podium.errors import RunNotFound
from podium.model import Event, RunStarted, RunStatus
from podium.store.protocol import RunSummary
from podium.store.rules import FINISHED, check_seqs, status_after


@dataclass(slots=True, kw_only=True)
class _Run:
    """One run's log and the mutable projection `RunSummary` is made from."""

    run_id: str
    workflow: str
    status: RunStatus
    created_at: float
    updated_at: float
    owner: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False
    events: list[Event] = field(default_factory=lambda: [])
    signals: list[dict[str, Any]] = field(default_factory=lambda: [])

    def summary(self) -> RunSummary:
        return RunSummary(
            run_id=self.run_id,
            workflow=self.workflow,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            owner=self.owner,
            lease_until=self.lease_until,
            cancel_requested=self.cancel_requested,
        )

    def take_lease(self, owner: str, ttl: float, now: float) -> None:
        self.owner = owner
        self.lease_until = now + ttl
        if self.status in FINISHED:
            self.cancel_requested = False


class MemoryStore:
    """A `Store` held in this process's memory; nothing outlives the process."""

    def __init__(self) -> None:
        # Insertion order is creation order, which `list_runs` relies on for ties.
        self._runs: dict[str, _Run] = {}
        self._figures: dict[str, dict[str, Any]] = {}

    def _run(self, run_id: str) -> _Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    async def create_run(self, started: RunStarted) -> bool:
        if started.run_id in self._runs:
            return False
        check_seqs(started.run_id, [started], 0)
        self._runs[started.run_id] = _Run(
            run_id=started.run_id,
            workflow=started.workflow,
            status="running",
            created_at=started.at,
            updated_at=started.at,
            events=[started],
        )
        return True

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return
        run = self._run(run_id)
        check_seqs(run_id, events, len(run.events))
        run.events.extend(events)
        run.status = status_after(events) or run.status
        run.updated_at = events[-1].at

    async def load(self, run_id: str) -> list[Event]:
        return list(self._run(run_id).events)

    async def get_run(self, run_id: str) -> RunSummary:
        return self._run(run_id).summary()

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        # Stable sort of the reversed creation order: among equal `created_at`, newest first.
        runs = sorted(reversed(self._runs.values()), key=lambda r: r.created_at, reverse=True)
        return [run.summary() for run in runs[: max(limit, 0)]]

    async def acquire(self, run_id: str, owner: str, ttl: float, *, now: float) -> str | None:
        run = self._run(run_id)
        if (
            run.owner is not None
            and run.owner != owner
            and not (run.lease_until is not None and run.lease_until < now)
        ):
            return run.owner
        run.take_lease(owner, ttl, now)
        return None

    async def steal(
        self, run_id: str, owner: str, previous: str, ttl: float, *, now: float
    ) -> bool:
        run = self._run(run_id)
        if run.owner != previous:
            return False
        run.take_lease(owner, ttl, now)
        return True

    async def release(self, run_id: str, owner: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.owner == owner:
            run.owner = None
            run.lease_until = None

    async def request_cancel(self, run_id: str) -> None:
        self._run(run_id).cancel_requested = True

    async def cancel_requested(self, run_id: str) -> bool:
        return self._run(run_id).cancel_requested

    async def send_signal(self, run_id: str, body: dict[str, Any]) -> None:
        self._run(run_id).signals.append(dict(body))

    async def read_signals(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(body) for body in self._run(run_id).signals]

    async def load_agent_figures(self) -> dict[str, dict[str, Any]]:
        return {name: dict(figures) for name, figures in self._figures.items()}

    async def save_agent_figures(self, figures: Mapping[str, Mapping[str, Any]]) -> None:
        self._figures.update({name: dict(f) for name, f in figures.items()})

    async def close(self) -> None:
        """Nothing to release: the runs go when the store is garbage collected."""
