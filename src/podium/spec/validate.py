"""The semantic checks of a workflow: what the schema cannot see.

References between steps and agents, cycles in `needs`, limits, and expressions (syntax, and
whether the steps they read will have run). The loader calls `validate_workflow` after the
structural check; a workflow built in Python with the model classes goes through the same
function, so both kinds are held to the same rules. Every problem is collected before raising,
so one run of the validator tells the author everything to fix.
"""

from __future__ import annotations

import functools
import json
import math
import re
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from podium.errors import CycleError, DefinitionError, Location
from podium.model.callables import import_callable
from podium.model.state import BUILTIN_REDUCERS
from podium.model.workflow import TRIGGERS, Call, RetryPolicy, Step, Workflow
from podium.spec.composition import (
    Ancestry,
    Place,
    group_problems,
    repeat_problems,
    scope_problems,
    state_problems,
    step_path,
)
from podium.spec.expressions import Template, compile_condition, compile_template
from podium.spec.paths import Key, path_text
from podium.spec.schema import IDENTIFIER, bad_identifier, is_callable_path, suggest

__all__ = ["Ancestry", "find_cycles", "sort_problems", "validate_workflow", "workflow_problems"]

_IDENTIFIER = re.compile(IDENTIFIER)
# The retry policy of a step that declares none (one object, the field's default).
_DEFAULT_RETRY: RetryPolicy = Step.retry
# Who may run a step: a step names exactly one (or is a group).
_TARGETS = ("agent", "capability", "uses", "sleep", "wait_until", "approval", "workflow", "pattern")


# Workflows found valid, by identity: a `Workflow` cannot change, so loading and then
# preparing one checks it once (on 10,000 steps the check is a tenth of what a run costs).
# An entry goes with its workflow, so an id is never mistaken for a later object's.
_VALID: weakref.WeakValueDictionary[int, Workflow] = weakref.WeakValueDictionary()


def validate_workflow(wf: Workflow) -> None:
    """Raise `DefinitionError` listing every semantic problem of `wf`, located in its source.

    Sub-workflows given inline (a `Workflow`, not a file path) are checked too; a file is
    read and checked when the workflow is prepared to run. Callables are imported when the
    workflow is prepared, or here when something else is wrong, to be reported together.
    """
    if _VALID.get(id(wf)) is wf:
        return
    problems = workflow_problems(wf)
    if problems:
        problems.extend(callable_problems(wf))
        raise DefinitionError.collect(sort_problems(problems))
    _VALID[id(wf)] = wf


