"""Loops: what the steps of an iteration see, and what happens when an iteration ends.

An iteration's steps read their siblings of the same iteration as `steps.<id>` and the
loop's progress as `loop` (`iteration`, the `outputs` of the iterations before, and the
`previous` one's). When an iteration ends, `until` is read with that iteration's results
(and its output as `output`): true ends the loop, false starts the next iteration, and
after `max_iterations` the loop ends as `on_max` says.
"""

from __future__ import annotations

from typing import Any

from podium.model import ErrorInfo, Event, IterationStarted, LoopEnded
from podium.runtime.prepare import PreparedStep
from podium.scheduler import ActiveRun
from podium.spec import truthy


class Loops:
    """The loop steps of one run, read from the scheduler's state."""

    def __init__(self, active: ActiveRun, scope: dict[str, Any]) -> None:
        self._active = active
        self._scope = scope  # the run's scope: input, steps, state

    def scope_for(self, step_id: str, body: tuple[str, ...], loop_id: str) -> dict[str, Any]:
        """The scope of a step of an iteration (`draft#2`): its siblings by their own ids."""
        number = int(step_id.rpartition("#")[2])
        return self._iteration_scope(loop_id, body, number)

    def _iteration_scope(self, loop_id: str, body: tuple[str, ...], number: int) -> dict[str, Any]:
        scope = self._active.scope
        steps = {**scope, **{step: scope[f"{step}#{number}"] for step in body}}
        outputs = [self._output(loop_id, body, n) for n in range(1, number)]
        loop = {
            "iteration": number,
            "outputs": outputs,
            "previous": outputs[-1] if outputs else None,
        }
        return {**self._scope, "steps": steps, "loop": loop}

    def _output(self, loop_id: str, body: tuple[str, ...], number: int) -> Any:
        """What iteration `number` gave: the step's output, or a group's outputs by step."""
        scope = self._active.scope
        if body == (loop_id,):
            return scope[f"{loop_id}#{number}"]["output"]
        return {step: scope[f"{step}#{number}"]["output"] for step in body}

    def after_iteration(self, prepared: PreparedStep, *, seq: int, now: float) -> Event:
        """The verdict when an iteration has ended: the next iteration, or the loop's end.

        Raises `ExpressionError` if `until` fails on the iteration's data.
        """
        loop = prepared.loop
        assert loop is not None
        step_id = prepared.step.id
        number = self._active.iteration(step_id)
        outputs = [self._output(step_id, loop.body, n) for n in range(1, number + 1)]
        scope = {**self._iteration_scope(step_id, loop.body, number), "output": outputs[-1]}
        if truthy(loop.until.render(scope)):
            return LoopEnded(
                seq=seq, at=now, step=step_id, iterations=number, stopped="until", output=outputs
            )
        repeat = loop.repeat
        if number < repeat.max_iterations:
            return IterationStarted(seq=seq, at=now, step=step_id, iteration=number + 1)
        error = None
        if repeat.on_max == "fail":
            error = ErrorInfo(
                type="LoopExhausted",
                message=f"repeat: until {repeat.until} was still false after "
                f"max_iterations ({repeat.max_iterations})",
                step=step_id,
            )
        return LoopEnded(
            seq=seq,
            at=now,
            step=step_id,
            iterations=number,
            stopped="max_iterations",
            output=outputs,
            error=error,
        )
