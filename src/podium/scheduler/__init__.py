"""Deciding what runs next: pure and synchronous, rebuilt from a run's events."""

from podium.scheduler.active import ActiveRun, Unit
from podium.scheduler.plan import Plan, PlanStep, Priority, fifo
from podium.scheduler.ranks import Ranks, estimates, recorded
from podium.scheduler.simulate import Placement, Simulation, simulate

__all__ = [
    "ActiveRun",
    "Placement",
    "Plan",
    "PlanStep",
    "Priority",
    "Ranks",
    "Simulation",
    "Unit",
    "estimates",
    "fifo",
    "recorded",
    "simulate",
]