def workflow_problems(wf: Workflow) -> list[DefinitionError]:
    """Every semantic problem of `wf` and of its inline sub-workflows, unsorted."""
    problems: list[DefinitionError] = []
    ancestry = Ancestry(wf.steps)
    capabilities = {c for agent in wf.agents.values() for c in agent.capabilities}
    for name, agent in wf.agents.items():
        if not _IDENTIFIER.fullmatch(name):
            problems.append(
                DefinitionError(bad_identifier(name, "agent name"), where=wf.locate("agents", name))
            )
        if sum(x is not None for x in (agent.uses, agent.workflow, agent.model)) != 1:
            problems.append(
                DefinitionError(
                    f"agent {name!r} must have exactly one of uses, workflow or model",
                    where=wf.locate("agents", name),
                )
            )
        _at_least_one(wf, problems, ("agents", name, "concurrency"), agent.concurrency)
        if agent.circuit is not None:
            path = ("agents", name, "circuit")
            _at_least_one(wf, problems, (*path, "failures"), agent.circuit.failures)
            _more_than_zero(wf, problems, (*path, "window"), agent.circuit.window)
            _more_than_zero(wf, problems, (*path, "cooldown"), agent.circuit.cooldown)
    top = Place(wf.steps, ancestry)
    for key, step in wf.steps.items():
        _check_step(wf, key, step, capabilities, problems)
        _check_step_expressions(wf, step, top, problems)
        if step.steps is not None:
            group = Place(step.steps, Ancestry(step.steps), loop=step, outer=top)
            for body_key, body in step.steps.items():
                _check_step(wf, body_key, body, capabilities, problems, within=step)
                _check_step_expressions(wf, body, group, problems)
            for cycle in find_cycles(Workflow(name=wf.name, steps=step.steps)):
                where = wf.locate("steps", step.id, "steps", cycle[0], "needs")
                problems.append(CycleError(cycle, where=where))
    problems.extend(state_problems(wf, ancestry))
    for cycle in find_cycles(wf):
        problems.append(CycleError(cycle, where=wf.locate("steps", cycle[0], "needs")))
    _at_least_one(wf, problems, ("max_parallel",), wf.max_parallel)
    _at_least_one(wf, problems, ("max_steps",), wf.guards.max_steps)
    _more_than_zero(wf, problems, ("deadline",), wf.guards.deadline)
    _at_least_one(wf, problems, ("max_output_bytes",), wf.guards.max_output_bytes)
    _at_least_one(wf, problems, ("max_tokens",), wf.guards.max_tokens)
    if wf.guards.max_cost is not None and not wf.guards.max_cost > 0:
        problems.append(
            DefinitionError(
                f"max_cost must be more than 0, not {wf.guards.max_cost:g}",
                where=wf.locate("max_cost"),
            )
        )
    _check_output(wf, problems)
    _check_input_schema(wf, problems)
    children = [a.workflow for a in wf.agents.values()] + [s.workflow for s in wf.steps.values()]
    for child in children:
        if isinstance(child, Workflow):
            problems.extend(workflow_problems(child))
    return problems


def callable_problems(wf: Workflow) -> list[DefinitionError]:
    """Every callable path in `wf` that cannot be imported, located where it is written.

    Preparing a workflow to run imports its callables anyway; this is for a workflow found
    wrong in other ways, so that one look at it reports a missing module too.
    """
    problems: list[DefinitionError] = []
    folders = wf.module_folders
    failures: dict[str, str | None] = {}  # path -> why it cannot be imported: each tried once

    def check(ref: object, *path: Key) -> None:
        if not (isinstance(ref, str) and is_callable_path(ref)):  # else the schema has said so
            return
        if ref not in failures:
            try:
                import_callable(ref, search=folders)
                failures[ref] = None
            except DefinitionError as exc:
                failures[ref] = str(exc)
        why = failures[ref]
        if why is not None:
            problems.append(DefinitionError(why, where=wf.locate(*path)))

    def check_steps(steps: Mapping[str, Step], *path: Key) -> None:
        for step_id, step in steps.items():
            at = (*path, "steps", step_id)
            check(step.uses, *at, "uses")
            for name, call in (("fallback", step.fallback), ("compensate", step.compensate)):
                if call is not None:
                    check(call.uses, *at, name, "uses")
            if step.steps is not None:
                check_steps(step.steps, *at)

    for name, agent in wf.agents.items():
        check(agent.uses, "agents", name, "uses")
        for index, tool in enumerate(agent.model.tools if agent.model is not None else ()):
            check(tool, "agents", name, "model", "tools", index)
    for name, key in wf.state.items():
        if key.reducer not in BUILTIN_REDUCERS:
            check(key.reducer, "state", name, "reducer")
    check_steps(wf.steps)
    return problems


def sort_problems(problems: list[DefinitionError]) -> list[DefinitionError]:
    """`problems` in the order of the text they point at (unlocated ones first)."""

    def position(problem: DefinitionError) -> tuple[int, int]:
        where = problem.where
        return (where.line, where.column) if where else (0, 0)

    return sorted(problems, key=position)


