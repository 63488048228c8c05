"""Runs on a store that fails: every run succeeds or stops with a `StoreError`, and resumes.

`FaultyStore` makes writes fail at random (nothing written) or lose their acknowledgement
(written, but the caller is told it failed). Over many seeds and rates, for a chain, a
fan-out, a retried flaky step and a branch, on the memory and SQLite stores:

- a run either returns the correct output or raises the injected `StoreError`: never another
  exception, never a hang (each call is bounded by `asyncio.wait_for`);
- resuming it on the same store without faults completes it with the correct output, its log
  has contiguous seqs and at most one `step_succeeded` per unit, and no step whose success
  was committed before the fault is executed again (an agent-side ledger counts calls);
- a run that keeps meeting faults while it is resumed still gets there, one resume at a time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from podium import (
    RetryPolicy,
    RunNotFound,
    Step,
    StepContext,
    StoreError,
    Workflow,
    resume_run,
    run_workflow,
)
from podium.model import Event, RunFinished, StepSucceeded
from podium.runtime import RunResult
from podium.store import Store
from podium.store.memory import MemoryStore
from podium.store.sqlite import SqliteStore
from podium.testing.clock import VirtualClock
from podium.testing.faults import LOST_ACK_MESSAGE, WRITE_FAILURE_MESSAGE, FaultyStore

SEEDS = range(30)
RATES = (0.05, 0.1, 0.2, 0.3)
TIMEOUT = 10.0  # seconds for one run or resume: past this, it hangs

# run id -> every call an agent received, as (unit key, attempt), in order.
ledger: dict[str, list[tuple[str, int]]] = {}


def _called(ctx: StepContext) -> int:
    """Record the call; return how many calls this unit had in this run before it."""
    calls = ledger.setdefault(ctx.run_id, [])
    before = sum(1 for key, _ in calls if key == ctx.key)
    calls.append((ctx.key, ctx.attempt))
    return before


async def add(ctx: StepContext, x: int, y: int) -> int:
    _called(ctx)
    await asyncio.sleep(0)
    return x + y


async def square(ctx: StepContext, x: int) -> int:
    _called(ctx)
    await asyncio.sleep(0)
    return x * x


async def total(ctx: StepContext, xs: list[int]) -> int:
    _called(ctx)
    return sum(xs)


async def flaky(ctx: StepContext, value: str) -> str:
    """Fails on its first two calls in a run, whatever attempt numbers they carry."""
    if _called(ctx) < 2:
        raise RuntimeError(f"flaky call on attempt {ctx.attempt}")
    return value.upper()


async def check(ctx: StepContext, qty: int) -> dict[str, bool]:
    _called(ctx)
    return {"in_stock": qty > 0}


async def note(ctx: StepContext, what: str) -> str:
    _called(ctx)
    await asyncio.sleep(0)
    return what


@dataclass(frozen=True)
class Case:
    """A workflow, an input for a seed, and the output a correct run of it gives."""

    workflow: Workflow
    make_input: Callable[[int], Any]
    expected: Callable[[int], Any]


def chain() -> Case:
    wf = Workflow(
        name="chain",
        steps=[
            Step(id="a", uses=add, with_={"x": "${{ input.n }}", "y": 1}),
            Step(id="b", needs=("a",), uses=add, with_={"x": "${{ steps.a.output }}", "y": 10}),
            Step(id="c", needs=("b",), uses=add, with_={"x": "${{ steps.b.output }}", "y": 100}),
            Step(id="d", needs=("c",), uses=add, with_={"x": "${{ steps.c.output }}", "y": 1000}),
        ],
        output="${{ steps.d.output }}",
    )
    return Case(wf, lambda seed: {"n": seed}, lambda seed: seed + 1111)


def fan_out() -> Case:
    wf = Workflow(
        name="fan-out",
        steps=[
            Step(
                id="sq",
                uses=square,
                for_each="${{ input.xs }}",
                max_parallel=2,
                with_={"x": "${{ item }}"},
            ),
            Step(id="sum", needs=("sq",), uses=total, with_={"xs": "${{ steps.sq.output }}"}),
        ],
        output={"squares": "${{ steps.sq.output }}", "total": "${{ steps.sum.output }}"},
    )

    def expected(seed: int) -> Any:
        squares = [x * x for x in range(seed % 4 + 3)]
        return {"squares": squares, "total": sum(squares)}

    return Case(wf, lambda seed: {"xs": list(range(seed % 4 + 3))}, expected)


def retrying() -> Case:
    wf = Workflow(
        name="retrying",
        steps=[
            Step(id="first", uses=note, with_={"what": "${{ input.word }}"}),
            Step(
                id="shaky",
                needs=("first",),
                uses=flaky,
                with_={"value": "${{ steps.first.output }}"},
                retry=RetryPolicy(attempts=3, backoff=60.0),
            ),
            Step(
                id="last", needs=("shaky",), uses=note, with_={"what": "${{ steps.shaky.output }}"}
            ),
        ],
        output="${{ steps.last.output }}",
    )
    return Case(wf, lambda seed: {"word": f"w{seed}"}, lambda seed: f"W{seed}")


def branch() -> Case:
    wf = Workflow(
        name="branch",
        steps=[
            Step(id="check", uses=check, with_={"qty": "${{ input.qty }}"}),
            Step(
                id="reserve",
                needs=("check",),
                condition="${{ steps.check.output.in_stock }}",
                uses=note,
                with_={"what": "reserved"},
            ),
            Step(
                id="backorder",
                needs=("check",),
                condition="${{ not steps.check.output.in_stock }}",
                uses=note,
                with_={"what": "backordered"},
            ),
            Step(
                id="notify",
                needs=("reserve", "backorder"),
                trigger="one_success",
                uses=note,
                with_={"what": "${{ steps.reserve.status }}/${{ steps.backorder.status }}"},
            ),
        ],
        output={"notified": "${{ steps.notify.output }}"},
    )

    def expected(seed: int) -> Any:
        return {"notified": "succeeded/skipped" if seed % 2 else "skipped/succeeded"}

    return Case(wf, lambda seed: {"qty": seed % 2}, expected)


def sleepy() -> Case:
    """A durable timer between two calls; on the virtual clock the hour takes no time."""
    wf = Workflow(
        name="sleepy",
        steps=[
            Step(id="before", uses=note, with_={"what": "${{ input.word }}"}),
            Step(id="nap", needs=("before",), sleep=3600.0),
            Step(
                id="after",
                needs=("nap",),
                uses=note,
                with_={"what": "${{ steps.before.output }} ${{ steps.nap.status }}"},
            ),
        ],
        output="${{ steps.after.output }}",
    )
    return Case(wf, lambda seed: {"word": f"w{seed}"}, lambda seed: f"w{seed} succeeded")


CASES = {
    "chain": chain,
    "fan_out": fan_out,
    "retrying": retrying,
    "branch": branch,
    "sleepy": sleepy,
}


def rates_for(seed: int, rate: float) -> tuple[float, float]:
    """Both kinds of fault, only write failures, or only lost acknowledgements."""
    return [(rate, rate), (rate, 0.0), (0.0, rate)][seed % 3]


@pytest.fixture(params=["memory", "sqlite"])
async def inner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "p.db")
    yield store
    await store.close()


@pytest.fixture(autouse=True)
def _clear_ledger() -> None:
    ledger.clear()


def check_log(log: list[Event]) -> None:
    """Seqs 0, 1, 2, … without gaps; one success at most per unit; a successful end."""
    assert [e.seq for e in log] == list(range(len(log)))
    succeeded = Counter(e.key for e in log if isinstance(e, StepSucceeded))
    assert all(n == 1 for n in succeeded.values()), succeeded
    assert sum(isinstance(e, RunFinished) for e in log) >= 1
    last = log[-1]
    assert isinstance(last, RunFinished)
    assert last.status == "succeeded"


async def committed_successes(store: Store, run_id: str) -> set[str]:
    try:
        return {e.key for e in await store.load(run_id) if isinstance(e, StepSucceeded)}
    except RunNotFound:  # the write of run_started itself failed
        return set()


async def attempt(call: Coroutine[Any, Any, RunResult]) -> RunResult | StoreError:
    """The result of `call`, or the `StoreError` it raised; it may not take over TIMEOUT."""
    try:
        return await asyncio.wait_for(call, TIMEOUT)
    except StoreError as exc:
        return exc


async def finish(case: Case, store: Store, run_id: str, seed: int) -> RunResult:
    """Resume `run_id` on `store`, or start it there if its creation was never written."""
    try:
        await store.load(run_id)
    except RunNotFound:
        return await asyncio.wait_for(
            run_workflow(
                case.workflow,
                case.make_input(seed),
                store=store,
                run_id=run_id,
                clock=VirtualClock(),
            ),
            TIMEOUT,
        )
    return await asyncio.wait_for(
        resume_run(run_id, store=store, workflow=case.workflow, clock=VirtualClock()), TIMEOUT
    )


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_run_succeeds_or_fails_clearly_and_resumes_without_repeating_work(
    inner: Store, name: str
) -> None:
    case = CASES[name]()
    outcomes: Counter[str] = Counter()
    for rate in RATES:
        for seed in SEEDS:
            run_id = f"{name}-{rate}-{seed}"
            write_failures, lost_acks = rates_for(seed, rate)
            faulty = FaultyStore(
                inner, seed=seed, write_failure_rate=write_failures, lost_ack_rate=lost_acks
            )
            outcome = await attempt(
                run_workflow(
                    case.workflow,
                    case.make_input(seed),
                    store=faulty,
                    run_id=run_id,
                    clock=VirtualClock(),
                )
            )
            if isinstance(outcome, RunResult):
                assert not faulty.injected, f"{run_id}: a fault was swallowed"
                assert outcome.status == "succeeded", (run_id, outcome.error)
                assert outcome.output == case.expected(seed)
                outcomes["clean"] += 1
                check_log(await inner.load(run_id))
                continue
            assert str(outcome) in (WRITE_FAILURE_MESSAGE, LOST_ACK_MESSAGE), str(outcome)
            assert faulty.injected, "a StoreError that no fault explains"
            outcomes[faulty.injected[-1]] += 1

            durable = await committed_successes(inner, run_id)
            calls_before = Counter(key for key, _ in ledger.get(run_id, []))
            resumed = await finish(case, inner, run_id, seed)
            assert resumed.status == "succeeded", (run_id, resumed.error)
            assert resumed.output == case.expected(seed), run_id
            check_log(await inner.load(run_id))
            calls_after = Counter(key for key, _ in ledger.get(run_id, []))
            repeated = {key for key in durable if calls_after[key] != calls_before[key]}
            assert not repeated, f"{run_id}: committed steps ran again on resume: {repeated}"
            outcomes["resumed after committed successes"] += bool(durable)
    # The sweep is meaningful only if it met both kinds of fault, and clean runs too.
    assert outcomes["write_failure"] > 10, outcomes
    assert outcomes["lost_ack"] > 10, outcomes
    assert outcomes["clean"] > 10, outcomes
    assert outcomes["resumed after committed successes"] > 10, outcomes


@pytest.mark.parametrize("name", sorted(CASES))
async def test_resumes_that_meet_faults_themselves_still_finish_the_run(
    inner: Store, name: str
) -> None:
    """Resume through the faulty store again and again: each try makes progress or fails
    cleanly, and the run finishes with its correct output and a clean log."""
    case = CASES[name]()
    for seed in range(20):
        run_id = f"{name}-again-{seed}"
        faulty = FaultyStore(inner, seed=1000 + seed, write_failure_rate=0.2, lost_ack_rate=0.2)
        result: RunResult | None = None
        for tries in range(60):
            if tries == 0:
                outcome = await attempt(
                    run_workflow(
                        case.workflow,
                        case.make_input(seed),
                        store=faulty,
                        run_id=run_id,
                        clock=VirtualClock(),
                    )
                )
            else:
                outcome = await attempt(finish(case, faulty, run_id, seed))
            if isinstance(outcome, RunResult):
                result = outcome
                break
            assert str(outcome) in (WRITE_FAILURE_MESSAGE, LOST_ACK_MESSAGE), str(outcome)
        assert result is not None, f"{run_id}: no resume got through 60 times"
        assert result.status == "succeeded", (run_id, result.error)
        assert result.output == case.expected(seed)
        check_log(await inner.load(run_id))
        # Each unit succeeded once in the log; its agent ran at most once per failed try.
        assert faulty.writes > 0


async def outcomes_of(seed: int, calls: int = 200) -> list[str]:
    """What each of `calls` appends met: "ok", or the message of the injected fault."""
    from podium.model import RunStarted, StepSkipped

    inner = MemoryStore()
    faulty = FaultyStore(inner, seed=seed, write_failure_rate=0.3, lost_ack_rate=0.3)
    started = RunStarted(seq=0, at=0.0, run_id="r", workflow="w", definition={})
    await inner.create_run(started)
    seen: list[str] = []
    for _ in range(calls):
        seq = len(await inner.load("r"))
        skipped = StepSkipped(seq=seq, at=1.0, step=f"s{seq}", cause="condition", reason="-")
        try:
            await faulty.append("r", [skipped])
        except StoreError as exc:
            seen.append(str(exc))
        else:
            seen.append("ok")
    return seen


async def test_faults_are_reproducible_from_the_seed() -> None:
    first = await outcomes_of(5)
    assert first == await outcomes_of(5)
    assert first != await outcomes_of(6)
    drawn = Counter(first)
    assert drawn[WRITE_FAILURE_MESSAGE] > 20
    assert drawn[LOST_ACK_MESSAGE] > 20
    assert drawn["ok"] > 20


async def test_a_lost_acknowledgement_is_committed_and_a_write_failure_is_not() -> None:
    from podium.model import RunStarted, StepSkipped

    inner = MemoryStore()
    started = RunStarted(seq=0, at=1.0, run_id="r", workflow="w", definition={}, input=None)
    lost = FaultyStore(inner, seed=0, write_failure_rate=0.0, lost_ack_rate=1.0)
    with pytest.raises(StoreError, match="lost acknowledgement"):
        await lost.create_run(started)
    assert [e.seq for e in await inner.load("r")] == [0]
    skipped = StepSkipped(seq=1, at=2.0, step="s", cause="condition", reason="no")
    failing = FaultyStore(inner, seed=0, write_failure_rate=1.0, lost_ack_rate=0.0)
    with pytest.raises(StoreError, match="write failure"):
        await failing.append("r", [skipped])
    assert [e.seq for e in await failing.load("r")] == [0]
    with pytest.raises(StoreError, match="lost acknowledgement"):
        await lost.append("r", [skipped])
    assert [e.seq for e in await inner.load("r")] == [0, 1]
    assert lost.injected == ["lost_ack", "lost_ack"]
    assert failing.injected == ["write_failure"]


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="write_failure_rate"):
        FaultyStore(MemoryStore(), seed=0, write_failure_rate=1.5, lost_ack_rate=0.0)
    with pytest.raises(ValueError, match="must not exceed 1"):
        FaultyStore(MemoryStore(), seed=0, write_failure_rate=0.6, lost_ack_rate=0.6)
