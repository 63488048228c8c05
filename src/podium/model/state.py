"""The run's shared state: keys, their reducers, and the fold of the writes to them.

A write does not set a key; it is combined with the key's value by the key's reducer.
Writes are folded in their `order` (the writing unit's place in the plan: a topological
order, so a step's writes follow those of every step it needs; iterations and for_each
items in sequence), never in the order they arrived. Two runs of the same workflow that
write the same values therefore end with the same state, whichever unit finished first;
a write that arrives "late" is put in its place and the key is folded again.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podium.model.workflow import Reducer

ReduceFn = Callable[[Any, Any], Any]


def _replace(value: Any, written: Any) -> Any:
    return written


def _append(value: Any, written: Any) -> Any:
    return [*(value or ()), written]


def _extend(value: Any, written: Any) -> Any:
    if not isinstance(written, list):
        raise TypeError(f"extend needs a list, got {type(written).__name__}")
    return [*(value or ()), *written]


def _merge(value: Any, written: Any) -> Any:
    if not isinstance(written, Mapping):
        raise TypeError(f"merge needs a mapping, got {type(written).__name__}")
    return {**(value or {}), **written}


def _number(written: Any, reducer: str) -> float | int:
    if isinstance(written, bool) or not isinstance(written, int | float):
        raise TypeError(f"{reducer} needs a number, got {type(written).__name__}")
    number: float | int = written
    return number


def _sum(value: Any, written: Any) -> Any:
    return (value or 0) + _number(written, "sum")


def _max(value: Any, written: Any) -> Any:
    number = _number(written, "max")
    return number if value is None else max(value, number)


def _min(value: Any, written: Any) -> Any:
    number = _number(written, "min")
    return number if value is None else min(value, number)


BUILTIN_REDUCERS: Mapping[Reducer, ReduceFn] = {
    "replace": _replace,
    "append": _append,
    "extend": _extend,
    "merge": _merge,
    "sum": _sum,
    "max": _max,
    "min": _min,
}

# Reducers whose result does not depend on the order of the writes: their keys may be
# written by steps that run at the same time without any ordering argument at all.
COMMUTATIVE: frozenset[str] = frozenset({"sum", "max", "min"})

Order = tuple[int, ...]


def initial_value(reducer: Reducer | str, initial: Any) -> Any:
    """A key's value before any write: `initial`, else what the reducer starts from."""
    if initial is not None:
        return initial
    starts: dict[str, Any] = {"append": [], "extend": [], "merge": {}}
    return starts.get(reducer)


@dataclass(slots=True)
class _Key:
    """One key's fold: its base value and the writes since, in order."""

    base: Any
    value: Any
    version: int = 0
    writes: list[tuple[Order, int, Any]] = field(default_factory=lambda: [])


class StateFold:
    """The values of a run's state keys, folded from their writes.

    `reduce` gives each key's reducer. `write` returns the key's new value; it raises the
    reducer's `TypeError` (a write of the wrong kind) without changing anything.
    """

    def __init__(self, initial: Mapping[str, Any], reduce: Mapping[str, ReduceFn]) -> None:
        self._reduce = reduce
        self._keys = {name: _Key(base=value, value=value) for name, value in initial.items()}
        self.values: dict[str, Any] = dict(initial)  # the `state` scope of expressions

    def version(self, key: str) -> int:
        return self._keys[key].version

    def write(self, key: str, order: Order, written: Any) -> Any:
        """Fold `written` into `key` at `order`; return the new value."""
        fold = self._keys[key]
        reduce = self._reduce[key]
        entry = (order, fold.version, written)  # the version breaks ties: no two are equal
        if not fold.writes or fold.writes[-1] <= entry:
            value = reduce(fold.value, written)
            fold.writes.append(entry)
        else:  # it belongs before writes already folded: fold the key again, in order
            writes = [*fold.writes]
            bisect.insort(writes, entry)
            value = fold.base
            for _, _, each in writes:
                value = reduce(value, each)
            fold.writes = writes
        fold.value = value
        fold.version += 1
        self.values[key] = value
        return value

    def set(self, key: str, value: Any) -> None:
        """Set `key` outright, whatever its reducer (a fork's `--set`); later writes fold on."""
        fold = self._keys[key]
        fold.base = fold.value = value
        fold.writes = []
        fold.version += 1
        self.values[key] = value
