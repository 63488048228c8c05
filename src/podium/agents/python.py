"""Agents that are Python callables, sync or async, found by import path or passed in."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from podium.agents.context import StepContext
from podium.errors import AgentError


class PythonAgent:
    """Calls a Python function: `with` mapping -> keyword arguments, else one positional.

    A parameter named `ctx` receives the `StepContext`. An async function runs on the loop;
    a sync one runs in a worker thread so that it never blocks the loop.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        capabilities: frozenset[str] = frozenset(),
        concurrency: int | None = None,
    ) -> None:
        self.name = name
        self.capabilities = capabilities
        self.concurrency = concurrency
        self._fn = fn
        # An object whose `__call__` is async is as async as a coroutine function.
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__
        )
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no signature
            self._signature = None
        params = self._signature.parameters if self._signature else {}
        self._wants_ctx = "ctx" in params

    async def call(self, payload: Any, ctx: StepContext) -> Any:
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        if payload is None:
            pass
        elif type(payload) is dict or isinstance(payload, Mapping):  # `type` first: fast path
            kwargs = dict(payload)
        else:
            args = (payload,)
        if self._wants_ctx:
            kwargs["ctx"] = ctx
        try:
            if self._is_async:
                return await self._fn(*args, **kwargs)
            return await asyncio.to_thread(self._fn, *args, **kwargs)
        except TypeError as exc:
            self._explain_mismatch(args, kwargs, exc)
            raise

    def _explain_mismatch(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], exc: TypeError
    ) -> None:
        """Turn a call that does not fit the function's parameters into a clear, final error."""
        if self._signature is None:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as mismatch:
            error = AgentError(
                f"`with` does not fit {getattr(self._fn, '__name__', type(self._fn).__name__)}"
                f"{self._signature}: {mismatch}"
            )
            error.retryable = False
            raise error from exc
