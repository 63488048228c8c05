"""A shared agent catalog: agents declared once in their own file, used by many workflows.

A catalog file (`agents.yaml`, given with `--agents` or `PODIUM_AGENTS`) is a mapping with
`agents` (and the `models` they name, if any), written exactly as in a workflow and checked
by the same schema definitions, so a mistake is reported as `agents.yaml:LINE:COL: message`.

`load_workflow(path, catalog=...)` adds the catalog's agents to the workflow's document
before it is checked (`Catalog.merge`): a workflow's own agent of the same name wins, an
agent's `retry` and `timeout` reach the steps that name it like a workflow's own, and the
catalog's folder is added to the workflow's `search_paths` so that a `uses` module next to
the catalog is found, and an agent's relative `workflow:` file is made absolute against it.
The merged agents are stored with each run, so a run resumes without the catalog file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.errors import DefinitionError, Location
from podium.model.workflow import AgentSpec
from podium.spec.document import agents_from_document
from podium.spec.loader import parse_yaml, read_text
from podium.spec.paths import Key, describe_type
from podium.spec.schema import Locate, schema_problems
from podium.spec.validate import sort_problems

__all__ = ["Catalog", "load_catalog"]

Locations = Mapping[tuple[Key, ...], Location]

_EMPTY = "the file is empty; an agent catalog is a mapping with `agents`"


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    """The agents of a catalog file, by name, and where the file is.

    `documents` holds each agent as written (what is merged into a workflow), `locations`
    where each of its keys stands in `source`, and `base_dir` the file's folder, absolute:
    the folder `uses` modules of the catalog are imported from. `models` is the catalog's
    own `models:`, which its agents name.
    """

    source: str
    base_dir: str
    agents: Mapping[str, AgentSpec]
    documents: Mapping[str, Mapping[str, Any]]
    locations: Locations
    models: Mapping[str, Any]

    def merge(self, doc: Any, locations: Locations) -> tuple[Any, Locations]:
        """The workflow document `doc` with the catalog's agents added, and its locations.

        The workflow's own agents win. A document that is not a mapping, or whose `agents`
        or `search_paths` are of the wrong type, is returned as it is: its check reports it.
        """
        if not isinstance(doc, Mapping):
            return doc, locations
        own = doc.get("agents", {})
        paths = doc.get("search_paths", [])
        if not isinstance(own, Mapping) or not isinstance(paths, list):
            return doc, locations
        added = {
            name: self._anchored(spec) for name, spec in self.documents.items() if name not in own
        }
        if not added:
            return doc, locations
        merged = dict(doc)
        merged["agents"] = {**own, **added}
        if self.base_dir not in paths:
            merged["search_paths"] = [*paths, self.base_dir]
        return merged, _MergedLocations(locations, self.locations, frozenset(added))

    def _anchored(self, agent: Mapping[str, Any]) -> Mapping[str, Any]:
        """`agent` as the catalog means it wherever it is merged: a relative `workflow`
        path made absolute against the catalog's folder, and a model named from the
        catalog's `models:` written inline (a workflow's `models:` may not have it)."""
        child = agent.get("workflow")
        if isinstance(child, str) and child and not Path(child).is_absolute():
            agent = {**agent, "workflow": str(Path(self.base_dir, child))}
        model = agent.get("model")
        if isinstance(model, str) and model in self.models:
            agent = {**agent, "model": self.models[model]}
        return agent


def load_catalog(path: str | Path) -> Catalog:
    """Read and check the agent catalog in `path`; raises `DefinitionError` with all problems."""
    source = str(path)
    file = Path(path)
    doc, locations, problems = parse_yaml(read_text(file, source), source, empty=_EMPTY)
    locate = _locator(source, locations)
    if not isinstance(doc, Mapping):
        problems.append(
            DefinitionError(
                f"an agent catalog must be a mapping with `agents`, not {describe_type(doc)}",
                where=locate(),
            )
        )
        raise DefinitionError.collect(problems)
    problems.extend(schema_problems(doc, locate, "catalog"))
    written = doc.get("agents")
    documents = {
        str(name): agent
        for name, agent in (written.items() if isinstance(written, Mapping) else ())
        if isinstance(agent, Mapping)
    }
    models = doc.get("models")
    models = models if isinstance(models, Mapping) else {}
    agents, reading = agents_from_document(
        documents, source=source, locations=locations, models=models
    )
    problems.extend(reading)
    if problems:
        raise DefinitionError.collect(sort_problems(problems))
    return Catalog(
        source=source,
        base_dir=str(file.resolve().parent),
        agents=agents,
        documents=documents,
        locations=locations,
        models=models,
    )


def _locator(source: str, locations: Locations) -> Locate:
    """Where a path (or its nearest enclosing key) stands, like `Workflow.locate`."""

    def locate(*path: Key) -> Location:
        while path:
            found = locations.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return locations.get((), Location(source))

    return locate


class _MergedLocations(Mapping[tuple[Key, ...], Location]):
    """A workflow's locations, and the catalog's for the agents it added to the workflow.

    An added agent's keys point into the catalog file, so a problem found later (its module
    cannot be imported, say) names the line that declares it.
    """

    __slots__ = ("_added", "_catalog", "_own")

    def __init__(self, own: Locations, catalog: Locations, added: frozenset[str]) -> None:
        self._own = own
        self._catalog = catalog
        self._added = added

    def _from_catalog(self, path: tuple[Key, ...]) -> bool:
        return len(path) >= 2 and path[0] == "agents" and path[1] in self._added

    def __getitem__(self, path: tuple[Key, ...]) -> Location:
        found = self._own.get(path)
        if found is not None:
            return found
        if self._from_catalog(path):
            return self._catalog[path]
        raise KeyError(path)

    def __iter__(self) -> Iterator[tuple[Key, ...]]:
        yield from self._own
        yield from (p for p in self._catalog if self._from_catalog(p) and p not in self._own)

    def __len__(self) -> int:
        return sum(1 for _ in self)
