"""Forking a run at a step: a new run from the parent's history, the parent untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from podium import RunError, Step, StepContext, Workflow, fork_run, run_workflow
from podium.store import open_store

calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


async def price(ctx: StepContext, qty: int) -> int:
    calls.append(ctx.key)
    return qty * 10


async def tax(ctx: StepContext, amount: int) -> float:
    calls.append(ctx.key)
    return amount * 1.2


async def quote(ctx: StepContext, base: int) -> str:
    calls.append(ctx.key)
    return f"quote #{base}"


def pricing() -> Workflow:
    return Workflow(
        name="pricing",
        steps=[
            Step(id="q", uses=quote, with_={"base": "${{ input.base }}"}),
            Step(id="p", needs=("q",), uses=price, with_={"qty": "${{ input.qty }}"}),
            Step(id="t", needs=("p",), uses=tax, with_={"amount": "${{ steps.p.output }}"}),
        ],
        output={"quote": "${{ steps.q.output }}", "total": "${{ steps.t.output }}"},
    )


async def test_a_fork_with_a_new_input_reruns_from_the_step_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "p.db")
    parent = await run_workflow(pricing(), {"base": 1, "qty": 2}, store=db, run_id="parent")
    assert parent.output == {"quote": "quote #1", "total": 24.0}
    calls.clear()

    forked = await fork_run(
        "parent", "p", store=db, input={"base": 99, "qty": 5}, new_run_id="child", workflow=None
    )
    assert forked.status == "succeeded"
    # `q` completed before the fork point: kept, with the parent's input; p and t run again.
    assert forked.output == {"quote": "quote #1", "total": 60.0}
    assert calls == ["p", "t"]
    assert forked.history.forked_from == "parent"
    assert forked.history.fork_at == "p"

    store = open_store(db)
    try:
        again = await store.load("parent")
    finally:
        await store.close()
    assert len(again) == len(parent.history.steps) * 2 + 2  # the parent is untouched


async def test_forking_at_a_step_the_run_never_reached_is_a_clear_error(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    await run_workflow(pricing(), {"base": 1, "qty": 2}, store=db, run_id="parent")
    with pytest.raises(RunError, match="never reached step 'nope'; it reached: p, q, t"):
        await fork_run("parent", "nope", store=db)


def test_the_cli_forks_and_prints_the_new_result(tmp_path: Path) -> None:
    (tmp_path / "fork_agents.py").write_text(
        "def double(x):\n    return x * 2\n\ndef add(a, b):\n    return a + b\n"
    )
    (tmp_path / "wf.yaml").write_text(
        "name: arith\n"
        "steps:\n"
        "  d: {uses: 'fork_agents:double', with: '${{ input.x }}'}\n"
        "  s: {uses: 'fork_agents:add', needs: [d], with: {a: '${{ steps.d.output }}', "
        "b: '${{ input.y }}'}}\n"
        "output: ${{ steps.s.output }}\n"
    )

    def podium(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "podium", *args, "--db", "p.db", "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert podium("run", "wf.yaml", "--run-id", "a", "--input", '{"x": 1, "y": 1}')["output"] == 3
    forked = podium("fork", "a", "--at", "s", "--input", '{"x": 100, "y": 10}', "--run-id", "b")
    assert forked == {"run_id": "b", "status": "succeeded", "output": 12, "error": None}
