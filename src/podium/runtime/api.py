"""Starting, resuming and cancelling runs: the entry points the CLI and Python users call.

A run is executed by one process at a time: the one that holds its lease in the store. The
lease is renewed while the run goes; a process that dies leaves a lease that expires, and a
lease held by a dead process on this machine is taken over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from podium.errors import InputError, RunBusy, RunError, StoreError
from podium.model import Event, RunFinished, RunResumed, RunStarted, Workflow
from podium.runtime.approvals import Decision, check_decision
from podium.runtime.clock import Clock, SystemClock
from podium.runtime.execution import EventSink, Execution
from podium.runtime.fork import UNCHANGED, fork_events
from podium.runtime.prepare import Prepared, prepare
from podium.runtime.result import RunResult
from podium.store import Store, open_store

LEASE_SECONDS = 30.0
WAIT_POLL_SECONDS = 0.2

StartCallback = Callable[[str], None]


async def run_workflow(
    workflow: Workflow,
    input: Any = None,
    *,
    store: str | Store = ":memory:",
    run_id: str | None = None,
    max_parallel: int | None = None,
    on_start: StartCallback | None = None,
    on_events: EventSink | None = None,
    clock: Clock | None = None,
    parent: str | None = None,
) -> RunResult:
    """Run `workflow` on `input` to its end and return the result.

    With a `run_id` that already exists, nothing new starts: a finished run's recorded
    result is returned, an unfinished one is resumed as it was defined, and one that
    another process is executing is waited for.
    """
    from podium.spec import workflow_to_document

    prepared = prepare(workflow)
    prepared.check_input(input)
    clock = clock or SystemClock()
    limit = max_parallel if max_parallel is not None else workflow.max_parallel
    if limit is not None and limit < 1:
        raise InputError(f"max_parallel must be at least 1, not {limit}")
    async with _opened(store) as opened:
        run_id = run_id or _new_run_id()
        started = RunStarted(
            seq=0,
            at=clock.now(),
            run_id=run_id,
            workflow=workflow.name,
            definition=workflow_to_document(workflow),
            base_dir=workflow.base_dir,
            input=input,
            max_parallel=limit,
            parent=parent,
        )
        if not await opened.create_run(started):
            return await _continue(
                opened, run_id, None, on_start, on_events, clock, wait_if_busy=True, redrive=False
            )
        if on_start is not None:
            on_start(run_id)
        # A process that lost the race to create this run may take the lease before we do:
        # then it executes the run, and we wait for its result like any other loser.
        return await _execute(
            opened, prepared, [started], limit, on_events, clock, resumed=None, wait_if_busy=True
        )


async def resume_run(
    run_id: str,
    *,
    store: str | Store,
    workflow: Workflow | None = None,
    max_parallel: int | None = None,
    on_start: StartCallback | None = None,
    on_events: EventSink | None = None,
    clock: Clock | None = None,
) -> RunResult:
    """Continue run `run_id` from its log: after a crash, or a failure (redrive).

    Steps that succeeded are never run again. The run resumes with the definition stored
    when it started, unless `workflow` is given (for workflows built from local callables).
    A finished, succeeded or cancelled run is returned as it is.
    """
    async with _opened(store) as opened:
        return await _continue(
            opened,
            run_id,
            workflow,
            on_start,
            on_events,
            clock or SystemClock(),
            wait_if_busy=False,
            redrive=True,
            max_parallel=max_parallel,
        )


async def cancel_run(run_id: str, *, store: str | Store) -> None:
    """Ask the process executing `run_id` to cancel it; an idle run is cancelled here."""
    async with _opened(store) as opened:
        await opened.request_cancel(run_id)
        clock = SystemClock()
        owner = _owner()
        if await _take_lease(opened, run_id, owner, clock) is not None:
            return  # a live process runs it: it will see the request within a second
        try:
            events = await opened.load(run_id)
            if not isinstance(events[-1], RunFinished):
                finished = RunFinished(
                    seq=events[-1].seq + 1, at=clock.now(), status="cancelled", error=None
                )
                await opened.append(run_id, [finished])
        finally:
            await opened.release(run_id, owner)


async def approve(
    run_id: str,
    step: str,
    *,
    store: str | Store,
    approved: bool = True,
    data: Any = None,
    reason: str = "",
    by: str | None = None,
) -> None:
    """Record a person's decision on approval step `step` (a unit key) of run `run_id`.

    The decision is checked (the step must be asking; `data` must fit its schema) and left
    for the process executing the run, or for the next `resume_run` of a waiting run.
    """
    async with _opened(store) as opened:
        check_decision(await opened.load(run_id), step, data, approved=approved)
        decision = Decision(
            key=step,
            approved=approved,
            by=by or _person(),
            decided_at=time.time(),
            data=data,
            reason=reason,
        )
        await opened.send_signal(run_id, decision.as_signal())


def _person() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (containers)
        return f"uid {os.getuid()}"


async def fork_run(
    run_id: str,
    at: str,
    *,
    store: str | Store,
    input: Any = UNCHANGED,
    sets: Mapping[str, Any] | None = None,
    new_run_id: str | None = None,
    workflow: Workflow | None = None,
    on_start: StartCallback | None = None,
    on_events: EventSink | None = None,
    clock: Clock | None = None,
) -> RunResult:
    """Start a new run from run `run_id`'s history up to step `at`, and continue it.

    `input` replaces the run input for what runs again, and `sets` sets state keys outright;
    steps completed before `at` keep their recorded results. The parent run is not changed.
    """
    clock = clock or SystemClock()
    async with _opened(store) as opened:
        forked = fork_events(
            await opened.load(run_id),
            at,
            run_id=new_run_id or _new_run_id(),
            now=clock.now(),
            input=input,
            sets=sets,
        )
        started = forked[0]
        assert isinstance(started, RunStarted)
        if not await opened.create_run(started):
            raise RunError(f"a run with id {started.run_id!r} already exists")
        await opened.append(started.run_id, forked[1:])
        return await _continue(
            opened,
            started.run_id,
            workflow,
            on_start,
            on_events,
            clock,
            wait_if_busy=False,
            redrive=False,
        )


async def read_result(run_id: str, *, store: str | Store) -> RunResult:
    """The run as its log tells it, without executing anything."""
    async with _opened(store) as opened:
        return RunResult.of(run_id, await opened.load(run_id))


async def _continue(
    store: Store,
    run_id: str,
    workflow: Workflow | None,
    on_start: StartCallback | None,
    on_events: EventSink | None,
    clock: Clock,
    *,
    wait_if_busy: bool,
    redrive: bool,
    max_parallel: int | None = None,
) -> RunResult:
    """Resume an unfinished run; a failed one only with `redrive`, else return it as is."""
    from podium.spec import workflow_from_document

    events = await store.load(run_id)
    if on_start is not None:
        on_start(run_id)
    last = events[-1]
    if isinstance(last, RunFinished) and (last.status != "failed" or not redrive):
        return RunResult.of(run_id, events)
    started = events[0]
    if not isinstance(started, RunStarted):
        raise RunError(f"run {run_id!r} has a damaged log: it does not begin with run_started")
    if workflow is None:
        workflow = workflow_from_document(
            started.definition, source=f"run {run_id}", base_dir=started.base_dir
        )
    prepared = prepare(workflow)
    limit = max_parallel if max_parallel is not None else started.max_parallel
    return await _execute(
        store,
        prepared,
        events,
        limit,
        on_events,
        clock,
        resumed=isinstance(last, RunFinished),
        wait_if_busy=wait_if_busy,
    )


async def _execute(
    store: Store,
    prepared: Prepared,
    history: list[Event],
    max_parallel: int | None,
    on_events: EventSink | None,
    clock: Clock,
    *,
    resumed: bool | None,
    wait_if_busy: bool = False,
) -> RunResult:
    """Execute under the run's lease. `resumed` is None for a new run, else the redrive flag."""
    started = history[0]
    assert isinstance(started, RunStarted)
    run_id = started.run_id
    owner = _owner()
    holder = await _take_lease(store, run_id, owner, clock)
    if holder is not None:
        if not wait_if_busy:
            raise RunBusy(run_id, holder)
        return await _wait_for_finish(store, run_id)
    try:
        if resumed is not None:
            history = await store.load(run_id)  # the log may have grown while we waited
            if isinstance(history[-1], RunFinished) and history[-1].status != "failed":
                return RunResult.of(run_id, history)
            marker = RunResumed(seq=history[-1].seq + 1, at=clock.now(), redrive=resumed)
            await store.append(run_id, [marker])
            history = [*history, marker]
        registry = prepared.registry
        registry.load_figures(await store.load_agent_figures())
        execution = Execution(
            prepared,
            store,
            run_id=run_id,
            run_input=started.input,
            history=history,
            clock=clock,
            max_parallel=max_parallel,
            on_events=on_events,
        )
        renewer = asyncio.create_task(_renew_lease(store, run_id, owner, clock, execution))
        try:
            await execution.run()
        finally:
            renewer.cancel()
        with contextlib.suppress(StoreError):  # a hint for routing: the result stands without
            await store.save_agent_figures(registry.figures())
        return RunResult.of(run_id, [*history, *execution.recorded])
    finally:
        await store.release(run_id, owner)


