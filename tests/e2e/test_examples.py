"""The bundled examples, each run for real by `podium` against a scripted model over HTTP.

The model is `podium.testing.ChatServer`, reached through `OPENAI_BASE_URL` exactly as a
user's vLLM or Ollama would be (the examples name no `base_url`), and answering with the
demo's own scripts (`podium.demo.scripts`, without their pauses). Each test checks that the
example took its interesting path, from what the run recorded: `podium show --json` for the
steps and outputs, `podium events --json` for the tool calls.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from podium.cli import main
from podium.demo import DEMOS, EXAMPLES_DIR, Demo, scripts
from podium.demo.scripts import Script
from podium.testing import ChatRequest, ChatServer, Reply

KEY = "sk-example-test-5d1e"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@dataclass(frozen=True, slots=True, kw_only=True)
class Ran:
    """What a run of an example did: the run as shown, its events, the model's requests."""

    history: dict[str, Any]
    events: list[dict[str, Any]]
    requests: list[ChatRequest]

    def step(self, step: str) -> dict[str, Any]:
        record: dict[str, Any] = self.history["steps"][step]
        return record

    def tool_calls(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "call_recorded" and e["kind"] == "tool"]

    def asked(self, marker: str) -> list[ChatRequest]:
        """The model requests of the agent whose instructions hold `marker`."""
        return [r for r in self.requests if marker in r.system]


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment a user sets to point the examples at their own endpoint."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return monkeypatch


def run_example(
    name: str, folder: Path, env: pytest.MonkeyPatch, script: Script | None = None
) -> Ran:
    demo = DEMOS[name]
    assert demo.input_path is not None
    with ChatServer(respond=script or demo.scripted(pace=0.0)) as server:
        env.setenv("OPENAI_BASE_URL", server.url)
        db = str(folder / "runs.db")
        ran = cli("run", str(demo.path), "--input-file", str(demo.input_path), "--db", db, "--json")
        assert ran.exit_code == 0, ran.output
        run_id = json.loads(ran.stdout)["run_id"]
        shown = cli("show", run_id, "--db", db, "--json")
        events = cli("events", run_id, "--db", db, "--json")
        requests = server.requests
    assert KEY not in shown.stdout + events.stdout
    return Ran(
        history=json.loads(shown.stdout),
        events=[json.loads(line) for line in events.stdout.splitlines()],
        requests=requests,
    )


# ---- support -------------------------------------------------------------------------------


def test_support_triage_hands_the_invoice_to_billing_which_looks_it_up(
    tmp_path: Path, endpoint: pytest.MonkeyPatch
) -> None:
    ran = run_example("support", tmp_path, endpoint)
    assert ran.history["status"] == "succeeded"
    output = ran.history["output"]
    assert output["answered_by"] == "billing"
    assert output["path"] == ["triage", "billing"]
    assert output["stop_reason"] == "done"
    assert "INV-1042" in output["answer"]
    assert "refunded the duplicate charge of EUR 249.00" in output["answer"]
    pattern = ran.step("answer")["output"]
    assert pattern["handoffs"] == 1
    assert [m["agent"] for m in pattern["messages"]] == ["triage", "billing"]
    (call,) = ran.tool_calls()
    assert call["agent"] == "billing"
    assert call["input"] == {"name": "lookup_invoice", "arguments": {"invoice_id": "INV-1042"}}
    assert call["output"]["result"]["overcharged"] == 249.0
    # Each agent is offered what the YAML gives it: its tools and the handoffs of the graph.
    (triage,) = ran.asked("You are the triage agent")
    assert triage.tools == ["handoff_to_billing", "handoff_to_technical"]
    billing = ran.asked("billing specialist")
    assert [r.tools for r in billing] == [["lookup_invoice", "handoff_to_technical"]] * 2
    assert billing[1].messages[-1]["role"] == "tool"
    assert {r.model for r in ran.requests} == {"gpt-4o-mini"}
    assert {r.headers["authorization"] for r in ran.requests} == {f"Bearer {KEY}"}
    assert set(ran.history["agents"]) == {"triage", "billing"}


# ---- content -------------------------------------------------------------------------------


