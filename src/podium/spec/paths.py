"""Reading JSON data along a path (`steps.check.output[0]`), and saying what went wrong.

Expressions that are plain paths are evaluated here directly, without Jinja, because the
runtime renders them for every unit of work; expressions that need Jinja look keys up through
the same `lookup` and report misses with the same `describe_miss`, so both routes agree on
every value and every error message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "Key",
    "describe_miss",
    "describe_type",
    "explain_miss",
    "lookup",
    "path_text",
    "read",
]

# One step of a path: a mapping key (`.name` or `['name']`) or a list index (`[0]`).
Key = str | int

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWN_KEYS = 8


def lookup(obj: Any, key: Any) -> Any:
    """`obj[key]` with JSON semantics: keys of mappings, indexes of lists and strings only.

    Raises `LookupError` (or `TypeError` for an unhashable key) when there is no such entry;
    never reaches a Python attribute.
    """
    if isinstance(obj, Mapping):
        return obj[key]
    if isinstance(obj, list | tuple | str) and isinstance(key, int | slice):
        return obj[key]
    raise LookupError(key)


def path_text(path: Sequence[Key]) -> str:
    """A path as a user writes it: `steps.check.output[0]['odd key']`."""
    parts = [str(path[0])]
    for key in path[1:]:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif _IDENTIFIER.fullmatch(key):
            parts.append(f".{key}")
        else:
            parts.append(f"[{key!r}]")
    return "".join(parts)


def describe_type(value: Any) -> str:
    """The JSON kind of `value` with its article, for messages: "a list", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def describe_miss(base: str, obj: Any, key: Any) -> str:
    """Why `key` could not be read from `obj`, the value found at `base`."""
    if isinstance(obj, Mapping):
        keys = [str(k) for k in obj]
        if not keys:
            return f"{key!r} is not a key of {base} (it is empty)"
        shown = ", ".join(keys[:_SHOWN_KEYS]) + (", ..." if len(keys) > _SHOWN_KEYS else "")
        return f"{key!r} is not a key of {base} (its keys: {shown})"
    if isinstance(obj, list | tuple | str) and isinstance(key, int):
        return f"index {key} is out of range: {base} has {len(obj)} items"
    return f"{base} is {describe_type(obj)}, which has no key {key!r}"


def read(scope: Mapping[str, Any], path: Sequence[Key]) -> Any:
    """The value at `path` in `scope`; raises `LookupError` or `TypeError` if it is missing."""
    value = scope[str(path[0])]
    for key in path[1:]:
        value = lookup(value, key)
    return value


def explain_miss(scope: Mapping[str, Any], path: Sequence[Key]) -> str:
    """Why `path` cannot be read in `scope`: the first name, key or index that is missing."""
    root = str(path[0])
    if root not in scope:
        return f"{root!r} is not defined"
    value = scope[root]
    for depth, key in enumerate(path[1:], start=1):
        try:
            value = lookup(value, key)
        except (LookupError, TypeError):
            return describe_miss(path_text(path[:depth]), value, key)
    return f"{path_text(path)} can be read"
