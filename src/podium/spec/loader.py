"""Reading a workflow file: YAML (or JSON, which is YAML) with a location for every value.

PyYAML's composer gives the node tree with line and column marks; the values are built here
from the nodes rather than by PyYAML's constructor so that each key's position is recorded
in `Workflow.locations`, duplicate keys are refused (PyYAML silently keeps the last one),
timestamps stay the strings the author wrote, and nothing but plain JSON-like data comes out.
Whatever the bytes, the result is a `Workflow` or a `DefinitionError`, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from podium.errors import DefinitionError, Location
from podium.model.workflow import Workflow
from podium.spec.document import workflow_from_document
from podium.spec.paths import Key

__all__ = ["load_workflow", "parse_yaml"]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null"))
_TIMESTAMP = f"{_TAG}timestamp"
_MERGE = f"{_TAG}merge"

# A document whose aliases expand to more values than this is refused: a few lines of
# anchors can otherwise describe billions of values ("billion laughs").
_MAX_VALUES = 1_000_000

Locations = dict[tuple[Key, ...], Location]


def load_workflow(path: str | Path) -> Workflow:
    """Read, check and return the workflow in `path`; raises `DefinitionError` with all problems.

    `source` is the path as given (so messages read as the user typed it) and `base_dir` the
    file's folder, absolute, where the runtime looks for the modules of `uses` callables.
    """
    source = str(path)
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DefinitionError("no such file", where=Location(source)) from None
    except OSError as exc:
        raise DefinitionError(
            f"cannot read the file: {exc.strerror or exc}", where=Location(source)
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            f"not UTF-8 text (byte {exc.start} cannot be decoded)", where=Location(source)
        ) from None
    doc, locations, problems = parse_yaml(text, source)
    return workflow_from_document(
        doc,
        source=source,
        base_dir=str(file.resolve().parent),
        locations=locations,
        problems=problems,
    )


def parse_yaml(text: str, source: str) -> tuple[Any, Locations, list[DefinitionError]]:
    """The data in `text`, where each key stands, and the problems that still let it be read.

    A syntax error raises `DefinitionError` at once: nothing after it can be trusted.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _location(source, mark) if mark else Location(source)
        problem = exc.problem or exc.context or "not valid YAML"
        raise DefinitionError(f"YAML syntax error: {problem}", where=where) from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"not valid YAML: {exc}", where=Location(source)) from None
    except RecursionError:
        raise DefinitionError("the YAML is nested too deeply", where=Location(source)) from None
    finally:
        loader.dispose()
    if node is None:
        raise DefinitionError(
            "the file is empty; a workflow is a mapping with `name` and `steps`",
            where=Location(source),
        )
    builder = _Builder(source)
    try:
        doc = builder.value(node, ())
    except RecursionError:
        raise DefinitionError("the YAML is nested too deeply", where=Location(source)) from None
    return doc, builder.locations, builder.problems


def _location(source: str, mark: Any) -> Location:
    return Location(source, mark.line + 1, mark.column + 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [value for _, value in node.value]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _tag_name(node: yaml.Node) -> str:
    """A tag as written in YAML: `!!binary` for the standard ones, `!custom` as is."""
    tag = str(node.tag)
    return f"!!{tag.removeprefix(_TAG)}" if tag.startswith(_TAG) else tag


class _Builder:
    """Plain data from YAML nodes, recording the location of every key and list item."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.locations: Locations = {}
        self.problems: list[DefinitionError] = []
        self.constructor = yaml.constructor.SafeConstructor()
        self.done: dict[int, Any] = {}  # node id -> value, so an alias is built only once
        self.building: set[int] = set()
        self.sizes: dict[int, int] = {}  # node id -> how many values it holds, aliases expanded

    def where(self, node: yaml.Node) -> Location:
        return _location(self.source, node.start_mark)

    def problem(self, message: str, node: yaml.Node) -> None:
        self.problems.append(DefinitionError(message, where=self.where(node)))

    def value(self, node: yaml.Node, path: tuple[Key, ...]) -> Any:
        self.locations.setdefault(path, self.where(node))
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.building:
            self.problem("an alias refers to the value that contains it", node)
            return None
        self.building.add(key)
        result: Any
        try:
            if isinstance(node, yaml.MappingNode):
                result = self.mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                result = self.sequence(node, path)
            else:
                result = self.scalar(node)
        finally:
            self.building.discard(key)
        size = 1 + sum(self.sizes.get(id(child), 1) for child in _children(node))
        if size > _MAX_VALUES:
            raise DefinitionError(
                f"the document holds more than {_MAX_VALUES} values once aliases are expanded",
                where=self.where(node),
            )
        self.sizes[key] = size
        self.done[key] = result
        return result

    def mapping(self, node: yaml.MappingNode, path: tuple[Key, ...]) -> dict[str, Any]:
        if node.tag != f"{_TAG}map":
            self.problem(f"unsupported YAML tag {_tag_name(node)} on a mapping", node)
        result: dict[str, Any] = {}
        first_seen: dict[str, Location] = {}
        merged: list[Any] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.append(self.value(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem("a mapping key must be plain text, not a list or mapping", key_node)
                continue
            key = str(key_node.value)
            if key in first_seen:
                first = first_seen[key]
                self.problem(
                    f"duplicate key {key!r} (first defined at line {first.line})", key_node
                )
                continue
            first_seen[key] = self.where(key_node)
            self.locations.setdefault((*path, key), first_seen[key])
            result[key] = self.value(value_node, (*path, key))
        for source in merged:
            self.merge(result, source, node)
        return result

    def merge(self, result: dict[str, Any], source: Any, node: yaml.Node) -> None:
        """YAML's `<<: *base`: keys of `source` (a mapping or list of them) not already set."""
        for part in source if isinstance(source, list) else [source]:
            if not isinstance(part, dict):
                self.problem("`<<` must merge a mapping or a list of mappings", node)
                return
            for key, value in part.items():
                result.setdefault(key, value)

    def sequence(self, node: yaml.SequenceNode, path: tuple[Key, ...]) -> list[Any]:
        if node.tag != f"{_TAG}seq":
            self.problem(f"unsupported YAML tag {_tag_name(node)} on a list", node)
        return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]

    def scalar(self, node: yaml.Node) -> Any:
        if node.tag == _TIMESTAMP:
            return str(node.value)
        if node.tag not in _SCALAR_TAGS:
            self.problem(
                f"unsupported YAML tag {_tag_name(node)}; use plain JSON-like values", node
            )
            return None
        try:
            return self.constructor.construct_object(node)
        except (ValueError, yaml.YAMLError):
            self.problem(f"{node.value!r} cannot be read as {_tag_name(node)}", node)
            return None
