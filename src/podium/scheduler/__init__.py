"""Deciding what runs next: pure and synchronous, rebuilt from a run's events."""

from podium.scheduler.active import ActiveRun, Unit
from podium.scheduler.plan import Plan, PlanStep, Priority, fifo

__all__ = ["ActiveRun", "Plan", "PlanStep", "Priority", "Unit", "fifo"]
