"""`${{ }}` expressions: compiled once, rendered for every unit of work.

A value in a workflow (`with`, `output`, `if`, `for_each`) may hold expressions. It is
compiled into a `Template` when the workflow is validated, and the runtime renders that
template each time a step is about to run. Rendering is on the runtime's hot path, hence the
three tiers: a value without expressions is returned as is, an expression that is a plain path
(`item`, `input.order.contacts`, `steps.check.output[0]`) is read with direct lookups, and only
anything richer goes through Jinja's sandbox (see `podium.spec.sandbox`), which is imported
the first time such an expression is compiled. Every distinct expression text is parsed once
per process.

Evaluation never uses `eval`, and a result is always JSON-like: a missing key is an
`ExpressionError` that names the expression and the path, never a silent `Undefined`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from podium.errors import DefinitionError, ExpressionError, Location
from podium.spec.paths import Key, explain_miss, lookup

__all__ = [
    "Template",
    "compile_condition",
    "compile_template",
    "truthy",
]

# The names that exist only inside a for_each step.
ITEM_NAMES = frozenset({"item", "index"})

_OPEN = "${{"
_CLOSE = "}}"

Scope = Mapping[str, Any]
_Render = Callable[[Scope], Any]
Where = Location | Callable[[tuple[Key, ...]], Location]


class Template:
    """A compiled value tree; `render(scope)` gives the value with its expressions evaluated.

    `is_constant` says there is no expression inside (render returns the value itself),
    `references` lists the step ids read through `steps.<id>`, `state_keys` the state keys
    read through `state.<key>`, and `names` the names of the scope read (`input`, `item`,
    `output`...), so the validator and the scheduler need not look inside.
    """

    __slots__ = ("_render", "_value", "is_constant", "names", "references", "state_keys")

    def __init__(
        self,
        value: Any,
        render: _Render | None,
        *,
        references: frozenset[str] = frozenset(),
        state_keys: frozenset[str] = frozenset(),
        names: frozenset[str] = frozenset(),
    ) -> None:
        self._value = value
        self._render = render
        self.is_constant = render is None
        self.references = references
        self.state_keys = state_keys
        self.names = names

    @property
    def uses_item(self) -> bool:
        """Whether `item` or `index` is read: they exist only in a for_each step."""
        return not ITEM_NAMES.isdisjoint(self.names)

    def render(self, scope: Scope) -> Any:
        """The value for `scope`; raises `ExpressionError` naming the expression that failed."""
        if self._render is None:
            return self._value
        return self._render(scope)

    def __repr__(self) -> str:
        return f"Template({self._value!r})"


def truthy(value: Any) -> bool:
    """Whether an `if` passes: Python truth, so `0`, `""`, `[]`, `{}` and null are false."""
    return bool(value)


def compile_template(value: Any, *, where: Where) -> Template:
    """Compile a JSON-like value whose strings may hold `${{ }}` expressions.

    `where` is the location of the value, or a function from a path inside the value to a
    location so that each bad expression is pointed at precisely. Raises `DefinitionError`
    listing every bad expression in the value.
    """
    builder = _Builder(where)
    render, folded = builder.node(value, ())
    if builder.errors:
        raise DefinitionError.collect(builder.errors)
    return Template(
        folded,
        render,
        references=frozenset(builder.references),
        state_keys=frozenset(builder.state_keys),
        names=frozenset(builder.names),
    )


def compile_condition(text: str | bool, *, where: Where) -> Template:
    """Compile an `if` or a `for_each`: `"${{ expr }}"`, a bare `"expr"`, or a boolean.

    Text around the expression is refused: `"${{ a }} and ${{ b }}"` would be a non-empty
    string, always true, which is never what the author meant.
    """
    if isinstance(text, bool):
        return Template(text, None)
    try:
        parts = _split(text)
    except ValueError as exc:
        raise DefinitionError(str(exc), where=_place(where, ())) from None
    expressions = [part for part in parts if isinstance(part, _Source)]
    if not expressions:
        return compile_template(f"{_OPEN} {text} {_CLOSE}", where=where)
    if len(expressions) > 1 or any(p.strip() for p in parts if not isinstance(p, _Source)):
        raise DefinitionError(
            f"{text!r}: a condition must be one expression, `${{{{ expr }}}}` or plain `expr`",
            where=_place(where, ()),
        )
    return compile_template(text.strip(), where=where)


def _place(where: Where, path: tuple[Key, ...]) -> Location:
    return where(path) if callable(where) else where


class _Source(str):
    """The text between `${{` and `}}`, as opposed to literal text around it."""

    __slots__ = ()


def _split(text: str) -> list[str]:
    """`text` cut into literal strings and `_Source` expressions.

    Quotes and braces inside an expression are tracked so that `}}` in a string literal or a
    nested mapping does not end it.
    """
    parts: list[str] = []
    position = 0
    while True:
        start = text.find(_OPEN, position)
        if start < 0:
            break
        if start > position:
            parts.append(text[position:start])
        end = _expression_end(text, start + len(_OPEN))
        parts.append(_Source(text[start + len(_OPEN) : end]))
        position = end + len(_CLOSE)
    if position < len(text):
        parts.append(text[position:])
    return parts


def _expression_end(text: str, position: int) -> int:
    depth = 0
    quote = ""
    while position < len(text):
        char = text[position]
        if quote:
            if char == "\\":
                position += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0 and text.startswith(_CLOSE, position):
                return position
            depth = max(depth - 1, 0)
        position += 1
    raise ValueError(f"{text!r}: `{_OPEN}` is not closed by `{_CLOSE}`")


@dataclass(frozen=True, slots=True)
class _Expression:
    """One compiled `${{ }}`; `evaluate` is set when the result is not known in advance."""

    evaluate: _Render | None
    value: Any
    references: frozenset[str]
    state_keys: frozenset[str]
    names: frozenset[str]


class _Builder:
    """Walks a value, compiling its expressions and collecting what they read and what's wrong.

    Each `node` call returns `(render, value)`: `render` is None when the part does not depend
    on the scope, and `value` is then what it renders to (expressions on constants, such as
    `${{ 1 + 2 }}` or `${{ false }}`, are folded at compile time).
    """

    def __init__(self, where: Where) -> None:
        self.where = where
        self.errors: list[DefinitionError] = []
        self.references: set[str] = set()
        self.state_keys: set[str] = set()
        self.names: set[str] = set()

    def node(self, value: Any, path: tuple[Key, ...]) -> tuple[_Render | None, Any]:
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, Mapping):
            return self.mapping(value, path)
        if isinstance(value, list | tuple):
            return self.sequence(value, path)
        return None, value

    def mapping(
        self, value: Mapping[Any, Any], path: tuple[Key, ...]
    ) -> tuple[_Render | None, Any]:
        constant: dict[Any, Any] = {}
        dynamic: list[tuple[Any, _Render]] = []
        for key, item in value.items():
            render, constant[key] = self.node(item, (*path, key))
            if render is not None:
                dynamic.append((key, render))
        if not dynamic:
            return None, constant

        def render_mapping(scope: Scope) -> dict[Any, Any]:
            result = constant.copy()
            for key, render in dynamic:
                result[key] = render(scope)
            return result

        return render_mapping, constant

    def sequence(
        self, value: list[Any] | tuple[Any, ...], path: tuple[Key, ...]
    ) -> tuple[_Render | None, Any]:
        constant: list[Any] = []
        dynamic: list[tuple[int, _Render]] = []
        for index, item in enumerate(value):
            render, folded = self.node(item, (*path, index))
            constant.append(folded)
            if render is not None:
                dynamic.append((index, render))
        if not dynamic:
            return None, constant

        def render_sequence(scope: Scope) -> list[Any]:
            result = constant.copy()
            for index, render in dynamic:
                result[index] = render(scope)
            return result

        return render_sequence, constant

    def text(self, value: str, path: tuple[Key, ...]) -> tuple[_Render | None, Any]:
        if _OPEN not in value:
            return None, value
        try:
            parts = [
                self.expression(part) if isinstance(part, _Source) else part
                for part in _split(value)
            ]
        except ValueError as exc:
            self.errors.append(DefinitionError(str(exc), where=_place(self.where, path)))
            return None, value
        meaningful = [p for p in parts if isinstance(p, _Expression) or p.strip()]
        if len(meaningful) == 1 and isinstance(meaningful[0], _Expression):
            return meaningful[0].evaluate, meaningful[0].value
        return _interpolation(parts)

    def expression(self, source: str) -> _Expression:
        compiled = _compile_expression(source)
        self.references |= compiled.references
        self.state_keys |= compiled.state_keys
        self.names |= compiled.names
        return compiled


def _interpolation(parts: list[str | _Expression]) -> tuple[_Render | None, Any]:
    """Text with expressions inside: each result is written with `_as_text`, then joined."""
    pieces: list[str | _Render] = []
    for part in parts:
        piece: str | _Render
        if isinstance(part, str):
            piece = part
        elif part.evaluate is None:
            piece = _as_text(part.value)
        else:
            piece = part.evaluate
        if isinstance(piece, str) and pieces and isinstance(pieces[-1], str):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    if all(isinstance(piece, str) for piece in pieces):
        return None, "".join(p for p in pieces if isinstance(p, str))

    def render_text(scope: Scope) -> str:
        return "".join(p if isinstance(p, str) else _as_text(p(scope)) for p in pieces)

    return render_text, None


def _as_text(value: Any) -> str:
    """How a value is written inside text: lists and mappings as JSON, the rest with str()."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@functools.lru_cache(maxsize=4096)
