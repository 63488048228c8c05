"""Binding a workflow for execution: every check that needs more than the text, done once.

`prepare` resolves each agent and `uses` callable, compiles every expression, builds the
plan, and reports all problems together as one `DefinitionError` — before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.agents import Agent, PythonAgent, Registry, import_callable
from podium.errors import DefinitionError, InputError, Location
from podium.model import Step, Workflow
from podium.model.workflow import CallableRef, callable_name
from podium.scheduler.plan import Plan
from podium.spec import Template, compile_condition, compile_template, validate_workflow


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedStep:
    """A step with its agent (or the capability to route by) and compiled expressions."""

    step: Step
    agent: Agent | None
    capability: str | None
    payload: Template
    condition: Template | None
    items: Template | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A workflow ready to run: its plan, its agents, its compiled steps and output."""

    workflow: Workflow
    plan: Plan
    registry: Registry
    steps: Mapping[str, PreparedStep]
    output: Template

    def check_input(self, value: Any) -> None:
        """Validate the run input against the workflow's `input` schema; raises InputError."""
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


def prepare(workflow: Workflow) -> Prepared:
    """Check and bind `workflow`; raises `DefinitionError` listing every problem found."""
    validate_workflow(workflow)
    problems: list[DefinitionError] = []
    search = [workflow.base_dir, str(Path.cwd())]
    registry = Registry()

    def resolve(ref: CallableRef, *path: str | int) -> Any:
        if not isinstance(ref, str):
            return ref
        try:
            return import_callable(ref, search=search, where=workflow.locate(*path))
        except DefinitionError as exc:
            problems.append(exc)
            return None

    for spec in workflow.agents.values():
        fn = resolve(spec.uses, "agents", spec.name, "uses")
        if fn is not None:
            registry.add(
                PythonAgent(
                    spec.name,
                    fn,
                    capabilities=spec.capabilities,
                    concurrency=spec.concurrency,
                )
            )
    steps: dict[str, PreparedStep] = {}
    inline: dict[str, Agent] = {}  # one agent per distinct `uses`, shared by its steps
    for step in workflow.steps.values():
        agent: Agent | None = None
        if step.agent is not None:
            agent = registry.agents.get(step.agent)
        elif step.uses is not None:
            name = callable_name(step.uses)
            agent = inline.get(name)
            if agent is None:
                fn = resolve(step.uses, "steps", step.id, "uses")
                if fn is not None:
                    agent = inline[name] = PythonAgent(name, fn)
        try:
            steps[step.id] = _compile_step(workflow, step, agent)
        except DefinitionError as exc:
            problems.append(exc)
    if problems:
        raise DefinitionError.collect(problems)
    for agent in inline.values():  # inline `uses` agents are tracked like declared ones
        registry.add(agent)
    return Prepared(
        workflow=workflow,
        plan=Plan.from_workflow(workflow),
        registry=registry,
        steps=steps,
        output=compile_template(workflow.output, where=workflow.locate("output")),
    )


def _compile_step(workflow: Workflow, step: Step, agent: Agent | None) -> PreparedStep:
    def where(key: str) -> Callable[[tuple[str | int, ...]], Location]:
        # Located only if an expression is wrong: looking up is not free for 10,000 steps.
        return lambda path: workflow.locate("steps", step.id, key, *path)

    return PreparedStep(
        step=step,
        agent=agent,
        capability=step.capability,
        payload=compile_template(step.with_, where=where("with")),
        condition=None
        if step.condition is None
        else compile_condition(step.condition, where=where("if")),
        items=None
        if step.for_each is None
        else compile_condition(step.for_each, where=where("for_each")),
    )
