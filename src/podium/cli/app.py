"""The `podium` command: parse the arguments, call the public API, print the answer.

Nothing here decides anything about runs: every command is a few lines over `podium.spec`,
`podium.runtime` and `podium.store`. Those (and rich) are imported inside the commands, so
that `podium --help` and shell completion do not pay for the engine.

Exit codes: 0 succeeded, 1 failed (or another run or store error), 2 an invalid definition,
input, run id or usage, 3 the run is waiting or still running, 4 cancelled, 130 interrupted.
Every `PodiumError` ends the command with its message on stderr, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar

import click

from podium.cli.explain import explain
from podium.cli.options import (
    DEFAULT_DB,
    agents_option,
    db_option,
    json_option,
    max_parallel_option,
    workflow_file,
)
from podium.cli.simulate import simulate
from podium.errors import DefinitionError, InputError, PodiumError, RunNotFound

if TYPE_CHECKING:
    from rich.console import Console

    from podium.model import Event, RunHistory, Workflow
    from podium.runtime import RunResult
    from podium.runtime.api import StartCallback
    from podium.runtime.execution import EventSink
    from podium.spec import Catalog
    from podium.store import Store

EXIT_CODES = {"succeeded": 0, "failed": 1, "waiting": 3, "running": 3, "cancelled": 4}
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

T = TypeVar("T")
# Starts or continues a run on an opened store, reporting through the two callbacks.
Starter: TypeAlias = "Callable[[Store, StartCallback, EventSink | None], Awaitable[RunResult]]"


def exit_code_for(error: PodiumError) -> int:
    """Mistakes in what the user typed are 2, like click's usage errors; the rest is 1."""
    if isinstance(error, DefinitionError | InputError | RunNotFound):
        return EXIT_USAGE
    return EXIT_ERROR


class _Podium(click.Group):
    """The command group; it turns a `PodiumError` from any command into message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PodiumError as error:
            for line in str(error).splitlines() or [type(error).__name__]:
                click.echo(f"error: {line}", err=True)
            raise click.exceptions.Exit(exit_code_for(error)) from None


@click.group(cls=_Podium, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="podium", prog_name="podium")
def main() -> None:
    """podium runs workflows of AI agents durably: every step is recorded, so a run
    survives crashes and can be resumed, inspected step by step, and forked.

    Exit codes: 0 succeeded, 1 failed, 2 invalid definition, input or usage,
    3 waiting, 4 cancelled, 130 interrupted.
    """


main.add_command(simulate)
main.add_command(explain)


def input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--input and --input-file, for the commands that take a run input."""
    command = click.option(
        "--input-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Read the run input from this JSON file.",
    )(command)
    return click.option(
        "--input", "input_text", metavar="JSON", help="The run input, as JSON text."
    )(command)


@main.command()
@workflow_file
@agents_option
@input_options
@click.option(
    "--run-id",
    metavar="ID",
    help="Name the run. If the store already has it, its recorded result is returned "
    "(or the unfinished run continued): nothing completed runs twice.",
)
@db_option
@max_parallel_option
@json_option
def run(
    file: Path,
    agents_file: Path | None,
    input_text: str | None,
    input_file: Path | None,
    run_id: str | None,
    db: str,
    max_parallel: int | None,
    as_json: bool,
) -> None:
    """Run the workflow in FILE to its end and print the result."""
    from podium.runtime import run_workflow

    workflow = _load_workflow(file, agents_file)
    value = _read_input(input_text, input_file)
    _execute(
        db,
        as_json,
        lambda store, on_start, on_events: run_workflow(
            workflow,
            value,
            store=store,
            run_id=run_id,
            max_parallel=max_parallel,
            on_start=on_start,
            on_events=on_events,
        ),
        title=workflow.name,
        run_id=run_id,
    )