def _compile_expression(source: str) -> _Expression:
    """Parse and analyse one expression; raises `ValueError` with a message for the user."""
    source = source.strip()
    # Messages name the expression on one line, whatever line breaks it was written with.
    text = f"{_OPEN} {' '.join(source.split())} {_CLOSE}"
    if not source:
        raise ValueError(f"{text}: the expression is empty")
    from podium.spec.sandbox import SCOPE_NAMES, parse

    parsed = parse(source, text)
    names = parsed.names & SCOPE_NAMES
    if parsed.constant:
        return _Expression(None, parsed.constant[0], parsed.references, parsed.state_keys, names)
    evaluate = parsed.evaluate if parsed.path is None else _path_evaluator(text, parsed.path)
    return _Expression(evaluate, None, parsed.references, parsed.state_keys, names)


def _path_evaluator(text: str, path: tuple[Key, ...]) -> _Render:
    """Direct lookups for a plain path, with the same results and errors as Jinja's route."""
    root, keys = str(path[0]), path[1:]

    def evaluate(scope: Scope) -> Any:
        try:
            value = scope[root]
            for key in keys:
                value = lookup(value, key)
        except (LookupError, TypeError):
            raise ExpressionError(f"{text}: {explain_miss(scope, path)}") from None
        return value

    def evaluate_name(scope: Scope) -> Any:
        try:
            return scope[root]
        except KeyError:
            raise ExpressionError(f"{text}: {explain_miss(scope, path)}") from None

    return evaluate if keys else evaluate_name
