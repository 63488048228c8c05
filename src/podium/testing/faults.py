"""A `Store` that fails on purpose, to prove that runs survive a store that misbehaves.

`FaultyStore` wraps any store and, on the calls that write a run's log (`create_run` and
`append`), injects the two failures a real backend can show:

- a *write failure*: the call raises `StoreError("injected write failure")` and nothing is
  written, as when the database refuses a transaction;
- a *lost acknowledgement*: the write is committed by the wrapped store, then the call
  raises `StoreError("injected lost acknowledgement")`, as when a connection drops after
  COMMIT but before its answer arrives. The caller believes the write failed; the log says
  otherwise, and whoever resumes the run must trust the log.

Reads, leases, cancels and signals pass through untouched, so the wrapped store can be
inspected (and the run resumed on it) as if nothing had happened. Faults are drawn from
`random.Random(seed)`, one draw per write call, so a seed replays the same sequence of faults
for the same sequence of calls:

    inner = MemoryStore()
    faulty = FaultyStore(inner, seed=7, write_failure_rate=0.1, lost_ack_rate=0.1)
    try:
        await podium.run_workflow(wf, store=faulty, run_id="r1")
    except podium.StoreError:
        await podium.resume_run("r1", store=inner, workflow=wf)
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from podium.errors import StoreError
from podium.model import Event, RunStarted
from podium.store.protocol import RunSummary, Store

__all__ = ["FaultyStore", "InjectedFault"]

InjectedFault = Literal["write_failure", "lost_ack"]
"""The kinds of fault `FaultyStore` injects; `FaultyStore.injected` lists them in order."""

WRITE_FAILURE_MESSAGE = "injected write failure"
LOST_ACK_MESSAGE = "injected lost acknowledgement"


class FaultyStore:
    """A `Store` around `inner` whose writes fail at random, reproducibly from `seed`.

    Each `create_run` or `append` call draws one number in [0, 1): below
    `write_failure_rate` the call raises `StoreError` without writing; below
    `write_failure_rate + lost_ack_rate` it writes through `inner` and then raises
    `StoreError`; otherwise it behaves exactly like `inner`. A call that `inner` itself
    refuses (an unknown run, a seq conflict) raises `inner`'s error, never an injected one.

    `injected` records every fault injected so far, and `writes` counts the write calls
    seen, so a test can tell whether a run met a fault at all.
    """

    def __init__(
        self,
        inner: Store,
        *,
        seed: int,
        write_failure_rate: float,
        lost_ack_rate: float,
    ) -> None:
        for name, rate in (
            ("write_failure_rate", write_failure_rate),
            ("lost_ack_rate", lost_ack_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate!r}")
        if write_failure_rate + lost_ack_rate > 1.0:
            raise ValueError(
                "write_failure_rate + lost_ack_rate must not exceed 1, not "
                f"{write_failure_rate + lost_ack_rate!r}"
            )
        self.inner = inner
        self.seed = seed
        self.write_failure_rate = write_failure_rate
        self.lost_ack_rate = lost_ack_rate
        self.injected: list[InjectedFault] = []
        self.writes = 0
        self._random = random.Random(seed)

    def _draw(self) -> InjectedFault | None:
        """The fault this write call meets, if any; exactly one draw per call."""
        self.writes += 1
        roll = self._random.random()
        if roll < self.write_failure_rate:
            return "write_failure"
        if roll < self.write_failure_rate + self.lost_ack_rate:
            return "lost_ack"
        return None

    # ---- writes: where the faults are ------------------------------------------------

    async def create_run(self, started: RunStarted) -> bool:
        fault = self._draw()
        if fault == "write_failure":
            self.injected.append(fault)
            raise StoreError(WRITE_FAILURE_MESSAGE)
        created = await self.inner.create_run(started)
        if fault == "lost_ack":
            self.injected.append(fault)
            raise StoreError(LOST_ACK_MESSAGE)
        return created

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        fault = self._draw()
        if fault == "write_failure":
            self.injected.append(fault)
            raise StoreError(WRITE_FAILURE_MESSAGE)
        await self.inner.append(run_id, events)
        if fault == "lost_ack":
            self.injected.append(fault)
            raise StoreError(LOST_ACK_MESSAGE)

    # ---- everything else passes through ------------------------------------------------

    async def load(self, run_id: str) -> list[Event]:
        return await self.inner.load(run_id)

    async def get_run(self, run_id: str) -> RunSummary:
        return await self.inner.get_run(run_id)

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        return await self.inner.list_runs(limit)

    async def acquire(self, run_id: str, owner: str, ttl: float, *, now: float) -> str | None:
        return await self.inner.acquire(run_id, owner, ttl, now=now)

    async def steal(
        self, run_id: str, owner: str, previous: str, ttl: float, *, now: float
    ) -> bool:
        return await self.inner.steal(run_id, owner, previous, ttl, now=now)

    async def release(self, run_id: str, owner: str) -> None:
        await self.inner.release(run_id, owner)

    async def request_cancel(self, run_id: str) -> None:
        await self.inner.request_cancel(run_id)

    async def cancel_requested(self, run_id: str) -> bool:
        return await self.inner.cancel_requested(run_id)

    async def send_signal(self, run_id: str, body: dict[str, Any]) -> None:
        await self.inner.send_signal(run_id, body)

    async def read_signals(self, run_id: str) -> list[dict[str, Any]]:
        return await self.inner.read_signals(run_id)

    async def load_agent_figures(self) -> dict[str, dict[str, Any]]:
        return await self.inner.load_agent_figures()

    async def save_agent_figures(self, figures: Mapping[str, Mapping[str, Any]]) -> None:
        await self.inner.save_agent_figures(figures)

    async def close(self) -> None:
        await self.inner.close()


def _check(store: FaultyStore) -> Store:
    """Let the type checker prove that `FaultyStore` keeps the `Store` protocol."""
    return store
