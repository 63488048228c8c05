"""The one small protocol every store backend keeps.

A store holds, per run, an append-only log of events numbered from 0, plus a projection of
each run's status for listing (`RunSummary`). The projection is updated in the same
transaction as the events that change it, so the two never disagree.

Leases make sure one process at a time executes a run: `acquire` succeeds when the run has no
owner, the caller already owns it, or the owner's lease has expired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from podium.model import Event, RunStarted, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """A run as listed: the projection of its log kept beside it."""

    run_id: str
    workflow: str
    status: RunStatus
    created_at: float
    updated_at: float
    owner: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False


class Store(Protocol):
    """Where runs live. Every method may raise `StoreError`; none returns partial writes."""

    async def create_run(self, started: RunStarted) -> bool:
        """Record a new run whose first event is `started` (seq 0).

        Returns False, writing nothing, if a run with that id already exists: this is what
        makes starting a run idempotent, also between processes racing for the same id.
        """
        ...

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        """Commit `events` (consecutive seqs, following the last) in one transaction."""
        ...

    async def load(self, run_id: str) -> list[Event]:
        """Every event of the run, in seq order; raises `RunNotFound`."""
        ...

    async def get_run(self, run_id: str) -> RunSummary:
        """The run's summary; raises `RunNotFound`."""
        ...

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """The most recently created runs first."""
        ...

    async def acquire(self, run_id: str, owner: str, ttl: float, *, now: float) -> str | None:
        """Take or renew the run's lease until `now + ttl`.

        Returns None on success, else the current owner. Taking a lease clears any pending
        cancel request only if the run is finished (a finished run cannot be cancelled).
        """
        ...

    async def steal(
        self, run_id: str, owner: str, previous: str, ttl: float, *, now: float
    ) -> bool:
        """Take the lease from `previous` (known dead) if it still holds it; True on success."""
        ...

    async def release(self, run_id: str, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        ...

    async def request_cancel(self, run_id: str) -> None:
        """Ask whoever executes the run to cancel it; raises `RunNotFound`."""
        ...

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancel was requested and not cleared since; raises `RunNotFound`.

        The executing process polls this between steps to stop a run another process cancelled.
        """
        ...

    async def send_signal(self, run_id: str, body: dict[str, Any]) -> None:
        """Leave a message for whoever executes the run, now or on its next resume.

        Approval decisions travel this way, so a person can decide while the run is
        executing elsewhere or while it waits with no process at all. Raises `RunNotFound`.
        """
        ...

    async def read_signals(self, run_id: str) -> list[dict[str, Any]]:
        """Every message sent to the run, oldest first; raises `RunNotFound`."""
        ...

    async def load_agent_figures(self) -> dict[str, dict[str, Any]]:
        """Each agent's figures as last saved (latency, success rate, cost per call, ...).

        Routing starts from them, so what one run learnt about an agent the next one knows.
        """
        ...

    async def save_agent_figures(self, figures: Mapping[str, Mapping[str, Any]]) -> None:
        """Save these agents' figures over what was saved for them (others are kept)."""
        ...

    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...
