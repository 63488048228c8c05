"""The scheduling section of `python -m bench`: podium's ordering against proven optima.

The Standard Task Graph Set (Tobita & Kasahara, 2002; ../shared/data/stg, see its README)
has 180 random graphs of 50 tasks and 180 of 100, with the optimal makespan on P = 2, 4, 8
and 16 identical processors. Each graph becomes a podium `Workflow` (task i is step `t<i>`,
its cost the step's `estimate`; tasks 0 and N+1 are the zero-cost entry and exit) and runs
through `podium.scheduler.simulate` with P slots: the real `ActiveRun`, ordered as the runtime
orders it, on a virtual clock. Reported: makespan / optimum, mean and max, per P and over all
1,440 cases, with the runtime's critical-path priority and with FIFO beside it. Where the set
proves only a lower bound, the reference is the best makespan known (the csv's last column).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.model import Step, Workflow
from podium.scheduler import Plan, Priority, estimates, fifo, simulate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stg"
SLOTS = (2, 4, 8, 16)
ORDERINGS = ("critical_path", "fifo")


@dataclass(frozen=True, slots=True)
class Case:
    """One graph on P processors, and the makespan to compare with."""

    graph: str  # `50/rand0000.stg`
    slots: int
    reference: int
    proven: bool  # False: only a lower bound is proven, `reference` is the best known


def read_graph(path: Path) -> Workflow:
    """An `.stg` file as a workflow: `id cost npred preds...` lines after the task count."""
    rows = [line.split() for line in path.read_text().splitlines()]
    rows = [row for row in rows if row and not row[0].startswith("#")]
    count = int(rows[0][0]) + 2
    steps = [
        Step(
            id=f"t{row[0]}",
            needs=tuple(f"t{pred}" for pred in row[3 : 3 + int(row[2])]),
            estimate=float(row[1]),
        )
        for row in rows[1 : 1 + count]
    ]
    return Workflow(name=path.stem, steps=steps)


def read_cases(folder: Path) -> list[Case]:
    """Every row of `Optimal_values/*.csv`: `graph,P,optimum` or `graph,P,bound,best`."""
    cases: list[Case] = []
    for table in sorted((folder / "Optimal_values").glob("*.csv")):
        with table.open(newline="") as rows:
            for row in csv.reader(rows):
                cases.append(Case(row[0], int(row[1]), int(row[-1]), proven=len(row) == 3))
    return cases


def makespan(plan: Plan, durations: dict[str, float], slots: int, ordering: str) -> float:
    """The simulated makespan with the runtime's priority, or FIFO."""
    priority: Priority | None = fifo if ordering == "fifo" else None
    return simulate(plan, durations, slots=slots, priority=priority).makespan


def measure(folder: Path = DATA) -> dict[str, Any] | None:
    """The scheduling figures, or None when the data set is not there."""
    if not (folder / "Optimal_values").is_dir():
        return None
    cases = read_cases(folder)
    graphs: dict[str, tuple[Plan, dict[str, float]]] = {}
    ratios: dict[str, dict[int, list[float]]] = {o: {p: [] for p in SLOTS} for o in ORDERINGS}
    for case in cases:
        if case.graph not in graphs:
            workflow = read_graph(folder / case.graph)
            graphs[case.graph] = (Plan.from_workflow(workflow), estimates(workflow))
        plan, durations = graphs[case.graph]
        for ordering in ORDERINGS:
            ratio = makespan(plan, durations, case.slots, ordering) / case.reference
            ratios[ordering][case.slots].append(ratio)
    section: dict[str, Any] = {
        "data": "Standard Task Graph Set, 50 and 100 tasks",
        "cases": len(cases),
        "reference": "the proven optimum; the best known makespan where only a lower bound "
        f"is proven ({sum(not c.proven for c in cases)} cases)",
    }
    for ordering in ORDERINGS:
        by_slots = ratios[ordering]
        section[ordering] = {
            **{f"P={p}": _summary(by_slots[p]) for p in SLOTS},
            "all": _summary([r for p in SLOTS for r in by_slots[p]]),
        }
    return section


def print_table(section: dict[str, Any] | None) -> None:
    if section is None:
        print(f"scheduling: skipped, no data set at {DATA}")
        return
    print(f"scheduling: makespan / optimum on the STG set ({section['cases']} cases)")
    print(f"{'':<8}{'critical path':>18}{'FIFO':>18}")
    print(f"{'P':<8}{'mean':>9}{'max':>9}{'mean':>9}{'max':>9}")
    for row in [*(f"P={p}" for p in SLOTS), "all"]:
        cells = "".join(
            f"{section[o][row]['mean']:>9.4f}{section[o][row]['max']:>9.4f}" for o in ORDERINGS
        )
        print(f"{row.removeprefix('P='):<8}{cells}")


def _summary(ratios: list[float]) -> dict[str, float | int]:
    return {
        "cases": len(ratios),
        "mean": round(statistics.fmean(ratios), 4),
        "max": round(max(ratios), 4),
    }
