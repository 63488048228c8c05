"""Plain block YAML read without libyaml: the first, fast way to read a workflow file.

Workflow files are almost always written in a small part of YAML: mappings and lists laid out
by indentation, scalars on one line, and short flow collections such as `needs: [a, b]`.
libyaml reads them correctly but slowly from Python, because PyYAML makes an event object and
two mark objects for every token. `read_plain` reads that part of YAML line by line, with a
regular expression matched once per distinct line and a stack of open collections, and gives
the values and positions the event-driven path in `loader` gives. Anything out of the ordinary
(block scalars, anchors, aliases, tags, scalars over several lines, tabs, a document marker
other than a leading `---`, a value PyYAML would read as anything but text, a number, a bool
or null, or merely a line it does not recognise) returns None, and the caller reads the text
the careful way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import yaml

from podium.spec.paths import Key

__all__ = ["Positions", "read_plain"]

# Where each path stands in the text: (line, column), both counted from 1.
Positions = dict[tuple[Key, ...], tuple[int, int]]

# The loader the careful path reads with: its resolvers and constructors say what a plain
# scalar means (YAML 1.1: `yes` is true, `1:30` is 90), so both paths agree on every value.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null"))

# libyaml refuses a key whose `:` is more than 1024 characters from its start.
_LONGEST_KEY = 1000

# Comment and blank lines, then a `---` alone on its line: the start of the one document.
_HEAD = re.compile(r"(?: *(?:#.*)?\n)*--- *(?: #.*)?\n")

# Scalars on one line. A plain scalar may not start with an indicator (`-`, `?` and `:` only
# when followed by a space) and ends before `: `, ` #` or the end of the line; in a flow
# collection it also ends at `,[]{}`, and `:` and `?` are left to the careful path there.
_PLAIN = (
    r"(?:[^ \-?:,\[\]{}#&*!|>'\"%@`]|[-?:](?=[^ ]))"
    r"(?:[^ :]++|:(?=[^ ])| ++(?=[^ #:]|:[^ ]))*+"
)
_FLOW_PLAIN = (
    r"(?:[^ \-?:,\[\]{}#&*!|>'\"%@`]|-(?=[^ ?:,\[\]{}#]))"
    r"[^ ?:,\[\]{}]*+(?: ++[^ ?:,\[\]{}#][^ ?:,\[\]{}]*+)*+"
)
_QUOTED = r"'(?:[^']|'')*+'|\"(?:[^\"\\]|\\.)*+\""

# A block line: indentation, list dashes, a key, then a scalar or the start of a flow
# collection (read on by `_Reader.flow`), and a comment.
_LINE = re.compile(
    r"( *)((?:-(?: +|$))*)"
    rf"(?:((?:{_PLAIN}|{_QUOTED}) *):(?: +|$))?"
    rf"(?:({_PLAIN}|{_QUOTED})|([\[{{].*))?"
    r" *(?:(?<![^ ])#.*)?"
)
_FLOW_NODE = re.compile(rf" *(?:([\[{{])|({_FLOW_PLAIN}|{_QUOTED}))")
_FLOW_KEY = re.compile(rf" *({_FLOW_PLAIN}|{_QUOTED}) *: +")
_FLOW_NEXT = re.compile(r" *([,\]}])")
_FLOW_END = re.compile(r" *(?:(?<![^ ])#.*)?")

_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))")
_ESCAPED = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
    "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
    "L": "\u2028", "P": "\u2029",
}  # fmt: skip


class _NotPlain(Exception):
    """The text uses YAML this reader leaves to the careful path."""


def read_plain(
    text: str, *, max_depth: int, max_values: int
) -> tuple[Any, Callable[[], Positions]] | None:
    """The data in `text`, and how to find where each key and list item stands; or None if
    the text is not plain.

    Positions are wanted only to report a problem, and recording them costs a third of the
    reading, so the text is read again, with them, when they are first asked for.
    None also when collections nest deeper than `max_depth` or the document holds more than
    `max_values` values, limits the careful path knows how to report. Never raises.
    """
    if None in _LOADER.yaml_implicit_resolvers:
        return None  # a resolver for every value: leave each to the careful path
    lines = _lines(text)
    # Each position but the document's belongs to a character of its own (a dash, the first
    # of a key, of a flow item), so only a text this long can hold more than `max_values`
    # values: its positions are recorded now, to be counted.
    found: Positions | None = {} if len(text) >= max_values else None
    try:
        value = _Reader(max_depth, found).block(lines)
    except Exception:  # whatever it is, the careful path reads or reports it properly
        return None
    if found is None:
        return value, partial(_positions, text, max_depth)
    if len(found) > max_values:  # each key and list item stands for one value
        return None
    return value, lambda: found


def _lines(text: str) -> list[str]:
    if "\r" in text:
        text = text.replace("\r\n", "\n")  # one line break, as in YAML; a lone "\r" is refused
    lines = text.split("\n")
    head = _HEAD.match(text)
    if head is not None:
        lines[head.group().count("\n") - 1] = ""  # the `---` that starts the one document
    return lines


def _positions(text: str, max_depth: int) -> Positions:
    """Where each key and list item of `text`, read once already, stands."""
    found: Positions = {}
    _Reader(max_depth, found).block(_lines(text))
    return found


_ABSENT: Final = object()  # the value of a line that ends with `key:` or `-`
_FLOW: Final = object()  # the value of a line that opens a flow collection, read on each time

# What a line says, wherever it stands: its indentation (-1 for a line of only blanks and a
# comment), whether it starts with a key rather than a `-`, the columns of its dashes, its key
# (or None) and the key's column counted from 1, its value (`_ABSENT`, `_FLOW` or a scalar's
# value) and the value's column counted from 1.
_Shape = tuple[int, bool, tuple[int, ...], str | None, int, Any, int]
_BLANK: _Shape = (-1, False, (), None, 0, _ABSENT, 0)


class _Reader:
    """One document read line by line, recording in `positions` (unless None) where each key
    and list item it has read stands."""

    __slots__ = ("max_depth", "positions")

    def __init__(self, max_depth: int, positions: Positions | None) -> None:
        self.max_depth = max_depth
        self.positions = positions

    def block(self, lines: list[str]) -> Any:
        """The document in `lines`."""
        positions = self.positions
        max_depth = self.max_depth
        resolvers = _LOADER.yaml_implicit_resolvers
        shapes: dict[str, _Shape] = {}  # files repeat many lines: each is matched once
        null = _plain("")
        document: list[Any] = [None]
        # The innermost open block collection: its column, the container, its path and
        # whether it is a mapping. `stack` holds the enclosing ones, outermost first, down to
        # the document itself: a list of one item at column -1.
        stack: list[tuple[int, Any, tuple[Key, ...], bool]] = []
        column_now, is_map = -1, False
        container: Any = document
        base: tuple[Key, ...] = ()
        # After a `key:` or `-` that ends its line, the value is `pending`: it will be
        # `container[entry]`, at `path`, and an empty one is null. A list item's position is
        # where its value starts, or just after its `-` (on line `dash_line`) if it is null;
        # a mapping's value has no position of its own, its key has.
        pending = True
        entry: Key = 0
        path: tuple[Key, ...] = ()
        dash_line = 0
        for number, line in enumerate(lines, 1):
            shape = shapes.get(line)
            if shape is not None:
                column, starts_map, dashes, key, key_at, value, value_at = shape
            else:
                # The lines that differ from file to file are mostly a step's `name:` and a
                # `- name` in a list: names that are identifiers need no pattern to be read.
                content = line.lstrip(" ")
                column = len(line) - len(content)
                name = content[:-1]
                if content[-1:] == ":" and name.isidentifier() and len(name) <= _LONGEST_KEY:
                    starts_map, dashes, key, key_at = True, (), name, column + 1
                    value, value_at = _ABSENT, 0
                elif content[:2] == "- " and (name := content[2:]).isidentifier():
                    starts_map, dashes, key, key_at = False, (column,), None, 0
                    value = _plain(name) if name[0] in resolvers else name
                    value_at = column + 3
                else:
                    shape = shapes[line] = _shape(line)
                    column, starts_map, dashes, key, key_at, value, value_at = shape
            if column < 0:
                continue
            if pending and not (
                column > column_now or (column == column_now and is_map and not starts_map)
            ):
                container[entry] = null  # `key:` or `-` with nothing below
                if positions is not None and not is_map:
                    positions[path] = (dash_line, column_now + 2)
                pending = False
            if not pending and (column != column_now or starts_map != is_map):
                # A key in the column of a list ends it: a list may stand in the column of
                # the key that holds it (`needs:\n- a`), and nowhere else can this be right.
                while column < column_now or (column == column_now and starts_map and not is_map):
                    column_now, container, base, is_map = stack.pop()
                if column != column_now or starts_map != is_map:
                    raise _NotPlain(line)
            for dash in dashes:
                if pending:  # the dash starts the list that is the pending value
                    if len(stack) >= max_depth:
                        raise _NotPlain("nested too deeply")
                    opened: Any = []
                    container[entry] = opened
                    if positions is not None and not is_map:
                        positions[path] = (number, dash + 1)
                    stack.append((column_now, container, base, is_map))
                    column_now, container, base, is_map = dash, opened, path, False
                entry = len(container)
                container.append(None)
                path = base + (entry,)  # noqa: RUF005 (cheaper than unpacking `base`)
                dash_line = number
                pending = True
            if key is not None:
                if pending:  # the key starts the mapping that is the pending value
                    if len(stack) >= max_depth:
                        raise _NotPlain("nested too deeply")
                    opened = {}
                    container[entry] = opened
                    if positions is not None and not is_map:
                        positions[path] = (number, key_at)
                    stack.append((column_now, container, base, is_map))
                    column_now, container, base, is_map = key_at - 1, opened, path, True
                if key in container:
                    raise _NotPlain(key)  # the careful path reports a duplicate key
                entry = key
                path = base + (key,)  # noqa: RUF005 (cheaper than unpacking `base`)
                if positions is not None:
                    positions[path] = (number, key_at)
                pending = True
            if value is not _ABSENT:
                if value is _FLOW:
                    value, end = self.flow(line, value_at - 1, number, path, len(stack))
                    if not _FLOW_END.fullmatch(line, end):
                        raise _NotPlain(line)
                container[entry] = value
                if positions is not None and not is_map:
                    positions[path] = (number, value_at)
                pending = False
        if pending:
            if column_now < 0:
                raise _NotPlain("an empty document")
            container[entry] = null
            if positions is not None and not is_map:
                positions[path] = (dash_line, column_now + 2)
        return document[0]

    def flow(
        self, line: str, start: int, number: int, path: tuple[Key, ...], depth: int
    ) -> tuple[Any, int]:
        """The flow collection whose bracket is at `line[start]`, and where it ends."""
        if depth >= self.max_depth:
            raise _NotPlain("nested too deeply")
        positions = self.positions
        is_map = line[start] == "{"
        closing = "}" if is_map else "]"
        container: Any = {} if is_map else []
        after = _FLOW_NEXT.match(line, start + 1)
        if after is not None and after.group(1) == closing:
            return container, after.end()  # `[]` or `{}`
        at = start + 1
        while True:
            entry: Key = len(container)
            if is_map:
                key = _FLOW_KEY.match(line, at)
                if key is None or len(key.group()) > _LONGEST_KEY:
                    raise _NotPlain(line)
                entry = _text(key.group(1))
                if entry in container or entry == "<<":
                    raise _NotPlain(entry)
                if positions is not None:
                    positions[(*path, entry)] = (number, key.start(1) + 1)
                at = key.end()
            node = _FLOW_NODE.match(line, at)
            if node is None:
                raise _NotPlain(line)
            if node.group(1):
                value, at = self.flow(line, node.start(1), number, (*path, entry), depth + 1)
            else:
                value, at = _scalar(node.group(2)), node.end()
            if is_map:
                container[entry] = value
            else:
                if positions is not None:
                    at_item = node.start(1 if node.group(1) else 2) + 1
                    positions[(*path, entry)] = (number, at_item)
                container.append(value)
            after = _FLOW_NEXT.match(line, at)
            if after is None or after.group(1) not in (",", closing):
                raise _NotPlain(line)
            at = after.end()
            if after.group(1) == closing:
                return container, at


def _shape(line: str) -> _Shape:
    """What `line` says (see `_Shape`), or `_NotPlain` if it is not plain YAML."""
    if not line.isprintable() or (line[:3] in ("---", "...") and line[3:4] in ("", " ")):
        raise _NotPlain(line)  # characters YAML refuses or reads apart; a second document
    match = _LINE.fullmatch(line)
    if match is None:
        raise _NotPlain(line)
    indent, dashes, key, scalar, flow = match.groups()
    column = len(indent)
    if not (dashes or key):
        if scalar or flow:
            raise _NotPlain(line)  # a value on a line of its own: perhaps a continuation
        return _BLANK
    name = None
    if key:
        name = _text(key.rstrip(" "))
        if name == "<<" or len(key) > _LONGEST_KEY:
            raise _NotPlain(name)  # a merge, or a key too long for libyaml
    dash_columns = (
        tuple(column + at for at, dash in enumerate(dashes) if dash == "-") if dashes else ()
    )
    value = _FLOW if flow else _scalar(scalar) if scalar else _ABSENT
    value_at = match.start(5 if flow else 4) + 1
    return column, not dashes, dash_columns, name, column + len(dashes) + 1, value, value_at


def _scalar(token: str) -> Any:
    """The value of a scalar as written on one line, quoted or not."""
    return _text(token) if token[0] in "'\"" else _plain(token)


def _plain(scalar: str) -> Any:
    """What PyYAML's safe loader makes of an unquoted scalar: text, number, bool or null."""
    for tag, pattern in _LOADER.yaml_implicit_resolvers.get(scalar[:1], ()):
        if pattern.match(scalar):
            if tag not in _SCALAR_TAGS:
                raise _NotPlain(tag)  # a timestamp, say: the careful path keeps it as written
            return _LOADER.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, scalar))
    return scalar


def _text(token: str) -> str:
    """A key as written, or the text of a quoted scalar."""
    if token[0] == "'":
        return token[1:-1].replace("''", "'")
    if token[0] == '"':
        return _ESCAPE.sub(_unescape, token[1:-1])
    return token


def _unescape(escape: re.Match[str]) -> str:
    code = escape.group(1) or escape.group(2) or escape.group(3)
    if code is None:
        return _ESCAPED[escape.group(4)]  # an unknown escape fails, and the reading with it
    point = int(code, 16)
    if 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
        raise _NotPlain(escape.group())
    return chr(point)