def _check_step(
    wf: Workflow,
    key: str,
    step: Step,
    capabilities: set[str],
    problems: list[DefinitionError],
    *,
    within: Step | None = None,
) -> None:
    sid = step.id
    base = step_path(step, within)

    def problem(message: str, *path: Key) -> None:
        problems.append(DefinitionError(message, where=wf.locate(*base, *path)))

    if key != sid:
        problem(f"step {sid!r} is stored under the key {key!r}")
    if not _IDENTIFIER.fullmatch(sid):
        problem(bad_identifier(sid, "step id"))
    named = [field for field in _TARGETS if getattr(step, field) is not None]
    if step.steps is not None:
        problems.extend(group_problems(wf, step, named, within))
    elif len(named) != 1:
        found = f" (it names {' and '.join(named)})" if named else ""
        problem(
            f"step {sid!r} must name exactly one of agent, capability, uses, workflow, "
            f"pattern, sleep, wait_until or approval{found}"
        )
    if step.pattern is not None:
        _check_participants(wf, step, problem)
    for name, count in (step.uses_resources or {}).items():
        if name not in wf.resources:
            problem(
                f"step {sid!r} uses resource {name!r}, which `resources:` does not declare"
                f"{suggest(name, wf.resources)}",
                "uses_resources",
                name,
            )
        elif count > wf.resources[name]:
            problem(
                f"step {sid!r} needs {count} of resource {name!r}, which has only "
                f"{wf.resources[name]}: it could never start",
                "uses_resources",
                name,
            )
    if step.repeat is not None:
        problems.extend(repeat_problems(wf, step, within))
    if step.agent is not None and step.agent not in wf.agents:
        problem(
            f"step {sid!r} uses unknown agent {step.agent!r}{suggest(step.agent, wf.agents)}",
            "agent",
        )
    if step.capability is not None and step.capability not in capabilities:
        problem(
            f"step {sid!r} needs capability {step.capability!r}, which no agent declares"
            f"{suggest(step.capability, capabilities)}",
            "capability",
        )
    siblings = wf.steps if within is None or within.steps is None else within.steps
    for index, need in enumerate(step.needs):
        if need == sid:
            problem(f"step {sid!r} needs itself", "needs", index)
        elif need not in siblings:
            where = "" if within is None else f" in group {within.id!r}"
            problem(
                f"step {sid!r} needs unknown step {need!r}{where}{suggest(need, siblings)}",
                "needs",
                index,
            )
    if step.trigger not in TRIGGERS:
        problem(
            f"step {sid!r}: trigger must be one of {', '.join(TRIGGERS)}, not {step.trigger!r}",
            "trigger",
        )
    if step.max_parallel is not None:
        _at_least_one(wf, problems, (*base, "max_parallel"), step.max_parallel)
    retry = step.retry
    if retry is not _DEFAULT_RETRY:  # the default one is valid
        _at_least_one(wf, problems, (*base, "retry", "attempts"), retry.attempts)
        if retry.backoff < 0 or retry.max_backoff < 0 or retry.factor < 1:
            problem(
                f"step {sid!r}: retry needs backoff >= 0, max_backoff >= 0 and factor >= 1",
                "retry",
            )
        if not 0 <= retry.jitter <= 1:
            problem(
                f"step {sid!r}: retry.jitter must be between 0 and 1, not {retry.jitter!r}",
                "retry",
            )
    if step.timeout is not None and step.timeout <= 0:
        problem(f"step {sid!r}: timeout must be more than 0, not {step.timeout!r}", "timeout")
    if step.deadline is not None and step.deadline <= 0:
        problem(f"step {sid!r}: deadline must be more than 0, not {step.deadline!r}", "deadline")
    if step.sleep is not None and step.sleep < 0:
        problem(f"step {sid!r}: sleep must be 0 or more, not {step.sleep!r}", "sleep")
    builtin = step.builtin
    if builtin is not None:
        present = (
            ("with", step.with_ is not None),
            ("retry", step.retry != _DEFAULT_RETRY),
            ("fallback", step.fallback is not None),
            ("compensate", step.compensate is not None),
        )
        for field, is_set in present:
            if is_set:
                problem(
                    f"step {sid!r} is a built-in {builtin} step and cannot have `{field}`", field
                )
    if step.approval is not None:
        _check_approval(wf, step, problems)
    for field, call in (("fallback", step.fallback), ("compensate", step.compensate)):
        if call is not None:
            _check_call(wf, sid, field, call, capabilities, problems)


