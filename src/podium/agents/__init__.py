"""Agents: anything that takes a task and returns a result, and the registry that routes to them."""

from podium.agents.context import ChildRuns, Computed, Journal, StepContext
from podium.agents.llm import LLMAgent
from podium.agents.protocol import Agent
from podium.agents.python import PythonAgent
from podium.agents.registry import AgentStats, Registry, Routed
from podium.agents.tools import Tool

__all__ = [
    "Agent",
    "AgentStats",
    "ChildRuns",
    "Computed",
    "Journal",
    "LLMAgent",
    "PythonAgent",
    "Registry",
    "Routed",
    "StepContext",
    "Tool",
]
