"""The YAML form of patterns: every option read, every mistake named where it stands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from podium.errors import DefinitionError, Location
from podium.patterns import (
    OPTIONS,
    AllOf,
    AnyOf,
    Budget,
    Concurrent,
    ExternalStop,
    GroupChat,
    Handoff,
    Magentic,
    MaxMessages,
    Sequential,
    StopWhen,
    TextMention,
    Timeout,
    TokenBudget,
    parse_pattern,
)


def locate(path: tuple[str | int, ...]) -> Location:
    return Location("flow.yaml", 10 + len(path), 3)


def parse(kind: str, **options: Any) -> Any:
    return parse_pattern(kind, options, locate)


def test_sequential_and_its_budget() -> None:
    spec = parse("sequential", agents=["a", "b"], context="previous", max_tokens=100, max_turns=4)
    assert spec == Sequential(
        agents=("a", "b"), context="previous", budget=Budget(max_tokens=100, max_turns=4)
    )
    assert parse("sequential", agents=["a"]).context == "full"


def test_concurrent_with_an_agent_or_the_default_aggregator() -> None:
    spec = parse(
        "concurrent", agents=["a", "b"], aggregator="summariser", quorum=1, agent_timeout=2.5
    )
    assert spec == Concurrent(
        agents=("a", "b"), aggregator="summariser", quorum=1, agent_timeout=2.5
    )
    assert parse("concurrent", agents=["a"], aggregator="list").aggregator is None


def test_handoff_with_a_graph() -> None:
    spec = parse(
        "handoff",
        agents=["triage", "billing"],
        start="triage",
        graph={"triage": ["billing"]},
        max_handoffs=6,
        human="ann",
        max_seconds=30,
    )
    assert spec == Handoff(
        agents=("triage", "billing"),
        start="triage",
        graph={"triage": ("billing",)},
        max_handoffs=6,
        human="ann",
        budget=Budget(max_seconds=30.0),
    )


def test_group_chat_with_a_manager_and_composed_termination() -> None:
    spec = parse(
        "group_chat",
        agents=["a", "b"],
        selector="boss",
        max_rounds=8,
        allow_repeated_speaker=False,
        manager_retries=1,
        termination={
            "any": [
                {"max_messages": 10},
                {"mention": "TERMINATE"},
                {"all": [{"max_tokens": 500}, {"timeout": 60}]},
                {"mention": {"text": "DONE", "sources": ["b"]}},
                {"max_cost": 0.5},
            ]
        },
    )
    assert isinstance(spec, GroupChat)
    assert (spec.selector, spec.max_rounds, spec.allow_repeated_speaker) == ("boss", 8, False)
    assert spec.manager_retries == 1
    assert spec.termination == AnyOf(
        [
            MaxMessages(10),
            TextMention("TERMINATE"),
            AllOf([TokenBudget(max_tokens=500), Timeout(60.0)]),
            TextMention("DONE", ("b",)),
            TokenBudget(max_cost=0.5),
        ]
    )
    assert parse("group_chat", agents=["a"]).selector == "round_robin"
    assert parse("group_chat", agents=["a"], selector="round_robin").selector == "round_robin"


def test_magentic() -> None:
    spec = parse(
        "magentic",
        agents=["coder"],
        manager="boss",
        max_rounds=5,
        max_stalls=2,
        max_resets=0,
        review_plan=True,
        human="ann",
        max_cost=1.5,
    )
    assert spec == Magentic(
        agents=("coder",),
        manager="boss",
        max_rounds=5,
        max_stalls=2,
        max_resets=0,
        review_plan=True,
        human="ann",
        budget=Budget(max_cost=1.5),
    )


def test_callables_are_imported_from_the_search_folders(tmp_path: Path) -> None:
    (tmp_path / "chat_rules.py").write_text(
        "def pick(messages, agents):\n    return agents[0]\n"
        "def enough(messages):\n    return len(messages) > 3\n"
        "def stopped():\n    return False\n"
        "def shape(task, messages):\n    return {'task': task}\n"
        "def vote(task, answers):\n    return list(answers.values())[0]\n"
    )
    try:
        spec = parse_pattern(
            "group_chat",
            {
                "agents": ["a"],
                "selector": "chat_rules:pick",
                "termination": {
                    "any": [{"function": "chat_rules:enough"}, {"external": "chat_rules:stopped"}]
                },
            },
            locate,
            search=[str(tmp_path)],
        )
        assert isinstance(spec, GroupChat)
        assert callable(spec.selector)
        assert spec.selector([], ("x",)) == "x"
        assert isinstance(spec.termination, AnyOf)
        function, external = spec.termination.conditions
        assert isinstance(function, StopWhen)
        assert isinstance(external, ExternalStop)
        seq = parse_pattern(
            "sequential",
            {"agents": ["a"], "context": "chat_rules:shape"},
            locate,
            search=[str(tmp_path)],
        )
        assert isinstance(seq, Sequential)
        assert callable(seq.context)
        conc = parse_pattern(
            "concurrent",
            {"agents": ["a"], "aggregator": "chat_rules:vote"},
            locate,
            search=[str(tmp_path)],
        )
        assert isinstance(conc, Concurrent)
        assert callable(conc.aggregator)
    finally:
        sys.modules.pop("chat_rules", None)
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(
    ("kind", "options", "message", "where"),
    [
        ("swarm", {}, "unknown pattern 'swarm'; patterns: sequential, concurrent", ("pattern",)),
        (
            "handoff",
            {"agents": ["a"], "max_hops": 3},
            "no option 'max_hops'; its options: agents, start",
            ("max_hops",),
        ),
        ("sequential", {}, "agents must be a non-empty list", ("agents",)),
        ("sequential", {"agents": "a"}, "agents must be a non-empty list", ("agents",)),
        ("sequential", {"agents": ["a", 3]}, "agents[1] must be an agent name", ("agents", 1)),
        (
            "sequential",
            {"agents": ["a"], "context": "some"},
            "context must be full or previous",
            ("context",),
        ),
        (
            "sequential",
            {"agents": ["a"], "max_tokens": "lots"},
            "max_tokens must be a whole number",
            ("max_tokens",),
        ),
        (
            "sequential",
            {"agents": ["a"], "max_turns": True},
            "max_turns must be a whole number",
            ("max_turns",),
        ),
        (
            "sequential",
            {"agents": ["a"], "max_seconds": 0},
            "max_seconds must be a number more than 0",
            ("max_seconds",),
        ),
        (
            "concurrent",
            {"agents": ["a"], "quorum": 0},
            "quorum must be a whole number of at least 1",
            ("quorum",),
        ),
        (
            "concurrent",
            {"agents": ["a"], "aggregator": ["x"]},
            "aggregator must be a name",
            ("aggregator",),
        ),
        ("handoff", {"agents": ["a"], "graph": ["a"]}, "graph must map each agent", ("graph",)),
        (
            "handoff",
            {"agents": ["a"], "graph": {"a": "b"}},
            "graph.a must be a list",
            ("graph", "a"),
        ),
        (
            "group_chat",
            {"agents": ["a"], "allow_repeated_speaker": "no"},
            "must be true or false",
            ("allow_repeated_speaker",),
        ),
        (
            "group_chat",
            {"agents": ["a"], "selector": "nowhere_module_xyz:pick"},
            "cannot import module 'nowhere_module_xyz'",
            ("selector",),
        ),
        (
            "group_chat",
            {"agents": ["a"], "termination": {"max_messages": 2, "mention": "x"}},
            "a mapping with one of: any, all",
            ("termination",),
        ),
        (
            "group_chat",
            {"agents": ["a"], "termination": {"forever": 1}},
            "unknown termination condition 'forever'",
            ("termination", "forever"),
        ),
        (
            "group_chat",
            {"agents": ["a"], "termination": {"any": [{"mention": 3}]}},
            "mention must be the text",
            ("termination", "any", 0, "mention"),
        ),
        (
            "group_chat",
            {"agents": ["a"], "termination": {"all": []}},
            "all must be a non-empty list",
            ("termination", "all"),
        ),
        (
            "group_chat",
            {"agents": ["a"], "termination": {"max_messages": 0}},
            "max_messages must be a whole number",
            ("termination", "max_messages"),
        ),
        (
            "group_chat",
            {"agents": ["a"], "termination": {"timeout": "soon"}},
            "timeout must be a number",
            ("termination", "timeout"),
        ),
        ("magentic", {"agents": ["a"]}, "needs a manager", ()),
        (
            "magentic",
            {"agents": ["a"], "manager": "m", "max_stalls": 0},
            "max_stalls must be a whole number of at least 1",
            ("max_stalls",),
        ),
        (
            "magentic",
            {"agents": ["a"], "manager": "m", "review_plan": 1},
            "review_plan must be true or false",
            ("review_plan",),
        ),
    ],
)
def test_a_mistake_is_named_where_it_stands(
    kind: str, options: dict[str, Any], message: str, where: tuple[str | int, ...]
) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_pattern(kind, options, locate)
    assert message in str(caught.value)
    assert caught.value.where == locate(where)


def test_every_kind_lists_the_budget_options() -> None:
    for kind, options in OPTIONS.items():
        assert {"agents", "max_tokens", "max_cost", "max_seconds", "max_turns"} <= set(options), (
            kind
        )


def test_each_pattern_names_every_participant_it_needs() -> None:
    assert parse("sequential", agents=["a", "b"]).participants == ("a", "b")
    assert parse("concurrent", agents=["a"], aggregator="sum").participants == ("a", "sum")
    assert parse("handoff", agents=["a"], human="ann").participants == ("a", "ann")
    assert parse("group_chat", agents=["a"], selector="boss").participants == ("a", "boss")
    assert parse("group_chat", agents=["a"]).participants == ("a",)
    spec = parse("magentic", agents=["a"], manager="boss", human="ann")
    assert spec.participants == ("a", "boss", "ann")