def _check_participants(wf: Workflow, step: Step, problem: Callable[..., None]) -> None:
    """Every agent a pattern step names (participants, start, manager, ...) is declared.

    The options' kinds and types are checked when the workflow is prepared, with the
    pattern's own reader; what is checked here is what reads the rest of the definition.
    """
    assert step.pattern is not None
    options = step.pattern.options
    named: list[tuple[Any, tuple[Key, ...]]] = []
    listed = options.get("agents")
    if isinstance(listed, list | tuple):
        named += [(name, ("agents", i)) for i, name in enumerate(listed)]
    for key in ("start", "manager", "human"):
        named.append((options.get(key), (key,)))
    for key, default in (("aggregator", "list"), ("selector", "round_robin")):
        chosen = options.get(key)  # a participant, unless a default or a "module:function"
        if isinstance(chosen, str) and chosen != default and ":" not in chosen:
            named.append((chosen, (key,)))
    graph = options.get("graph")
    if isinstance(graph, Mapping):
        for source, targets in graph.items():
            named.append((source, ("graph", source)))
            if isinstance(targets, list | tuple):
                named += [(name, ("graph", source, i)) for i, name in enumerate(targets)]
    for name, path in named:
        if isinstance(name, str) and name not in wf.agents:
            problem(
                f"step {step.id!r}: pattern {step.pattern.kind!r} names {name!r}, which is not "
                f"an agent of the workflow{suggest(name, wf.agents)}",
                *path,
            )


def _check_approval(wf: Workflow, step: Step, problems: list[DefinitionError]) -> None:
    approval = step.approval
    assert approval is not None
    path = ("steps", step.id, "approval")

    def problem(message: str, *inner: Key) -> None:
        problems.append(DefinitionError(message, where=wf.locate(*path, *inner)))

    if not isinstance(approval.prompt, str) or not approval.prompt:
        problem(f"step {step.id!r}: approval needs a prompt", "prompt")
    if approval.timeout is not None and approval.timeout <= 0:
        problem(
            f"step {step.id!r}: approval.timeout must be more than 0, not {approval.timeout!r}",
            "timeout",
        )
    if approval.default is not None:
        if approval.default not in ("approve", "reject"):
            problem(
                f"step {step.id!r}: approval.default must be approve or reject, "
                f"not {approval.default!r}",
                "default",
            )
        elif approval.timeout is None:
            problem(
                f"step {step.id!r}: approval.default needs a timeout (the default decision "
                "applies once the timeout has passed)",
                "default",
            )
    if approval.schema is not None:
        found = _json_schema_problem(approval.schema)
        if found is not None:
            message, inner = found
            problem(
                f"step {step.id!r}: approval.schema is not a valid JSON Schema: {message}",
                "schema",
                *inner,
            )


def _check_call(
    wf: Workflow,
    sid: str,
    field: str,
    call: Call,
    capabilities: set[str],
    problems: list[DefinitionError],
) -> None:
    """A step's `fallback` or `compensate`: one target, and one that exists."""

    def problem(message: str, *path: Key) -> None:
        problems.append(DefinitionError(message, where=wf.locate("steps", sid, field, *path)))

    named = [
        name
        for name, value in (
            ("agent", call.agent),
            ("capability", call.capability),
            ("uses", call.uses),
        )
        if value is not None
    ]
    if len(named) != 1:
        found = f" (it names {' and '.join(named)})" if named else ""
        problem(f"step {sid!r}: {field} must name exactly one of agent, capability or uses{found}")
    if call.agent is not None and call.agent not in wf.agents:
        problem(
            f"step {sid!r}: {field} uses unknown agent {call.agent!r}"
            f"{suggest(call.agent, wf.agents)}",
            "agent",
        )
    if call.capability is not None and call.capability not in capabilities:
        problem(
            f"step {sid!r}: {field} needs capability {call.capability!r}, which no agent "
            f"declares{suggest(call.capability, capabilities)}",
            "capability",
        )


