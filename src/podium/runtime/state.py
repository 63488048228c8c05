"""The run's shared state as the runtime keeps it: folded from the log, written by steps.

After a unit succeeds, its step's `writes` are evaluated (with `output` in scope) and each
becomes a `StateWritten` event, committed with the unit's success. The values here are the
fold of those events (see `podium.model.state`): replaying a log gives the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from podium.errors import StateError
from podium.model import Event, StateWritten
from podium.model.state import Order, StateFold
from podium.runtime.prepare import Prepared, PreparedStep
from podium.scheduler import ActiveRun, Unit


class SharedState:
    """The values of the run's state keys, and the writes of units that succeed."""

    def __init__(self, prepared: Prepared, active: ActiveRun, history: Sequence[Event]) -> None:
        self._state = prepared.state
        self._active = active
        self._fold = StateFold(self._state.initial, self._state.reducers)
        self.values = self._fold.values  # the `state` scope of expressions, kept current
        plan = prepared.plan
        self._position = {step_id: place for place, step_id in enumerate(plan.order)}
        self._body_position = {
            step.id: place for body in plan.bodies.values() for place, step in enumerate(body)
        }
        for event in history:
            if isinstance(event, StateWritten):
                self.apply(event)

    def apply(self, event: StateWritten) -> None:
        if event.set:
            self._fold.set(event.key, event.written)
        else:
            self._fold.write(event.key, event.order, event.written)

    def order(self, unit: Unit) -> Order:
        """Where `unit`'s writes fold in: its step's place in the plan, then iteration and item."""
        item = -1 if unit.index is None else unit.index
        loop = self._active.loop_of(unit.step)
        if loop is None:
            return (self._position[unit.step], 0, 0, item)
        base, _, iteration = unit.step.rpartition("#")
        return (self._position[loop], int(iteration), self._body_position[base], item)

    def writes(
        self,
        prepared: PreparedStep,
        unit: Unit,
        scope: dict[str, Any],
        *,
        next_seq: Callable[[], int],
        now: float,
    ) -> list[StateWritten]:
        """The writes of `unit`, folded in; raises `StateError` (or `ExpressionError`) and
        changes nothing if any of them is refused."""
        assert prepared.writes is not None
        written = {key: template.render(scope) for key, template in prepared.writes.items()}
        for key, value in written.items():  # check all before folding any
            try:
                new = self._state.reducers[key](self.values[key], value)
            except (TypeError, ValueError) as exc:
                raise StateError(f"writes.{key}: {exc}") from None
            check = self._state.checks.get(key)
            why = None if check is None else check(new)
            if why is not None:
                raise StateError(f"writes.{key}: the new value does not meet its schema: {why}")
        order = self.order(unit)
        events: list[StateWritten] = []
        for key in sorted(written):
            value = self._fold.write(key, order, written[key])
            name = self._state.names[key]
            events.append(
                StateWritten(
                    seq=next_seq(),
                    at=now,
                    key=key,
                    step=unit.step,
                    index=unit.index,
                    version=self._fold.version(key),
                    order=order,
                    reducer=name,
                    written=written[key],
                    value=None if ":" not in name else value,
                )
            )
        return events

    def set(self, key: str, value: Any) -> None:
        self._fold.set(key, value)
