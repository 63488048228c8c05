"""The conformance suite every `Store` backend passes, shipped so third-party backends can too.

Subclass `StoreContract` in a test module (its name must start with `Test` for pytest to
collect it) and implement `open_store` to return a fresh, empty store; the suite closes it:

    class TestMyStore(StoreContract):
        async def open_store(self, tmp_path: Path) -> Store:
            return MyStore(tmp_path / "runs")

Every test then runs on that backend. The tests need pytest-asyncio in auto mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from podium.errors import RunNotFound, StoreError
from podium.model import (
    ApprovalDecided,
    ApprovalRequested,
    ErrorInfo,
    Event,
    RunFinished,
    RunResumed,
    RunStarted,
    RunWaiting,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    TimerStarted,
    Usage,
)
from podium.store.protocol import Store

__all__ = ["StoreContract", "every_event_after_start", "started"]

T0 = 1_700_000_000.0


def started(run_id: str = "run-1", *, at: float = T0, workflow: str = "wf") -> RunStarted:
    """A `RunStarted` (seq 0) with every field set."""
    return RunStarted(
        seq=0,
        at=at,
        run_id=run_id,
        workflow=workflow,
        definition={"name": workflow, "steps": [{"id": "a", "agent": "echo"}]},
        base_dir="/tmp/flows",
        input={"topic": "stores", "n": 3},
        max_parallel=4,
    )


def every_event_after_start(first_seq: int = 1, *, at: float = T0 + 1) -> list[Event]:
    """One event of every type but `RunStarted`, seqs from `first_seq`, every field set."""
    error = ErrorInfo(type="AgentError", message="rate limited", step="a")
    events: list[Event] = [
        StepExpanded(seq=0, at=0, step="fan", count=2),
        StepStarted(seq=0, at=0, step="fan", index=1, attempt=2, agent="echo", reason="cheap"),
        StepAttemptFailed(seq=0, at=0, step="a", index=0, attempt=1, error=error, retry_at=at),
        StepFailed(seq=0, at=0, step="a", attempt=3, error=error),
        StepSucceeded(
            seq=0,
            at=0,
            step="b",
            attempt=2,
            output={"k": [1, 2.5, None, True]},
            usage=Usage(tokens=1234, cost=0.0125),
        ),
        StepSkipped(seq=0, at=0, step="c", cause="condition", reason="its if was false"),
        RunFinished(seq=0, at=0, status="failed", output={"partial": 1}, error=error),
        RunResumed(seq=0, at=0, redrive=True),
        TimerStarted(seq=0, at=0, step="nap", wake_at=at + 600),
        ApprovalRequested(
            seq=0,
            at=0,
            step="ok",
            prompt="Ship it?",
            schema={"type": "object"},
            timeout_at=at + 60,
            default="reject",
        ),
        ApprovalDecided(
            seq=0, at=0, step="ok", approved=True, by="ana", decided_at=at, data={"n": 1}
        ),
        RunWaiting(seq=0, at=0, waiting_for=["ok"]),
    ]
    return [_place(event, first_seq + i, at + i) for i, event in enumerate(events)]


def _place(event: Event, seq: int, at: float) -> Event:
    return msgspec.structs.replace(event, seq=seq, at=at)


def _step(seq: int, step: str = "a") -> StepStarted:
    return StepStarted(seq=seq, at=T0 + seq, step=step, agent="echo")


class StoreContract:
    """What every `Store` promises. Subclasses implement `open_store`."""

    async def open_store(self, tmp_path: Path) -> Store:
        """A fresh, empty store of the backend under test; any files go under `tmp_path`."""
        raise NotImplementedError("subclass StoreContract and implement open_store()")

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = await self.open_store(tmp_path)
        try:
            yield store
        finally:
            await store.close()

    # -- creating runs -------------------------------------------------------------------

    async def test_create_run_records_seq_zero_and_a_running_summary(self, store: Store) -> None:
        first = started()
        assert await store.create_run(first) is True
        assert await store.load("run-1") == [first]
        summary = await store.get_run("run-1")
        assert (summary.run_id, summary.workflow, summary.status) == ("run-1", "wf", "running")
        assert (summary.created_at, summary.updated_at) == (T0, T0)
        assert (summary.owner, summary.lease_until, summary.cancel_requested) == (
            None,
            None,
            False,
        )

    async def test_duplicate_create_returns_false_and_changes_nothing(self, store: Store) -> None:
        await store.create_run(started())
        await store.append("run-1", [_step(1)])
        before = (await store.load("run-1"), await store.get_run("run-1"))

        assert await store.create_run(started(at=T0 + 50, workflow="other")) is False

        assert (await store.load("run-1"), await store.get_run("run-1")) == before

    async def test_create_run_refuses_a_first_event_that_is_not_seq_zero(
        self, store: Store
    ) -> None:
        with pytest.raises(StoreError):
            await store.create_run(msgspec.structs.replace(started(), seq=1))
        with pytest.raises(RunNotFound):
            await store.get_run("run-1")

    # -- the log -------------------------------------------------------------------------

    async def test_every_event_type_round_trips_exactly(self, store: Store) -> None:
        first = started()
        rest = every_event_after_start()
        await store.create_run(first)
        await store.append("run-1", rest)

        loaded = await store.load("run-1")

        assert loaded == [first, *rest]
        assert [type(e) for e in loaded] == [type(e) for e in [first, *rest]]

    async def test_seq_order_is_kept_across_appends(self, store: Store) -> None:
        await store.create_run(started())
        seq = 1
        for size in (1, 3, 5, 2):
            await store.append("run-1", [_step(seq + i, f"s{seq + i}") for i in range(size)])
            seq += size

        loaded = await store.load("run-1")

        assert [e.seq for e in loaded] == list(range(seq))
        assert [e.step for e in loaded[1:] if isinstance(e, StepStarted)] == [
            f"s{i}" for i in range(1, seq)
        ]

    async def test_empty_append_changes_nothing(self, store: Store) -> None:
        await store.create_run(started())
        await store.append("run-1", [])
        assert await store.load("run-1") == [started()]
        assert (await store.get_run("run-1")).updated_at == T0

    async def test_append_to_an_unknown_run_raises_run_not_found(self, store: Store) -> None:
        with pytest.raises(RunNotFound):
            await store.append("nope", [_step(1)])

    async def test_a_batch_with_a_recorded_seq_is_refused_whole(self, store: Store) -> None:
        await store.create_run(started())
        await store.append("run-1", [_step(1)])
        before = (await store.load("run-1"), await store.get_run("run-1"))
        clash = [
            StepSucceeded(seq=1, at=T0 + 10, step="a"),
            RunFinished(seq=2, at=T0 + 11, status="succeeded"),
        ]

        with pytest.raises(StoreError, match="seq 1 already recorded"):
            await store.append("run-1", clash)

        assert (await store.load("run-1"), await store.get_run("run-1")) == before

    async def test_a_batch_leaving_a_gap_is_refused(self, store: Store) -> None:
        await store.create_run(started())
        with pytest.raises(StoreError, match="expected seq 1, got 2"):
            await store.append("run-1", [_step(2)])
        with pytest.raises(StoreError, match="expected seq 2, got 3"):
            await store.append("run-1", [_step(1), _step(3)])
        assert await store.load("run-1") == [started()]

    async def test_status_follows_run_events(self, store: Store) -> None:
        await store.create_run(started())
        await store.append("run-1", [_step(1)])
        assert (await store.get_run("run-1")).status == "running"

        await store.append("run-1", [RunFinished(seq=2, at=T0 + 2, status="failed")])
        summary = await store.get_run("run-1")
        assert (summary.status, summary.updated_at) == ("failed", T0 + 2)

        await store.append("run-1", [RunResumed(seq=3, at=T0 + 3)])
        assert (await store.get_run("run-1")).status == "running"

        # Within a batch the last run event wins.
        await store.append(
            "run-1",
            [
                RunFinished(seq=4, at=T0 + 4, status="cancelled"),
                RunResumed(seq=5, at=T0 + 5),
                RunFinished(seq=6, at=T0 + 6, status="succeeded"),
                _step(7),
            ],
        )
        summary = await store.get_run("run-1")
        assert (summary.status, summary.updated_at) == ("succeeded", T0 + 7)

    async def test_a_run_waiting_for_a_person_is_listed_as_waiting(self, store: Store) -> None:
        await store.create_run(started())
        await store.append("run-1", [RunWaiting(seq=1, at=T0 + 1, waiting_for=["ok"])])
        assert (await store.get_run("run-1")).status == "waiting"
        await store.append("run-1", [RunResumed(seq=2, at=T0 + 2)])
        assert (await store.get_run("run-1")).status == "running"

    async def test_signals_are_kept_in_order_for_the_next_reader(self, store: Store) -> None:
        await store.create_run(started())
        assert await store.read_signals("run-1") == []
        await store.send_signal("run-1", {"step": "ok", "approved": True, "data": {"é": [1]}})
        await store.send_signal("run-1", {"step": "ok2", "approved": False})
        assert await store.read_signals("run-1") == [
            {"step": "ok", "approved": True, "data": {"é": [1]}},
            {"step": "ok2", "approved": False},
        ]
        assert await store.read_signals("run-1") == await store.read_signals("run-1")
        with pytest.raises(RunNotFound):
            await store.send_signal("nope", {})
        with pytest.raises(RunNotFound):
            await store.read_signals("nope")

    async def test_agent_figures_are_saved_over_and_kept_beside(self, store: Store) -> None:
        assert await store.load_agent_figures() == {}
        fast = {"calls": 3, "failures": 0, "latency": 0.04, "success_rate": 1.0, "cost": None}
        await store.save_agent_figures({"fast": fast, "slow-é": {"calls": 1, "latency": 2.5}})
        await store.save_agent_figures({"fast": {**fast, "calls": 4}})
        await store.save_agent_figures({})
        assert await store.load_agent_figures() == {
            "fast": {**fast, "calls": 4},
            "slow-é": {"calls": 1, "latency": 2.5},
        }

    async def test_large_and_unicode_payloads_survive(self, store: Store) -> None:
        run_id = "ran-é-世界-🎉"
        big = "x" * 1_000_000 + "é世界🎉\u0000\n\"'\\"
        first = started(run_id, workflow="flöw ✓")
        done = StepSucceeded(seq=1, at=T0 + 1, step="schritt-ß", output={"text": big, "ü": [big]})
        await store.create_run(first)
        await store.append(run_id, [done])

        assert await store.load(run_id) == [first, done]
        assert (await store.get_run(run_id)).workflow == "flöw ✓"

    # -- listing ---------------------------------------------------------------------------

    async def test_list_runs_is_newest_first_and_limited(self, store: Store) -> None:
        for run_id, at in [("b", 2.0), ("a", 1.0), ("d", 4.0), ("c", 3.0), ("d2", 4.0)]:
            await store.create_run(started(run_id, at=T0 + at))

        assert [r.run_id for r in await store.list_runs()] == ["d2", "d", "c", "b", "a"]
        assert [r.run_id for r in await store.list_runs(limit=2)] == ["d2", "d"]
        assert await store.list_runs(limit=0) == []

    async def test_list_runs_summaries_equal_get_run(self, store: Store) -> None:
        await store.create_run(started())
        await store.append("run-1", [RunFinished(seq=1, at=T0 + 1, status="succeeded")])
        assert await store.list_runs() == [await store.get_run("run-1")]

    async def test_list_runs_of_an_empty_store_is_empty(self, store: Store) -> None:
        assert await store.list_runs() == []

    # -- leases ----------------------------------------------------------------------------

    async def test_acquire_a_free_run_then_renew_it(self, store: Store) -> None:
        await store.create_run(started())

        assert await store.acquire("run-1", "p1", 30, now=T0) is None
        summary = await store.get_run("run-1")
        assert (summary.owner, summary.lease_until) == ("p1", T0 + 30)

        assert await store.acquire("run-1", "p1", 30, now=T0 + 20) is None
        assert (await store.get_run("run-1")).lease_until == T0 + 50

    async def test_acquire_is_refused_to_another_owner_until_the_lease_expires(
        self, store: Store
    ) -> None:
        await store.create_run(started())
        await store.acquire("run-1", "p1", 30, now=T0)

        assert await store.acquire("run-1", "p2", 30, now=T0 + 10) == "p1"
        assert await store.acquire("run-1", "p2", 30, now=T0 + 30) == "p1"  # not yet past
        assert (await store.get_run("run-1")).owner == "p1"

        assert await store.acquire("run-1", "p2", 30, now=T0 + 31) is None
        summary = await store.get_run("run-1")
        assert (summary.owner, summary.lease_until) == ("p2", T0 + 61)

    async def test_steal_only_from_the_named_previous_owner(self, store: Store) -> None:
        await store.create_run(started())
        assert await store.steal("run-1", "p2", "p1", 30, now=T0) is False  # nobody holds it
        await store.acquire("run-1", "p1", 30, now=T0)

        assert await store.steal("run-1", "p3", "p9", 30, now=T0 + 1) is False
        assert (await store.get_run("run-1")).owner == "p1"

        assert await store.steal("run-1", "p2", "p1", 30, now=T0 + 1) is True
        summary = await store.get_run("run-1")
        assert (summary.owner, summary.lease_until) == ("p2", T0 + 31)
        assert await store.steal("run-1", "p3", "p1", 30, now=T0 + 2) is False

    async def test_release_only_by_the_owner(self, store: Store) -> None:
        await store.create_run(started())
        await store.acquire("run-1", "p1", 30, now=T0)

        await store.release("run-1", "p2")
        assert (await store.get_run("run-1")).owner == "p1"

        await store.release("run-1", "p1")
        summary = await store.get_run("run-1")
        assert (summary.owner, summary.lease_until) == (None, None)
        assert await store.acquire("run-1", "p2", 30, now=T0 + 1) is None

    async def test_release_of_an_unknown_run_does_nothing(self, store: Store) -> None:
        await store.release("nope", "p1")

    # -- cancellation ----------------------------------------------------------------------

    async def test_cancel_request_round_trip(self, store: Store) -> None:
        await store.create_run(started())
        assert await store.cancel_requested("run-1") is False

        await store.request_cancel("run-1")

        assert await store.cancel_requested("run-1") is True
        assert (await store.get_run("run-1")).cancel_requested is True

    async def test_taking_a_lease_keeps_the_cancel_request_of_a_live_run(
        self, store: Store
    ) -> None:
        await store.create_run(started())
        await store.request_cancel("run-1")
        assert await store.acquire("run-1", "p1", 30, now=T0) is None
        assert await store.steal("run-1", "p2", "p1", 30, now=T0) is True
        assert await store.cancel_requested("run-1") is True

    async def test_taking_a_lease_clears_the_cancel_request_of_a_finished_run(
        self, store: Store
    ) -> None:
        await store.create_run(started())
        await store.append("run-1", [RunFinished(seq=1, at=T0 + 1, status="succeeded")])
        await store.request_cancel("run-1")
        assert await store.acquire("run-1", "p1", 30, now=T0) is None
        assert await store.cancel_requested("run-1") is False

        await store.request_cancel("run-1")
        assert await store.steal("run-1", "p2", "p1", 30, now=T0) is True
        assert await store.cancel_requested("run-1") is False

    # -- unknown runs ----------------------------------------------------------------------

    async def test_unknown_run_ids_raise_run_not_found(self, store: Store) -> None:
        await store.create_run(started())
        with pytest.raises(RunNotFound):
            await store.get_run("nope")
        with pytest.raises(RunNotFound):
            await store.load("nope")
        with pytest.raises(RunNotFound):
            await store.request_cancel("nope")
        with pytest.raises(RunNotFound):
            await store.cancel_requested("nope")
        with pytest.raises(RunNotFound):
            await store.acquire("nope", "p1", 30, now=T0)
        with pytest.raises(RunNotFound):
            await store.steal("nope", "p1", "p0", 30, now=T0)
