"""The content team's aggregator: the reviewers' verdicts brought together into one decision.

A `concurrent` pattern calls it with the task and `{reviewer: answer}` for each reviewer who
answered; each answer fits the reviewers' `output_schema`, `{verdict, notes}`. Deciding in
code rather than asking another model keeps the `if:` of the revise step exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def tally(task: Any, answers: Mapping[str, Any]) -> dict[str, Any]:
    """Approved only if every reviewer who answered approved; what each asked to change."""
    verdicts: dict[str, str] = {}
    changes: list[str] = []
    for reviewer, answer in answers.items():
        verdict = answer.get("verdict") if isinstance(answer, Mapping) else None
        verdicts[reviewer] = verdict if verdict in ("approve", "revise") else "revise"
        if verdicts[reviewer] == "revise":
            notes = answer.get("notes") if isinstance(answer, Mapping) else answer
            changes.append(f"({reviewer}) {notes}")
    return {
        "approved": bool(verdicts) and not changes,
        "verdicts": verdicts,
        "changes": " ".join(changes),
    }