def test_content_reviews_are_aggregated_and_a_revision_follows_legals_request(
    tmp_path: Path, endpoint: pytest.MonkeyPatch
) -> None:
    ran = run_example("content", tmp_path, endpoint)
    assert ran.history["status"] == "succeeded"
    draft = ran.step("draft")["output"]
    assert draft["stop_reason"] == "done"
    assert [m["agent"] for m in draft["messages"]] == ["researcher", "writer", "editor"]
    assert draft["answer"] == scripts.EDITED
    review = ran.step("review")["output"]
    assert review["stop_reason"] == "done"
    assert {who: r["status"] for who, r in review["results"].items()} == {
        "legal": "ok",
        "brand": "ok",
        "tech": "ok",
    }
    assert review["answer"]["approved"] is False
    assert review["answer"]["verdicts"] == {
        "legal": "revise",
        "brand": "approve",
        "tech": "approve",
    }
    assert review["answer"]["changes"].startswith("(legal) 'recover from incidents 80% faster'")
    # The reviewers read the edited draft, at the same time and each on its own.
    for marker in ("legal reviewer", "brand reviewer", "technical reviewer"):
        (asked,) = ran.asked(marker)
        assert scripts.EDITED in asked.messages[1]["content"]
    revise = ran.step("revise")
    assert revise["status"] == "succeeded"
    assert revise["agent"] == "editor"
    instruction = ran.asked("You are the editor")[-1].messages[-1]["content"]
    assert instruction.startswith("Revise the article above")
    assert "(legal) 'recover from incidents 80% faster'" in instruction
    assert ran.history["output"] == {
        "article": scripts.REVISED,
        "revised": True,
        "verdicts": {"legal": "revise", "brand": "approve", "tech": "approve"},
    }


def test_content_is_not_revised_when_every_reviewer_approves(
    tmp_path: Path, endpoint: pytest.MonkeyPatch
) -> None:
    scripted = scripts.content()

    def approving(request: ChatRequest) -> Reply | str | None:
        if "You are the legal reviewer" in request.system:
            return Reply.json({"verdict": "approve", "notes": "No claim needs a source."})
        return scripted(request)

    ran = run_example("content", tmp_path, endpoint, approving)
    assert ran.history["status"] == "succeeded"
    assert ran.step("review")["output"]["answer"]["approved"] is True
    assert ran.step("revise")["status"] == "skipped"
    assert ran.history["output"]["article"] == scripts.EDITED
    assert ran.history["output"]["revised"] is False


# ---- software change -----------------------------------------------------------------------


def test_software_change_review_ends_when_the_reviewer_says_approved(
    tmp_path: Path, endpoint: pytest.MonkeyPatch
) -> None:
    ran = run_example("software-change", tmp_path, endpoint)
    assert ran.history["status"] == "succeeded"
    code = ran.step("code")["output"]
    assert code["path"] == "src/textutil/slug.py"
    assert code["code"] == scripts.FIRST_FIX
    assert ran.step("test")["output"]["passed"] is True
    review = ran.step("review")["output"]
    assert review["stop_reason"] == "mention"
    assert review["detail"] == "reviewer said 'APPROVED'"
    assert review["speakers"] == ["reviewer", "author", "tester", "reviewer"]
    assert review["fallbacks"] == []
    # The lead chose every speaker; it was not asked again once the reviewer approved.
    lead = ran.asked("You are the tech lead")
    assert len(lead) == 4
    assert all('"title": "speaker_selection"' in r.system for r in lead)
    calls = [(c["agent"], c["input"]["name"]) for c in ran.tool_calls()]
    assert calls == [("author", "read_file"), ("tester", "check_patch")]
    (checked,) = [c for c in ran.tool_calls() if c["agent"] == "tester"]
    assert checked["input"]["arguments"]["code"] == scripts.SECOND_FIX  # the revised version
    assert ran.history["output"]["approved"] is True
    assert ran.history["output"]["checks"] == "5 of 5 checks pass"
    assert ran.history["output"]["code"] == scripts.SECOND_FIX


def test_software_change_is_not_reviewed_when_its_checks_fail(
    tmp_path: Path, endpoint: pytest.MonkeyPatch
) -> None:
    scripted = scripts.software_change()
    sloppy = "def slugify(title):\n    print(title)\n    return title.lower()\n"

    def careless(request: ChatRequest) -> Reply | str | None:
        structured = "Reply with only a JSON value" in request.system
        answered = any(m.get("role") == "tool" for m in request.messages)
        if "You are the author" in request.system and structured and answered:
            change = {"path": "src/textutil/slug.py", "summary": "lower case", "code": sloppy}
            return Reply.json(change)
        return scripted(request)

    ran = run_example("software-change", tmp_path, endpoint, careless)
    assert ran.history["status"] == "succeeded"
    test = ran.step("test")["output"]
    assert test["passed"] is False
    assert test["summary"] == (
        "1 of 5 checks pass; failed: keeps the public functions, typed, documented, "
        "no debugging or eval calls"
    )
    assert ran.step("review")["status"] == "skipped"
    assert ran.step("latest")["status"] == "skipped"
    assert ran.history["output"]["approved"] is False
    assert ran.history["output"]["code"] == sloppy
    assert not ran.asked("You are the code reviewer")


# ---- research ------------------------------------------------------------------------------


