"""Test helpers shipped with podium for people extending it (needs pytest and pytest-asyncio).

`StoreContract` is the conformance suite a `Store` backend must pass.
"""

from podium.testing.store_contract import StoreContract

__all__ = ["StoreContract"]