@main.command()
@click.argument("run_id")
@db_option
@max_parallel_option
@json_option
def resume(run_id: str, db: str, max_parallel: int | None, as_json: bool) -> None:
    """Continue run RUN_ID from where its log ends.

    Use it after a crash, an interruption or a failure.

    Steps that succeeded are not run again; failed steps get another go.
    """
    from podium.runtime import resume_run

    _execute(
        db,
        as_json,
        lambda store, on_start, on_events: resume_run(
            run_id,
            store=store,
            max_parallel=max_parallel,
            on_start=on_start,
            on_events=on_events,
        ),
        title=f"run {run_id}",
        run_id=run_id,
    )


@main.command()
@click.argument("run_id")
@db_option
def cancel(run_id: str, db: str) -> None:
    """Cancel run RUN_ID and finish it as cancelled.

    If another process is executing the run, it stops within about a second.
    """
    from podium.runtime import cancel_run

    async def go(store: Store) -> str:
        before = (await store.get_run(run_id)).status
        if before in ("succeeded", "failed", "cancelled"):
            return f"run {run_id} had already finished: {before}"
        await cancel_run(run_id, store=store)
        if (await store.get_run(run_id)).status == "cancelled":
            return f"run {run_id} cancelled"
        return f"asked the process executing run {run_id} to cancel it"

    click.echo(_with_store(db, go, existing=True))


@main.command()
@click.argument("run_id")
@click.argument("step")
@db_option
@click.option(
    "--data", "data_text", metavar="JSON", help="The answer's data, checked against its schema."
)
@click.option("--reject", is_flag=True, help="Reject instead of approve: the step fails.")
@click.option("--reason", default="", help="Why; recorded with the decision.")
@click.option("--by", default=None, help="Who decides (default: the current user).")
def approve(
    run_id: str,
    step: str,
    db: str,
    data_text: str | None,
    reject: bool,
    reason: str,
    by: str | None,
) -> None:
    """Decide approval step STEP of run RUN_ID (approve, or --reject).

    A run that waits (exit code 3) continues with `podium resume RUN_ID`; a run still
    executing in another process picks the decision up within a second.
    """
    from podium.runtime import approve as decide

    data = _parse_json(data_text, "--data") if data_text is not None else None

    async def go(store: Store) -> str:
        await decide(
            run_id, step, store=store, approved=not reject, data=data, reason=reason, by=by
        )
        verdict = "rejected" if reject else "approved"
        top = await _top_run(store, run_id)  # a sub-workflow goes on with its parent
        if (await store.get_run(top)).status == "waiting":
            return f"{verdict} {step}; continue the run with: podium resume {top}"
        return f"{verdict} {step}; the process executing run {top} will continue it"

    click.echo(_with_store(db, go, existing=True))


@main.command()
@click.argument("run_id")
@click.option(
    "--at", "at", required=True, metavar="STEP", help="The step (or unit key) to fork at."
)
@input_options
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="state.KEY=JSON",
    help="Set a state key outright in the new run (repeatable).",
)
@click.option("--run-id", "new_run_id", default=None, help="The new run's id (default: a new one).")
@db_option
@json_option
def fork(
    run_id: str,
    at: str,
    input_text: str | None,
    input_file: Path | None,
    settings: tuple[str, ...],
    new_run_id: str | None,
    db: str,
    as_json: bool,
) -> None:
    """Start a new run from RUN_ID's history up to STEP, and continue it.

    Steps that completed before STEP keep their results; STEP and what follows run again,
    with --input in place of the original input and --set values in the state, if given.
    RUN_ID itself is not changed.
    """
    from podium.runtime import fork_run
    from podium.runtime.fork import UNCHANGED

    new_input = _read_input(input_text, input_file)
    sets = dict(_state_setting(setting) for setting in settings)
    _execute(
        db,
        as_json,
        lambda store, on_start, on_events: fork_run(
            run_id,
            at,
            store=store,
            input=UNCHANGED if new_input is None else new_input,
            sets=sets,
            new_run_id=new_run_id,
            on_start=on_start,
            on_events=on_events,
        ),
        title=f"fork of {run_id} at {at}",
        run_id=None,
    )


