"""What an agent is told about the call it is making."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """Handed to a callable that has a parameter named `ctx`.

    `idempotency_key` is the same for every attempt of a unit and after a crash and resume:
    an agent with side effects can use it to do them at most once.
    """

    run_id: str
    step: str
    key: str
    index: int | None
    attempt: int
    agent: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.key}"
