"""Test helpers shipped with podium for people extending it.

`ChatServer` is a scripted OpenAI-compatible model server on loopback (the demos use it
too); `VirtualClock` makes backoffs, sleeps and timeouts take no time; `StoreContract` is
the conformance suite a `Store` backend must pass. Only `StoreContract` needs pytest (and
pytest-asyncio): it is imported when first asked for, so the rest works without them.
"""

from typing import TYPE_CHECKING, Any

from podium.testing.chat_server import ChatRequest, ChatServer, Reply, ToolCall
from podium.testing.clock import VirtualClock

if TYPE_CHECKING:
    from podium.testing.store_contract import StoreContract

__all__ = ["ChatRequest", "ChatServer", "Reply", "StoreContract", "ToolCall", "VirtualClock"]


def __getattr__(name: str) -> Any:
    if name == "StoreContract":
        from podium.testing.store_contract import StoreContract

        return StoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
