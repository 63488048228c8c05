"""Stores: where runs live. `open_store` picks a backend from a URL or path.

:memory:              in this process only, gone when it ends
path/to/podium.db     SQLite (the embedded default, WAL)
postgresql://…        PostgreSQL (the `postgres` extra), for processes on several machines
"""

from podium.store.open import open_store
from podium.store.protocol import RunSummary, Store

__all__ = ["RunSummary", "Store", "open_store"]
