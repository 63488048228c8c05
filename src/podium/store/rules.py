"""The rules every backend applies to a batch of events, written once so backends agree.

A run's log is gapless: seqs 0, 1, 2, … with no holes. A batch must continue the log exactly;
a batch starting at a seq already recorded means a second writer is executing the run, which
the lease should have prevented, so it is refused loudly rather than merged.
"""

from __future__ import annotations

from collections.abc import Sequence

from podium.errors import StoreError
from podium.model import Event, RunFinished, RunResumed, RunStarted, RunStatus, RunWaiting

FINISHED: tuple[RunStatus, ...] = ("succeeded", "failed", "cancelled")
"""Statuses a run does not leave unless it is resumed; a cancel request on one is moot."""


def check_seqs(run_id: str, events: Sequence[Event], next_seq: int) -> None:
    """Raise `StoreError` unless `events` carry seqs `next_seq`, `next_seq + 1`, …."""
    first = events[0].seq
    if first < next_seq:
        raise StoreError(
            f"run {run_id!r}: event seq {first} already recorded; is another process running it?"
        )
    for offset, event in enumerate(events):
        if event.seq != next_seq + offset:
            raise StoreError(
                f"run {run_id!r}: events must continue the log without gaps: "
                f"expected seq {next_seq + offset}, got {event.seq}"
            )


def status_after(events: Sequence[Event]) -> RunStatus | None:
    """The run's status once `events` are applied, or None if they do not change it."""
    # The last run event decides. Events are matched by exact type, not `isinstance`: a
    # msgspec class's metaclass makes every `isinstance` on it take the slow path, and this
    # runs on every batch.
    for event in reversed(events):
        if type(event) is RunFinished:
            return event.status
        status = _STATUS_BY_EVENT.get(type(event))
        if status is not None:
            return status
    return None


_STATUS_BY_EVENT: dict[type[Event], RunStatus] = {
    RunStarted: "running",
    RunResumed: "running",
    RunWaiting: "waiting",
}
