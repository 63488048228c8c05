"""The shared agent catalog: reading it, its located errors, and merging it into workflows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from podium.errors import DefinitionError
from podium.runtime import prepare
from podium.spec import (
    load_catalog,
    load_workflow,
    workflow_from_document,
    workflow_to_document,
)

CATALOG = """\
agents:
  writer:
    uses: "catalog_agents:write"
    capabilities: [draft, summarise]
    concurrency: 2
    description: Writes things.
    circuit: {failures: 3, window: 1m, cooldown: 10s}
    retry: {attempts: 3, backoff: 1s}
    timeout: 5s
  checker:
    uses: "catalog_agents:check"
    capabilities: [check]
"""

AGENTS_MODULE = """\
def write(text):
    return text.upper()


def check(text):
    return bool(text)
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    write(tmp_path / "shared" / "catalog_agents.py", AGENTS_MODULE)
    return write(tmp_path / "shared" / "agents.yaml", CATALOG)


def problems(error: pytest.ExceptionInfo[DefinitionError]) -> list[str]:
    return list(error.value.problems)


def test_load_catalog_reads_every_agent(catalog_file: Path) -> None:
    catalog = load_catalog(catalog_file)
    assert list(catalog.agents) == ["writer", "checker"]
    writer = catalog.agents["writer"]
    assert writer.uses == "catalog_agents:write"
    assert writer.capabilities == {"draft", "summarise"}
    assert writer.concurrency == 2
    assert writer.description == "Writes things."
    assert writer.circuit is not None
    assert (writer.circuit.failures, writer.circuit.window, writer.circuit.cooldown) == (3, 60, 10)
    assert catalog.base_dir == str(catalog_file.parent.resolve())
    assert catalog.documents["writer"]["timeout"] == "5s"


def test_an_empty_agents_mapping_is_a_catalog(tmp_path: Path) -> None:
    assert load_catalog(write(tmp_path / "agents.yaml", "agents: {}\n")).agents == {}


def test_a_bad_catalog_reports_every_problem_where_it_stands(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "agents.yaml",
        """\
        agents:
          writer:
            use: "catalog_agents:write"
            timeout: 5 parsecs
          9bad:
            uses: nope
          counter:
            uses: "m:f"
            concurrency: 0
        """,
    )
    with pytest.raises(DefinitionError) as error:
        load_catalog(bad)
    source = str(bad)
    assert problems(error) == [
        f"{source}:2:3: agents.writer is missing the required key 'uses'",
        f"{source}:3:5: unknown key 'use' in agents.writer (did you mean 'uses'?)",
        f"{source}:4:5: agents.writer.timeout: '5 parsecs' is not a duration: write seconds "
        "as a number, or a duration such as 200ms, 1.5s, 10m, 2h, 1d or 1m30s",
        f"{source}:5:3: '9bad' is not a valid agent name: use letters, digits, '_' and '-', "
        "starting with a letter or '_'",
        f"{source}:6:5: agents['9bad'].uses must be a Python callable written "
        "'module:attribute', not 'nope'",
        f"{source}:9:5: agents.counter.concurrency must be at least 1, not 0",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty; an agent catalog is a mapping with `agents`"),
        ("- a\n", "1:1: an agent catalog must be a mapping with `agents`, not a list"),
        ("agents: {}\nsteps: {}\n", "2:1: unknown key 'steps' in the catalog"),
        ("name: x\n", "1:1: the catalog is missing the required key 'agents'"),
        ("agents: [a]\n", "1:1: agents must be a mapping, not a list"),
        ("agents:\n  a: {uses: 'm:f'\n", "YAML syntax error"),
    ],
)
def test_a_catalog_that_is_not_one_is_refused(tmp_path: Path, text: str, message: str) -> None:
    file = write(tmp_path / "agents.yaml", text)
    with pytest.raises(DefinitionError) as error:
        load_catalog(file)
    assert message in str(error.value)
    assert str(error.value).startswith(str(file))


def test_a_missing_catalog_file_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"agents\.yaml: no such file"):
        load_catalog(tmp_path / "agents.yaml")


