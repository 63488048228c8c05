"""The checks of shared state, groups and loops: who may read and write what, and when.

A step may read `steps.X` only if X will have run: X is upstream of it. Inside a group,
the group's own steps are read as they are in the current iteration, and steps outside as
the group step reads them. Two steps that may run at the same time must not both write a
`replace` key: which write wins would depend on timing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from podium.errors import DefinitionError, Location
from podium.model.state import BUILTIN_REDUCERS
from podium.model.workflow import RetryPolicy, Step, Workflow
from podium.spec.expressions import Template
from podium.spec.paths import Key
from podium.spec.schema import suggest

__all__ = [
    "Ancestry",
    "Place",
    "group_problems",
    "repeat_problems",
    "scope_problems",
    "state_problems",
    "step_path",
]

_DEFAULT_RETRY = RetryPolicy()


def step_path(step: Step, within: Step | None) -> tuple[Key, ...]:
    """Where a step stands in the definition: `steps.s`, or `steps.g.steps.s` in group g."""
    if within is None:
        return ("steps", step.id)
    return ("steps", within.id, "steps", step.id)


class Ancestry:
    """Answers "does step S need step X, directly or transitively?" (unknown ids ignored).

    Most expressions read a direct need, answered at once; the full set of a step's
    ancestors is computed only when asked about a farther one, and then kept, so a long
    chain whose steps read their predecessors costs linear time, not quadratic.
    """

    def __init__(self, steps: Mapping[str, Step]) -> None:
        self._steps = steps
        self._ancestors: dict[str, frozenset[str]] = {}

    def is_upstream(self, candidate: str, *, of: str) -> bool:
        if candidate in self._needs(of):
            return True
        return candidate in self.ancestors(of)

    def ordered(self, a: str, b: str) -> bool:
        """Whether one of `a` and `b` always runs after the other."""
        return self.is_upstream(a, of=b) or self.is_upstream(b, of=a)

    def ancestors(self, step: str) -> frozenset[str]:
        known = self._ancestors.get(step)
        if known is None:
            seen: set[str] = set()
            pending = self._needs(step)
            while pending:
                need = pending.pop()
                if need not in seen:
                    seen.add(need)
                    pending.extend(self._needs(need))
            known = self._ancestors[step] = frozenset(seen)
        return known

    def _needs(self, step_id: str) -> list[str]:
        """The known steps `step_id` needs (asked for when needed: most steps never are)."""
        step = self._steps.get(step_id)
        steps = self._steps
        return [] if step is None else [need for need in step.needs if need in steps]


Reading = Literal["ok", "unknown", "not upstream"]


@dataclass(frozen=True, slots=True)
class Place:
    """The steps a step's expressions can see: its siblings, and for a group's steps, what
    the group step itself can see (`outer`)."""

    steps: Mapping[str, Step]
    ancestry: Ancestry
    loop: Step | None = None  # the group step, for a step inside a group
    outer: Place | None = None

    def reads(self, step: Step, field: tuple[Key, ...], ref: str) -> Reading:
        """Whether `step` may read `steps.<ref>` in `field`."""
        if ref == step.id and field[0] in ("compensate", "writes"):
            return "ok"  # what a compensation undoes, what a write reads: its own output
        if field == ("repeat", "until") and (
            ref in (step.steps or {}) or (ref == step.id and step.steps is None)
        ):
            return "ok"  # the iteration that just ended
        if ref in self.steps:
            return "ok" if self.ancestry.is_upstream(ref, of=step.id) else "not upstream"
        if self.loop is not None and self.outer is not None:
            if ref == self.loop.id:
                return "not upstream"  # the group has not ended while its steps run
            return self.outer.reads(self.loop, ("steps",), ref)
        return "unknown"


def group_problems(
    wf: Workflow, step: Step, named: list[str], within: Step | None
) -> Iterator[DefinitionError]:
    """A group step: only steps inside, no target of its own, no group inside a group."""
    assert step.steps is not None
    where = wf.locate(*step_path(step, within))
    if within is not None:
        yield DefinitionError(
            f"step {step.id!r} is a group inside group {within.id!r}: groups do not nest; "
            "make the inner group a sub-workflow (`workflow:`)",
            where=where,
        )
    if named:
        yield DefinitionError(
            f"step {step.id!r} has steps, so it cannot also name {' or '.join(named)}",
            where=where,
        )
    if not step.steps:
        yield DefinitionError(f"group {step.id!r} has no steps", where=where)
    for field, is_set in (
        ("with", step.with_ is not None),
        ("for_each", step.for_each is not None),
        ("retry", step.retry != _DEFAULT_RETRY),
        ("timeout", step.timeout is not None),
        ("fallback", step.fallback is not None),
        ("compensate", step.compensate is not None),
    ):
        if is_set:
            yield DefinitionError(
                f"group {step.id!r} cannot have `{field}`: give it to the steps inside",
                where=wf.locate(*step_path(step, within), field),
            )
    for inner in step.steps:
        if inner in wf.steps:
            yield DefinitionError(
                f"step {inner!r} in group {step.id!r} has the id of a workflow step: "
                "step ids must be unique across the workflow",
                where=wf.locate(*step_path(step, within), "steps", inner),
            )


def repeat_problems(wf: Workflow, step: Step, within: Step | None) -> Iterator[DefinitionError]:
    repeat = step.repeat
    assert repeat is not None
    path = (*step_path(step, within), "repeat")
    if within is not None:
        yield DefinitionError(
            f"step {step.id!r} repeats inside group {within.id!r}: loops do not nest; "
            "make the inner loop a sub-workflow (`workflow:`)",
            where=wf.locate(*path),
        )
    if not isinstance(repeat.max_iterations, int) or repeat.max_iterations < 1:
        yield DefinitionError(
            f"step {step.id!r}: repeat.max_iterations must be at least 1, "
            f"not {repeat.max_iterations!r}",
            where=wf.locate(*path, "max_iterations"),
        )
    if repeat.on_max not in ("fail", "continue"):
        yield DefinitionError(
            f"step {step.id!r}: repeat.on_max must be fail or continue, not {repeat.on_max!r}",
            where=wf.locate(*path, "on_max"),
        )
    if step.for_each is not None:
        yield DefinitionError(
            f"step {step.id!r} has both repeat and for_each: put the for_each step in a "
            "group (`steps:`) and repeat the group",
            where=wf.locate(*path),
        )


def scope_problems(
    wf: Workflow,
    step: Step,
    loop: Step | None,
    field: tuple[Key, ...],
    template: Template,
    where: Callable[[], Location],
) -> Iterator[DefinitionError]:
    """Names read where they do not exist: `output`, `loop`, and undeclared state keys.

    `where` finds the location of `field`, wanted only when there is a problem.
    """
    what = ".".join(map(str, field))
    if "output" in template.names and field[0] not in ("writes", "repeat"):
        yield DefinitionError(
            f"step {step.id!r} reads output in its {what}; output exists only in `writes` "
            "and `repeat.until` (elsewhere, read steps.<id>.output)",
            where=where(),
        )
    in_loop = loop is not None or (step.repeat is not None and field[0] != "if")
    if "loop" in template.names and not in_loop:
        yield DefinitionError(
            f"step {step.id!r} reads loop in its {what}; loop exists only in a repeated step "
            "and in the steps of a group",
            where=where(),
        )
    for key in sorted(template.state_keys - wf.state.keys()):
        yield DefinitionError(
            f"step {step.id!r} reads state.{key}, which is not a declared state key"
            f"{suggest(key, wf.state)}: declare it under `state:`",
            where=where(),
        )


def state_problems(wf: Workflow, ancestry: Ancestry) -> list[DefinitionError]:
    """State keys well declared, writes to declared keys, and no racing `replace` writes."""
    problems: list[DefinitionError] = []
    for name, declared in wf.state.items():
        reducer = declared.reducer
        if isinstance(reducer, str) and reducer not in BUILTIN_REDUCERS and ":" not in reducer:
            problems.append(
                DefinitionError(
                    f"state key {name!r}: {reducer!r} is not a reducer; use one of "
                    f"{', '.join(BUILTIN_REDUCERS)}, or a callable as 'package.module:function'"
                    f"{suggest(reducer, BUILTIN_REDUCERS)}",
                    where=wf.locate("state", name, "reducer"),
                )
            )
    writers: dict[str, list[tuple[Step, Step | None]]] = {}
    for step, within in _all_steps(wf):
        for key in step.writes or {}:
            if key not in wf.state:
                problems.append(
                    DefinitionError(
                        f"step {step.id!r} writes state key {key!r}, which is not declared"
                        f"{suggest(key, wf.state)}: declare it under `state:`",
                        where=wf.locate(*step_path(step, within), "writes", key),
                    )
                )
            else:
                writers.setdefault(key, []).append((step, within))
    for written, steps in writers.items():
        if wf.state[written].reducer == "replace":
            problems.extend(_racing_writes(wf, written, steps, ancestry))
    return problems


def _racing_writes(
    wf: Workflow, key: str, writers: list[tuple[Step, Step | None]], ancestry: Ancestry
) -> Iterator[DefinitionError]:
    for step, within in writers:
        if step.for_each is not None and step.max_parallel != 1:
            yield DefinitionError(
                f"step {step.id!r} writes replace key {key!r} from every for_each item, and "
                "the items run at the same time: use a reducer such as append, or "
                "max_parallel: 1",
                where=wf.locate(*step_path(step, within), "writes", key),
            )
    for (a, a_in), (b, b_in) in itertools.combinations(writers, 2):
        if a_in is not None and a_in is b_in:
            racing = a_in.steps is not None and not Ancestry(a_in.steps).ordered(a.id, b.id)
        else:  # a step in a group runs when its group does
            racing = not ancestry.ordered((a_in or a).id, (b_in or b).id)
        if racing:
            yield DefinitionError(
                f"steps {a.id!r} and {b.id!r} may run at the same time and both write "
                f"replace key {key!r}: which value wins would depend on timing; make one "
                "need the other, or give the key a reducer (append, merge, sum, ...)",
                where=wf.locate(*step_path(b, b_in), "writes", key),
            )


def _all_steps(wf: Workflow) -> Iterator[tuple[Step, Step | None]]:
    for step in wf.steps.values():
        yield step, None
        for inner in (step.steps or {}).values():
            yield inner, step