async def _wait_for_finish(store: Store, run_id: str) -> RunResult:
    """Another process executes the run: wait until its log ends, then read the result."""
    while True:
        summary = await store.get_run(run_id)
        if summary.status not in ("running",):
            return RunResult.of(run_id, await store.load(run_id))
        if summary.owner is None:  # its executor gave up without finishing: take over
            return await _continue(
                store, run_id, None, None, None, SystemClock(), wait_if_busy=True, redrive=False
            )
        await asyncio.sleep(WAIT_POLL_SECONDS)


async def _take_lease(store: Store, run_id: str, owner: str, clock: Clock) -> str | None:
    """Acquire the run's lease; None on success, else the live holder."""
    holder = await store.acquire(run_id, owner, LEASE_SECONDS, now=clock.now())
    if holder is None or not _is_dead_here(holder):
        return holder
    if await store.steal(run_id, owner, holder, LEASE_SECONDS, now=clock.now()):
        return None
    return await store.acquire(run_id, owner, LEASE_SECONDS, now=clock.now())


async def _renew_lease(
    store: Store, run_id: str, owner: str, clock: Clock, execution: Execution
) -> None:
    """Keep the lease while the run executes; stop the execution if another took it.

    A store error is tried again at the next renewal: the lease lasts three of them.
    """
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        try:
            holder = await store.acquire(run_id, owner, LEASE_SECONDS, now=clock.now())
        except StoreError:
            continue
        if holder is not None:
            execution.lose_lease(holder)
            return


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _is_dead_here(owner: str) -> bool:
    """Whether `owner` was a process on this machine that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # an owner in this process (another run call) is alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped still answers kill(0); its state in /proc says Z."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.asynccontextmanager
async def _opened(store: str | Store) -> AsyncIterator[Store]:
    if not isinstance(store, str):
        yield store
        return
    opened = open_store(store)
    try:
        yield opened
    finally:
        await opened.close()
