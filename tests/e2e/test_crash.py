"""Kill `podium run` with SIGKILL at random moments, resume it, and check nothing is lost.

Each step appends its key to a ledger file once its work is done, standing for a side
effect in the world. The workflow has a bit of everything: a fan-out, a retry, an approval,
a loop of two steps run three times, and a sub-workflow. After the kills and resumes:
- the run succeeds with the output of an uncrashed run;
- a step whose completion was committed before a kill is in the ledger exactly once;
- any other step is in it at most once per process that ran it, and at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from podium.errors import RunNotFound
from podium.model import StepSucceeded
from podium.store import open_store

AGENTS = """
import asyncio, os

async def work(ctx, delay):
    await asyncio.sleep(delay)
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(ctx.key + "\\n")
    return ctx.key

async def flaky(ctx):
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(ctx.key + "\\n")
    return "recovered"
"""

WORKFLOW = """
name: crash-me
steps:
  start:  {uses: "crash_agents:work", with: {delay: 0.1}}
  fan:
    needs: [start]
    for_each: "${{ input.items }}"
    max_parallel: 3
    uses: "crash_agents:work"
    with: {delay: 0.15}
  flaky:
    needs: [start]
    uses: "crash_agents:flaky"
    retry: {attempts: 2, backoff: 300ms}
  gate: {needs: [start], approval: "Go on?"}
  polish:
    needs: [start]
    repeat: {until: "${{ steps.review.output == 'review#3' }}", max_iterations: 5}
    steps:
      draft: {uses: "crash_agents:work", with: {delay: 0.1}}
      review: {needs: [draft], uses: "crash_agents:work", with: {delay: 0.1}}
  sub:
    needs: [start]
    workflow:
      name: child
      steps:
        c1: {uses: "crash_agents:work", with: {delay: 0.1}}
        c2: {needs: [c1], uses: "crash_agents:work", with: {delay: 0.1}}
      output: "${{ steps.c2.output }}"
  join: {needs: [fan, flaky, gate, polish, sub], uses: "crash_agents:work", with: {delay: 0.1}}
  tail1: {needs: [join], uses: "crash_agents:work", with: {delay: 0.1}}
  tail2: {needs: [tail1], uses: "crash_agents:work", with: {delay: 0.1}}
output:
  fan: "${{ steps.fan.output }}"
  flaky: "${{ steps.flaky.output }}"
  last: "${{ steps.tail2.output }}"
  polished: "${{ steps.polish.last.review }}"
  sub: "${{ steps.sub.output }}"
"""

ITEMS = list(range(9))
EXPECTED = {
    "fan": [f"fan[{i}]" for i in ITEMS],
    "flaky": "recovered",
    "last": "tail2",
    "polished": "review#3",
    "sub": "c2",
}
LOOP_KEYS = {f"{step}#{n}" for step in ("draft", "review") for n in (1, 2, 3)}
ALL_KEYS = {"start", "flaky", "join", "tail1", "tail2", "c1", "c2", *LOOP_KEYS, *EXPECTED["fan"]}


SEEDS = int(os.environ.get("PODIUM_TORTURE_SEEDS", "8"))  # `make torture` runs many more


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store the crashed runs live in: a SQLite file, or a fresh Postgres schema."""
    if request.param == "sqlite":
        return str(tmp_path / "p.db")
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


def podium(folder: Path, db: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LEDGER": str(folder / "ledger"), "PODIUM_DB": db}
    json_output = ["--json"] if args[0] in ("run", "resume") else []
    return subprocess.Popen(
        [sys.executable, "-m", "podium", *args, *json_output],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def committed_successes(db: str) -> set[str]:
    async def read() -> set[str]:
        store = open_store(db)
        try:
            done = {e.key for e in await store.load("r") if isinstance(e, StepSucceeded)}
            with contextlib.suppress(RunNotFound):  # the sub-workflow's run, once it exists
                done |= {e.key for e in await store.load("r/sub") if isinstance(e, StepSucceeded)}
            return done
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(SEEDS))
def test_sigkill_at_random_moments_then_resume(tmp_path: Path, db: str, seed: int) -> None:
    rng = random.Random(seed)
    (tmp_path / "crash_agents.py").write_text(AGENTS)
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    done_before_a_kill: set[str] = set()
    kills = 0
    approved = False

    def approve_the_gate() -> None:
        """Decide the approval, if the run has asked for it yet (the CLI refuses otherwise)."""
        nonlocal approved
        if not approved:
            decide = podium(tmp_path, db, "approve", "r", "gate")
            decide.communicate(timeout=60)
            approved = decide.returncode == 0

    args = ["run", "wf.yaml", "--run-id", "r", "--input", json.dumps({"items": ITEMS})]
    created = False  # a process killed before it created the run leaves nothing to resume
    for _ in range(8):
        process = podium(tmp_path, db, *(["resume", "r"] if created else args))
        # The first process is always killed; later ones half of the time.
        if kills == 0 or (kills < 4 and rng.random() < 0.5):
            time.sleep(rng.uniform(0.15, 0.6))  # a process reaches the gate after ~0.7 s
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.communicate()
                kills += 1
                with contextlib.suppress(RunNotFound):  # killed before the run was created
                    done_before_a_kill |= committed_successes(db)
                    created = True
                if rng.random() < 0.5:  # a person decides while no process runs it
                    approve_the_gate()
                continue
        stdout, stderr = process.communicate(timeout=60)
        created = True
        if process.returncode == 3:  # waiting for the gate: decide, then resume
            assert json.loads(stdout)["status"] == "waiting"
            approve_the_gate()
            continue
        assert process.returncode == 0, stderr
        assert json.loads(stdout)["output"] == EXPECTED
        break
    else:
        pytest.fail("the run did not finish after eight processes")
    assert kills >= 1, "the run ended before the first kill: make the workflow longer"
    assert approved

    ledger = Counter((tmp_path / "ledger").read_text().split())
    assert set(ledger) == ALL_KEYS  # every side effect happened
    for key in done_before_a_kill & ALL_KEYS:  # the approval writes no ledger line
        assert ledger[key] == 1, f"{key} was committed before a kill but ran {ledger[key]} times"
    for key, count in ledger.items():
        assert count <= 1 + kills, f"{key} ran {count} times with {kills} kills"
