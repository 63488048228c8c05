"""Forking a run: a new run that begins with another's history and goes its own way.

The new run's log is the parent's up to (not including) the first event of the step it is
forked at, with a new `RunStarted` that records where it came from and may carry a changed
input and set state keys (`sets`: each a `StateWritten` with `set`, the key taking the
value outright). It then continues like any resumed run: what completed before the fork
point is kept, the step and everything after it run again. The parent is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from podium.errors import InputError, RunError
from podium.model import Event, RunFinished, RunStarted, RunWaiting, StateWritten

UNCHANGED: Any = object()  # the input is the parent's


def fork_events(
    parent: list[Event],
    at: str,
    *,
    run_id: str,
    now: float,
    input: Any = UNCHANGED,
    sets: Mapping[str, Any] | None = None,
) -> list[Event]:
    """The log a fork of `parent` at step (or unit key) `at` begins with.

    Raises `RunError` if the run never reached `at`, `InputError` for a state key the
    workflow does not declare.
    """
    started = parent[0]
    if not isinstance(started, RunStarted):
        raise RunError("run has a damaged log: it does not begin with run_started")
    cut = next((i for i, event in enumerate(parent) if _concerns(event, at)), None)
    if cut is None:
        reached = sorted({step for e in parent if (step := getattr(e, "step", None))})
        known = f"; it reached: {', '.join(reached)}" if reached else ""
        raise RunError(f"run {started.run_id!r} never reached step {at!r}{known}")
    first = msgspec.structs.replace(
        started,
        run_id=run_id,
        at=now,
        input=started.input if input is UNCHANGED else input,
        forked_from=started.run_id,
        fork_at=at,
    )
    # A run's end (or pause) is not history to continue from: the fork decides its own.
    kept = [e for e in parent[1:cut] if not isinstance(e, RunFinished | RunWaiting)]
    forked = [first, *(msgspec.structs.replace(e, seq=seq) for seq, e in enumerate(kept, 1))]
    declared = started.definition.get("state") or {}
    for key, value in (sets or {}).items():
        if key not in declared:
            keys = ", ".join(sorted(declared)) or "none"
            raise InputError(f"--set state.{key}: the workflow has no state key {key!r} ({keys})")
        version = 1 + sum(isinstance(e, StateWritten) and e.key == key for e in kept)
        forked.append(
            StateWritten(
                seq=len(forked),
                at=now,
                key=key,
                step="fork",
                version=version,
                set=True,
                written=value,
            )
        )
    return forked


def _concerns(event: Event, at: str) -> bool:
    step = getattr(event, "step", None)
    if step is None:
        return False
    return step == at or getattr(event, "key", None) == at
