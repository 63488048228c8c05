"""Reading a workflow file: YAML (or JSON, which is YAML) with a location for every value.

PyYAML's composer gives the node tree with line and column marks; the values are built here
from the nodes rather than by PyYAML's constructor so that each key's position is recorded
in `Workflow.locations`, duplicate keys are refused (PyYAML silently keeps the last one),
timestamps stay the strings the author wrote, and nothing but plain JSON-like data comes out.
Whatever the bytes, the result is a `Workflow` or a `DefinitionError`, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import yaml

from podium.errors import DefinitionError, Location
from podium.model.workflow import Workflow
from podium.spec.document import workflow_from_document
from podium.spec.paths import Key
from podium.spec.plain_yaml import read_plain

if TYPE_CHECKING:
    from podium.spec.catalog import Catalog

__all__ = ["load_workflow", "parse_yaml", "read_text"]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null"))
_TIMESTAMP = f"{_TAG}timestamp"
_MERGE = f"{_TAG}merge"

# A document whose aliases expand to more values than this is refused: a few lines of
# anchors can otherwise describe billions of values ("billion laughs").
_MAX_VALUES = 1_000_000

Locations = dict[tuple[Key, ...], Location]
_T = TypeVar("_T")


class _Positions(Mapping[tuple[Key, ...], Location]):
    """Where each path stands, found by `find` when first asked for, kept as (line, column)
    and made a `Location` when asked.

    A file has a position for every key and item, and a valid one is asked for almost none,
    so finding them, or making each `Location`, up front would be most of their cost.
    """

    __slots__ = ("_find", "_found", "_source")

    def __init__(
        self, source: str, find: Callable[[], dict[tuple[Key, ...], tuple[int, int]]]
    ) -> None:
        self._source = source
        self._find = find
        self._found: dict[tuple[Key, ...], tuple[int, int]] | None = None

    @property
    def _positions(self) -> dict[tuple[Key, ...], tuple[int, int]]:
        if self._found is None:
            self._found = self._find()
        return self._found

    def __getitem__(self, path: tuple[Key, ...]) -> Location:
        line, column = self._positions[path]
        return Location(self._source, line, column)

    @overload
    def get(self, path: tuple[Key, ...], /) -> Location | None: ...
    @overload
    def get(self, path: tuple[Key, ...], /, default: Location) -> Location: ...
    @overload
    def get(self, path: tuple[Key, ...], /, default: _T) -> Location | _T: ...
    def get(self, path: tuple[Key, ...], /, default: object = None) -> object:
        found = self._positions.get(path)
        return default if found is None else Location(self._source, *found)

    def __contains__(self, path: object) -> bool:
        return path in self._positions

    def __iter__(self) -> Iterator[tuple[Key, ...]]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


def load_workflow(path: str | Path, *, catalog: Catalog | None = None) -> Workflow:
    """Read, check and return the workflow in `path`; raises `DefinitionError` with all problems.

    `source` is the path as given (so messages read as the user typed it) and `base_dir` the
    file's folder, absolute, where the runtime looks for the modules of `uses` callables.
    The agents of a `catalog` (`load_catalog`) are added to the workflow's own before it is
    checked; an agent the workflow declares itself wins over the catalog's of that name.
    """
    source = str(path)
    file = Path(path)
    text = read_text(file, source)
    doc, locations, problems = parse_yaml(text, source)
    if catalog is not None:
        doc, locations = catalog.merge(doc, locations)
    return workflow_from_document(
        doc,
        source=source,
        base_dir=str(file.resolve().parent),
        locations=locations,
        problems=problems,
    )


def read_text(file: Path, source: str) -> str:
    """The text in `file`, or a `DefinitionError` at `source` saying why it cannot be read."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DefinitionError("no such file", where=Location(source)) from None
    except OSError as exc:
        raise DefinitionError(
            f"cannot read the file: {exc.strerror or exc}", where=Location(source)
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            f"not UTF-8 text (byte {exc.start} cannot be decoded)", where=Location(source)
        ) from None


_EMPTY = "the file is empty; a workflow is a mapping with `name` and `steps`"


def parse_yaml(
    text: str, source: str, *, empty: str = _EMPTY
) -> tuple[Any, Mapping[tuple[Key, ...], Location], list[DefinitionError]]:
    """The data in `text`, where each key stands, and the problems that still let it be read.

    A syntax error raises `DefinitionError` at once: nothing after it can be trusted, and so
    does an empty document (`empty` says what belongs there).
    """
    quick = _quick_parse(text, source)
    if quick is not None:
        return quick[0], quick[1], []
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _location(source, mark) if mark else Location(source)
        problem = exc.problem or exc.context or "not valid YAML"
        raise DefinitionError(f"YAML syntax error: {problem}", where=where) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML does not accept; PyYAML gives its offset in the text, not a mark.
        before = text[: exc.position]
        where = Location(source, before.count("\n") + 1, len(before) - before.rfind("\n"))
        raise DefinitionError(
            f"YAML syntax error: character {_character(exc.character)} is not allowed "
            f"({exc.reason})",
            where=where,
        ) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise DefinitionError(f"not valid YAML: {message}", where=Location(source)) from None
    except RecursionError:
        raise DefinitionError("the YAML is nested too deeply", where=Location(source)) from None
    finally:
        loader.dispose()
    if node is None:
        raise DefinitionError(empty, where=Location(source))
    builder = _Builder(source)
    try:
        doc = builder.value(node, ())
    except RecursionError:
        raise DefinitionError("the YAML is nested too deeply", where=Location(source)) from None
    return doc, builder.locations, builder.problems


