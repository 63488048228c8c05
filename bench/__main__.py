"""`python -m bench`: the engine's cost per step against the plain-asyncio floor.

Each workload is run through the `podium run` command in this process, so that everything a
user pays for counts: loading and validating the YAML, binding, the store, the event log.
Results print as a table and go to bench/results.json, with the quality of the scheduler's
ordering on the Standard Task Graph Set (`bench/stg.py`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from bench import agents, stg

HERE = Path(__file__).resolve().parent
SIZES = (1_000, 10_000)


def chain_yaml(n: int) -> dict[str, Any]:
    steps: dict[str, Any] = {"s0": {"uses": "bench.agents:noop"}}
    for i in range(1, n):
        steps[f"s{i}"] = {"uses": "bench.agents:noop", "needs": [f"s{i - 1}"]}
    return {"name": f"chain-{n}", "steps": steps}


def fanout_yaml(n: int) -> dict[str, Any]:
    return {
        "name": f"fanout-{n}",
        "steps": {
            "fan": {
                "uses": "bench.agents:noop_item",
                "for_each": "${{ input.items }}",
                "with": "${{ item }}",
            }
        },
        "output": "${{ steps.fan.output | length }}",
    }


def podium_run(definition: dict[str, Any], n: int, db: str, folder: Path) -> float:
    """Seconds for one `podium run FILE --json` in this process, output checked."""
    from click.testing import CliRunner

    from podium.cli import main

    path = folder / f"{definition['name']}.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    args = ["run", str(path), "--db", db, "--json"]
    if definition["name"].startswith("fanout"):
        args += ["--input", json.dumps({"items": list(range(n))})]
    gc.collect()
    began = time.perf_counter()
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    seconds = time.perf_counter() - began
    report = json.loads(result.stdout)
    if report["status"] != "succeeded":
        raise SystemExit(f"benchmark run failed: {report}")
    return seconds


def run_once(definition: dict[str, Any], n: int, store: str, folder: Path) -> float:
    """One timed run on a fresh store: `:memory:`, or a new SQLite file."""
    db = ":memory:" if store == "memory" else str(folder / f"{time.time_ns()}.db")
    return podium_run(definition, n, db, folder)


async def floor_sequential(n: int) -> None:
    for _ in range(n):
        await asyncio.create_task(agents.noop())


async def floor_gathered(n: int) -> None:
    await asyncio.gather(*(asyncio.create_task(agents.noop_item(i)) for i in range(n)))


def timed_async(fn: Callable[[int], Any], n: int) -> float:
    began = time.perf_counter()
    asyncio.run(fn(n))
    return time.perf_counter() - began


def commit_floor(folder: Path, n: int = 2_000) -> float:
    """Seconds for one bare SQLite write transaction on this machine's disk, as podium makes
    them: WAL, `synchronous=NORMAL`, `BEGIN IMMEDIATE`, two small rows, `COMMIT`.

    A chain commits each completion before its dependent starts, so this is a floor of the
    durable chain that no engine can go under; it varies far more between machines (system
    calls, file system) than the asyncio floor does.
    """
    conn = sqlite3.connect(folder / f"floor-{time.time_ns()}.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            "CREATE TABLE events (run_id TEXT, seq INTEGER, body BLOB,"
            " PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
        )
        body = b"x" * 100
        began = time.perf_counter()
        for seq in range(0, 2 * n, 2):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events VALUES (?, ?, ?)", [("r", seq, body), ("r", seq + 1, body)]
            )
            conn.execute("COMMIT")
        return (time.perf_counter() - began) / n
    finally:
        conn.close()


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeats))


def peak_memory(definition: dict[str, Any], n: int, folder: Path) -> int:
    tracemalloc.start()
    podium_run(definition, n, ":memory:", folder)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    os.chdir(HERE.parent)
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "engine": {},
    }
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in SIZES:
            repeats = 3 if n <= 1_000 else 2
            floors = {
                "chain": best_of(5, partial(timed_async, floor_sequential, n)) / n,
                "fanout": best_of(5, partial(timed_async, floor_gathered, n)) / n,
            }
            for shape, build in (("chain", chain_yaml), ("fanout", fanout_yaml)):
                definition = build(n)
                for store in ("memory", "sqlite"):
                    once = partial(run_once, definition, n, store, folder)
                    per_step = best_of(repeats, once) / n
                    ratio = per_step / floors[shape]
                    name = f"{shape}/{store}"
                    rows.append((name, n, per_step * 1e6, ratio))
                    results["engine"][f"{name}/{n}"] = {
                        "us_per_step": round(per_step * 1e6, 2),
                        "floor_us_per_step": round(floors[shape] * 1e6, 2),
                        "ratio_to_floor": round(ratio, 1),
                    }
            for shape, build in (("chain", chain_yaml), ("fanout", fanout_yaml)):
                peak = peak_memory(build(n), n, folder)
                results["engine"][f"{shape}/memory/{n}"]["peak_bytes_per_step"] = peak // n
        commit = best_of(3, partial(commit_floor, folder))
    results["sqlite_commit_floor_us"] = round(commit * 1e6, 2)
    print(f"{'workload':<16}{'N':>8}{'µs/step':>10}{'× floor':>9}")
    for name, n, micros, ratio in rows:
        print(f"{name:<16}{n:>8}{micros:>10.1f}{ratio:>9.1f}")
    print(f"SQLite commit on this disk: {commit * 1e6:.1f} µs (a floor of the durable chain)")
    for key, figures in results["engine"].items():
        if "peak_bytes_per_step" in figures:
            print(f"memory {key}: {figures['peak_bytes_per_step']} bytes per step at peak")
    results["scheduling"] = stg.measure()
    stg.print_table(results["scheduling"])
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {HERE / 'results.json'}")


if __name__ == "__main__":
    main()