@main.command()
@db_option
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show N runs."
)
@json_option
def runs(db: str, limit: int, as_json: bool) -> None:
    """List the most recent runs in the store."""
    import dataclasses

    async def go(store: Store) -> None:
        found = await store.list_runs(limit)
        if as_json:
            _print_json([dataclasses.asdict(summary) for summary in found])
        else:
            from podium.cli.render import print_runs

            print_runs(_console(), found)

    _with_store(db, go, existing=True)


@main.command()
@click.argument("run_id")
@db_option
@json_option
def show(run_id: str, db: str, as_json: bool) -> None:
    """Show run RUN_ID step by step.

    Each step's status, agent, attempts, timing, and why it was routed, skipped or failed.
    """
    from podium.model import RunHistory

    async def go(store: Store) -> tuple[RunHistory, list[RunHistory]]:
        return await _with_children(store, RunHistory.fold(await store.load(run_id)))

    history, children = _with_store(db, go, existing=True)
    if as_json:
        shown = history.as_json()
        shown["children"] = {child.run_id: child.as_json() for child in children}
        _print_json(shown)
    else:
        from podium.cli.render import print_run

        console = _console()
        print_run(console, history, db)
        for child in children:
            console.print()
            console.print(f"sub-workflow run {child.run_id} (of {child.parent}):")
            print_run(console, child, db)


async def _top_run(store: Store, run_id: str) -> str:
    """The outermost run above `run_id`: the one to resume for a sub-workflow to go on."""
    from podium.model import RunStarted

    while True:
        first = (await store.load(run_id))[0]
        if not isinstance(first, RunStarted) or first.parent is None:
            return run_id
        run_id = first.parent


async def _with_children(store: Store, history: RunHistory) -> tuple[RunHistory, list[RunHistory]]:
    """The run and every sub-workflow run below it, depth first.

    A `workflow` step's child run is `<run id>/<step key>`: found by its id, not by a scan.
    """
    from podium.errors import RunNotFound
    from podium.model import RunHistory

    children: list[RunHistory] = []
    for record in history.steps.values():
        if not (record.agent or "").startswith("workflow:"):
            continue
        try:
            child = RunHistory.fold(await store.load(f"{history.run_id}/{record.key}"))
        except RunNotFound:  # the step started, the child run did not yet
            continue
        _, below = await _with_children(store, child)
        children += [child, *below]
    return history, children


@main.command()
@click.argument("run_id")
@db_option
@json_option
def events(run_id: str, db: str, as_json: bool) -> None:
    """Print the event log of run RUN_ID, one event a line."""
    from podium.cli.render import event_json, event_line

    describe = event_json if as_json else event_line
    for event in _with_store(db, lambda store: store.load(run_id), existing=True):
        click.echo(describe(event))


@main.command()
@workflow_file
@agents_option
def validate(file: Path, agents_file: Path | None) -> None:
    """Check the workflow in FILE without running it.

    Syntax, references, cycles, expressions, and that every agent can be imported.
    """
    from podium.runtime import prepare

    workflow = _load_workflow(file, agents_file)
    prepare(workflow)
    click.echo(
        f"{file}: ok ({_count(len(workflow.steps), 'step')}, "
        f"{_count(len(workflow.agents), 'agent')})"
    )


@main.command()
@workflow_file
@agents_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="Mermaid (renders in GitHub and most docs) or Graphviz dot.",
)
def graph(file: Path, agents_file: Path | None, fmt: str) -> None:
    """Print the dependency graph of the workflow in FILE."""
    from podium.cli.graph import render_graph

    click.echo(render_graph(_load_workflow(file, agents_file), fmt), nl=False)


@main.command()
@agents_option
@db_option
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Count the calls of the N most recent runs.",
)
@json_option
def agents(agents_file: Path | None, db: str, limit: int, as_json: bool) -> None:
    """List the agents of the catalog (--agents) with their limits and live statistics.

    Calls, failures, success rate, mean latency and last use are counted over the most
    recent runs in the store. Without a catalog, the agents those runs called are listed.
    """
    from podium.cli.stats import AgentStats, agent_stats
    from podium.spec import load_catalog

    catalog = None if agents_file is None else load_catalog(agents_file)

    async def go(store: Store) -> dict[str, AgentStats]:
        logs: list[list[Event]] = []
        for summary in await store.list_runs(limit):
            try:
                logs.append(await store.load(summary.run_id))
            except RunNotFound:  # deleted between listing and loading
                continue
        return agent_stats(logs)

    if catalog is not None and _no_such_store(db):
        stats: dict[str, AgentStats] = {}  # a catalog nothing has used yet
    else:
        stats = _with_store(db, go, existing=True)
    rows = _agent_rows(catalog, stats)
    if as_json:
        _print_json(rows)
    else:
        from podium.cli.render import print_agents

        print_agents(_console(), rows)