def _quick_parse(text: str, source: str) -> tuple[Any, _Positions] | None:
    """The data and locations of an ordinary document, or None to take the thorough path.

    Most files use none of YAML's rarer features. Those written in plain block YAML are
    read without libyaml (`read_plain`); the others have their values built straight from
    the parser's events: no node tree, no constructor. Anything out of the ordinary
    (anchors, aliases, tags, merge keys, duplicate or non-text keys, a value that cannot be
    read, deep nesting, several documents, a syntax error) returns None, and `parse_yaml`
    reads the text again the thorough way, which reports it exactly as it always has.
    """
    plain = read_plain(text, max_depth=_QUICK_DEPTH, max_values=_MAX_VALUES)
    if plain is not None:
        return plain[0], _Positions(source, plain[1])
    loader = _Loader(text)
    try:
        return _quick_build(loader, source)
    except Exception:  # whatever it is, the thorough path reports it properly
        return None
    finally:
        loader.dispose()


_QUICK_DEPTH = 64  # deeper documents go the thorough way, which knows its own limits


def _quick_build(loader: Any, source: str) -> tuple[Any, _Positions] | None:
    get = loader.get_event
    resolvers = loader.yaml_implicit_resolvers
    if None in resolvers:
        return None  # a resolver for every value: each must be resolved the thorough way
    scalar_event = yaml.ScalarEvent
    mapping_start = yaml.MappingStartEvent
    sequence_start = yaml.SequenceStartEvent
    collection_end = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    str_tag = f"{_TAG}str"
    if type(get()) is not yaml.StreamStartEvent or type(get()) is not yaml.DocumentStartEvent:
        return None
    positions: dict[tuple[Key, ...], tuple[int, int]] = {}
    # The innermost open collection is in the variables below, each enclosing one is a frame
    # (collection, path, here, is_map) on the stack. In a mapping, `here` is the path of the
    # key whose value comes next, or None while a key is awaited.
    stack: list[tuple[Any, tuple[Key, ...], tuple[Key, ...] | None, bool]] = []
    container: Any = None
    path: tuple[Key, ...] = ()
    here: tuple[Key, ...] | None = None
    is_map = False
    count = 0
    while True:
        event = get()
        kind = type(event)
        if kind is scalar_event:
            if event.anchor is not None or event.tag is not None:
                return None
            value = event.value
            mark = event.start_mark
            if is_map:
                if here is None:
                    # A key: plain text, not seen before, not YAML's merge key `<<`.
                    if value in container or value == "<<":
                        return None
                    here = (*path, value)
                    positions[here] = (mark.line + 1, mark.column + 1)
                    continue
            else:
                here = (*path, len(container)) if stack else ()
                positions[here] = (mark.line + 1, mark.column + 1)
            count += 1
            if event.implicit[0] and (not value or value[0] in resolvers):
                tag = loader.resolve(yaml.ScalarNode, value, event.implicit)
                if tag != str_tag:
                    if tag not in _SCALAR_TAGS:
                        return None
                    node = yaml.ScalarNode(tag, value, mark, event.end_mark)
                    value = loader.yaml_constructors[tag](loader, node)
        elif kind is mapping_start or kind is sequence_start:
            if event.anchor is not None or event.tag is not None:
                return None
            if is_map:
                if here is None:
                    return None  # a list or mapping as a key
            else:
                mark = event.start_mark
                here = (*path, len(container)) if stack else ()
                positions[here] = (mark.line + 1, mark.column + 1)
            count += 1
            if len(stack) >= _QUICK_DEPTH or count > _MAX_VALUES:
                return None
            stack.append((container, path, here, is_map))
            is_map = kind is mapping_start
            container = {} if is_map else []
            path = here
            here = None
            continue
        elif kind in collection_end:
            value = container
            container, path, here, is_map = stack.pop()
        else:
            return None  # an alias, or the end of the document where a value belongs
        # `value` is complete: it goes in the enclosing collection, or is the whole document.
        if is_map:
            container[here[-1]] = value  # type: ignore[index]
            here = None
        elif stack:
            container.append(value)
        else:
            break
    if count > _MAX_VALUES:
        return None
    if type(get()) is not yaml.DocumentEndEvent or type(get()) is not yaml.StreamEndEvent:
        return None
    return value, _Positions(source, lambda: positions)


def _character(character: Any) -> str:
    code = character if isinstance(character, int) else ord(str(character)[:1] or "\0")
    return f"U+{code:04X}"


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