def test_a_workflow_uses_catalog_agents_by_name_and_capability(
    tmp_path: Path, catalog_file: Path
) -> None:
    flow = write(
        tmp_path / "flows" / "flow.yaml",
        """\
        name: flow
        steps:
          draft: {capability: draft, with: {text: hi}}
          check: {agent: checker, needs: draft, with: {text: "${{ steps.draft.output }}"}}
          named: {agent: writer, with: {text: yo}}
        """,
    )
    with pytest.raises(DefinitionError) as error:
        load_workflow(flow)
    assert "which no agent declares" in str(error.value)
    workflow = load_workflow(flow, catalog=load_catalog(catalog_file))
    assert set(workflow.agents) == {"writer", "checker"}
    assert workflow.search_paths == (str(catalog_file.parent.resolve()),)
    # The catalog agent's retry and timeout reach the steps that name it.
    assert workflow.steps["named"].timeout == 5.0
    assert workflow.steps["named"].retry.attempts == 3
    assert workflow.steps["check"].timeout is None
    # Its keys point into the catalog file, the steps' into the workflow.
    assert str(workflow.locate("agents", "writer", "uses")) == f"{catalog_file}:3:5"
    assert str(workflow.locate("steps", "named")).startswith(str(flow))
    # The module next to the catalog is found from the workflow's folder.
    prepared = prepare(workflow)
    assert prepared.registry is not None


def test_the_workflows_own_agent_wins_over_the_catalogs(tmp_path: Path, catalog_file: Path) -> None:
    flow = write(
        tmp_path / "flows" / "flow.yaml",
        """\
        name: flow
        agents:
          writer:
            uses: "local:write"
            capabilities: [draft]
        steps:
          a: {agent: writer}
          b: {capability: check}
        """,
    )
    workflow = load_workflow(flow, catalog=load_catalog(catalog_file))
    assert workflow.agents["writer"].uses == "local:write"
    assert workflow.agents["writer"].capabilities == {"draft"}
    assert workflow.agents["writer"].circuit is None  # nothing of the catalog's writer
    assert workflow.steps["a"].timeout is None
    assert workflow.agents["checker"].uses == "catalog_agents:check"
    assert str(workflow.locate("agents", "writer", "uses")) == f"{flow}:4:5"
    assert str(workflow.locate("agents", "writer", "circuit")) == f"{flow}:3:3"


def test_no_search_path_when_the_workflow_overrides_every_catalog_agent(
    tmp_path: Path,
) -> None:
    catalog = load_catalog(write(tmp_path / "lib" / "agents.yaml", "agents: {a: {uses: 'm:f'}}"))
    flow = write(
        tmp_path / "flow.yaml", "name: f\nagents: {a: {uses: 'n:g'}}\nsteps: {s: {agent: a}}"
    )
    workflow = load_workflow(flow, catalog=catalog)
    assert workflow.search_paths == ()
    assert workflow.agents["a"].uses == "n:g"


def test_a_catalog_agent_that_cannot_be_imported_is_located_in_the_catalog(
    tmp_path: Path,
) -> None:
    catalog_file = write(
        tmp_path / "lib" / "agents.yaml", "agents:\n  ghost:\n    uses: 'no_such_module_x:f'\n"
    )
    flow = write(tmp_path / "flow.yaml", "name: f\nsteps: {s: {agent: ghost}}\n")
    workflow = load_workflow(flow, catalog=load_catalog(catalog_file))
    with pytest.raises(DefinitionError) as error:
        prepare(workflow)
    assert str(error.value).startswith(f"{catalog_file}:3:5: cannot import module")


def test_a_workflow_whose_agents_are_wrong_is_reported_as_without_a_catalog(
    tmp_path: Path, catalog_file: Path
) -> None:
    flow = write(tmp_path / "flow.yaml", "name: f\nagents: [x]\nsteps: {s: {agent: writer}}\n")
    with pytest.raises(DefinitionError, match=r"flow\.yaml:2:1: agents must be a mapping"):
        load_workflow(flow, catalog=load_catalog(catalog_file))


def test_the_merged_workflow_round_trips_without_the_catalog(
    tmp_path: Path, catalog_file: Path
) -> None:
    flow = write(tmp_path / "flows" / "flow.yaml", "name: f\nsteps: {s: {capability: draft}}\n")
    workflow = load_workflow(flow, catalog=load_catalog(catalog_file))
    doc = workflow_to_document(workflow)
    assert doc["search_paths"] == [str(catalog_file.parent.resolve())]
    assert set(doc["agents"]) == {"writer", "checker"}
    catalog_file.unlink()
    again = workflow_from_document(doc, source="run x", base_dir=workflow.base_dir)
    assert again.search_paths == workflow.search_paths
    assert again.agents == workflow.agents
    assert workflow_to_document(again) == doc
    prepare(again)


def test_search_paths_written_in_a_workflow_are_relative_to_it(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "helpers_mod.py", "def f():\n    return 1\n")
    flow = write(
        tmp_path / "flows" / "flow.yaml",
        "name: f\nsearch_paths: [../lib]\nsteps: {s: {uses: 'helpers_mod:f'}}\n",
    )
    workflow = load_workflow(flow)
    assert Path(workflow.search_paths[0]).resolve() == (tmp_path / "lib").resolve()
    prepare(workflow)
