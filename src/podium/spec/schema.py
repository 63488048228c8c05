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
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, cast

from podium.errors import DefinitionError, Location
from podium.spec.paths import Key, describe_type, path_text

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

__all__ = [
    "IDENTIFIER",
    "bad_identifier",
    "catalog_schema",
    "is_callable_path",
    "load_schema",
    "schema_problems",
    "suggest",
]

IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_-]*$"
ERROR_TYPE = "^[A-Za-z_][A-Za-z0-9_.]*$"

Locate = Callable[..., Location]
# Which document a schema describes: a workflow, or a shared agent catalog.
Kind = Literal["workflow", "catalog"]

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


def is_callable_path(text: str) -> bool:
    """Whether `text` is written as a callable's import path, `module:attribute`."""
    return _callable_path().fullmatch(text) is not None


@functools.cache
def _callable_path() -> re.Pattern[str]:
    return re.compile(load_schema()["$defs"]["callable"]["pattern"])


@functools.cache
def load_schema() -> Mapping[str, Any]:
    """The workflow JSON Schema shipped with the package (also in docs/schema/)."""
    text = resources.files("podium.spec").joinpath("workflow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def catalog_schema() -> Mapping[str, Any]:
    """The schema of an agent catalog: `agents`, each exactly a workflow's agent, and `models`.

    It is made from the workflow schema (its `agents` property and its definitions), so the
    two cannot drift apart. An inline sub-workflow refers to the workflow schema's root
    (`#`), which here is the catalog: its definition is the workflow schema's body instead.
    """
    workflow = load_schema()
    body = {key: value for key, value in workflow.items() if key not in _ROOT_ONLY}
    return {
        "$schema": workflow["$schema"],
        "title": "podium agent catalog",
        "description": "Agents shared by workflows (--agents / PODIUM_AGENTS). See docs/spec.md.",
        "type": "object",
        "additionalProperties": False,
        "required": ["agents"],
        "properties": {
            "agents": workflow["properties"]["agents"],
            "models": workflow["properties"]["models"],
        },
        "$defs": {**workflow["$defs"], "workflow": body},
    }


_ROOT_ONLY = frozenset({"$schema", "$id", "$defs", "title", "description"})


_SCHEMAS: dict[str, Callable[[], Mapping[str, Any]]] = {
    "workflow": load_schema,
    "catalog": catalog_schema,
}


@functools.cache
def _validator(kind: Kind = "workflow") -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_SCHEMAS[kind]())


def suggest(name: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def schema_problems(doc: Any, locate: Locate, kind: Kind = "workflow") -> list[DefinitionError]:
    """Every way `doc` breaks the workflow (or catalog) schema, one located error each."""
    if _quick_valid(doc, kind):
        return []
    problems: dict[str, DefinitionError] = {}
    for error in _validator(kind).iter_errors(doc):
        for problem in _translate(error, locate, f"the {kind}"):
            problems.setdefault(problem.problems[0], problem)
    return list(problems.values())


def _quick_valid(doc: Any, kind: Kind = "workflow") -> bool:
    """Whether `doc` surely meets the schema; False when in doubt (jsonschema then decides)."""
    try:
        return _quick_check(kind)(doc)
    except Exception:  # an odd value (a key that is not text, say): let jsonschema judge
        return False


def _name(path: tuple[Key, ...], root: str) -> str:
    return path_text(path) if path else root


def _translate(error: ValidationError, locate: Locate, root: str) -> list[DefinitionError]:
    path = tuple(error.absolute_path)
    name = _name(path, root)
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
        return _translate_any_of(error, locate, root)
    if kind == "pattern" and "propertyNames" in error.absolute_schema_path:
        what = _NAMED_BY_KEY.get(str(path[-1]) if path else "", "name")
        return [DefinitionError(bad_identifier(instance, what), where=locate(*path, instance))]
    return [DefinitionError(_message(name, kind, expected, instance), where=locate(*path))]


def _message(name: str, kind: str, expected: Any, instance: Any) -> str:
    if kind == "type":
        return f"{name} must be {_types(expected)}, not {describe_type(instance)}"
    if kind == "minimum":
        return f"{name} must be at least {expected}, not {instance!r}"
    if kind == "maximum":
        return f"{name} must be at most {expected}, not {instance!r}"
    if kind == "exclusiveMinimum":
        return f"{name} must be more than {expected}, not {instance!r}"
    if kind in ("minLength", "minProperties"):
        return f"{name} must not be empty"
    if kind == "enum":
        hint = suggest(instance, expected) if isinstance(instance, str) else ""
        return f"{name} must be one of {', '.join(expected)}, not {instance!r}{hint}"
    if kind == "pattern" and expected == IDENTIFIER:
        return f"{name}: {bad_identifier(instance, 'name')}"
    if kind == "pattern" and expected == ERROR_TYPE:
        return f"{name} must be an error type name such as TimeoutError, not {instance!r}"
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


def _translate_any_of(error: ValidationError, locate: Locate, root: str) -> list[DefinitionError]:
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
            return [problem for sub in subs for problem in _translate(sub, locate, root)]
        accepted.extend(_types(cast(Any, s.validator_value)) for s in type_errors)
    path = tuple(error.absolute_path)
    found = describe_type(error.instance)
    return [
        DefinitionError(
            f"{_name(path, root)} must be {' or '.join(accepted)}, not {found}",
            where=locate(*path),
        )
    ]


# The quick check: the schema compiled into plain Python predicates that answer only "valid
# or not". A valid document (the usual case) needs nothing more; otherwise jsonschema runs
# and its errors become the messages. Each predicate is at least as strict as jsonschema
# (an integer must be an int, say, where jsonschema also takes 2.0), and a keyword it does
# not know makes its schema fail, so a doubtful document always gets the thorough check.

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples"}
)
_QUICK_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


