"""The Jinja2 environment that evaluates `${{ }}` expressions, and nothing more permissive.

Expressions read JSON data (the run input and step outputs), so attribute access means a key
of a mapping and never a Python attribute: `input.items` is the key "items", not `dict.items`,
and `''.__class__` is simply "not a key". On top of that the environment is Jinja's immutable
sandbox (no mutation of lists or dicts, only safe callables) with size limits on `*` and `**`,
and only the filters and functions that make sense for data: the HTML-oriented ones (escape,
safe, urlize, xmlattr), the ones that reach Python attributes (attr) and the non-deterministic
one (random, which would break replaying a run) are removed.

This module imports Jinja, so `podium.spec.expressions` imports it only when an expression
actually needs Jinja; constant values and plain paths never do.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from podium.errors import ExpressionError
from podium.spec.paths import Key, describe_miss, describe_type, lookup, path_text, read

__all__ = ["ENVIRONMENT", "SCOPE_NAMES", "Parsed", "json_value", "parse", "plain_path"]

# The names an expression can read from the run; `item` and `index` only in a for_each step.
SCOPE_NAMES = frozenset({"input", "steps", "item", "index"})

# A sequence or string built with `*` may not be longer than this, an integer power may not
# have an exponent above _MAX_EXPONENT: both keep a one-line expression from eating memory.
_MAX_SIZE = 1_000_000
_MAX_EXPONENT = 1024

_REMOVED_FILTERS = ("attr", "e", "escape", "forceescape", "random", "safe", "urlize", "xmlattr")
_REMOVED_GLOBALS = ("cycler", "joiner", "lipsum", "namespace")


class AccessError(UndefinedError):
    """A missing name, key or index was used; carries what was read and with what key."""

    def __init__(self, obj: Any, key: Any, message: str) -> None:
        super().__init__(message)
        self.obj = obj
        self.key = key


class Missing(StrictUndefined):
    """The value of a missing key: `default()` and `is defined` see it, anything else fails.

    Failing with `AccessError` (instead of a plain `UndefinedError`) lets the caller say which
    path was missing what, in the same words as the fast path.
    """

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AccessError(self._undefined_obj, self._undefined_name, self._undefined_message)


# Jinja binds the operators of Undefined (`__add__`, `__iter__`, `__eq__`, ...) to the base
# class's failing method at class creation; rebind them so every use of a Missing says what
# was missing.
for _name, _value in {**vars(Undefined), **vars(StrictUndefined)}.items():
    if _value is Undefined._fail_with_undefined_error and _name != "_fail_with_undefined_error":
        setattr(Missing, _name, Missing._fail_with_undefined_error)


class ExpressionEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox where `a.b` and `a['b']` both mean "key b of mapping a"."""

    intercepted_binops = frozenset({"*", "**"})

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            return obj  # `input.a.b` with no `a` reports the missing `a`, not `b`
        try:
            return lookup(obj, argument)
        except (LookupError, TypeError):
            return self.undefined(obj=obj, name=argument)

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self.getitem(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > _MAX_SIZE
                ):
                    raise SecurityError(f"the result of * would be longer than {_MAX_SIZE}")
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > _MAX_EXPONENT
        ):
            raise SecurityError(f"an integer power may not have an exponent above {_MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


def _length(value: Any) -> int:
    return len(value)


def _keys(value: Mapping[str, Any]) -> list[str]:
    return list(value.keys())


def _values(value: Mapping[str, Any]) -> list[Any]:
    return list(value.values())


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _build() -> ExpressionEnvironment:
    env = ExpressionEnvironment(undefined=Missing, autoescape=False)
    for name in _REMOVED_FILTERS:
        del env.filters[name]
    for name in _REMOVED_GLOBALS:
        del env.globals[name]
    for name, function in (
        ("length", _length),
        ("keys", _keys),
        ("values", _values),
        ("tojson", _tojson),
    ):
        env.filters[name] = function
        env.globals[name] = function
    env.globals["null"] = None
    return env


ENVIRONMENT = _build()


@dataclass(frozen=True, slots=True)
class Parsed:
    """What an expression reads, and how to evaluate it.

    Exactly one of these describes the evaluation: `constant` holds `(value,)` when the result
    is known at compile time, `path` the keys of a plain path such as `input.order[0]` (read by
    the caller without Jinja), and otherwise `evaluate` runs the compiled Jinja expression.
    """

    names: frozenset[str]
    references: frozenset[str]
    constant: tuple[Any, ...] = ()
    path: tuple[Key, ...] | None = None
    evaluate: Callable[[Mapping[str, Any]], Any] | None = None


def parse(source: str, text: str) -> Parsed:
    """Compile the expression `source`; `text` is how messages quote it.

    Raises `ValueError` for a syntax error, an unknown name or filter, and a `steps` that is
    not followed by a step id (the validator must know which steps an expression reads).
    """
    try:
        parser = Parser(ENVIRONMENT, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError(
                f"unexpected {parser.stream.current.value!r} after the expression", 1
            )
        names, references = _analyse(expr, text)
        expr.set_environment(ENVIRONMENT)
        constant = _fold(expr)
        if constant:
            return Parsed(names, references, constant=constant)
        path = plain_path(expr)
        if path is not None and path[0] in SCOPE_NAMES:
            return Parsed(names, references, path=path)
        return Parsed(names, references, evaluate=_evaluator(expr, text))
    except TemplateSyntaxError as exc:
        raise ValueError(f"{text}: syntax error: {exc.message}") from None
    except RecursionError:
        raise ValueError(f"{text}: the expression is nested too deeply") from None


def _analyse(expr: nodes.Node, text: str) -> tuple[frozenset[str], frozenset[str]]:
    """The free names of `expr` and the step ids it reads as `steps.<id>`."""
    names: set[str] = set()
    references: set[str] = set()
    pending: list[tuple[nodes.Node, nodes.Node | None]] = [(expr, None)]
    while pending:
        node, parent = pending.pop()
        if isinstance(node, nodes.Name):
            names.add(node.name)
            if node.name == "steps":
                step = _step_id(node, parent)
                if step is None:
                    raise ValueError(
                        f"{text}: `steps` must be followed by a step id, as in steps.check.output"
                    )
                references.add(step)
        pending.extend((child, node) for child in node.iter_child_nodes())
    known = SCOPE_NAMES | ENVIRONMENT.globals.keys()
    for name in sorted(names - known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"{text}: unknown name {name!r}{hint}; an expression can read "
            f"input, steps, item and index, and call the documented functions"
        )
    return frozenset(names), frozenset(references)


def _step_id(name: nodes.Name, parent: nodes.Node | None) -> str | None:
    if isinstance(parent, nodes.Getattr) and parent.node is name:
        return parent.attr
    if (
        isinstance(parent, nodes.Getitem)
        and parent.node is name
        and isinstance(parent.arg, nodes.Const)
        and isinstance(parent.arg.value, str)
    ):
        return parent.arg.value
    return None


def plain_path(expr: nodes.Node) -> tuple[Key, ...] | None:
    """The keys of `expr` if it is a name followed by constant keys and indexes, else None."""
    keys: list[Key] = []
    while True:
        if isinstance(expr, nodes.Name):
            keys.append(expr.name)
            return tuple(reversed(keys))
        if isinstance(expr, nodes.Getattr):
            keys.append(expr.attr)
        elif isinstance(expr, nodes.Getitem) and (key := _constant_key(expr.arg)) is not None:
            keys.append(key)
        else:
            return None
        expr = expr.node


def _constant_key(node: nodes.Node) -> Key | None:
    """The key in `x['key']`, `x[2]` or `x[-1]`; None for anything computed."""
    if isinstance(node, nodes.Neg):
        inner = _constant_key(node.node)
        return -inner if isinstance(inner, int) else None
    if isinstance(node, nodes.Const) and type(node.value) in (str, int):
        key: Key = node.value
        return key
    return None


def _fold(expr: nodes.Expr) -> tuple[Any, ...]:
    """`(value,)` when `expr` needs no data (`false`, `1 + 2`, `'a' | upper`), else `()`."""
    try:
        return (json_value(expr.as_const()),)
    except Exception:
        # Not constant (nodes.Impossible), or constant but failing: it then fails at render
        # time with the run's error handling, like any other expression.
        return ()


def _evaluator(expr: nodes.Expr, text: str) -> Callable[[Mapping[str, Any]], Any]:
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    template = ENVIRONMENT.from_string(nodes.Template(body, lineno=1))
    new_context = template.new_context
    run = template.root_render_func

    def evaluate(scope: Mapping[str, Any]) -> Any:
        try:
            context = new_context(dict(scope))
            for _ in run(context):
                pass
            return json_value(context.vars["result"])
        except AccessError as exc:
            problem = _explain(expr, scope, exc)
        except SecurityError as exc:
            problem = f"not allowed: {exc}"
        except Exception as exc:
            # Anything the sandboxed expression raises (a type mismatch, a division by zero)
            # is a problem with the run's data, reported like a missing key.
            problem = str(exc) or type(exc).__name__
        raise ExpressionError(f"{text}: {problem}")

    return evaluate


def _explain(expr: nodes.Expr, scope: Mapping[str, Any], exc: AccessError) -> str:
    """The fast path's words for a missing key: find which plain path held the object."""
    if exc.obj is missing:
        return f"{exc.key!r} is not defined"
    for node in [expr, *expr.find_all((nodes.Getattr, nodes.Getitem))]:
        if isinstance(node, nodes.Getattr):
            key: Key | None = node.attr
        elif isinstance(node, nodes.Getitem):
            key = _constant_key(node.arg)
        else:
            continue
        base = plain_path(node.node)
        if key != exc.key or base is None:
            continue
        try:
            value = read(scope, base)
        except (LookupError, TypeError):
            continue
        if value is exc.obj:
            return describe_miss(path_text(base), exc.obj, exc.key)
    return describe_miss("the value", exc.obj, exc.key)


def json_value(value: Any) -> Any:
    """`value` as plain JSON data: tuples and iterators become lists, str subclasses str.

    A Jinja `Undefined` raises its error here, so it can never leak out as a result.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be strings, not {describe_type(key)}")
            result[str(key)] = json_value(item)
        return result
    if isinstance(value, Iterable):
        return [json_value(item) for item in value]
    raise TypeError(f"the result is {describe_type(value)}, which is not JSON data")
