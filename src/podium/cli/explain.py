"""`podium explain RUN_ID`: the story of a run, told from its events, for a person or a script.

The story itself is `podium.model.explain`; this module loads the run's events, reads back
the definition stored with the run (which says what each step needed and what its `if`
was), and prints the story with rich: a header, then one section per question (who did what,
which branches, what went wrong and what changed, where the time went). Tables have no
borders and user text is never read as markup, so the output reads the same in a pipe.

Registered on the `podium` group in `app.py`; the app's helpers are imported inside the
command, so that the store and its errors behave exactly as for `podium show`. rich is
imported only when printing, which keeps `podium --help` fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from podium.cli.options import json_flag, store_option
from podium.model.explain import Explanation, took
from podium.model.explain import explain as explain_run

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from podium.model import Event, Workflow

Row = Sequence[str]
# A section of the story: its title, lines of prose, and a table (columns and rows).
Section = tuple[str, list[str], Sequence[str], list[Row]]


@click.command()
@click.argument("run_id")
@store_option("The store the run is in: a SQLite file, or a database URL.")
@json_flag("Print the story as one JSON document for machines.")
def explain(run_id: str, db: str, as_json: bool) -> None:
    """Tell the story of run RUN_ID from its events.

    Who did what and why (each step's agent and how it was chosen), which branches were
    taken on which values, what failed and was retried, what the controller changed, and
    where the time went: the critical path, the time per agent, and steps that queued.
    """
    from podium.cli.app import _console, _print_json, _with_store

    events = _with_store(db, lambda store: store.load(run_id), existing=True)
    story = explain_run(events, stored_workflow(events))
    if as_json:
        _print_json(story.as_json())
    else:
        console = _console()
        if not console.is_terminal:  # a pipe reads whole lines better than lines cut at 80
            console.width = max(console.width, 160)
        print_explanation(console, story)


def stored_workflow(events: Sequence[Event]) -> Workflow | None:
    """The definition the run started with, or None if it no longer reads as a workflow.

    A definition that fails today's checks (a newer podium, say) still has a story: it is
    told without conditions and critical path rather than not at all.
    """
    from podium.errors import DefinitionError
    from podium.model import RunStarted
    from podium.spec import workflow_from_document

    first = events[0] if events else None
    if not isinstance(first, RunStarted):
        return None
    try:
        return workflow_from_document(
            first.definition, source=f"run {first.run_id}", base_dir=first.base_dir
        )
    except DefinitionError:
        return None


def print_explanation(console: Console, story: Explanation) -> None:
    """The story as sections: header, who did what, branches, timeline, where the time went."""
    from rich.text import Text

    from podium.cli.render import status_text

    run = story.run
    header = Text.assemble(("run ", "bold"), (run.run_id, "bold"), f"  workflow {run.workflow}  ")
    header.append_text(status_text(run.status))
    if run.seconds is not None:
        header.append(f" in {took(run.seconds)}")
    if run.resumes:
        header.append(f"  (resumed {run.resumes}×)")
    console.print(header)
    if run.tokens or run.cost:
        console.print(Text(f"usage: {run.tokens:,} tokens, cost {run.cost:.4f}"))
    if run.error:
        console.print(Text(f"error: {run.error}", style="red"))
    sections = [_units, _branches, _timeline, _critical_path, _agents, _waits]
    for title, lines, columns, rows in (section(story) for section in sections):
        if not (lines or rows):
            continue
        console.print()
        console.print(Text(title, style="bold"))
        for line in lines:
            console.print(Text(line))
        if rows:
            console.print(_table(columns, rows))


def _units(story: Explanation) -> Section:
    rows: list[Row] = []
    for unit in story.units:
        part = unit.key != unit.step or "#" in unit.step  # an item, or a loop's iteration
        agent = " → ".join(unit.agents) if len(unit.agents) > 1 else unit.agent or ""
        attempts = f" ({unit.attempts} attempts)" if unit.attempts > 1 else ""
        rows.append(
            (
                f"  {unit.key}" if part else unit.key,
                unit.status,
                agent + attempts,
                "" if unit.at is None else f"+{took(unit.at)}",
                "" if unit.seconds is None else took(unit.seconds),
                unit.why + (f"; {unit.error}" if unit.error else ""),
            )
        )
    return ("who did what", [], ("unit", "status", "agent", "start", "took", "why"), rows)


def _branches(story: Explanation) -> Section:
    lines: list[str] = []
    for branch in story.branches:
        rule = f"if {branch.condition}" if branch.condition else f"trigger {branch.trigger}"
        lines.append(f"{branch.step}  {branch.outcome}  {rule}")
        if branch.outcome == "skipped" and branch.reason:
            lines.append(f"    because {branch.reason}")
        lines.extend(f"    {reading.path} = {reading.value}" for reading in branch.reads)
    return ("branches", lines, (), [])


def _timeline(story: Explanation) -> Section:
    """Failures, retries, fallbacks, adaptations, circuits, resumes, decisions, in time order.

    The run's end is left out: the header says it.
    """
    rows: list[Row] = [
        (f"+{took(moment.at)}", moment.kind, moment.text)
        for moment in story.timeline
        if moment.kind != "finished"
    ]
    return ("timeline", [], ("at", "what", ""), rows)


def _critical_path(story: Explanation) -> Section:
    path = story.critical_path
    if path is None:
        return ("critical path", [], (), [])
    between = path.seconds - path.working
    lines = [f"{took(path.working)} working, {took(between)} between steps"]
    rows: list[Row] = []
    for link in path.links:
        attempts = f" ({link.attempts} attempts)" if link.attempts > 1 else ""
        rows.append(
            (
                link.key,
                (link.agent or link.status) + attempts,
                f"+{took(link.at)}",
                took(link.seconds),
                took(link.gap) if link.gap >= 0.0005 else "",  # shown as at least 1ms
            )
        )
    columns = ("step", "agent", "start", "took", "gap before")
    return (f"critical path: {took(path.seconds)}", lines, columns, rows)


def _agents(story: Explanation) -> Section:
    used = any(agent.tokens or agent.cost for agent in story.time_by_agent)
    columns = ("agent", "calls", "failed", "busy", *(("tokens", "cost") if used else ()))
    rows: list[Row] = [
        (
            agent.agent,
            str(agent.calls),
            str(agent.failures),
            took(agent.busy),
            *((f"{agent.tokens:,}", f"{agent.cost:.4f}") if used else ()),
        )
        for agent in story.time_by_agent
    ]
    return ("time by agent", [], columns, rows)


def _waits(story: Explanation) -> Section:
    rows: list[Row] = [
        (wait.key, took(wait.seconds), "; ".join(wait.limits)) for wait in story.waits
    ]
    return ("queued after their needs were done", [], ("unit", "waited", "limits"), rows)


_RIGHT = frozenset({"start", "took", "waited", "gap before", "calls", "failed", "busy", "tokens"})


def _table(columns: Sequence[str], rows: list[Row]) -> Table:
    """A borderless table; cells are plain text, never markup (`reserve[0]` stays as it is)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for column in columns:
        table.add_column(column, justify="right" if column in _RIGHT else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table