@functools.cache
def _quick_check(kind: Kind) -> Check:
    root = _SCHEMAS[kind]()
    compiled: dict[str, Check] = {}
    compiling: set[str] = set()

    def ref(target: str) -> Check:
        if target == "#":  # the root itself (an inline sub-workflow): looked up when used
            return lambda value: compiled["#"](value)
        name = target.removeprefix("#/$defs/")
        definitions = root.get("$defs", {})
        if name == target or name not in definitions:
            return _never
        if name in compiled:
            return compiled[name]
        if name in compiling:  # a definition that contains itself: look it up when used
            return lambda value: compiled[name](value)
        compiling.add(name)
        compiled[name] = compile_schema(definitions[name])
        return compiled[name]

    def compile_schema(schema: Any) -> Check:
        if schema is True or schema == {}:
            return _always
        if not isinstance(schema, Mapping):
            return _never
        checks: list[Check] = []
        rest = set(schema) - _ANNOTATIONS
        if "$ref" in rest:
            rest.discard("$ref")
            checks.append(ref(str(schema["$ref"])))
        if schema.get("type") == "string" and rest <= {"type", "pattern", "minLength"}:
            return _string_check(schema)  # the commonest kind, in one step
        if "type" in rest:
            rest.discard("type")
            names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not all(n in _QUICK_TYPES for n in names):
                return _never
            kinds = tuple(_QUICK_TYPES[n] for n in names)
            checks.append(kinds[0] if len(kinds) == 1 else _any_of(kinds))
        object_check = _object_check(schema, rest, compile_schema)
        if object_check is not None:
            checks.append(object_check)
        if "items" in rest:
            rest.discard("items")
            checks.append(_items_check(compile_schema(schema["items"])))
        if "pattern" in rest:
            rest.discard("pattern")
            search = re.compile(schema["pattern"]).search
            checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
        if "minLength" in rest:
            rest.discard("minLength")
            least = int(schema["minLength"])
            checks.append(lambda v: not isinstance(v, str) or len(v) >= least)
        if "minimum" in rest:
            rest.discard("minimum")
            low = schema["minimum"]
            checks.append(
                lambda v: not isinstance(v, int | float) or isinstance(v, bool) or v >= low
            )
        if "maximum" in rest:
            rest.discard("maximum")
            high = schema["maximum"]
            checks.append(
                lambda v: not isinstance(v, int | float) or isinstance(v, bool) or v <= high
            )
        if "enum" in rest:
            rest.discard("enum")
            if not all(isinstance(e, str) for e in schema["enum"]):
                return _never
            allowed = frozenset(schema["enum"])
            checks.append(lambda v: isinstance(v, str) and v in allowed)
        if "anyOf" in rest:
            rest.discard("anyOf")
            checks.append(_any_of(tuple(compile_schema(s) for s in schema["anyOf"])))
        if rest:
            return _never  # a keyword this check does not know: let jsonschema judge
        if not checks:
            return _always
        return checks[0] if len(checks) == 1 else _all_of(tuple(checks))

    compiled["#"] = compile_schema(root)
    return compiled["#"]


# The loops below are faster than all() or any() over a generator, and run for every value.


def _all_of(checks: tuple[Check, ...]) -> Check:
    def check(value: Any) -> bool:
        for each in checks:  # noqa: SIM110
            if not each(value):
                return False
        return True

    return check


def _any_of(checks: tuple[Check, ...]) -> Check:
    def check(value: Any) -> bool:
        for each in checks:  # noqa: SIM110
            if each(value):
                return True
        return False

    return check


def _items_check(item: Check) -> Check:
    def check(value: Any) -> bool:
        if isinstance(value, list):
            for each in value:
                if not item(each):
                    return False
        return True

    return check


def _string_check(schema: Mapping[str, Any]) -> Check:
    pattern = schema.get("pattern")
    search = None if pattern is None else re.compile(pattern).search
    least = int(schema.get("minLength", 0))

    def check(value: Any) -> bool:
        return (
            isinstance(value, str)
            and len(value) >= least
            and (search is None or search(value) is not None)
        )

    return check


def _object_check(
    schema: Mapping[str, Any], rest: set[str], compile_schema: Callable[[Any], Check]
) -> Check | None:
    """The check of a mapping's keys (properties, additionalProperties...), if it has any."""
    words = ("properties", "additionalProperties", "required", "minProperties", "propertyNames")
    if rest.isdisjoint(words):
        return None
    rest.difference_update(words)
    properties = {k: compile_schema(s) for k, s in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    other = None if extra is True else compile_schema(extra)
    required = tuple(schema.get("required", ()))
    least = int(schema.get("minProperties", 0))
    names = schema.get("propertyNames")
    name_check = None if names is None else compile_schema(names)

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        if len(value) < least:
            return False
        for key in required:
            if key not in value:
                return False
        for key, item in value.items():
            if name_check is not None and not name_check(key):
                return False
            known = properties.get(key)
            if known is not None:
                if not known(item):
                    return False
            elif other is not None and not other(item):
                return False
        return True

    return check
