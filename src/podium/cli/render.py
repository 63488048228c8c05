"""How a run looks on a terminal: the step table, the live progress view, runs, events, agents.

The live view and the final summary draw the same table from the same `RunHistory`, folded
from the same events the engine records, so what scrolls by during a run is exactly what
`podium show` prints afterwards. This module imports rich at the top; the command module
imports this one only inside the commands that print, which keeps `podium --help` fast.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from podium.model import (
    Adapted,
    ApprovalDecided,
    ApprovalRequested,
    CallRecorded,
    CircuitChanged,
    CompensationEnded,
    CompensationStarted,
    Event,
    IterationStarted,
    LoopEnded,
    RunFinished,
    RunHistory,
    RunResumed,
    RunStarted,
    RunWaiting,
    StateWritten,
    StepAttemptFailed,
    StepExpanded,
    StepFailed,
    StepFellBack,
    StepRecord,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    TimerStarted,
    Usage,
    encode_event,
    step_key,
)
from podium.store import RunSummary

STATUS_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "waiting": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "magenta",
}

_StepEvent = StepStarted | StepSucceeded | StepAttemptFailed | StepFailed


def describe_db(db: str) -> str:
    """The store as a user should read it: a path to keep, or a reminder that nothing is kept."""
    if db == ":memory:":
        return "in memory, not kept"
    from podium.store.open import display_url  # never print a database password

    return display_url(db)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def duration(started: float | None, ended: float | None, now: float | None = None) -> str:
    """`1.23s` between two instants; a running step is measured up to `now`."""
    end = ended if ended is not None else now
    if started is None or end is None:
        return ""
    seconds = max(0.0, end - started)
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"


def _detail(record: StepRecord) -> str:
    """Why the step is as it is: its error, or why it was skipped or routed to its agent."""
    if record.error is not None and record.status in ("failed", "retrying"):
        return f"{record.error.type}: {record.error.message}"
    if record.items is not None and record.index is None:
        return f"{record.items} item{'s' if record.items != 1 else ''}"
    return record.reason


def _usage_text(usage: Usage) -> str:
    if not (usage.tokens or usage.cost):
        return ""
    return f"{usage.tokens:,}" + (f" / {usage.cost:.4f}" if usage.cost else "")


def steps_table(history: RunHistory, *, now: float | None = None) -> Table:
    """One row per unit of work (`step`, `step[3]`), in the order the run first met them.

    A run whose agents used tokens or money has a column for them: `tokens / cost`.
    """
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("step")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("agent", no_wrap=True)
    table.add_column("duration", justify="right")
    used = bool(history.usage.tokens or history.usage.cost)
    if used:
        table.add_column("tokens / cost", justify="right")
    table.add_column("reason / error", overflow="fold")
    for record in history.steps.values():
        running = record.status in ("running", "retrying")
        usage = [_usage_text(record.usage)] if used else []
        table.add_row(
            record.key if record.index is None else f"  {record.key}",
            status_text(record.status),
            str(record.attempts) if record.attempts else "",
            record.agent or "",
            duration(record.started_at, record.ended_at, now if running else None),
            *usage,
            _detail(record),
        )
    return table


def usage_table(history: RunHistory) -> Table:
    """What each agent used (a pattern's participants each count their own calls)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("agent")
    table.add_column("tokens", justify="right")
    table.add_column("cost", justify="right")
    for name, usage in sorted(history.agents.items()):
        table.add_row(name, f"{usage.tokens:,}", f"{usage.cost:.4f}")
    table.add_row(
        Text("run", style="bold"), f"{history.usage.tokens:,}", f"{history.usage.cost:.4f}"
    )
    return table


def print_run(console: Console, history: RunHistory, db: str) -> None:
    """The summary of a run: a header, the step table, the output or error, and the store."""
    header = Text.assemble(
        ("run ", "bold"),
        (history.run_id, "bold"),
        f"  workflow {history.workflow}  ",
        status_text(history.status),
    )
    took = duration(history.started_at, history.ended_at)
    if took:
        header.append(f"  {took}")
    console.print(header)
    if history.steps:
        console.print(steps_table(history))
    if history.error is not None:
        where = f" in step {history.error.step!r}" if history.error.step else ""
        console.print(
            Text(f"error{where}: {history.error.type}: {history.error.message}", style="red")
        )
    if history.status == "succeeded":
        console.print(Text("output:", style="bold"))
        console.print_json(data=history.output, default=str)
    if history.state:
        console.print(Text("state:", style="bold"))
        console.print_json(data=history.state, default=str)
    if history.usage.tokens or history.usage.cost:
        console.print(Text("usage:", style="bold"))
        console.print(usage_table(history))
    console.print(f"db: {describe_db(db)}")


def print_runs(console: Console, runs: Sequence[RunSummary]) -> None:
    if not runs:
        console.print("no runs in this store yet (start one: podium run FILE)")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("run id", "workflow", "status", "created", "updated"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run.run_id,
            run.workflow,
            status_text(run.status),
            _clock(run.created_at),
            _clock(run.updated_at),
        )
    console.print(table)


def print_agents(console: Console, agents: Sequence[Mapping[str, Any]]) -> None:
    """The rows of `podium agents`: each agent's capabilities, limits and statistics.

    `limit` is the concurrency, `circuit` opens after so many failures in so long, `latency`
    is the mean from start to end of a call.
    """
    if not agents:
        console.print("no agents: give a catalog with --agents, or run a workflow first")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ("agent", "capabilities", "limit", "circuit", "calls", "failed", "success")
    for column in (*columns, "latency", "last used"):
        table.add_column(column)
    for agent in agents:
        circuit = agent.get("circuit")
        rate = agent["success_rate"]
        latency = agent["mean_latency"]
        table.add_row(
            agent["name"],
            ", ".join(agent.get("capabilities") or ()),
            "" if agent.get("concurrency") is None else str(agent["concurrency"]),
            "" if not circuit else f"{circuit['failures']} in {circuit['window']:g}s",
            str(agent["calls"]),
            str(agent["failures"]),
            "" if rate is None else f"{rate:.0%}",
            "" if latency is None else f"{latency:.2f}s",
            "never" if agent["last_used"] is None else _clock(agent["last_used"]),
        )
    console.print(table)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def event_json(event: Event) -> str:
    """The event as one line of JSON, with the step key added for events about a unit."""
    encoded = encode_event(event).decode()
    if not isinstance(event, _StepEvent):
        return encoded
    data: dict[str, Any] = json.loads(encoded)
    data["key"] = event.key
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def event_line(event: Event) -> str:
    """The event as a person scans a log: sequence, time, kind, step and what matters."""
    moment = datetime.fromtimestamp(event.at).strftime("%H:%M:%S.%f")[:-3]
    kind = str(event.__struct_config__.tag)  # the `type` of the JSON form
    match event:
        case RunStarted():
            what = f"{event.workflow} (run {event.run_id})"
        case StepStarted():
            what = f"{event.key} attempt {event.attempt} on {event.agent}"
            what += f" ({event.reason})" if event.reason else ""
        case StepSucceeded():
            what = f"{event.key} attempt {event.attempt}"
        case StepAttemptFailed() | StepFailed():
            what = f"{event.key} attempt {event.attempt}: {event.error.type}: {event.error.message}"
        case StepSkipped():
            what = f"{event.step}: {event.reason}"
        case StepExpanded():
            what = f"{event.step} into {event.count} items"
        case RunFinished():
            what = event.status
            what += f": {event.error.message}" if event.error else ""
        case RunResumed():
            what = "redrive: failed steps go again" if event.redrive else ""
        case RunWaiting():
            what = f"for {', '.join(event.waiting_for)}"
        case TimerStarted():
            what = f"{event.key} until {_clock(event.wake_at)}"
        case ApprovalRequested():
            what = f"{event.key}: {event.prompt}"
            what += (
                f" (default {event.default} at {_clock(event.timeout_at)})"
                if (event.default and event.timeout_at)
                else ""
            )
        case ApprovalDecided():
            verdict = "approved" if event.approved else "rejected"
            what = f"{event.key} {verdict} by {event.by}"
            what += f": {event.reason}" if event.reason else ""
        case StepFellBack():
            what = f"{event.key} to {event.to} after {event.error.type}: {event.error.message}"
        case CircuitChanged():
            what = f"{event.agent} {event.state}: {event.reason}"
        case Adapted():
            what = f"{event.policy}: {event.subject} {event.setting} {event.old!r} -> {event.new!r}"
            what += f": {event.reason}" if event.reason else ""
        case CallRecorded():
            what = f"{event.key} {event.kind} {event.name} in {event.seconds:.3f}s"
            what += f", {event.usage.tokens} tokens" if event.usage and event.usage.tokens else ""
        case StateWritten():
            how = "set" if event.set else event.reducer
            what = f"{event.key} v{event.version} by {step_key(event.step, event.index)} ({how})"
        case IterationStarted():
            what = f"{event.step} iteration {event.iteration}"
        case LoopEnded():
            what = f"{event.step} after {event.iterations} iterations: {event.stopped}"
            what += f": {event.error.message}" if event.error else ""
        case CompensationStarted():
            what = f"{event.step} on {event.agent}"
        case CompensationEnded():
            what = event.step + (
                f": {event.error.type}: {event.error.message}" if event.error else ""
            )
    return f"{event.seq:>5}  {moment}  {kind:<20} {what}".rstrip()


class LiveProgress:
    """A live table of the run's steps, fed by the engine's `on_events` callback.

    The engine calls `on_events` on the event loop's thread while rich redraws from its own
    refresh thread, so both take a lock around the history they share. The view is transient:
    it disappears when the run ends and the summary is printed in its place.
    """

    def __init__(self, console: Console, title: str, events: Iterable[Event] = ()) -> None:
        self._title = Text.assemble(("running ", "bold"), title)
        self._history = RunHistory.fold(events)
        self._lock = threading.Lock()
        self._live = Live(
            console=console,
            get_renderable=self._render,
            refresh_per_second=8,
            transient=True,
        )

    def on_events(self, events: Sequence[Event]) -> None:
        with self._lock:
            for event in events:
                self._history.apply(event)
        self._live.refresh()

    def _render(self) -> RenderableType:
        with self._lock:
            return Group(self._title, steps_table(self._history, now=time.time()))

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._live.stop()
