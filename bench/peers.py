"""`python -m bench.peers`: podium beside LangGraph and Microsoft Agent Framework, here.

The speed targets of podium were set beside figures for its peers measured on another
machine. This measures the peers on this one: the same chain of N no-op async steps, in
one process, each engine in turn, best of several rounds. Each is timed twice:

- run: from a built graph to its result (LangGraph's compiled graph, Agent Framework's
  built workflow, podium's loaded workflow through `run_workflow`), all in memory;
- build and run: with building the graph first (podium reads and validates the YAML file,
  through `podium run`).

`make bench-peers` installs the pinned peers in a venv of their own (`.venv-peers`), since
podium does not depend on them. Results print as a table and go to bench/peers.json.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from agent_framework import Executor, WorkflowBuilder, WorkflowContext, handler
from langgraph.graph import END, START, StateGraph

from bench.__main__ import HERE, chain_yaml, podium_run

N = 1_000
ROUNDS = 5

# Seconds to run the chain, and to build and run it.
Timer = Callable[[], tuple[float, float]]


def podium_chain(folder: Path) -> tuple[float, float]:
    from podium.runtime.api import run_workflow
    from podium.spec.loader import load_workflow

    definition = chain_yaml(N)
    build_and_run = podium_run(definition, N, ":memory:", folder)
    workflow = load_workflow(folder / f"{definition['name']}.yaml")  # as `podium_run` wrote it

    async def run() -> float:
        gc.collect()
        began = time.perf_counter()
        result = await run_workflow(workflow)
        seconds = time.perf_counter() - began
        assert result.status == "succeeded", result
        return seconds

    return asyncio.run(run()), build_and_run


class _State(TypedDict):
    done: int


async def _noop_node(state: _State) -> dict[str, Any]:
    return {}


async def langgraph_chain() -> tuple[float, float]:
    gc.collect()
    began = time.perf_counter()
    graph = StateGraph(_State)
    for i in range(N):
        graph.add_node(f"s{i}", _noop_node)
    graph.add_edge(START, "s0")
    for i in range(1, N):
        graph.add_edge(f"s{i - 1}", f"s{i}")
    graph.add_edge(f"s{N - 1}", END)
    app = graph.compile()
    built = time.perf_counter()
    await app.ainvoke({"done": 0}, {"recursion_limit": N + 10})
    ended = time.perf_counter()
    return ended - built, ended - began


class _Step(Executor):
    def __init__(self, id: str, *, last: bool) -> None:
        super().__init__(id=id)
        self.last = last

    @handler
    async def go(self, value: int, ctx: WorkflowContext[int, int]) -> None:
        if self.last:
            await ctx.yield_output(value)
        else:
            await ctx.send_message(value)


async def agent_framework_chain() -> tuple[float, float]:
    gc.collect()
    began = time.perf_counter()
    steps = [_Step(f"s{i}", last=i == N - 1) for i in range(N)]
    builder = WorkflowBuilder(start_executor=steps[0], max_iterations=N + 10)
    for before, after in itertools.pairwise(steps):
        builder = builder.add_edge(before, after)
    workflow = builder.build()
    built = time.perf_counter()
    result = await workflow.run(0)
    ended = time.perf_counter()
    assert result.get_outputs() == [0], result
    return ended - built, ended - began


def measure(folder: Path) -> dict[str, dict[str, float]]:
    engines: dict[str, Timer] = {
        "podium": lambda: podium_chain(folder),
        "LangGraph": lambda: asyncio.run(langgraph_chain()),
        "Agent Framework": lambda: asyncio.run(agent_framework_chain()),
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(ROUNDS):
        for name, timer in engines.items():
            run, build_and_run = timer()
            old = best.get(name, (run, build_and_run))
            best[name] = (min(old[0], run), min(old[1], build_and_run))
    return {
        name: {"run_us": run / N * 1e6, "build_and_run_us": both / N * 1e6}
        for name, (run, both) in best.items()
    }


def main() -> None:
    from importlib.metadata import version

    sys.path.insert(0, str(HERE.parent))
    os.chdir(HERE.parent)
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(Path(tmp))
    versions = {
        "podium": version("podium"),
        "LangGraph": version("langgraph"),
        "Agent Framework": version("agent-framework-core"),
    }
    ours = figures["podium"]
    print(f"a chain of {N:,} no-op async steps, in memory, µs per step (best of {ROUNDS})")
    print(f"{'engine':<26}{'run':>9}{'× podium':>10}{'build+run':>11}{'× podium':>10}")
    for name, found in figures.items():
        run, both = found["run_us"], found["build_and_run_us"]
        label = f"{name} {versions[name]}"
        print(
            f"{label:<26}{run:>9.1f}{run / ours['run_us']:>10.1f}"
            f"{both:>11.1f}{both / ours['build_and_run_us']:>10.1f}"
        )
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "steps": N,
        "versions": versions,
        "us_per_step": {
            name: {k: round(v, 1) for k, v in f.items()} for name, f in figures.items()
        },
    }
    (HERE / "peers.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {HERE / 'peers.json'}")


if __name__ == "__main__":
    main()
