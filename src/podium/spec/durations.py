"""Durations as users write them (`200ms`, `1.5s`, `1m30s`), turned into seconds.

Every timing field of the language (`timeout`, `retry.backoff`, `retry.max_backoff`) goes
through `parse_duration`, so all of them accept the same spellings and reject the same
mistakes. It raises `ValueError` rather than `DefinitionError` because it does not know which
field or file it is reading: the loader adds that, and a command-line flag can turn the same
message into an `InputError`.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*")
_HINT = "write seconds as a number, or a duration such as 200ms, 1.5s, 10m, 2h, 1d or 1m30s"


def parse_duration(value: object) -> float:
    """Seconds in `value`: a number of seconds, or a string like `200ms`, `2h` or `1m30s`.

    Raises `ValueError` naming the value for anything negative, infinite or unreadable.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a duration: {_HINT}")
    if isinstance(value, str):
        return _parse_text(value)
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration: it must be a finite number >= 0")
    return seconds


def _parse_text(text: str) -> float:
    bare = _NUMBER.fullmatch(text)
    if bare is not None:
        return parse_duration(float(bare.group(1)))
    seconds = 0.0
    position = 0
    while position < len(text):
        part = _PART.match(text, position)
        if part is None:
            if text[position:].strip():
                raise ValueError(f"{text!r} is not a duration: {_HINT}")
            break
        seconds += float(part.group(1)) * _UNITS[part.group(2)]
        position = part.end()
    if position == 0:
        raise ValueError(f"{text!r} is not a duration: {_HINT}")
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration: it is too long")
    return seconds
