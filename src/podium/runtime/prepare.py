"""Binding a workflow for execution: every check that needs more than the text, done once.

`prepare` resolves each agent and `uses` callable, compiles every expression, builds the
plan, and reports all problems together as one `DefinitionError` — before anything runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

from podium.agents import Agent, LLMAgent, PythonAgent, Registry, Tool
from podium.errors import DefinitionError, InputError
from podium.model import AgentSpec, Call, Repeat, Step, Workflow
from podium.model.callables import CallableRef, callable_name, import_callable
from podium.model.state import BUILTIN_REDUCERS, ReduceFn, initial_value
from podium.runtime.subworkflow import WorkflowAgent
from podium.scheduler import estimates, recorded
from podium.scheduler.plan import Plan
from podium.spec import Template, compile_condition, compile_template, validate_workflow

# What is made once per step is a msgspec Struct rather than a frozen dataclass: its
# `__init__`, in C, costs a tenth as much, which counts in a workflow of many steps.


class PreparedCall(msgspec.Struct, frozen=True, kw_only=True):
    """Who to call (an agent, or a capability to route by) and the compiled input."""

    agent: Agent | None
    capability: str | None
    payload: Template

    @property
    def target(self) -> str:
        return self.agent.name if self.agent is not None else f"capability {self.capability}"


class PreparedStep(msgspec.Struct, frozen=True, kw_only=True):
    """A step with its calls resolved and its expressions compiled.

    `call` is None for a built-in step (sleep, wait_until, approval).
    """

    step: Step
    call: PreparedCall | None
    condition: Template | None
    items: Template | None
    prompt: Template | None = None  # of an approval step
    wake_at: Template | None = None  # of a wait_until step
    fallback: PreparedCall | None = None
    compensate: PreparedCall | None = None
    writes: Mapping[str, Template] | None = None
    loop: PreparedLoop | None = None


class PreparedLoop(msgspec.Struct, frozen=True, kw_only=True):
    """A `repeat` step (or a group): its iterations' steps and when to stop."""

    until: Template
    repeat: Repeat
    body: tuple[str, ...]  # the ids of one iteration's steps
    group: bool  # the body is a group of steps, not the step itself


# A group without `repeat` runs its steps once.
_ONCE = Repeat(until="true", max_iterations=1)