def _more_than_zero(
    wf: Workflow, problems: list[DefinitionError], path: tuple[Key, ...], value: float | None
) -> None:
    if value is not None and not value > 0:
        problems.append(
            DefinitionError(
                f"{path_text(path)} must be more than 0, not {value!r}", where=wf.locate(*path)
            )
        )


def _at_least_one(
    wf: Workflow, problems: list[DefinitionError], path: tuple[Key, ...], value: int | None
) -> None:
    if value is not None and value < 1:
        problems.append(
            DefinitionError(
                f"{path_text(path)} must be at least 1, not {value!r}", where=wf.locate(*path)
            )
        )


def _check_step_expressions(
    wf: Workflow, step: Step, place: Place, problems: list[DefinitionError]
) -> None:
    sid = step.id
    base = step_path(step, place.loop)
    fields: list[tuple[tuple[Key, ...], Any]] = [
        (("with",), step.with_),
        (("if",), step.condition),
        (("for_each",), step.for_each),
        (("wait_until",), step.wait_until),
    ]
    if step.approval is not None and isinstance(step.approval.prompt, str):
        fields.append((("approval", "prompt"), step.approval.prompt))
    for name, call in (("fallback", step.fallback), ("compensate", step.compensate)):
        if call is not None:
            fields.append(((name, "with"), call.with_))
    if step.writes:
        fields.extend((("writes", key), value) for key, value in step.writes.items())
    if step.repeat is not None and isinstance(step.repeat.until, str):
        fields.append((("repeat", "until"), step.repeat.until))
    for field, value in fields:
        if value is None:
            continue  # nothing to check (a null `with` reads nothing)
        template = _compile_field(wf, (*base, *field), value, problems)
        if template is None:
            continue
        where = functools.partial(wf.locate, *base, *field)  # called when a problem is found
        for ref in sorted(template.references):
            found = place.reads(step, field, ref)
            if found == "unknown":
                problems.append(_unknown_step(wf, f"step {sid!r}", ref, where()))
            elif found == "not upstream":
                problems.append(
                    DefinitionError(
                        f"step {sid!r} reads steps.{ref} but does not need it, so it may not "
                        f"have run yet: add {ref!r} to its needs",
                        where=where(),
                    )
                )
        problems.extend(scope_problems(wf, step, place.loop, field, template, where))
        item_scope = field in (("with",), ("fallback", "with")) or field[0] == "writes"
        if template.uses_item and (not item_scope or step.for_each is None):
            where_used = (
                "a step without for_each" if item_scope else f"its {'.'.join(map(str, field))}"
            )
            problems.append(
                DefinitionError(
                    f"step {sid!r} reads item or index in {where_used}; they exist only in the "
                    f"`with` of a for_each step",
                    where=where(),
                )
            )


def _check_output(wf: Workflow, problems: list[DefinitionError]) -> None:
    template = _compile_field(wf, ("output",), wf.output, problems)
    if template is None:
        return
    problems.extend(
        _unknown_step(wf, "the output", ref, wf.locate("output"))
        for ref in sorted(template.references)
        if ref not in wf.steps
    )
    if template.uses_item:
        problems.append(
            DefinitionError(
                "the output reads item or index, which exist only in a for_each step",
                where=wf.locate("output"),
            )
        )


def _check_input_schema(wf: Workflow, problems: list[DefinitionError]) -> None:
    if wf.input_schema is None:
        return
    found = _json_schema_problem(wf.input_schema)
    if found is not None:
        message, path = found
        problems.append(
            DefinitionError(
                f"input is not a valid JSON Schema: {message}", where=wf.locate("input", *path)
            )
        )


