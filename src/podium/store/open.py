"""`open_store`: the one place a store URL (from the CLI, the config or the API) is read."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from podium.errors import StoreError
from podium.store.memory import MemoryStore
from podium.store.protocol import Store
from podium.store.sqlite import SqliteStore

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_store(url: str) -> Store:
    """The store `url` names.

        :memory:                  a `MemoryStore`
        sqlite:///runs/podium.db  SQLite at a relative path (four slashes for an absolute one)
        runs/podium.db            the same: any other text is a SQLite path
        postgresql://user@host/db a `PostgresStore` (needs the `postgres` extra: psycopg)

    Parent folders of a SQLite path are created. Postgres is connected to on first use, not
    here. Raises `StoreError`.
    """
    if url == ":memory:":
        return MemoryStore()
    if url.startswith(_POSTGRES):
        # Imported here so that SQLite users never need psycopg installed.
        try:
            from podium.store.postgres import PostgresStore
        except ImportError as error:
            raise StoreError(
                f"{display_url(url)} needs psycopg: pip install 'podium[postgres]' ({error})"
            ) from error
        return PostgresStore(url)
    if "://" in url and not url.startswith(_SQLITE):
        raise StoreError(
            f"unknown store URL {display_url(url)!r}: "
            "use :memory:, a file path, sqlite:///path or postgresql://…"
        )
    path = Path(url.removeprefix(_SQLITE))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create the folder for {path}: {error}") from error
    return SqliteStore(path)


def display_url(url: str) -> str:
    """`url` fit to print or log: any password (in the user part or the query) is masked.

    Store URLs end up in error messages, in `run … started (db: …)` lines and in logs, none
    of which should carry a secret.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}"
        query = parts.query
        if "password" in query.lower():
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # a URL too broken to parse: show its scheme only, never the rest
        return url.partition("://")[0] + "://…"
