"""The agents benchmarks call: as cheap as a coroutine can be, so the engine's cost shows."""

from __future__ import annotations


async def noop() -> None:
    return None


async def noop_item(x: int) -> int:
    return x