def _json_schema_problem(schema: Mapping[str, Any]) -> tuple[str, tuple[Key, ...]] | None:
    """Why `schema` is not a valid JSON Schema (and where in it), or None if it is."""
    plain = dict(schema)
    # A schema that JSON gives back exactly is known by its text (key order kept: it can
    # change which error is reported); any other is checked afresh.
    return _json_schema_error(json.dumps(plain)) if _plain_json(plain) else _schema_error(plain)


@functools.lru_cache(maxsize=64)
def _json_schema_error(text: str) -> tuple[str, tuple[Key, ...]] | None:
    """`_schema_error` of the schema in JSON `text`, remembered: checking one is slow (ms)."""
    return _schema_error(json.loads(text))


def _plain_json(value: Any) -> bool:
    """Whether JSON gives `value` back exactly (so its text can stand for it)."""
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and _plain_json(v) for k, v in value.items())
    if kind is list:
        return all(_plain_json(item) for item in value)
    if kind is float:
        return math.isfinite(value)
    return kind in (str, int, bool) or value is None


def _schema_error(schema: dict[str, Any]) -> tuple[str, tuple[Key, ...]] | None:
    """Why `schema` is not a valid JSON Schema (and where in it), or None if it is."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message, tuple(exc.path)
    return None


def _compile_field(
    wf: Workflow, path: tuple[Key, ...], value: Any, problems: list[DefinitionError]
) -> Template | None:
    """The compiled `if`/`for_each`/`wait_until` (conditions) or any other value; None if it
    has errors."""
    locate = wf.locator(*path)
    try:
        if path[-1] in ("if", "for_each", "wait_until", "until"):
            return compile_condition(value, where=locate)
        return compile_template(value, where=locate)
    except DefinitionError as exc:
        if exc.where is None:  # several problems in one value: sort them at the value's place
            exc.where = wf.locate(*path)
        problems.append(exc)
        return None


def _unknown_step(wf: Workflow, reader: str, ref: str, where: Location) -> DefinitionError:
    return DefinitionError(
        f"{reader} reads steps.{ref}, which is not a step{suggest(ref, wf.steps)}", where=where
    )


def find_cycles(wf: Workflow) -> list[list[str]]:
    """The cycles in `needs`, one per tangle, each in run order with its first step repeated.

    In `a -> b -> c -> a`, each step is needed by the next. Steps are first peeled off in
    dependency order; every step left needs another step left, so walking `needs` from one of
    them must come back on itself, and that loop is reported.
    """
    order = {sid: position for position, sid in enumerate(wf.steps)}
    if all(
        order.get(need, -1) < order[sid] or need == sid
        for sid, step in wf.steps.items()
        for need in step.needs
    ):
        return []  # every step needs only steps listed before it: there is no loop
    needs: Mapping[str, list[str]] = {
        sid: [n for n in step.needs if n in wf.steps and n != sid] for sid, step in wf.steps.items()
    }
    # Kahn's algorithm: peel steps whose needs are all peeled; what is left is in a tangle.
    waiting_on = {sid: len(set(step_needs)) for sid, step_needs in needs.items()}
    dependents: dict[str, list[str]] = {sid: [] for sid in needs}
    for sid, step_needs in needs.items():
        for need in set(step_needs):
            dependents[need].append(sid)
    free = [sid for sid, count in waiting_on.items() if count == 0]
    left = set(wf.steps)
    while free:
        sid = free.pop()
        left.discard(sid)
        for dependent in dependents[sid]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                free.append(dependent)
    cycles: list[list[str]] = []
    reported: set[str] = set()
    for start in wf.steps:
        if start not in left or start in reported:
            continue
        walk: list[str] = []
        position: dict[str, int] = {}
        node = start
        while node not in position:
            position[node] = len(walk)
            walk.append(node)
            node = next(n for n in needs[node] if n in left)
        loop = walk[position[node] :]
        if reported.isdisjoint(loop):
            reported.update(loop)
            loop.reverse()
            first = min(range(len(loop)), key=lambda i: order[loop[i]])
            loop = loop[first:] + loop[:first]
            cycles.append([*loop, loop[0]])
    return cycles
