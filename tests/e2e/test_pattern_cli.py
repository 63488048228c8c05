"""Pattern steps written in YAML, run by `podium` against a model server over real HTTP.

The model is `podium.testing.ChatServer`, answering each agent by its instructions (the
system prompt), so that a run is deterministic and its requests can be counted. The kill
test runs `podium` as a process of its own and SIGKILLs it while a conversation is under
way: the resumed run must not ask the model again for a turn it had recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.model import CallRecorded, Event
from podium.store import open_store
from podium.testing import ChatRequest, ChatServer, Reply, ToolCall

SUPPORT = """
name: support
input:
  type: object
  required: [message]
models:
  local: {{base_url: "{url}", model: smollm2, api_key_env: LOCAL_LLM_KEY}}
agents:
  triage:  {{model: local, instructions: "You are triage. Route to billing or tech."}}
  billing: {{model: local, instructions: "You are billing.", max_tokens: 200}}
  tech:    {{model: local, instructions: "You are tech."}}
steps:
  support:
    pattern: handoff
    agents: [triage, billing, tech]
    start: triage
    max_handoffs: 6
    with: {{task: "${{{{ input.message }}}}"}}
output: "${{{{ steps.support.output.answer }}}}"
"""

DEBATE = """
name: debate
models:
  local: {{base_url: "{url}", model: smollm2, api_key_env: LOCAL_LLM_KEY}}
agents:
  ann: {{model: local, instructions: "You are ann."}}
  bob: {{model: local, instructions: "You are bob."}}
  cy:  {{model: local, instructions: "You are cy."}}
steps:
  talk:
    pattern: group_chat
    agents: [ann, bob, cy]
    max_rounds: 6
    with: {{task: "Agree on a name for the project."}}
output: "${{{{ steps.talk.output }}}}"
"""


@pytest.fixture(autouse=True)
def model_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-test-never-shown")


def speaker(request: ChatRequest) -> str:
    """The agent asking, from its instructions: "You are billing." -> billing."""
    return request.system.split("You are ", 1)[1].split(".", 1)[0]


def support_model(request: ChatRequest) -> Reply:
    """Triage hands billing questions to billing, which answers; tech answers tech ones."""
    who = speaker(request)
    if who == "triage":
        return Reply.calls(ToolCall(name="handoff_to_billing", arguments={"reason": "invoice"}))
    return Reply.text(f"{who}: your invoice is corrected", prompt_tokens=30, completion_tokens=7)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_handoff_example_runs_from_yaml_with_a_named_model(tmp_path: Path) -> None:
    with ChatServer(respond=support_model) as server:
        (tmp_path / "support.yaml").write_text(SUPPORT.format(url=server.url))
        db = str(tmp_path / "p.db")
        message = json.dumps({"message": "my invoice is wrong"})
        code, out = cli("run", str(tmp_path / "support.yaml"), "--input", message, "--db", db)
        assert code == 0, out
        code, out = cli("runs", "--db", db, "--json")
        run_id = json.loads(out)[0]["run_id"]
        code, shown = cli("show", run_id, "--db", db, "--json")
        history = json.loads(shown)
    assert history["status"] == "succeeded"
    assert history["output"] == "billing: your invoice is corrected"
    pattern = history["steps"]["support"]["output"]
    assert pattern["stop_reason"] == "done"
    assert [m["agent"] for m in pattern["messages"]][-1] == "billing"
    assert [r.model for r in server.requests] == ["smollm2", "smollm2"]
    assert "max_tokens" not in server.requests[0].body  # billing's own setting is its own
    assert server.requests[1].body["max_tokens"] == 200
    # Usage by agent: triage's request and billing's, each as the server reported it.
    assert history["agents"] == {
        "triage": {"tokens": 15, "cost": 0.0},
        "billing": {"tokens": 37, "cost": 0.0},
    }
    assert history["usage"]["tokens"] == 52
    code, table = cli("show", run_id, "--db", db)
    assert "billing" in table.split("usage:")[1]
    assert "sk-test-never-shown" not in shown + table


def test_a_pattern_mistake_in_yaml_is_one_located_line(tmp_path: Path) -> None:
    bad = SUPPORT.format(url="http://127.0.0.1:9/v1").replace(
        "max_handoffs: 6", "max_handoffs: 6\n    quorum: 2"
    )
    (tmp_path / "support.yaml").write_text(bad)
    code, out = cli("validate", str(tmp_path / "support.yaml"))
    assert code == 2
    assert out.strip().splitlines() == [
        f"error: {tmp_path / 'support.yaml'}:18:5: pattern 'handoff' has no option 'quorum'; "
        "its options: agents, start, graph, max_handoffs, human, max_tokens, max_cost, "
        "max_seconds, max_turns"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("agents: [triage, billing, tech]", "agents: [triage, biling, tech]"),
            "15:22: step 'support': pattern 'handoff' names 'biling', which is not an agent "
            "of the workflow (did you mean 'billing'?)",
        ),
        (
            ('model: local, instructions: "You are tech."', "model: locl, instructions: x"),
            "11:13: agent 'tech' uses model 'locl', which `models:` does not declare "
            "(did you mean 'local'?); declare it there, or write the model inline: "
            "`model: {model: NAME, base_url: URL}`",
        ),
        (
            ("    pattern: handoff\n", ""),
            "14:5: step 'support': `agents` is an option of a pattern step; add `pattern: <kind>`",
        ),
    ],
)
def test_unknown_participants_and_models_are_located(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = SUPPORT.format(url="http://127.0.0.1:9/v1")
    assert change[0] in text
    (tmp_path / "support.yaml").write_text(text.replace(*change))
    code, out = cli("validate", str(tmp_path / "support.yaml"))
    assert code == 2
    assert f"{tmp_path / 'support.yaml'}:{message}" in out


def debate_model(request: ChatRequest) -> Reply:
    """Each speaker answers after a pause, with how many messages it was shown."""
    return Reply.text(f"{speaker(request)} heard {len(request.messages)}", delay=0.2)


def podium(folder: Path, db: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "podium", *args, "--db", db, "--json"],
        cwd=folder,
        env={**os.environ, "LOCAL_LLM_KEY": "sk-test"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def model_calls(db: str, run_id: str) -> list[str]:
    async def read() -> list[Event]:
        store = open_store(db)
        try:
            return await store.load(run_id)
        finally:
            await store.close()

    return [
        e.name for e in asyncio.run(read()) if isinstance(e, CallRecorded) and e.kind == "model"
    ]


@pytest.fixture
def debate(tmp_path: Path) -> Iterator[tuple[ChatServer, Path]]:
    with ChatServer(respond=debate_model) as server:
        (tmp_path / "debate.yaml").write_text(DEBATE.format(url=server.url))
        yield server, tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_a_group_chat_killed_mid_conversation_resumes_without_asking_again(
    debate: tuple[ChatServer, Path], seed: int
) -> None:
    server, folder = debate
    clean = podium(folder, str(folder / "clean.db"), "run", "debate.yaml", "--run-id", "r")
    out, err = clean.communicate(timeout=60)
    assert clean.returncode == 0, err
    expected: Any = json.loads(out)["output"]
    asked = len(server.requests)
    assert asked == 6
    assert len(model_calls(str(folder / "clean.db"), "r")) == 6

    db = str(folder / "p.db")
    rng = random.Random(seed)
    before = len(server.requests)
    kills = 0
    process = podium(folder, db, "run", "debate.yaml", "--run-id", "r")
    for _ in range(3):  # kill it after some turns, up to three times
        wait_for = len(server.requests) + rng.randint(1, 2)
        while len(server.requests) < wait_for and process.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))  # maybe mid-request, maybe just after a record
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.communicate()
        kills += 1
        process = podium(folder, db, "run", "debate.yaml", "--run-id", "r")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert kills >= 1
    assert json.loads(out)["output"] == expected
    recorded = model_calls(db, "r")
    assert sorted(recorded) == sorted(set(recorded))  # each turn's model call once
    assert len(recorded) == 6
    # Only a request in flight at a kill may be asked again: one per kill at most.
    assert asked <= len(server.requests) - before <= asked + kills
    assert max(Counter(r.system for r in server.requests[before:]).values()) <= 2 + kills


MANAGED = """
name: managed
models:
  local: {{base_url: "{url}", model: smollm2, api_key_env: LOCAL_LLM_KEY}}
