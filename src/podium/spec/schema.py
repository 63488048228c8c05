"""The structural check of a workflow document, done by its published JSON Schema.

`workflow.schema.json` is the one description of the language's shape: editors use it to
complete and flag YAML, and the loader uses it to find typos and wrong types. jsonschema's own
messages are written for schema authors ("Additional properties are not allowed"), so each
error is translated here into a sentence naming the key, with a suggestion when a close name
exists. jsonschema is imported on first use: it is only needed when a definition is read.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from podium.errors import DefinitionError, Location
from podium.spec.paths import Key, describe_type, path_text

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

__all__ = ["IDENTIFIER", "bad_identifier", "load_schema", "schema_problems", "suggest"]

IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_-]*$"

Locate = Callable[..., Location]

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_NAMED_BY_KEY = {"steps": "step id", "agents": "agent name"}


@functools.cache
def load_schema() -> Mapping[str, Any]:
    """The workflow JSON Schema shipped with the package (also in docs/schema/)."""
    text = resources.files("podium.spec").joinpath("workflow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema())


def suggest(name: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def schema_problems(doc: Any, locate: Locate) -> list[DefinitionError]:
    """Every way `doc` breaks the workflow schema, one located error each."""
    problems: dict[str, DefinitionError] = {}
    for error in _validator().iter_errors(doc):
        for problem in _translate(error, locate):
            problems.setdefault(problem.problems[0], problem)
    return list(problems.values())


def _name(path: tuple[Key, ...]) -> str:
    return path_text(path) if path else "the workflow"


def _translate(error: ValidationError, locate: Locate) -> list[DefinitionError]:
    path = tuple(error.absolute_path)
    name = _name(path)
    kind = str(error.validator)
    expected: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if kind == "additionalProperties":
        known = schema.get("properties", {})
        return [
            DefinitionError(
                f"unknown key {key!r} in {name}{suggest(str(key), known)}", where=locate(*path, key)
            )
            for key in instance
            if key not in known
        ]
    if kind == "required":
        return [
            DefinitionError(f"{name} is missing the required key {key!r}", where=locate(*path))
            for key in expected
            if key not in instance
        ]
    if kind == "anyOf":
        return _translate_any_of(error, locate)
    if kind == "pattern" and "propertyNames" in error.absolute_schema_path:
        what = _NAMED_BY_KEY.get(str(path[-1]) if path else "", "name")
        return [DefinitionError(bad_identifier(instance, what), where=locate(*path, instance))]
    return [DefinitionError(_message(name, kind, expected, instance), where=locate(*path))]


def _message(name: str, kind: str, expected: Any, instance: Any) -> str:
    if kind == "type":
        return f"{name} must be {_types(expected)}, not {describe_type(instance)}"
    if kind == "minimum":
        return f"{name} must be at least {expected}, not {instance!r}"
    if kind in ("minLength", "minProperties"):
        return f"{name} must not be empty"
    if kind == "enum":
        hint = suggest(instance, expected) if isinstance(instance, str) else ""
        return f"{name} must be one of {', '.join(expected)}, not {instance!r}{hint}"
    if kind == "pattern" and expected == IDENTIFIER:
        return f"{name}: {bad_identifier(instance, 'name')}"
    if kind == "pattern":
        return f"{name} must be a Python callable written 'module:attribute', not {instance!r}"
    return f"{name}: {instance!r} is not valid ({kind} {expected!r})"


def bad_identifier(value: Any, what: str) -> str:
    """Why `value` cannot be a step id or agent name (they become keys, paths and log labels)."""
    return (
        f"{value!r} is not a valid {what}: use letters, digits, '_' and '-', "
        f"starting with a letter or '_'"
    )


def _types(expected: str | list[str]) -> str:
    names = [expected] if isinstance(expected, str) else expected
    return " or ".join(_TYPE_WORDS.get(n, n) for n in names)


def _translate_any_of(error: ValidationError, locate: Locate) -> list[DefinitionError]:
    """Report the branch the value was meant for, or else which kinds of value are accepted.

    A branch whose only complaint is the value's type is not the one the author meant; the
    deeper errors of a branch whose type matched (a list with a bad item, say) are.
    """
    by_branch: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    accepted: list[str] = []
    for subs in by_branch.values():
        type_errors = [s for s in subs if s.validator == "type" and not s.relative_path]
        if not type_errors:
            return [problem for sub in subs for problem in _translate(sub, locate)]
        accepted.extend(_types(cast(Any, s.validator_value)) for s in type_errors)
    path = tuple(error.absolute_path)
    return [
        DefinitionError(
            f"{_name(path)} must be {' or '.join(accepted)}, not {describe_type(error.instance)}",
            where=locate(*path),
        )
    ]
