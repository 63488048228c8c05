"""The public surface is deliberate: a rename or removal must change this file too."""

from __future__ import annotations

import subprocess
import sys

import podium

PUBLIC = [
    "AgentError",
    "AgentSpec",
    "Approval",
    "CycleError",
    "DefinitionError",
    "ExpressionError",
    "InputError",
    "ModelSpec",
    "PatternSpec",
    "PodiumError",
    "Price",
    "RateLimited",
    "RetryPolicy",
    "RunBusy",
    "RunError",
    "RunNotFound",
    "RunResult",
    "Step",
    "StepContext",
    "StepFailed",
    "StepTimeout",
    "StoreError",
    "Workflow",
    "agent",
    "approve",
    "cancel_run",
    "fork_run",
    "read_result",
    "resume_run",
    "run_workflow",
]


def test_all_is_sorted_and_pinned() -> None:
    assert podium.__all__ == sorted(podium.__all__)
    assert podium.__all__ == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in podium.__all__:
        assert getattr(podium, name) is not None


def test_import_podium_stays_light() -> None:
    """The engine, Jinja, jsonschema and rich load on first use, not on `import podium`."""
    code = (
        "import sys, podium, podium.cli; "
        "heavy = {'asyncio', 'jinja2', 'jsonschema', 'rich', 'yaml', 'sqlite3'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
