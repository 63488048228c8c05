"""`open_store`: the one place a store URL (from the CLI, the config or the API) is read."""

from __future__ import annotations

from pathlib import Path

from podium.errors import StoreError
from podium.store.memory import MemoryStore
from podium.store.protocol import Store
from podium.store.sqlite import SqliteStore

_SQLITE = "sqlite:///"


def open_store(url: str) -> Store:
    """The store `url` names.

        :memory:                  a `MemoryStore`
        sqlite:///runs/podium.db  SQLite at a relative path (four slashes for an absolute one)
        runs/podium.db            the same: any other text is a SQLite path
        postgresql://…            not available yet

    Parent folders of a SQLite path are created. Raises `StoreError`.
    """
    if url == ":memory:":
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        raise StoreError("the Postgres store is not available yet")
    if "://" in url and not url.startswith(_SQLITE):
        raise StoreError(f"unknown store URL {url!r}: use :memory:, a file path or sqlite:///path")
    path = Path(url.removeprefix(_SQLITE))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create the folder for {path}: {error}") from error
    return SqliteStore(path)
