"""Time, as the engine sees it: injectable so that tests can run a day of backoff in no time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall-clock time in epoch seconds, and a way to be called back later."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Run `callback` on the event loop once `now() >= when`."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once `now() >= when`."""
        ...


class SystemClock:
    """The real clock: `time.time()` and the running loop's timers."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        return asyncio.get_running_loop().call_later(max(0.0, when - time.time()), callback)

    async def sleep_until(self, when: float) -> None:
        # Sleep in slices: a wall clock that jumps (suspend, NTP) must not oversleep by hours.
        while (left := when - time.time()) > 0:  # noqa: ASYNC110 - waiting for time, not a flag
            await asyncio.sleep(min(left, 60.0))