def test_research_manager_plans_directs_each_agent_and_answers(
    tmp_path: Path, endpoint: pytest.MonkeyPatch
) -> None:
    ran = run_example("research", tmp_path, endpoint)
    assert ran.history["status"] == "succeeded"
    study = ran.step("study")["output"]
    assert study["stop_reason"] == "done"
    assert study["detail"] == "request satisfied: the brief answers the question"
    assert (study["rounds"], study["resets"], study["stalls"]) == (3, 0, 0)
    assert study["fallbacks"] == []
    assert study["answer"] == scripts.BRIEF
    assert [m["agent"] for m in study["messages"]] == [
        "orchestrator",
        "researcher",
        "orchestrator",
        "analyst",
        "orchestrator",
        "writer",
    ]
    assert study["ledger"]["plan"][0].startswith("researcher: ")
    # Every ledger the orchestrator was asked for, in order, each answered at the first try.
    asked = [r.system.split('"title": "', 1)[1].split('"', 1)[0] for r in ran.asked("orchestrator")]
    assert asked == ["task_ledger", *["progress_ledger"] * 4, "final_answer"]
    searches = [c for c in ran.tool_calls() if c["input"]["name"] == "search_sources"]
    assert [c["agent"] for c in searches] == ["researcher", "researcher"]
    assert all(c["output"]["result"] for c in searches)
    assert ran.history["output"]["rounds"] == 3
    assert ran.history["output"]["answer"] == scripts.BRIEF


# ---- the examples as files -----------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name, d in DEMOS.items() if d.script is not None])
def test_each_example_is_a_folder_a_user_can_copy(name: str) -> None:
    demo: Demo = DEMOS[name]
    folder = demo.path.parent
    assert (folder / "README.md").is_file()
    assert demo.input_path is not None
    assert demo.input_path.is_file()
    document = yaml.safe_load(demo.path.read_text())
    # No base_url: OPENAI_BASE_URL decides, which is how a user points it at their server.
    assert document["models"] == {
        "default": {"model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}
    }
    assert cli("validate", str(demo.path)).exit_code == 0


# ---- podium demo NAME ----------------------------------------------------------------------


@pytest.fixture
def quick_demos(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's scripted model without its pauses."""
    scripted = Demo.scripted
    monkeypatch.setattr(Demo, "scripted", lambda self, pace=1.0: scripted(self, 0.0))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_demo_list_names_each_demo_in_one_line() -> None:
    listed = cli("demo", "--list")
    assert listed.exit_code == 0
    *lines, where = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "order-to-cash",
        "support",
        "content",
        "software-change",
        "research",
    ]
    assert all(len(line.split()) > 3 for line in lines)
    assert where == f"(the examples' workflows and tools: {EXAMPLES_DIR})"
    helped = cli("demo", "--help").stdout
    assert all(name in helped for name in DEMOS)


@pytest.mark.usefixtures("quick_demos")
@pytest.mark.parametrize("name", ["support", "software-change"])
def test_demo_runs_an_example_on_a_scripted_model_by_default(tmp_path: Path, name: str) -> None:
    db = str(tmp_path / "demo.db")
    ran = cli("demo", name, "--db", db)
    assert ran.exit_code == 0, ran.output
    first = ran.stderr.splitlines()[0]
    assert first.startswith(
        "model: scripted replies, no real model; to use one, set OPENAI_BASE_URL"
    )
    assert "succeeded" in ran.stdout
    (run,) = json.loads(cli("runs", "--db", db, "--json").stdout)
    shown = json.loads(cli("show", run["run_id"], "--db", db, "--json").stdout)
    assert shown["status"] == "succeeded"
    assert shown["workflow"] == name
    assert "OPENAI_BASE_URL" not in os.environ  # put back as it was


@pytest.mark.usefixtures("quick_demos")
def test_demo_uses_the_users_endpoint_when_OPENAI_BASE_URL_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ChatServer(respond=scripts.research()) as server:
        url = server.url
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        ran = cli("demo", "research", "--db", str(tmp_path / "demo.db"))
    assert ran.exit_code == 0, ran.output
    assert ran.stderr.splitlines()[0] == f"model: gpt-4o-mini at {url} (from OPENAI_BASE_URL)"
    assert len(server.requests) == 11  # its own server answered every call


@pytest.mark.usefixtures("quick_demos")
def test_demo_with_an_endpoint_but_no_key_says_which_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    ran = cli("demo", "content", "--db", str(tmp_path / "demo.db"))
    assert ran.exit_code == 2
    assert ran.stderr.strip() == (
        "error: OPENAI_BASE_URL is set (http://127.0.0.1:9/v1), so the demo uses that endpoint, "
        "and it needs the key in OPENAI_API_KEY (any value for a server that needs none)"
    )


def test_an_unknown_demo_names_the_demos(tmp_path: Path) -> None:
    ran = cli("demo", "suport", "--db", str(tmp_path / "demo.db"))
    assert ran.exit_code == 2
    assert "no demo 'suport'; the demos: order-to-cash, support, content, software-change" in (
        ran.stderr
    )
