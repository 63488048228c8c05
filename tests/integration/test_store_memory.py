"""The in-memory store against the store contract."""

from __future__ import annotations

from pathlib import Path

from podium.store import Store, open_store
from podium.store.memory import MemoryStore
from podium.testing import StoreContract


class TestMemoryStore(StoreContract):
    async def open_store(self, tmp_path: Path) -> Store:
        return MemoryStore()


def test_open_store_memory_url_gives_a_memory_store() -> None:
    assert isinstance(open_store(":memory:"), MemoryStore)
