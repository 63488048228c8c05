"""Between a workflow document (the parsed YAML or JSON) and the `Workflow` model.

`workflow_from_document` is the one way a definition becomes a model: the loader calls it on a
file's contents and the runtime calls it on the definition stored in a run's first event, so
a resumed run is checked exactly like a new one. `workflow_to_document` is its inverse, used
to store that definition: plain JSON, callables as their "module:qualname" import path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from podium.errors import DefinitionError, Location
from podium.model.callables import callable_name
from podium.model.workflow import (
    MODEL_SETTINGS,
    PATTERN_OPTIONS,
    ROUTING_PRESETS,
    TRIGGERS,
    Adaptation,
    AgentSpec,
    Approval,
    Call,
    CircuitPolicy,
    Guards,
    ModelSpec,
    PatternSpec,
    Price,
    RateLimit,
    Repeat,
    RetryPolicy,
    RoutingWeights,
    StateKey,
    Step,
    Workflow,
    step_with,
)
from podium.spec.durations import parse_duration
from podium.spec.paths import Key, describe_type, path_text
from podium.spec.schema import schema_problems, suggest
from podium.spec.validate import callable_problems, sort_problems, validate_workflow

__all__ = ["agents_from_document", "workflow_from_document", "workflow_to_document"]

_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_GUARDS = Guards()
_DEFAULT_CIRCUIT = CircuitPolicy()
_DEFAULT_ROUTING = RoutingWeights()
_DEFAULT_ADAPTATION = Adaptation()
_BUILTINS = ("sleep", "wait_until", "approval")
_NOT_FOR_BUILTINS = ("with", "retry", "fallback", "compensate")
# Every key a pattern step may have beside `pattern:`; which ones a kind takes is checked
# when the workflow is prepared, where the message can list that kind's options.
_PATTERN_KEYS = tuple(dict.fromkeys(key for keys in PATTERN_OPTIONS.values() for key in keys))
_PATTERN_KEY_SET = frozenset(_PATTERN_KEYS)
_PATTERN_DURATIONS = ("agent_timeout", "max_seconds")
# A literal time in `wait_until` (`2026-11-24T18:00:00Z`): kept as a quoted expression.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ][0-9:.+\-Zz ]*)?")


@dataclass(frozen=True, slots=True)
class _Policies:
    """A failure policy declared for many steps (workflow `defaults`, or an agent's)."""

    retry: RetryPolicy | None = None
    timeout: float | None = None


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
    that a misspelt key does not also show up as a cascade of unknown steps. A workflow found
    wrong has its callables imported too, so that a missing module is reported with the rest.
    """
    found = list(problems or ())
    reader = _Reader(source, {} if locations is None else locations)
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
        found.extend(callable_problems(workflow))
        raise DefinitionError.collect(sort_problems(found))
    validate_workflow(workflow)
    return workflow


def agents_from_document(
    agents: Mapping[str, Any],
    *,
    source: str,
    locations: Mapping[tuple[Key, ...], Location],
    models: Mapping[str, Any] | None = None,
) -> tuple[dict[str, AgentSpec], list[DefinitionError]]:
    """The agents of an `agents:` mapping (a catalog's) and the problems in reading them.

    The mapping must already meet the schema; what is left to find are unreadable durations
    and unknown model names (`models` is the `models:` the agents may name), located
    through `locations` at the same paths (`agents.<name>...`) as in a workflow.
    """
    reader = _Reader(source, locations)
    reader.models = models or {}
    found = {str(name): reader.agent(str(name), _mapping(doc)) for name, doc in agents.items()}
    return found, reader.problems


def workflow_to_document(wf: Workflow) -> dict[str, Any]:
    """`wf` as a JSON-serialisable document that `workflow_from_document` reads back."""
    doc: dict[str, Any] = {"name": wf.name}
    if wf.description:
        doc["description"] = wf.description
    if wf.input_schema is not None:
        doc["input"] = _plain(wf.input_schema)
    if wf.max_parallel is not None:
        doc["max_parallel"] = wf.max_parallel
    guards = wf.guards
    if guards.max_steps is not None:
        doc["max_steps"] = guards.max_steps
    if guards.deadline is not None:
        doc["deadline"] = guards.deadline
    if guards.max_output_bytes != _DEFAULT_GUARDS.max_output_bytes:
        doc["max_output_bytes"] = guards.max_output_bytes
    if guards.max_tokens is not None:
        doc["max_tokens"] = guards.max_tokens
    if guards.max_cost is not None:
        doc["max_cost"] = guards.max_cost
    if wf.routing != _DEFAULT_ROUTING:
        doc["routing"] = asdict(wf.routing)
    if wf.resources:
        doc["resources"] = dict(wf.resources)
    if wf.adaptation != _DEFAULT_ADAPTATION:
        doc["adapt"] = asdict(wf.adaptation)
    if wf.search_paths:
        doc["search_paths"] = list(wf.search_paths)
    # Workflow `defaults` and an agent's `retry`/`timeout` were resolved into each step when
    # the workflow was read, so the steps below carry them and the document needs no more.
    if wf.agents:
        doc["agents"] = {name: _agent_document(agent) for name, agent in wf.agents.items()}
    if wf.state:
        doc["state"] = {name: _state_document(key) for name, key in wf.state.items()}
    doc["steps"] = {step_id: _step_document(step) for step_id, step in wf.steps.items()}
    if wf.output is not None:
        doc["output"] = _plain(wf.output)
    return doc


def _agent_document(agent: AgentSpec) -> dict[str, Any]:
    doc: dict[str, Any]
    if agent.model is not None:
        doc = {"model": _model_document(agent.model)}
    elif agent.workflow is not None:
        doc = {"workflow": _child_document(agent.workflow)}
    else:
        doc = {"uses": callable_name(agent.uses)}
    if agent.capabilities:
        doc["capabilities"] = sorted(agent.capabilities)
    if agent.concurrency is not None:
        doc["concurrency"] = agent.concurrency
    if agent.description:
        doc["description"] = agent.description
    if agent.rate_limit is not None:
        doc["rate_limit"] = _rate_limit_document(agent.rate_limit)
    if agent.circuit is not None:
        circuit = agent.circuit
        doc["circuit"] = {
            "failures": circuit.failures,
            "window": circuit.window,
            "cooldown": circuit.cooldown,
        }
    return doc


def _step_document(step: Step) -> dict[str, Any]:
    # Only the fields that differ from a default step. A step read from a file holds just
    # the fields it sets (`step_with`), one built in code every field: both are in `vars`.
    doc: dict[str, Any] = {}
    for name, value in vars(step).items():
        writer = _STEP_WRITERS.get(name)
        if writer is None:  # `id`, the key of the step; `pattern`, written below
            continue
        default = _STEP_DEFAULTS[name]
        if value is not default and value is not None and value != default:
            key, write = writer
            doc[key] = write(value)
    if step.pattern is not None:
        options = {"pattern": step.pattern.kind, **_plain(step.pattern.options)}
        doc |= {key: value for key, value in options.items() if value is not None}
    return doc


def _model_document(model: ModelSpec) -> dict[str, Any]:
    optional: dict[str, Any] = {
        "model": model.model,
        "base_url": model.base_url,
        "api_key_env": model.api_key_env,
        "instructions": model.instructions or None,
        "tools": [callable_name(tool) for tool in model.tools] or None,
        "agent_tools": list(model.agent_tools) or None,
        "output_schema": None if model.output_schema is None else _plain(model.output_schema),
        "max_tool_calls": model.max_tool_calls,
        "max_output_retries": model.max_output_retries,
        "temperature": model.temperature,
        "max_tokens": model.max_tokens,
        "price": None
        if model.price is None
        else {"input": model.price.input, "output": model.price.output},
        "rate_limit": None if model.rate_limit is None else _rate_limit_document(model.rate_limit),
    }
    return {key: value for key, value in optional.items() if value is not None}


def _counts(value: Any) -> dict[str, int]:
    """`{gpu: 2}`: names with whole numbers (others are the schema's to report)."""
    return {str(name): n for name, n in _mapping(value).items() if isinstance(n, int)}


def _rate_limit_document(limit: RateLimit) -> dict[str, Any]:
    return {key: value for key, value in asdict(limit).items() if value is not None}


def _rate_limit(value: Any) -> RateLimit | None:
    doc = _mapping(value)
    if not doc:
        return None
    requests, tokens = doc.get("requests_per_minute"), doc.get("tokens_per_minute")
    return RateLimit(
        requests_per_minute=float(requests) if _is_number(requests) else None,
        tokens_per_minute=float(tokens) if _is_number(tokens) else None,
    )


def _model(doc: Mapping[str, Any]) -> ModelSpec:
    """An agent's `model:` mapping (the schema has checked its keys and types)."""
    price = _mapping(doc.get("price"))
    schema = doc.get("output_schema")
    defaults = ModelSpec(model="")
    temperature = doc.get("temperature")
    retries = _integer(doc.get("max_output_retries"))
    return ModelSpec(
        model=_text(doc.get("model")),
        base_url=_optional_text(doc.get("base_url")),
        api_key_env=_optional_text(doc.get("api_key_env")) or defaults.api_key_env,
        instructions=_text(doc.get("instructions")),
        tools=tuple(t for t in _names(doc.get("tools")) if t),
        agent_tools=tuple(t for t in _names(doc.get("agent_tools")) if t),
        output_schema=schema if isinstance(schema, Mapping) else None,
        max_tool_calls=_integer(doc.get("max_tool_calls")) or defaults.max_tool_calls,
        max_output_retries=defaults.max_output_retries if retries is None else retries,
        temperature=float(temperature) if _is_number(temperature) else None,
        max_tokens=_integer(doc.get("max_tokens")),
        rate_limit=_rate_limit(doc.get("rate_limit")),
        price=None
        if not price
        else Price(
            input=float(price["input"]) if _is_number(price.get("input")) else 0.0,
            output=float(price["output"]) if _is_number(price.get("output")) else 0.0,
        ),
    )


def _routing(value: Any) -> RoutingWeights:
    """`routing: fast` (a preset) or `routing: {latency: 2, cost: 0}` (weights)."""
    if isinstance(value, str):
        return ROUTING_PRESETS.get(value, _DEFAULT_ROUTING)
    weights = {k: float(v) for k, v in _mapping(value).items() if _is_number(v)}
    return RoutingWeights(**weights)


def _state_document(key: StateKey) -> dict[str, Any]:
    optional: dict[str, Any] = {
        "reducer": callable_name(key.reducer) if callable(key.reducer) else key.reducer,
        "initial": _plain(key.initial),
        "schema": None if key.schema is None else _plain(key.schema),
    }
    return {name: value for name, value in optional.items() if value is not None}


def _repeat_document(repeat: Repeat) -> dict[str, Any]:
    doc: dict[str, Any] = {"until": repeat.until, "max_iterations": repeat.max_iterations}
    if repeat.on_max != "fail":
        doc["on_max"] = repeat.on_max
    return doc


def _child_document(child: str | Workflow) -> str | dict[str, Any]:
    """A sub-workflow as written: its file path, or (one built in code) its whole document."""
    return child if isinstance(child, str) else workflow_to_document(child)


def _retry_document(retry: RetryPolicy) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "attempts": retry.attempts,
        "backoff": retry.backoff,
        "factor": retry.factor,
        "max_backoff": retry.max_backoff,
    }
    if retry.jitter:
        doc["jitter"] = retry.jitter
    if retry.on:
        doc["on"] = list(retry.on)
    if retry.not_on:
        doc["not_on"] = list(retry.not_on)
    return doc


def _approval_document(approval: Approval) -> str | dict[str, Any]:
    optional: dict[str, Any] = {
        "schema": None if approval.schema is None else _plain(approval.schema),
        "timeout": approval.timeout,
        "default": approval.default,
    }
    rest = {key: value for key, value in optional.items() if value is not None}
    return {"prompt": approval.prompt, **rest} if rest else approval.prompt


def _call_document(call: Call) -> dict[str, Any]:
    optional: dict[str, Any] = {
        "agent": call.agent,
        "capability": call.capability,
        "uses": None if call.uses is None else callable_name(call.uses),
        "with": _plain(call.with_),
    }
    return {key: value for key, value in optional.items() if value is not None}


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
    reports it), and only what the schema cannot say (durations, keys a built-in step may not
    have) is reported here.
    """

    def __init__(self, source: str, locations: Mapping[tuple[Key, ...], Location]) -> None:
        self.source = source
        self.locations = locations
        self.problems: list[DefinitionError] = []
        self.defaults = _Policies()
        self.agent_policies: dict[str, _Policies] = {}
        self.inherited: dict[str, _Policies] = {}  # by agent: see `inherited_policies`
        self.models: Mapping[str, Any] = {}  # the workflow's `models:`, as written
        self.base_dir = "."
        # An empty workflow lends its `locate`, so that problems found before the real one
        # exists are placed by the same rule as every later one.
        self.locate = Workflow(
            name="", steps={}, source=source, base_dir=".", locations=locations
        ).locate

    def workflow(self, doc: Mapping[str, Any], base_dir: str) -> Workflow:
        self.base_dir = base_dir
        agents = _mapping(doc.get("agents"))
        steps = _mapping(doc.get("steps"))
        input_schema = doc.get("input")
        self.defaults = self.policies(("defaults",), _mapping(doc.get("defaults")))
        self.models = _mapping(doc.get("models"))
        max_output_bytes = _integer(doc.get("max_output_bytes"))
        return Workflow(
            name=_text(doc.get("name")),
            description=_text(doc.get("description")),
            input_schema=input_schema if isinstance(input_schema, Mapping) else None,
            output=doc.get("output"),
            max_parallel=_integer(doc.get("max_parallel")),
            guards=Guards(
                max_steps=_integer(doc.get("max_steps")),
                deadline=self.duration(("deadline",), doc.get("deadline"), positive=True),
                max_output_bytes=_DEFAULT_GUARDS.max_output_bytes
                if max_output_bytes is None
                else max_output_bytes,
                max_tokens=_integer(doc.get("max_tokens")),
                max_cost=_cost(doc.get("max_cost")),
            ),
            routing=_routing(doc.get("routing")),
            resources=_counts(doc.get("resources")),
            adaptation=Adaptation(
                **{k: v for k, v in _mapping(doc.get("adapt")).items() if isinstance(v, bool)}
            ),
            agents={name: self.agent(str(name), _mapping(agent)) for name, agent in agents.items()},
            state={
                str(key): self.state_key(str(key), value)
                for key, value in _mapping(doc.get("state")).items()
            },
            steps={step_id: self.step(str(step_id), _mapping(s)) for step_id, s in steps.items()},
            source=self.source,
            base_dir=base_dir,
            locations=self.locations,
            # Relative to the workflow's folder; a stored definition has them absolute.
            search_paths=tuple(str(Path(base_dir, p)) for p in _names(doc.get("search_paths"))),
        )

    def policies(self, path: tuple[Key, ...], doc: Mapping[str, Any]) -> _Policies:
        """The `retry` and `timeout` in `doc` (workflow `defaults` or an agent)."""
        retry = doc.get("retry")
        return _Policies(
            retry=None if retry is None else self.retry((*path, "retry"), retry),
            timeout=self.duration((*path, "timeout"), doc.get("timeout"), positive=True),
        )

    def agent(self, name: str, doc: Mapping[str, Any]) -> AgentSpec:
        capabilities = doc.get("capabilities")
        circuit = doc.get("circuit")
        self.agent_policies[name] = self.policies(("agents", name), doc)
        uses = doc.get("uses")
        workflow = doc.get("workflow")
        model = doc.get("model")
        if sum(x is not None for x in (uses, workflow, model)) > 1:
            self.problem(_AGENT_TARGET.format(name=name), "agents", name)
        return AgentSpec(
            name=name,
            uses=_optional_text(uses) if workflow is not None or model is not None else _text(uses),
            model=self.model(name, doc),
            workflow=None
            if workflow is None
            else self.child_workflow(("agents", name, "workflow"), workflow),
            # Only non-empty strings: a list or mapping in the list would make frozenset
            # raise (unhashable); the schema check reports it to the user instead.
            capabilities=frozenset(c for c in _names(capabilities) if c),
            concurrency=_integer(doc.get("concurrency")),
            description=_text(doc.get("description")),
            circuit=None
            if circuit is None
            else self.circuit(("agents", name, "circuit"), _mapping(circuit)),
            rate_limit=_rate_limit(doc.get("rate_limit")),
        )

    def model(self, agent: str, doc: Mapping[str, Any]) -> ModelSpec | None:
        """An agent's chat model: a `models:` entry or a mapping, and the settings beside it.

        Settings given on the agent (`instructions`, `tools`, ...) win over the model's, so
        one `models:` entry serves agents with different instructions.
        """
        model = doc.get("model")
        settings = {key: doc[key] for key in MODEL_SETTINGS if key in doc}
        if model is None:
            for key in settings:
                self.problem(
                    f"agent {agent!r}: `{key}` is a setting of a model agent; add `model:`",
                    "agents",
                    agent,
                    key,
                )
            return None
        if isinstance(model, str):
            if model not in self.models:
                self.problem(
                    f"agent {agent!r} uses model {model!r}, which `models:` does not declare"
                    f"{suggest(model, self.models)}; declare it there, or write the model "
                    "inline: `model: {model: NAME, base_url: URL}`",
                    "agents",
                    agent,
                    "model",
                )
                return None
            model = self.models[model]
        if not isinstance(model, Mapping):
            return None  # the schema reports the wrong type
        return _model({**model, **settings})

    def circuit(self, path: tuple[Key, ...], doc: Mapping[str, Any]) -> CircuitPolicy:
        failures = _integer(doc.get("failures"))
        window = self.duration((*path, "window"), doc.get("window"), positive=True)
        cooldown = self.duration((*path, "cooldown"), doc.get("cooldown"), positive=True)
        return CircuitPolicy(
            failures=_DEFAULT_CIRCUIT.failures if failures is None else failures,
            window=_DEFAULT_CIRCUIT.window if window is None else window,
            cooldown=_DEFAULT_CIRCUIT.cooldown if cooldown is None else cooldown,
        )

    def state_key(self, name: str, value: Any) -> StateKey:
        """A `state:` entry: a reducer name (or callable path), or a mapping."""
        if isinstance(value, str):
            return StateKey(name=name, reducer=value)
        doc = _mapping(value)
        schema = doc.get("schema")
        reducer = doc.get("reducer")
        return StateKey(
            name=name,
            reducer=reducer if isinstance(reducer, str) else "replace",
            initial=doc.get("initial"),
            schema=schema if isinstance(schema, Mapping) else None,
        )

    def repeat(self, value: Any) -> Repeat:
        doc = _mapping(value)
        until = doc.get("until")
        maximum = _integer(doc.get("max_iterations"))
        on_max = doc.get("on_max")
        return Repeat(
            until=str(until).lower() if isinstance(until, bool) else _text(until),
            max_iterations=0 if maximum is None else maximum,
            on_max=on_max if on_max in ("fail", "continue") else "fail",
        )

    def step(
        self, step_id: str, doc: Mapping[str, Any], path: tuple[Key, ...] | None = None
    ) -> Step:
        # Only the keys `doc` has are read and given to the step (`step_with`): a workflow
        # may hold many steps, and most set a few of their fields.
        path = ("steps", step_id) if path is None else path
        builtin = next((key for key in _BUILTINS if doc.get(key) is not None), None)
        if builtin is not None:
            for key in _NOT_FOR_BUILTINS:
                if key in doc:
                    self.problem(
                        f"step {step_id!r} is a built-in {builtin} step and cannot have `{key}`",
                        *path,
                        key,
                    )
        fields: dict[str, Any] = {"id": step_id}
        for key, value in doc.items():
            reading = _STEP_READERS.get(key)
            if reading is not None and value is not None:
                name, read = reading
                value = read(self, (*path, key), value)
                if value is not None:
                    fields[name] = value
        agent = None if builtin else fields.get("agent") or None
        retry, timeout = self.step_policies(path, doc, agent, builtin)
        if retry is not _DEFAULT_RETRY:
            fields["retry"] = retry
        if timeout is not None:
            fields["timeout"] = timeout
        pattern = self.pattern(path, doc, doc.get("pattern"))
        if pattern is not None:
            fields["pattern"] = pattern
        return step_with(fields)

    def pattern(
        self, path: tuple[Key, ...], doc: Mapping[str, Any], kind: Any
    ) -> PatternSpec | None:
        """`pattern: <kind>` and the options beside it; durations read as seconds."""
        if kind is None and _PATTERN_KEY_SET.isdisjoint(doc):
            return None  # not a pattern step (the usual case, answered without a scan)
        options = {key: doc[key] for key in _PATTERN_KEYS if key in doc}
        if not isinstance(kind, str):
            for key in options:
                self.problem(
                    f"step {path[-1]!r}: `{key}` is an option of a pattern step; "
                    "add `pattern: <kind>`",
                    *path,
                    key,
                )
            return None
        for key in _PATTERN_DURATIONS:
            if key in options:
                options[key] = self.duration((*path, key), options[key], positive=True)
        return PatternSpec(kind, options)

    def child_workflow(self, path: tuple[Key, ...], value: Any) -> str | Workflow | None:
        """A `workflow:` value: a file path as written, or an inline definition read here.

        An inline child is located in this document, under `path`, and shares its folder.
        Its own name as a source says where it stands, so that it is never mistaken for the
        file that holds it (a workflow read from a file is known by the file).
        """
        if isinstance(value, str):
            return value or None
        if not isinstance(value, Mapping):
            return None  # the schema reports the wrong type
        reader = _Reader(f"{self.source} ({path_text(path)})", _Nested(self.locations, path))
        child = reader.workflow(value, self.base_dir)
        self.problems.extend(reader.problems)
        return child

    def step_policies(
        self, path: tuple[Key, ...], doc: Mapping[str, Any], agent: str | None, builtin: str | None
    ) -> tuple[RetryPolicy, float | None]:
        """The step's retry and timeout: its own, else its agent's, else the workflow's.

        A built-in step takes neither from its agent or the defaults: it calls no agent.
        """
        retry = doc.get("retry")
        timeout = doc.get("timeout")
        own_retry = None if retry is None else self.retry((*path, "retry"), retry)
        own_timeout = (
            None if timeout is None else self.duration((*path, "timeout"), timeout, positive=True)
        )
        if builtin is not None:
            return own_retry or _DEFAULT_RETRY, own_timeout
        inherited = self.defaults if agent is None else self.inherited_policies(agent)
        if retry is None:
            own_retry = inherited.retry
        if timeout is None:
            own_timeout = inherited.timeout
        return own_retry or _DEFAULT_RETRY, own_timeout

    def inherited_policies(self, agent: str) -> _Policies:
        """What a step calling `agent` inherits: each policy the agent's, else the workflow's."""
        found = self.inherited.get(agent)
        if found is None:
            own = self.agent_policies.get(agent, _Policies())
            found = _Policies(
                retry=self.defaults.retry if own.retry is None else own.retry,
                timeout=self.defaults.timeout if own.timeout is None else own.timeout,
            )
            self.inherited[agent] = found
        return found

    def retry(self, path: tuple[Key, ...], value: Any) -> RetryPolicy:
        attempts = _integer(value)
        if attempts is not None:
            return RetryPolicy(attempts=attempts)
        doc = _mapping(value)
        attempts = _integer(doc.get("attempts"))
        backoff = self.duration((*path, "backoff"), doc.get("backoff"))
        factor = doc.get("factor")
        max_backoff = self.duration((*path, "max_backoff"), doc.get("max_backoff"))
        jitter = doc.get("jitter")
        return RetryPolicy(
            attempts=_DEFAULT_RETRY.attempts if attempts is None else attempts,
            backoff=_DEFAULT_RETRY.backoff if backoff is None else backoff,
            factor=float(factor) if _is_number(factor) else _DEFAULT_RETRY.factor,
            max_backoff=_DEFAULT_RETRY.max_backoff if max_backoff is None else max_backoff,
            jitter=float(jitter) if _is_number(jitter) else _DEFAULT_RETRY.jitter,
            on=_names(doc.get("on")),
            not_on=_names(doc.get("not_on")),
        )

    def approval(self, path: tuple[Key, ...], value: Any) -> Approval:
        if isinstance(value, str):
            return Approval(prompt=value)
        doc = _mapping(value)
        schema = doc.get("schema")
        default = doc.get("default")
        return Approval(
            prompt=_text(doc.get("prompt")),
            schema=schema if isinstance(schema, Mapping) else None,
            timeout=self.duration((*path, "timeout"), doc.get("timeout"), positive=True),
            default=default if default in ("approve", "reject") else None,
        )

    def wait_until(self, path: tuple[Key, ...], value: Any) -> str | None:
        """The `wait_until` text: an expression, or a literal time made into one.

        The engine evaluates the text as a condition (`${{ expr }}` or a bare expression), in
        which a bare number is epoch seconds; a literal ISO 8601 time is quoted to stay text.
        """
        if _is_number(value):
            return repr(value)
        if not isinstance(value, str):
            return None
        text = value.strip()
        if "${{" in text or not _ISO_TIME.fullmatch(text):
            return value
        try:
            datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            self.problem(
                f"{path_text(path)}: {value!r} is not an ISO 8601 time "
                "(such as 2026-11-24T18:00:00Z)",
                *path,
            )
            return None
        return f"${{{{ '{text}' }}}}"

    def problem(self, message: str, *path: Key) -> None:
        self.problems.append(DefinitionError(message, where=self.locate(*path)))

    def duration(
        self, path: tuple[Key, ...], value: Any, *, positive: bool = False
    ) -> float | None:
        """Seconds in `value`, or None if absent or unreadable (a problem names the field)."""
        if not (_is_number(value) or isinstance(value, str)):
            return None  # absent, or the wrong type: the schema reports that
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problem(f"{path_text(path)}: {exc}", *path)
            return None
        if positive and seconds <= 0:
            self.problem(f"{path_text(path)} must be more than 0, not {value!r}", *path)
            return None
        return seconds


_AGENT_TARGET = "agent {name!r} must have exactly one of uses, workflow or model"


class _Nested(Mapping[tuple[Key, ...], Location]):
    """The locations of a document nested in another at `prefix` (an inline sub-workflow)."""

    __slots__ = ("_outer", "_prefix")

    def __init__(self, outer: Mapping[tuple[Key, ...], Location], prefix: tuple[Key, ...]) -> None:
        self._outer = outer
        self._prefix = prefix

    def __getitem__(self, path: tuple[Key, ...]) -> Location:
        found = self._outer.get((*self._prefix, *path))
        if found is None:
            raise KeyError(path)
        return found

    def __iter__(self) -> Iterator[tuple[Key, ...]]:
        size = len(self._prefix)
        return (p[size:] for p in self._outer if p[:size] == self._prefix)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _as_is(value: Any) -> Any:
    return value


def _steps_document(steps: Mapping[str, Step]) -> dict[str, Any]:
    return {step_id: _step_document(step) for step_id, step in steps.items()}


_STEP_DEFAULTS: dict[str, Any] = {
    name: spec.default for name, spec in Step.__dataclass_fields__.items()
}
# How each `Step` field is stored: its key in the document, and how its value is written.
_STEP_WRITERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "agent": ("agent", _as_is),
    "capability": ("capability", _as_is),
    "uses": ("uses", callable_name),
    "workflow": ("workflow", _child_document),
    "sleep": ("sleep", _as_is),
    "wait_until": ("wait_until", _as_is),
    "approval": ("approval", _approval_document),
    "needs": ("needs", list),
    "with_": ("with", _plain),
    "condition": ("if", _as_is),
    "trigger": ("trigger", _as_is),
    "for_each": ("for_each", _as_is),
    "max_parallel": ("max_parallel", _as_is),
    "retry": ("retry", _retry_document),
    "timeout": ("timeout", _as_is),
    "deadline": ("deadline", _as_is),
    "fallback": ("fallback", _call_document),
    "compensate": ("compensate", _call_document),
    "continue_on_error": ("continue_on_error", _as_is),
    "description": ("description", _as_is),
    "writes": ("writes", _plain),
    "repeat": ("repeat", _repeat_document),
    "steps": ("steps", _steps_document),
    "estimate": ("estimate", _as_is),
    "uses_resources": ("uses_resources", dict),
}


def _substeps(reader: _Reader, path: tuple[Key, ...], value: Any) -> dict[str, Step] | None:
    if not isinstance(value, Mapping):
        return None
    return {
        str(sid): reader.step(str(sid), _mapping(s), (*path, str(sid))) for sid, s in value.items()
    }


def _condition(value: Any) -> str | None:
    """An `if`: an expression, or a literal true or false (as YAML reads them)."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else None


_Read = Callable[[_Reader, tuple[Key, ...], Any], Any]
# How a step's keys are read: the `Step` field, and its value from the key's (not null),
# or None to leave the field at its default (the schema reports a value of the wrong type).
# `retry`, `timeout` and a pattern's options are read apart: they depend on other keys.
_STEP_READERS: dict[str, tuple[str, _Read]] = {
    "agent": ("agent", lambda _, __, value: _optional_text(value)),
    "capability": ("capability", lambda _, __, value: _optional_text(value)),
    "uses": ("uses", lambda _, __, value: _optional_text(value)),
    "for_each": ("for_each", lambda _, __, value: _optional_text(value)),
    "needs": ("needs", lambda _, __, value: (value,) if isinstance(value, str) else _names(value)),
    "with": ("with_", lambda _, __, value: value),
    "if": ("condition", lambda _, __, value: _condition(value)),
    "trigger": ("trigger", lambda _, __, value: value if value in TRIGGERS else None),
    "max_parallel": ("max_parallel", lambda _, __, value: _integer(value)),
    "continue_on_error": ("continue_on_error", lambda _, __, value: value is True or None),
    "description": ("description", lambda _, __, value: _optional_text(value)),
    "sleep": ("sleep", _Reader.duration),
    "wait_until": ("wait_until", _Reader.wait_until),
    "approval": ("approval", _Reader.approval),
    "deadline": (
        "deadline",
        lambda reader, path, value: reader.duration(path, value, positive=True),
    ),
    "fallback": ("fallback", lambda _, __, value: _call(value)),
    "compensate": ("compensate", lambda _, __, value: _call(value)),
    "workflow": ("workflow", _Reader.child_workflow),
    "writes": ("writes", lambda _, __, value: value if isinstance(value, Mapping) else None),
    "repeat": ("repeat", lambda reader, _, value: reader.repeat(value)),
    "steps": ("steps", _substeps),
    "estimate": (
        "estimate",
        lambda reader, path, value: reader.duration(path, value, positive=True),
    ),
    "uses_resources": ("uses_resources", lambda _, __, value: _counts(value) or None),
}


def _call(value: Any) -> Call:
    doc = _mapping(value)
    return Call(
        agent=_optional_text(doc.get("agent")),
        capability=_optional_text(doc.get("capability")),
        uses=_optional_text(doc.get("uses")),
        with_=doc.get("with"),
    )


def _names(value: Any) -> tuple[str, ...]:
    return tuple(item for item in _list(value) if isinstance(item, str))


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


def _cost(value: Any) -> float | None:
    """A money amount (`max_cost`): any non-boolean number; the schema has said what else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
