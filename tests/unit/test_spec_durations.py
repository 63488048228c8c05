"""Durations: numbers are seconds, strings carry units, anything else is refused."""

from __future__ import annotations

import pytest

from podium.spec import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("45", 45.0),
        ("200ms", 0.2),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        (" 5s ", 5.0),
    ],
)
def test_accepted_spellings(value: float | str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", " ", "5x", "-1s", "s", "1m30", "1e3s", "ten", "5 s s", -1, float("inf"), True, None, [1]],
)
def test_refused_values_name_themselves(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_duration(value)
    assert repr(value) in str(caught.value)
