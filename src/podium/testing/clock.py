"""A clock for tests in which waiting takes no time.

Whenever the engine waits for a moment (a retry's backoff, a `sleep` step, an approval's
timeout), the virtual clock jumps to that moment at once, so a 24-hour sleep or a ten-minute
backoff runs in microseconds while every recorded timestamp still reads as if the time had
passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from podium.runtime.clock import Cancellable

__all__ = ["VirtualClock"]


class VirtualClock:
    """Starts at `start` (epoch seconds); moves only forward, and only when waited on."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass, as if the process had been busy (or asleep) that long."""
        self._now += seconds

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        def fire() -> None:
            self._now = max(self._now, when)
            callback()

        return asyncio.get_running_loop().call_soon(fire)

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(0)
        self._now = max(self._now, when)