def _agent_rows(catalog: Catalog | None, stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One JSON object per agent: the catalog's in its order, else each agent that was called."""
    from podium.cli.stats import AgentStats

    if catalog is None:
        return [{"name": name, **found.as_json()} for name, found in stats.items()]
    rows: list[dict[str, Any]] = []
    for name, spec in catalog.agents.items():
        written = catalog.documents[name]
        circuit = spec.circuit
        rows.append(
            {
                "name": name,
                "description": spec.description,
                "uses": written.get("uses"),
                "capabilities": sorted(spec.capabilities),
                "concurrency": spec.concurrency,
                "circuit": None
                if circuit is None
                else {
                    "failures": circuit.failures,
                    "window": circuit.window,
                    "cooldown": circuit.cooldown,
                },
                "retry": written.get("retry"),
                "timeout": written.get("timeout"),
                **stats.get(name, AgentStats()).as_json(),
            }
        )
    return rows


@main.command()
@click.argument("name", default="order-to-cash", metavar="[NAME]")
@click.option("--list", "listing", is_flag=True, help="List the demos, one a line, and exit.")
@db_option
def demo(name: str, listing: bool, db: str) -> None:
    """Run a bundled demo: order-to-cash, unless NAME names another.

    \b
    NAME: order-to-cash, support, content, software-change or research
    (`podium demo --list` says what each one shows)

    order-to-cash runs Python agents (about 3 seconds): a branch, a fan-out over two
    warehouse agents, a retried payment. The others run the examples in podium/examples,
    whose agents are chat models: against the endpoint in OPENAI_BASE_URL (with the key in
    OPENAI_API_KEY) when it is set, else against scripted replies from a local server. Each
    run is kept in the store like any other.
    """
    from podium.demo import DEMOS, EXAMPLES_DIR, model_endpoint
    from podium.runtime import run_workflow

    if listing:
        for each in DEMOS.values():
            click.echo(f"{each.name:<16} {each.summary}")
        click.echo(f"(the examples' workflows and tools: {EXAMPLES_DIR})")
        return
    chosen = DEMOS.get(name)
    if chosen is None:
        raise click.BadParameter(
            f"no demo {name!r}; the demos: {', '.join(DEMOS)}", param_hint="NAME"
        )
    workflow: Workflow = chosen.load()
    data = chosen.input
    with model_endpoint(chosen, workflow) as model:
        if model is not None:
            click.echo(model, err=True)
        _execute(
            db,
            False,
            lambda store, on_start, on_events: run_workflow(
                workflow, data, store=store, on_start=on_start, on_events=on_events
            ),
            title=workflow.name,
            run_id=None,
        )


# ---- helpers shared by the commands ---------------------------------------------------------


def _execute(db: str, as_json: bool, start: Starter, *, title: str, run_id: str | None) -> NoReturn:
    """Start or continue a run, show its progress, print its result and exit with its code.

    The live view is drawn only on a terminal and without --json, so that pipes and scripts
    get exactly the final answer. The run id goes to stderr at once, so that an interrupted
    run can be found and resumed.
    """
    import gc

    from podium.cli.render import LiveProgress, describe_db, print_run

    started: list[str] = []

    def on_start(new_id: str) -> None:
        started.append(new_id)
        click.echo(f"run {new_id} started (db: {describe_db(db)})", err=True)

    console = _console()
    live = console.is_terminal and not as_json

    async def go(store: Store) -> RunResult:
        if not live:
            return await start(store, on_start, None)
        known = await _known_events(store, run_id)
        with LiveProgress(console, title, known) as progress:
            return await start(store, on_start, progress.on_events)

    # A run holds every event and record it makes until it ends, and with the default
    # thresholds the collector walks them again and again; while the run goes it collects
    # rarely (measured: a tenth of a 10,000-step chain's time), then as before.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        result = _with_store(db, go)
    except KeyboardInterrupt:
        click.echo(_interrupted(started[0] if started else None, db), err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    finally:
        gc.set_threshold(*thresholds)
    if as_json:
        _print_json(result.as_json())
    else:
        print_run(console, result.history, db)
    if result.status == "waiting":
        for record in result.history.steps.values():
            if record.status != "waiting":
                continue
            if (record.agent or "").startswith("workflow:"):
                child = f"{result.run_id}/{record.key}"
                click.echo(
                    f"{record.key} waits for its sub-workflow run {child}: see podium show "
                    f"{child}, decide there, then podium resume {result.run_id}",
                    err=True,
                )
            else:
                click.echo(
                    f"waiting for a decision on {record.key}: "
                    f"podium approve {result.run_id} {record.key} [--reject]",
                    err=True,
                )
    raise click.exceptions.Exit(EXIT_CODES.get(result.status, EXIT_ERROR))


def _interrupted(run_id: str | None, db: str) -> str:
    if run_id is None:
        return "interrupted before the run started"
    if db == ":memory:":
        return f"interrupted: run {run_id} was kept in memory only and is gone"
    db_flag = "" if db == DEFAULT_DB else f" --db {db}"
    return f"interrupted: continue the run with `podium resume {run_id}{db_flag}`"


async def _known_events(store: Store, run_id: str | None) -> list[Event]:
    """The events a run already has, so the live view of a continued run starts complete."""
    if run_id is None:
        return []
    try:
        return await store.load(run_id)
    except RunNotFound:
        return []  # a new run with a chosen id; `resume` reports the unknown id itself


def _load_workflow(file: Path, agents_file: Path | None) -> Workflow:
    """The workflow in `file`, with the agents of the catalog `agents_file` if one is given."""
    from podium.spec import load_catalog, load_workflow

    catalog = None if agents_file is None else load_catalog(agents_file)
    return load_workflow(file, catalog=catalog)


def _no_such_store(db: str) -> bool:
    """Whether `db` names a SQLite file that is not there (so no run was ever stored in it)."""
    return "://" not in db and db != ":memory:" and not Path(db).exists()


def _with_store(db: str, action: Callable[[Store], Awaitable[T]], *, existing: bool = False) -> T:
    """Open the store, run `action` on it in a fresh event loop, and always close it.

    With `existing`, a SQLite file that is not there is an error rather than created: a
    command that only reads runs should not leave an empty database behind a typo.
    """
    import asyncio

    from podium.store import open_store

    if existing and _no_such_store(db):
        raise InputError(f"no store at {db}: give the --db (or PODIUM_DB) the run was made with")

    async def go() -> T:
        store = open_store(db)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _read_input(text: str | None, path: Path | None) -> Any:
    """The run input from --input or --input-file; None when neither is given."""
    if text is not None and path is not None:
        raise click.UsageError("give --input or --input-file, not both")
    if path is not None:
        option = f"--input-file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{option}: cannot read it: {error}") from None
    elif text is not None:
        option = "--input"
    else:
        return None
    return _parse_json(text, option)


def _state_setting(setting: str) -> tuple[str, Any]:
    """`state.KEY=JSON` as (KEY, value), or an `InputError` saying how to write it."""
    target, equals, text = setting.partition("=")
    key = target.removeprefix("state.")
    if not equals or key == target or not key:
        raise InputError(
            f"--set {setting}: write it as state.KEY=JSON, as in state.tone='\"formal\"'"
        )
    return key, _parse_json(text, f"--set {target}")


def _parse_json(text: str, option: str) -> Any:
    """`text` as JSON, or an `InputError` naming the option and where the JSON breaks."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(f"{option} is nested too deeply") from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"{option} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, default=str))


def _console() -> Console:
    from rich.console import Console

    return Console()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
