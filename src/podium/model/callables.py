"""A Python callable named by its import path, `package.module:attribute`: both directions.

A definition names its callables by path (`uses`, a model's `tools`, a state `reducer`), and
the stored definition of a run writes the callables of a workflow built in code the same way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from podium.errors import DefinitionError, Location

# A Python callable or its import path, "package.module:attribute".
CallableRef = str | Callable[..., Any]


def callable_name(ref: CallableRef | None) -> str:
    """The import path of a callable reference (`module:qualname`), for display and storage."""
    if ref is None or isinstance(ref, str):
        return ref or ""
    module = getattr(ref, "__module__", "?")
    qualname = getattr(ref, "__qualname__", getattr(ref, "__name__", repr(ref)))
    return f"{module}:{qualname}"


def import_callable(
    path: str, *, search: Sequence[str], where: Location | Callable[[], Location] | None = None
) -> Callable[..., Any]:
    """Resolve `package.module:attribute` (attribute may be dotted), searching `search` first.

    Raises `DefinitionError` at `where` (if given) naming what could not be found. `where` may
    be a function that finds the location: it is called only then.
    """
    try:
        return _imported(path, search)
    except _Missing as missing:
        at = where() if callable(where) else where
        raise DefinitionError(str(missing), where=at) from None


class _Missing(Exception):
    """What `_imported` could not find, and why."""


def _imported(path: str, search: Sequence[str]) -> Callable[..., Any]:
    module_name, colon, attribute = path.partition(":")
    if not colon or not module_name or not attribute:
        raise _Missing(f"{path!r} is not a callable path; write it as 'package.module:function'")
    for folder in reversed(search):
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _Missing(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself raised while importing
        raise _Missing(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise _Missing(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise _Missing(f"{path!r} is not callable")
    fn: Callable[..., Any] = target
    return fn
