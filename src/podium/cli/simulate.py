"""`podium simulate FILE`: the schedule a run would follow, predicted without calling an agent.

Each step takes its `estimate` (a `sleep` step its sleep), else what its agent took in
recorded runs (the figures saved in the store, `--db`), else 1 s; the real scheduler
orders the steps on a virtual clock (`podium.scheduler.simulate`), so the prediction is
the runtime's own ordering under those durations. The cost is what each call of the
step's agent cost lately, summed over the calls the run would make. What is known only while
running is assumed, and the output says what was assumed: a for_each step over the input
has as many items as the input's list (`--input`), otherwise one; an `if` that reads only
the input is evaluated, otherwise taken as true; a loop runs one iteration.

Registered on the `podium` group in `app.py`; the app's helpers are imported inside the
command, so that loading the workflow and reading errors work exactly as for `podium run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podium.cli.options import (
    catalog_option,
    json_option,
    limit_option,
    store_option,
    workflow_file,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rich.console import Console

    from podium.model import Step, Workflow
    from podium.scheduler import Simulation
    from podium.store import Store


@dataclass(frozen=True, slots=True)
class Prediction:
    """A simulated run and the assumptions it rests on, in words."""

    workflow: str
    simulation: Simulation
    assumptions: tuple[str, ...]
    cost: float | None = None  # None: no recorded cost for any step

    def as_json(self) -> dict[str, Any]:
        run = self.simulation
        return {
            "workflow": self.workflow,
            "max_parallel": run.slots,
            "makespan": run.makespan,
            "cost": self.cost,
            "critical_path": {"steps": list(run.critical_path), "seconds": run.critical_length},
            "schedule": [
                {"step": p.key, "slot": p.slot, "start": p.start, "end": p.end}
                for p in run.schedule
            ],
            "assumptions": list(self.assumptions),
        }


@click.command()
@workflow_file
@catalog_option("A shared agent catalog (agents.yaml), as for `podium run`.")
@click.option("--input", "input_text", metavar="JSON", help="The run input: counts for_each items.")
@limit_option("At most N steps at once (default: the workflow's max_parallel, else no limit).")
@store_option("The store whose recorded runs give the agents' durations and costs (read only).")
@json_option
def simulate(
    file: Path,
    agents_file: Path | None,
    input_text: str | None,
    max_parallel: int | None,
    db: str,
    as_json: bool,
) -> None:
    """Predict the makespan, cost and critical path of the workflow in FILE, without running it.

    Each step takes its `estimate` (a sleep step its sleep), else its agent's recorded
    duration in the store, else 1 s; no agent is called.
    """
    from podium.cli.app import (
        _console,
        _load_workflow,
        _no_such_store,
        _print_json,
        _read_input,
        _with_store,
    )

    workflow = _load_workflow(file, agents_file)
    figures: dict[str, dict[str, Any]] = {}
    if not _no_such_store(db):

        async def load(store: Store) -> dict[str, dict[str, Any]]:
            return await store.load_agent_figures()

        figures = _with_store(db, load, existing=True)
    prediction = predict(workflow, _read_input(input_text, None), max_parallel, figures)
    if as_json:
        _print_json(prediction.as_json())
    else:
        print_prediction(prediction, _console())


def predict(
    workflow: Workflow,
    run_input: Any,
    max_parallel: int | None,
    figures: Mapping[str, Mapping[str, Any]] | None = None,
) -> Prediction:
    """Simulate `workflow` with at most `max_parallel` (else its own max_parallel) at once.

    `figures` are the agents' saved figures (`Store.load_agent_figures`): their recorded
    latency stands in for a missing `estimate`, and their cost per call gives the cost.
    """
    from podium.scheduler import Plan, estimates, recorded
    from podium.scheduler import simulate as run_simulation
    from podium.scheduler.ranks import DEFAULT_SECONDS

    durations = recorded(workflow, figures or {}, "latency") | estimates(workflow)
    costs = recorded(workflow, figures or {}, "cost")
    assumptions: list[str] = []
    steps = [s for top in workflow.steps.values() for s in (top, *(top.steps or {}).values())]
    unestimated = [s.id for s in steps if s.id not in durations and not s.steps]
    if unestimated:
        assumptions.append(f"{_names(unestimated)}: no estimate, taken as {DEFAULT_SECONDS:g} s")
    items: dict[str, int] = {}
    skipped: set[str] = set()
    for step in steps:
        if step.for_each is not None:
            value = _from_input(workflow, step, step.for_each, run_input)
            if isinstance(value, list):
                items[step.id] = len(value)
            else:
                assumptions.append(f"{step.id}: 1 item (its list is known only in a run)")
        if step.condition is not None:
            value = _from_input(workflow, step, step.condition, run_input)
            if value is _UNKNOWN:
                assumptions.append(f"{step.id}: `if` taken as true")
            elif not value:
                skipped.add(step.id)
        if step.repeat is not None:
            assumptions.append(f"{step.id}: one iteration")
    slots = max_parallel if max_parallel is not None else workflow.max_parallel
    simulation = run_simulation(
        Plan.from_workflow(workflow), durations, slots=slots, items=items, skipped=skipped
    )
    cost = None
    if costs:
        cost = sum(costs.get(p.step.partition("#")[0], 0.0) for p in simulation.schedule)
    return Prediction(workflow.name, simulation, tuple(assumptions), cost)


def print_prediction(prediction: Prediction, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    run = prediction.simulation
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("step")
    for column in ("slot", "start", "end"):
        table.add_column(column, justify="right")
    for placed in run.schedule:
        table.add_row(
            Text(placed.key), str(placed.slot), _seconds(placed.start), _seconds(placed.end)
        )
    console.print(table)
    limit = "no limit on steps at once" if run.slots is None else f"at most {run.slots} at once"
    console.print(f"makespan: {_seconds(run.makespan)} ({limit})", highlight=False)
    if prediction.cost is not None:
        console.print(f"cost: {prediction.cost:.4f} (recorded cost per call)", highlight=False)
    path = " → ".join(run.critical_path)
    line = f"critical path: {path} ({_seconds(run.critical_length)})"
    console.print(line, highlight=False, markup=False)
    for assumption in prediction.assumptions:
        console.print(f"assumed: {assumption}", highlight=False, markup=False)


_UNKNOWN = object()  # an expression that reads more than the input


def _from_input(workflow: Workflow, step: Step, expression: str, run_input: Any) -> Any:
    """The value of an `if` or `for_each` that reads only the run input, else `_UNKNOWN`."""
    from podium.errors import ExpressionError
    from podium.spec import compile_condition

    template = compile_condition(expression, where=workflow.locate("steps", step.id))
    if template.references or template.state_keys or template.names - {"input"}:
        return _UNKNOWN
    try:
        return template.render({"input": run_input})
    except ExpressionError:
        return _UNKNOWN


def _seconds(value: float) -> str:
    """`7 s`, `2.5 s`, `86400 s`: milliseconds at most, never an exponent."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + " s"


def _names(ids: list[str]) -> str:
    return ", ".join(ids) if len(ids) <= 4 else f"{', '.join(ids[:3])} and {len(ids) - 3} more"
