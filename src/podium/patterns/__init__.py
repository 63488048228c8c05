"""The orchestration patterns: agents made of agents, durable through the run's journal.

    support = Handoff(agents=["triage", "billing"], start="triage").build(agents, name="support")
    result = await support.call({"task": "my invoice is wrong"}, ctx)

Each pattern is a frozen description (`Sequential`, `Concurrent`, `Handoff`, `GroupChat`,
`Magentic`) whose `build(participants, name=...)` checks it against the participants and
returns an `Agent`. Its output is a mapping with `answer`, `messages`, `stop_reason`,
`detail` and `usage`. Every turn and routing decision is recorded, so a run that resumes
after a crash gets them back instead of calling anyone again. `parse_pattern` reads the
YAML form of a step's `pattern:`.
"""

from podium.model.workflow import PATTERN_OPTIONS as OPTIONS
from podium.patterns.concurrent import Aggregator, Concurrent
from podium.patterns.conversation import Budget, Message, Stop
from podium.patterns.group_chat import GroupChat, Selector
from podium.patterns.handoff import Handoff
from podium.patterns.magentic import Magentic
from podium.patterns.parse import Pattern, parse_pattern
from podium.patterns.sequential import ContextFn, Sequential
from podium.patterns.termination import (
    AllOf,
    AnyOf,
    ExternalStop,
    MaxMessages,
    Snapshot,
    StopWhen,
    Termination,
    TextMention,
    Timeout,
    TokenBudget,
)

__all__ = [
    "OPTIONS",
    "Aggregator",
    "AllOf",
    "AnyOf",
    "Budget",
    "Concurrent",
    "ContextFn",
    "ExternalStop",
    "GroupChat",
    "Handoff",
    "Magentic",
    "MaxMessages",
    "Message",
    "Pattern",
    "Selector",
    "Sequential",
    "Snapshot",
    "Stop",
    "StopWhen",
    "Termination",
    "TextMention",
    "Timeout",
    "TokenBudget",
    "parse_pattern",
]