# The payload of a call without `with`: null, a constant.
_NO_INPUT = Template(None, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedState:
    """The state keys: their values before any write, reducers and schema checks."""

    initial: Mapping[str, Any]
    reducers: Mapping[str, ReduceFn]
    names: Mapping[str, str]  # reducer names as recorded: "append", "pkg.mod:fn"
    checks: Mapping[str, Callable[[Any], str | None]]  # key -> why a value is invalid


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A workflow ready to run: its plan, its agents, its compiled steps and output.

    `body_steps` are the steps of loop iterations, by their id in the definition (a
    repeated step without a group is its own body, so it is in both).
    """

    workflow: Workflow
    plan: Plan
    registry: Registry
    steps: Mapping[str, PreparedStep]
    output: Template
    body_steps: Mapping[str, PreparedStep]
    state: PreparedState

    def expected_seconds(self) -> dict[str, float]:
        """Each step's expected duration: its `estimate`, else what its agent took lately
        (the registry's moving latency, saved by earlier runs); steps with neither are
        left out, for the scheduler's default."""
        return recorded(self.workflow, self.registry.figures(), "latency") | estimates(
            self.workflow
        )

    def check_input(self, value: Any) -> None:
        """Check the run input is JSON data and fits the workflow's `input` schema.

        Raises `InputError`. The input is stored with the run, so what cannot be stored is
        refused here, before anything is written.
        """
        try:
            msgspec.json.encode(value)
        except RecursionError:
            raise InputError(
                f"{self.workflow.source}: the run input is nested too deeply"
            ) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(
                f"{self.workflow.source}: the run input is not JSON data: {exc}"
            ) from None
        schema = self.workflow.input_schema
        if schema is None:
            return
        import jsonschema

        validator = jsonschema.Draft202012Validator(dict(schema))
        problems = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if problems:
            lines = [
                f"input{''.join(_path_part(p) for p in e.absolute_path)}: {e.message}"
                for e in problems
            ]
            raise InputError(
                f"{self.workflow.source}: the run input is not valid: " + "; ".join(lines)
            )


def _path_part(part: str | int) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


# The workflow files being prepared, outermost first: a sub-workflow that includes one of
# them again would never end.
_PREPARING: ContextVar[tuple[str, ...]] = ContextVar("podium_preparing", default=())


def prepare(workflow: Workflow) -> Prepared:
    """Check and bind `workflow`; raises `DefinitionError` listing every problem found.

    Sub-workflows are prepared too, so a mistake in one is found before anything runs.
    """
    validate_workflow(workflow)
    token = _PREPARING.set((*_PREPARING.get(), _identity(workflow)))
    try:
        return _prepare(workflow)
    finally:
        _PREPARING.reset(token)


def _identity(workflow: Workflow) -> str:
    """A workflow read from a file is known by the file; one built in code by itself."""
    source = Path(workflow.source)
    return str(source.resolve()) if source.is_file() else f"<{workflow.name} {id(workflow)}>"


def _prepare(workflow: Workflow) -> Prepared:
    binder = _Binder(workflow)
    steps: dict[str, PreparedStep] = {}
    body_steps: dict[str, PreparedStep] = {}
    for step in workflow.steps.values():
        try:
            if step.steps is not None or step.repeat is not None:
                steps[step.id] = binder.loop(step, body_steps)
            else:
                steps[step.id] = binder.step(step)
        except DefinitionError as exc:
            binder.problems.append(exc)
    state = binder.state()
    if binder.problems:
        raise DefinitionError.collect(binder.problems)
    for agent in binder.inline.values():  # inline `uses` agents are tracked like declared ones
        binder.registry.add(agent)
    return Prepared(
        workflow=workflow,
        plan=Plan.from_workflow(workflow),
        registry=binder.registry,
        steps=steps,
        output=compile_template(workflow.output, where=workflow.locator("output")),
        body_steps=body_steps,
        state=state,
    )


class _Binder:
    """Resolves callables into agents once each, collecting every problem on the way."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.problems: list[DefinitionError] = []
        self.registry = Registry(workflow.routing)
        self.inline: dict[str, Agent] = {}  # one agent per distinct `uses`, shared by steps
        self._calls_without_input: dict[tuple[Agent | None, str | None], PreparedCall] = {}
        self._search = workflow.module_folders
        for spec in workflow.agents.values():
            agent: Agent | None = None
            if spec.workflow is not None:
                child = self._child_workflow(spec.workflow, "agents", spec.name, "workflow")
                if child is not None:
                    agent = WorkflowAgent(
                        child,
                        name=spec.name,
                        capabilities=spec.capabilities,
                        concurrency=spec.concurrency,
                    )
            elif spec.uses is not None:
                fn = self._resolve(spec.uses, "agents", spec.name, "uses")
                if fn is not None:
                    agent = PythonAgent(
                        spec.name, fn, capabilities=spec.capabilities, concurrency=spec.concurrency
                    )
            elif spec.model is not None:
                agent = self._model_agent(spec)
            if agent is not None:
                self.registry.add(agent)
        self._bind_agent_tools()  # once every agent exists: they may name each other

    def _model_agent(self, spec: AgentSpec) -> LLMAgent | None:
        """A chat model agent with its callable tools; its agent tools are bound later."""
        assert spec.model is not None
        tools: list[Tool] = []
        for i, ref in enumerate(spec.model.tools):
            fn = self._resolve(ref, "agents", spec.name, "model", "tools", i)
            try:
                tools += [Tool.from_callable(fn)] if fn is not None else []
            except TypeError as exc:
                where = self.workflow.locate("agents", spec.name, "model", "tools", i)
                self.problems.append(DefinitionError(str(exc), where=where))
        try:
            return LLMAgent(
                spec.name,
                spec.model,
                tools=tools,
                capabilities=spec.capabilities,
                concurrency=spec.concurrency,
            )
        except DefinitionError as exc:  # tools named alike, an output_schema that is no schema
            where = self.workflow.locate("agents", spec.name, "model")
            self.problems.append(DefinitionError(str(exc), where=where))
            return None

    def _bind_agent_tools(self) -> None:
        for spec in self.workflow.agents.values():
            agent = self.registry.agents.get(spec.name)
            if spec.model is None or not isinstance(agent, LLMAgent):
                continue
            where = functools.partial(
                self.workflow.locate, "agents", spec.name, "model", "agent_tools"
            )
            tools: list[Tool] = []
            for name in spec.model.agent_tools:
                other = self.registry.agents.get(name)
                if name not in self.workflow.agents:
                    known = ", ".join(self.workflow.agents)
                    message = f"agent {spec.name}: no agent {name!r} to call as a tool ({known})"
                    self.problems.append(DefinitionError(message, where=where()))
                elif other is not None:  # else it could not be built: that is reported
                    takes = None
                    if isinstance(other, WorkflowAgent):
                        takes = other.workflow.input_schema
                    if takes is not None and takes.get("type") != "object":
                        takes = None  # the model's arguments are an object: it would never fit
                    about = self.workflow.agents[name].description
                    tools.append(Tool.from_agent(other, about, parameters=takes))
            try:
                agent.add_tools(tools)
            except DefinitionError as exc:
                self.problems.append(DefinitionError(str(exc), where=where()))

    def _resolve(self, ref: CallableRef, *path: str | int) -> Any:
        if not isinstance(ref, str):
            return ref
        try:
            where = functools.partial(self.workflow.locate, *path)
            return import_callable(ref, search=self._search, where=where)
        except DefinitionError as exc:
            self.problems.append(exc)
            return None

    def call(
        self,
        agent: str | None,
        capability: str | None,
        uses: CallableRef | None,
        with_: Any,
        *path: str,
    ) -> PreparedCall:
        bound: Agent | None = None
        if agent is not None:
            bound = self.registry.agents.get(agent)
        elif uses is not None:
            name = callable_name(uses)
            bound = self.inline.get(name)
            if bound is None:
                fn = self._resolve(uses, *path, "uses")
                if fn is not None:
                    bound = self.inline[name] = PythonAgent(name, fn)
        if with_ is not None:
            payload = compile_template(with_, where=self.workflow.locator(*path, "with"))
            return PreparedCall(agent=bound, capability=capability, payload=payload)
        # Without input, calls of one target are equal values: the steps share one.
        shared = self._calls_without_input.get((bound, capability))
        if shared is None:
            shared = PreparedCall(agent=bound, capability=capability, payload=_NO_INPUT)
            self._calls_without_input[bound, capability] = shared
        return shared

    def child(self, ref: str | Workflow, with_: Any, *path: str) -> PreparedCall:
        """The call of a `workflow` step: the child workflow, loaded and prepared."""
        child = self._child_workflow(ref, *path, "workflow")
        agent: Agent | None = None
        if child is not None:
            # Steps naming the same file share one agent; a child given inline or in code is
            # its own (two inline children may come from one file: its source is no key).
            named_by = (
                Path(self.workflow.base_dir, ref).resolve() if isinstance(ref, str) else id(ref)
            )
            agent = self.inline.setdefault(f"workflow:{named_by}", WorkflowAgent(child))
        return PreparedCall(
            agent=agent,
            capability=None,
            payload=compile_template(with_, where=self.workflow.locator(*path, "with")),
        )

    def pattern(self, step: Step, path: tuple[str, ...]) -> PreparedCall:
        """The call of a `pattern` step: the pattern built over the workflow's agents.

        The pattern is an agent of its own, `<kind>:<step>` (a name no declared agent can
        have), tracked like the others; its participants are the declared agents it names.
        """
        from podium.patterns import parse_pattern

        assert step.pattern is not None
        agent: Agent | None = None
        locate = self.workflow.locator(*path)
        try:
            pattern = parse_pattern(
                step.pattern.kind, step.pattern.options, locate, search=self._search
            )
            if set(pattern.participants) <= set(self.registry.agents):  # else: reported
                name = f"{step.pattern.kind}:{step.id}"
                agent = self.inline[name] = pattern.build(self.registry.agents, name=name)
        except DefinitionError as exc:
            located = exc if exc.where else DefinitionError(str(exc), where=locate(("pattern",)))
            self.problems.append(located)
        return PreparedCall(
            agent=agent,
            capability=None,
            payload=compile_template(step.with_, where=self.workflow.locator(*path, "with")),
        )

    def _child_workflow(self, ref: str | Workflow, *path: str) -> Workflow | None:
        """The child workflow `ref` (at `path`) names, prepared (so its mistakes count as ours)."""
        child: Workflow | None = None
        if isinstance(ref, str):
            file = Path(self.workflow.base_dir) / ref
            chain = _PREPARING.get()
            if str(file.resolve()) in chain:
                names = [Path(p).name for p in chain[chain.index(str(file.resolve())) :]]
                self.problems.append(
                    DefinitionError(
                        f"sub-workflows include each other: {' -> '.join([*names, file.name])}",
                        where=self.workflow.locate(*path),
                    )
                )
            elif not file.is_file():
                where = self.workflow.locate(*path)
                self.problems.append(DefinitionError(f"no workflow file {ref!r}", where=where))
            else:
                child = self._load(file)
        else:
            child = ref
        if child is None:
            return None
        try:
            prepare(child)
        except DefinitionError as exc:
            self.problems.append(exc)
            return None
        return child

    def _load(self, file: Path) -> Workflow | None:
        from podium.spec import load_workflow

        try:
            return load_workflow(file)
        except DefinitionError as exc:
            self.problems.append(exc)
            return None

    def loop(self, step: Step, body_steps: dict[str, PreparedStep]) -> PreparedStep:
        """A repeated step or a group: the loop step itself, and its body's steps."""
        path = ("steps", step.id)
        repeat = step.repeat or _ONCE
        if step.steps is None:  # the step is its own body: each iteration calls it
            body: tuple[str, ...] = (step.id,)
            inner = replace(step, needs=(), condition=None, trigger="all_success", repeat=None)
            body_steps[step.id] = self.step(inner)
            writes = None
        else:
            body = tuple(step.steps)
            for inner in step.steps.values():
                body_steps[inner.id] = self.step(inner, (*path, "steps", inner.id))
            writes = self.writes(step, path)
        return PreparedStep(
            step=step,
            call=None,
            condition=None
            if step.condition is None
            else compile_condition(step.condition, where=self.workflow.locator(*path, "if")),
            items=None,
            writes=writes,
            loop=PreparedLoop(
                until=compile_condition(
                    repeat.until, where=self.workflow.locator(*path, "repeat", "until")
                ),
                repeat=repeat,
                body=body,
                group=step.steps is not None,
            ),
        )

    def writes(self, step: Step, path: tuple[str, ...]) -> Mapping[str, Template] | None:
        if not step.writes:
            return None
        return {
            key: compile_template(value, where=self.workflow.locator(*path, "writes", key))
            for key, value in step.writes.items()
        }

    def state(self) -> PreparedState:
        """The state keys' reducers resolved and their schemas compiled."""
        reducers: dict[str, ReduceFn] = {}
        names: dict[str, str] = {}
        checks: dict[str, Callable[[Any], str | None]] = {}
        initial: dict[str, Any] = {}
        for name, key in self.workflow.state.items():
            reducer = key.reducer
            if isinstance(reducer, str) and reducer in BUILTIN_REDUCERS:
                reducers[name] = BUILTIN_REDUCERS[reducer]  # type: ignore[index]
                names[name] = reducer
            else:
                fn = self._resolve(reducer, "state", name, "reducer")
                if fn is not None:
                    reducers[name] = fn
                names[name] = callable_name(reducer)
            initial[name] = initial_value(names[name], key.initial)
            if key.schema is not None:
                checks[name] = _schema_check(key.schema)
                why = checks[name](initial[name]) if key.initial is not None else None
                if why is not None:
                    self.problems.append(
                        DefinitionError(
                            f"state key {name!r}: initial value does not meet its schema: {why}",
                            where=self.workflow.locate("state", name, "initial"),
                        )
                    )
        return PreparedState(initial=initial, reducers=reducers, names=names, checks=checks)

    def step(self, step: Step, path: tuple[str, ...] | None = None) -> PreparedStep:
        path = ("steps", step.id) if path is None else path
        at = self.workflow.locator
        call = None
        if step.workflow is not None:
            call = self.child(step.workflow, step.with_, *path)
        elif step.pattern is not None:
            call = self.pattern(step, path)
        elif step.builtin is None:
            call = self.call(step.agent, step.capability, step.uses, step.with_, *path)
        fallback = compensate = None
        if step.fallback is not None:
            fallback = self.extra_call(step.fallback, (*path, "fallback"))
        if step.compensate is not None:
            compensate = self.extra_call(step.compensate, (*path, "compensate"))
        return PreparedStep(
            step=step,
            call=call,
            condition=None
            if step.condition is None
            else compile_condition(step.condition, where=at(*path, "if")),
            items=None
            if step.for_each is None
            else compile_condition(step.for_each, where=at(*path, "for_each")),
            prompt=None
            if step.approval is None
            else compile_template(step.approval.prompt, where=at(*path, "approval")),
            wake_at=None
            if step.wait_until is None
            else compile_condition(step.wait_until, where=at(*path, "wait_until")),
            fallback=fallback,
            compensate=compensate,
            writes=self.writes(step, path),
        )

    def extra_call(self, call: Call, path: tuple[str, ...]) -> PreparedCall:
        """A step's `fallback` or `compensate` call."""
        return self.call(call.agent, call.capability, call.uses, call.with_, *path)


def _schema_check(schema: Mapping[str, Any]) -> Callable[[Any], str | None]:
    """A function telling why a value does not meet `schema` (None when it does)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(dict(schema))

    def check(value: Any) -> str | None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        return None if error is None else error.message

    return check
