"""A shared agent catalog end to end: two workflows in their own folders use the agents of
one catalog (whose module lives next to it), through `--agents` and `PODIUM_AGENTS`; a run
resumes after the catalog file is gone; `podium agents` shows what the store saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import podium

SRC = Path(podium.__file__).resolve().parents[1]

CATALOG = """\
agents:
  writer:
    uses: "team_agents:write"
    capabilities: [draft]
    concurrency: 2
    circuit: {failures: 5, window: 1m, cooldown: 5s}
  checker:
    uses: "team_agents:check"
    capabilities: [check]
  flaky:
    uses: "team_agents:flaky"
  idle:
    uses: "team_agents:write"
    description: Never called.
"""

MODULE = '''
from pathlib import Path


def write(text):
    return f"draft: {text}"


def check(text):
    return {"ok": text.startswith("draft")}


def flaky(flag):
    """Fails the first time (leaving `flag` behind), succeeds from then on."""
    if not Path(flag).exists():
        Path(flag).write_text("failed once")
        raise RuntimeError("not yet")
    return "fine now"
'''

REPORT = """\
name: report
steps:
  draft:
    capability: draft
    with: {text: "${{ input.topic }}"}
output: "${{ steps.draft.output }}"
"""

REVIEW = """\
name: review
steps:
  draft:
    agent: writer
    with: {text: review}
  check:
    needs: draft
    capability: check
    with: {text: "${{ steps.draft.output }}"}
output: "${{ steps.check.output }}"
"""

SHAKY = """\
name: shaky
steps:
  first:
    agent: writer
    with: {text: one}
  second:
    needs: first
    agent: flaky
    with: {flag: "${{ input.flag }}"}
output: ["${{ steps.first.output }}", "${{ steps.second.output }}"]
"""

BAD_CATALOG = """\
agents:
  writer:
    usse: "team_agents:write"
"""


class Project:
    """A catalog in `shared/`, workflows in `flows/*/`, and podium run from the root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = str(root / "runs.db")
        self.catalog = root / "shared" / "agents.yaml"
        self.catalog.parent.mkdir()
        self.catalog.write_text(CATALOG)
        (root / "shared" / "team_agents.py").write_text(MODULE)
        self.flows: dict[str, Path] = {}
        for name, text in [("report", REPORT), ("review", REVIEW), ("shaky", SHAKY)]:
            folder = root / "flows" / name
            folder.mkdir(parents=True)
            self.flows[name] = folder / f"{name}.yaml"
            self.flows[name].write_text(text)

    def podium(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), environ.get("PYTHONPATH")]))
        for name in ("PODIUM_DB", "PODIUM_AGENTS"):
            environ.pop(name, None)
        environ.update(env)
        return subprocess.run(
            [sys.executable, "-m", "podium", *args],
            cwd=self.root,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def json(self, *args: str, code: int = 0, **env: str) -> Any:
        done = self.podium(*args, "--json", **env)
        assert done.returncode == code, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_two_workflows_share_one_catalog(project: Project) -> None:
    report = project.json(
        "run",
        str(project.flows["report"]),
        "--agents",
        "shared/agents.yaml",
        "--input",
        '{"topic": "sales"}',
        "--db",
        project.db,
    )
    assert report["status"] == "succeeded"
    assert report["output"] == "draft: sales"
    review = project.json(
        "run", str(project.flows["review"]), "--db", project.db, PODIUM_AGENTS="shared/agents.yaml"
    )
    assert review["status"] == "succeeded"
    assert review["output"] == {"ok": True}

    listed = project.json("agents", "--agents", "shared/agents.yaml", "--db", project.db)
    by_name = {row["name"]: row for row in listed}
    assert list(by_name) == ["writer", "checker", "flaky", "idle"]
    writer = by_name["writer"]
    assert writer["calls"] == 2
    assert (writer["failures"], writer["success_rate"]) == (0, 1.0)
    assert writer["mean_latency"] >= 0
    assert writer["last_used"] > 0
    assert writer["capabilities"] == ["draft"]
    assert writer["concurrency"] == 2
    assert writer["circuit"] == {"failures": 5, "window": 60.0, "cooldown": 5.0}
    assert by_name["checker"]["calls"] == 1
    assert by_name["idle"]["calls"] == 0
    assert by_name["idle"]["last_used"] is None

    # Without a catalog, the agents the store's runs called.
    seen = project.json("agents", "--db", project.db)
    assert {row["name"]: row["calls"] for row in seen} == {"writer": 2, "checker": 1}
    table = project.podium("agents", "--db", project.db, PODIUM_AGENTS="shared/agents.yaml")
    assert table.returncode == 0, table.stderr
    assert "writer" in table.stdout
    assert "idle" in table.stdout


def test_without_the_catalog_the_workflow_is_invalid(project: Project) -> None:
    done = project.podium("validate", str(project.flows["review"]))
    assert done.returncode == 2
    assert f"{project.flows['review']}:4:5: step 'draft' uses unknown agent 'writer'" in done.stderr
    done = project.podium(
        "validate", str(project.flows["review"]), "--agents", "shared/agents.yaml"
    )
    assert done.returncode == 0, done.stderr
    assert "ok (2 steps, 4 agents)" in done.stdout
    graph = project.podium(
        "graph", str(project.flows["review"]), PODIUM_AGENTS=str(project.catalog)
    )
    assert graph.returncode == 0, graph.stderr
    assert "draft" in graph.stdout


def test_a_bad_catalog_is_reported_where_it_is_wrong(project: Project) -> None:
    bad = project.root / "bad.yaml"
    bad.write_text(BAD_CATALOG)
    done = project.podium("run", str(project.flows["report"]), "--agents", "bad.yaml")
    assert done.returncode == 2
    assert "bad.yaml:2:3: agents.writer is missing the required key 'uses'" in done.stderr
    assert "bad.yaml:3:5: unknown key 'usse' in agents.writer (did you mean 'uses'?)" in done.stderr
    missing = project.podium("agents", "--agents", "nowhere.yaml")
    assert missing.returncode == 2
    assert "nowhere.yaml: no such file" in missing.stderr


def test_a_run_resumes_after_the_catalog_is_deleted(project: Project) -> None:
    flag = project.root / "flag.txt"
    failed = project.json(
        "run",
        str(project.flows["shaky"]),
        "--agents",
        str(project.catalog),
        "--input",
        json.dumps({"flag": str(flag)}),
        "--db",
        project.db,
        code=1,
    )
    assert failed["status"] == "failed"
    project.catalog.unlink()
    resumed = project.json("resume", failed["run_id"], "--db", project.db)
    assert resumed["status"] == "succeeded"
    assert resumed["output"] == ["draft: one", "fine now"]
    # The store saw the failed attempt and the one that worked.
    seen = {row["name"]: row for row in project.json("agents", "--db", project.db)}
    assert (seen["flaky"]["calls"], seen["flaky"]["failures"]) == (2, 1)
    assert seen["flaky"]["success_rate"] == 0.5
    assert seen["writer"]["calls"] == 1
