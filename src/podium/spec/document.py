"""Between a workflow document (the parsed YAML or JSON) and the `Workflow` model.

`workflow_from_document` is the one way a definition becomes a model: the loader calls it on a
file's contents and the runtime calls it on the definition stored in a run's first event, so
a resumed run is checked exactly like a new one. `workflow_to_document` is its inverse, used
to store that definition: plain JSON, callables as their "module:qualname" import path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from podium.errors import DefinitionError, Location
from podium.model.workflow import TRIGGERS, AgentSpec, RetryPolicy, Step, Workflow, callable_name
from podium.spec.durations import parse_duration
from podium.spec.paths import Key, describe_type, path_text
from podium.spec.schema import schema_problems
from podium.spec.validate import sort_problems, validate_workflow

__all__ = ["workflow_from_document", "workflow_to_document"]

_DEFAULT_RETRY = RetryPolicy()


def workflow_from_document(
    doc: Any,
    *,
    source: str,
    base_dir: str,
    locations: Mapping[tuple[Key, ...], Location] | None = None,
    problems: list[DefinitionError] | None = None,
) -> Workflow:
    """The validated workflow that `doc` describes; raises `DefinitionError` with every problem.

    `locations` maps paths in `doc` to where they stand in `source`; without it problems name
    `source` alone. `problems` are earlier ones (from reading the file) to report together.
    Semantic checks (references, cycles, expressions) run only on a well-formed document, so
    that a misspelt key does not also show up as a cascade of unknown steps.
    """
    found = list(problems or ())
    reader = _Reader(source, locations or {})
    if not isinstance(doc, Mapping):
        found.append(
            DefinitionError(
                f"a workflow must be a mapping with `name` and `steps`, not {describe_type(doc)}",
                where=reader.locate(),
            )
        )
        raise DefinitionError.collect(found)
    found.extend(schema_problems(doc, reader.locate))
    workflow = reader.workflow(doc, base_dir)
    found.extend(reader.problems)
    if found:
        raise DefinitionError.collect(sort_problems(found))
    validate_workflow(workflow)
    return workflow


def workflow_to_document(wf: Workflow) -> dict[str, Any]:
    """`wf` as a JSON-serialisable document that `workflow_from_document` reads back."""
    doc: dict[str, Any] = {"name": wf.name}
    if wf.description:
        doc["description"] = wf.description
    if wf.input_schema is not None:
        doc["input"] = _plain(wf.input_schema)
    if wf.max_parallel is not None:
        doc["max_parallel"] = wf.max_parallel
    if wf.agents:
        doc["agents"] = {name: _agent_document(agent) for name, agent in wf.agents.items()}
    doc["steps"] = {step_id: _step_document(step) for step_id, step in wf.steps.items()}
    if wf.output is not None:
        doc["output"] = _plain(wf.output)
    return doc


def _agent_document(agent: AgentSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"uses": callable_name(agent.uses)}
    if agent.capabilities:
        doc["capabilities"] = sorted(agent.capabilities)
    if agent.concurrency is not None:
        doc["concurrency"] = agent.concurrency
    if agent.description:
        doc["description"] = agent.description
    return doc


def _step_document(step: Step) -> dict[str, Any]:
    optional: dict[str, Any] = {
        "agent": step.agent,
        "capability": step.capability,
        "uses": None if step.uses is None else callable_name(step.uses),
        "needs": list(step.needs) or None,
        "with": _plain(step.with_),
        "if": step.condition,
        "trigger": None if step.trigger == "all_success" else step.trigger,
        "for_each": step.for_each,
        "max_parallel": step.max_parallel,
        "retry": None if step.retry == _DEFAULT_RETRY else _retry_document(step.retry),
        "timeout": step.timeout,
        "continue_on_error": step.continue_on_error or None,
        "description": step.description or None,
    }
    return {key: value for key, value in optional.items() if value is not None}


def _retry_document(retry: RetryPolicy) -> dict[str, Any]:
    return {
        "attempts": retry.attempts,
        "backoff": retry.backoff,
        "factor": retry.factor,
        "max_backoff": retry.max_backoff,
    }


def _plain(value: Any) -> Any:
    """JSON data from a value built in Python: mappings as dicts, tuples as lists."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