agents:
  ann:  {{model: local, instructions: "You are ann."}}
  bob:  {{model: local, instructions: "You are bob."}}
  boss: {{model: local, instructions: "You are boss.", max_output_retries: 1}}
steps:
  talk:
    pattern: group_chat
    agents: [ann, bob]
    selector: boss
    max_rounds: 2
    manager_retries: 1
    with: {{task: "Name the project."}}
output: "${{{{ steps.talk.output }}}}"
"""


def garbling_manager(request: ChatRequest) -> Reply:
    """The manager never answers in JSON; the others speak."""
    who = speaker(request)
    return Reply.text("not json at all" if who == "boss" else f"{who} speaks")


def test_a_model_manager_that_never_fits_falls_back_to_round_robin(tmp_path: Path) -> None:
    with ChatServer(respond=garbling_manager) as server:
        (tmp_path / "managed.yaml").write_text(MANAGED.format(url=server.url))
        code, out = cli("run", str(tmp_path / "managed.yaml"), "--db", str(tmp_path / "p.db"))
        asked = [speaker(r) for r in server.requests]
    assert code == 0, out
    code, out = cli("runs", "--db", str(tmp_path / "p.db"), "--json")
    code, shown = cli(
        "show", json.loads(out)[0]["run_id"], "--db", str(tmp_path / "p.db"), "--json"
    )
    talk = json.loads(shown)["steps"]["talk"]["output"]
    assert talk["speakers"] == ["ann", "bob"]  # round robin, as the fallback says
    assert talk["stop_reason"] == "max_rounds"
    assert [f.split(":")[0] for f in talk["fallbacks"]] == ["route-1", "route-2"]
    assert "does not fit the output schema" in talk["fallbacks"][0]
    # Per round: the pattern's 2 tries, each the agent's own 2 (max_output_retries 1).
    assert asked == ["boss"] * 4 + ["ann"] + ["boss"] * 4 + ["bob"]
