"""Test helpers shipped with podium for people extending it (needs pytest and pytest-asyncio).

`StoreContract` is the conformance suite a `Store` backend must pass; `VirtualClock` makes
backoffs, sleeps and timeouts take no time.
"""

from podium.testing.chat_server import ChatRequest, ChatServer, Reply, ToolCall
from podium.testing.clock import VirtualClock
from podium.testing.store_contract import StoreContract

__all__ = ["ChatRequest", "ChatServer", "Reply", "StoreContract", "ToolCall", "VirtualClock"]
