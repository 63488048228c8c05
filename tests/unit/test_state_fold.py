"""Reducers, and the fold of writes: the same writes give the same state in any order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podium.model.state import BUILTIN_REDUCERS, StateFold, initial_value


def fold(reducer: str, writes: Sequence[tuple[tuple[int, ...], Any]], initial: Any = None) -> Any:
    state = StateFold(
        {"k": initial_value(reducer, initial)},
        {"k": BUILTIN_REDUCERS[reducer]},  # type: ignore[index]
    )
    for order, value in writes:
        state.write("k", order, value)
    return state.values["k"]


@pytest.mark.parametrize(
    ("reducer", "writes", "expected"),
    [
        ("replace", [1, 2, 3], 3),
        ("append", [1, [2], 3], [1, [2], 3]),
        ("extend", [[1], [2, 3]], [1, 2, 3]),
        ("merge", [{"a": 1}, {"b": 2}, {"a": 3}], {"a": 3, "b": 2}),
        ("sum", [1, 2.5, 3], 6.5),
        ("max", [3, 7, 5], 7),
        ("min", [3, 7, 5], 3),
    ],
)
def test_each_reducer(reducer: str, writes: list[Any], expected: Any) -> None:
    assert fold(reducer, [((i,), w) for i, w in enumerate(writes)]) == expected


@pytest.mark.parametrize(
    ("reducer", "written", "message"),
    [
        ("extend", 1, "extend needs a list, got int"),
        ("merge", [1], "merge needs a mapping, got list"),
        ("sum", "3", "sum needs a number, got str"),
        ("max", True, "max needs a number, got bool"),
    ],
)
def test_a_write_of_the_wrong_kind_is_refused_and_changes_nothing(
    reducer: str, written: Any, message: str
) -> None:
    state = StateFold({"k": initial_value(reducer, None)}, {"k": BUILTIN_REDUCERS[reducer]})  # type: ignore[index]
    before = state.values["k"]
    with pytest.raises(TypeError, match=message):
        state.write("k", (0,), written)
    assert state.values["k"] == before
    assert state.version("k") == 0


@given(
    reducer=st.sampled_from(["sum", "max", "min"]),
    values=st.lists(st.integers(-1000, 1000), min_size=1, max_size=30),
    data=st.data(),
)
def test_commutative_reducers_give_the_same_state_in_any_completion_order(
    reducer: str, values: list[int], data: st.DataObject
) -> None:
    writes = [((i,), v) for i, v in enumerate(values)]
    shuffled = data.draw(st.permutations(writes))
    assert fold(reducer, shuffled) == fold(reducer, writes)


@given(
    reducer=st.sampled_from(["append", "extend", "merge", "replace"]),
    values=st.lists(st.integers(0, 9), min_size=1, max_size=20),
    data=st.data(),
)
def test_order_sensitive_reducers_fold_by_plan_order_not_arrival(
    reducer: str, values: list[int], data: st.DataObject
) -> None:
    def written(v: int) -> Any:
        return {"extend": [v], "merge": {str(v % 3): v}}.get(reducer, v)

    writes = [((i, 0), written(v)) for i, v in enumerate(values)]
    arrival = data.draw(st.permutations(writes))
    assert fold(reducer, arrival) == fold(reducer, writes)


def test_a_set_takes_the_value_outright_and_later_writes_fold_onto_it() -> None:
    state = StateFold({"k": []}, {"k": BUILTIN_REDUCERS["append"]})
    state.write("k", (1,), "a")
    state.set("k", ["forked"])
    state.write("k", (0,), "b")  # an earlier place in the plan, but after the set
    assert state.values["k"] == ["forked", "b"]
    assert state.version("k") == 3