class _Reader:
    """Builds the model from a document that may break the schema, noting what it cannot read.

    It never raises: a value of the wrong type is replaced by its default (the schema check
    reports it), and only what the schema cannot say (durations) is reported here.
    """

    def __init__(self, source: str, locations: Mapping[tuple[Key, ...], Location]) -> None:
        self.source = source
        self.locations = locations
        self.problems: list[DefinitionError] = []
        # An empty workflow lends its `locate`, so that problems found before the real one
        # exists are placed by the same rule as every later one.
        self.locate = Workflow(
            name="", steps={}, source=source, base_dir=".", locations=locations
        ).locate

    def workflow(self, doc: Mapping[str, Any], base_dir: str) -> Workflow:
        agents = _mapping(doc.get("agents"))
        steps = _mapping(doc.get("steps"))
        input_schema = doc.get("input")
        return Workflow(
            name=_text(doc.get("name")),
            description=_text(doc.get("description")),
            input_schema=input_schema if isinstance(input_schema, Mapping) else None,
            output=doc.get("output"),
            max_parallel=_integer(doc.get("max_parallel")),
            agents={name: self.agent(str(name), _mapping(agent)) for name, agent in agents.items()},
            steps={step_id: self.step(str(step_id), _mapping(s)) for step_id, s in steps.items()},
            source=self.source,
            base_dir=base_dir,
            locations=self.locations,
        )

    def agent(self, name: str, doc: Mapping[str, Any]) -> AgentSpec:
        capabilities = doc.get("capabilities")
        return AgentSpec(
            name=name,
            uses=_text(doc.get("uses")),
            capabilities=frozenset(
                c for c in (capabilities if isinstance(capabilities, list) else ()) if c
            ),
            concurrency=_integer(doc.get("concurrency")),
            description=_text(doc.get("description")),
        )

    def step(self, step_id: str, doc: Mapping[str, Any]) -> Step:
        get = doc.get
        needs = get("needs")
        condition = get("if")
        trigger = get("trigger")
        retry = get("retry")
        timeout = get("timeout")
        agent = get("agent")
        capability = get("capability")
        uses = get("uses")
        for_each = get("for_each")
        max_parallel = get("max_parallel")
        description = get("description")
        return Step(
            id=step_id,
            agent=agent if isinstance(agent, str) else None,
            capability=capability if isinstance(capability, str) else None,
            uses=uses if isinstance(uses, str) else None,
            needs=(needs,) if isinstance(needs, str) else tuple(map(str, _list(needs))),
            with_=get("with"),
            condition=str(condition).lower()
            if isinstance(condition, bool)
            else _optional_text(condition),
            trigger=trigger if trigger in TRIGGERS else "all_success",
            for_each=for_each if isinstance(for_each, str) else None,
            max_parallel=None if max_parallel is None else _integer(max_parallel),
            retry=_DEFAULT_RETRY
            if retry is None
            else self.retry(("steps", step_id, "retry"), retry),
            timeout=None
            if timeout is None
            else self.duration(("steps", step_id, "timeout"), timeout, positive=True),
            continue_on_error=get("continue_on_error") is True,
            description=description if isinstance(description, str) else "",
        )

    def retry(self, path: tuple[Key, ...], value: Any) -> RetryPolicy:
        attempts = _integer(value)
        if attempts is not None:
            return RetryPolicy(attempts=attempts)
        doc = _mapping(value)
        attempts = _integer(doc.get("attempts"))
        backoff = self.duration((*path, "backoff"), doc.get("backoff"))
        factor = doc.get("factor")
        max_backoff = self.duration((*path, "max_backoff"), doc.get("max_backoff"))
        return RetryPolicy(
            attempts=_DEFAULT_RETRY.attempts if attempts is None else attempts,
            backoff=_DEFAULT_RETRY.backoff if backoff is None else backoff,
            factor=float(factor) if _is_number(factor) else _DEFAULT_RETRY.factor,
            max_backoff=_DEFAULT_RETRY.max_backoff if max_backoff is None else max_backoff,
        )

    def duration(
        self, path: tuple[Key, ...], value: Any, *, positive: bool = False
    ) -> float | None:
        """Seconds in `value`, or None if absent or unreadable (a problem names the field)."""
        if not (_is_number(value) or isinstance(value, str)):
            return None  # absent, or the wrong type: the schema reports that
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problems.append(
                DefinitionError(f"{path_text(path)}: {exc}", where=self.locate(*path))
            )
            return None
        if positive and seconds <= 0:
            self.problems.append(
                DefinitionError(
                    f"{path_text(path)} must be more than 0, not {value!r}",
                    where=self.locate(*path),
                )
            )
            return None
        return seconds


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
