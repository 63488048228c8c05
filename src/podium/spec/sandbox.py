"""The Jinja2 environment that evaluates `${{ }}` expressions, and nothing more permissive.

Expressions read JSON data (the run input and step outputs), so attribute access means a key
of a mapping and never a Python attribute: `input.items` is the key "items", not `dict.items`,
and `''.__class__` is simply "not a key". On top of that the environment is Jinja's immutable
sandbox (no mutation of lists or dicts, only safe callables) and only the filters and functions
that make sense for data: the HTML-oriented ones (escape, safe, urlize, xmlattr), the ones that
reach Python attributes (attr) and the non-deterministic one (random, which would break
replaying a run) are removed.

Rendering runs synchronously on the event loop, where no step timeout can interrupt it, so
every operator and filter that can build a value much larger than its operands (`*`, `**`,
`center`, `indent`, `format`, `replace`, `join`, `wordwrap`, `batch`, `slice`, `sum`) checks
the size of its result *before* building it, and one evaluation may build only so much in all.
`%` on text is refused: it renders the Python repr of data and its widths are unbounded.

This module imports Jinja, so `podium.spec.expressions` imports it only when an expression
actually needs Jinja; constant values and plain paths never do.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

from jinja2 import (
    StrictUndefined,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
    pass_environment,
    pass_eval_context,
)
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError
from jinja2.filters import (
    do_batch,
    do_center,
    do_indent,
    do_replace,
    do_wordwrap,
    make_attrgetter,
    sync_do_slice,
    sync_do_sum,
)
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from podium.errors import ExpressionError
from podium.spec.paths import Key, describe_miss, describe_type, lookup, path_text, read

__all__ = ["ENVIRONMENT", "SCOPE_NAMES", "Parsed", "json_value", "parse", "plain_path"]

# The names an expression can read from the run. `item` and `index` exist only in a
# for_each step, `output` in `writes` and `repeat.until`, `loop` inside a repeat.
SCOPE_NAMES = frozenset({"input", "steps", "state", "item", "index", "output", "loop"})

# Limits that keep a one-line expression from eating memory or blocking the event loop. A
# string, list or mapping built by an operator or filter may not hold more than _MAX_SIZE
# characters and items (nested values counted), an integer power may not have an exponent
# above _MAX_EXPONENT, an integer built by `*` or `**` may not have more than _MAX_BITS bits
# (1.2 million digits, some 0.15 s of arithmetic), and one evaluation may build no more than
# _MAX_TOTAL characters, items and integer bits in all (so that a `map` over a range cannot
# build many values each just under the limit).
_MAX_SIZE = 1_000_000
_MAX_EXPONENT = 1024
_MAX_BITS = 4_000_000
_MAX_TOTAL = 10_000_000

# What the evaluation in progress has built so far (see _charge); None outside an evaluation.
_SPENT: ContextVar[list[int] | None] = ContextVar("podium_expression_spent", default=None)

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


class SizeError(SecurityError):
    """An operator or filter would build a value above one of the sandbox's size limits."""


def _charge(
    size: int, what: str, *, limit: int = _MAX_SIZE, unit: str = "characters and items"
) -> None:
    """Refuse an operation whose result would be `size` large, before it is built.

    `size` counts characters and items (or bits for an integer, with `limit` _MAX_BITS); it
    may be an upper bound. The result also counts towards the evaluation's _MAX_TOTAL.
    """
    if size > limit:
        raise SizeError(f"{what} would have more than the limit of {limit:,} {unit}")
    spent = _SPENT.get()
    if spent is not None:
        spent[0] += size
        if spent[0] > _MAX_TOTAL:
            raise SizeError(
                f"{what}: the expression would build more than the limit of {_MAX_TOTAL:,} "
                "characters, items and integer bits in all"
            )


def _extent(value: Any, limit: int = _MAX_SIZE) -> int:
    """How many characters and items `value` holds, nested ones included (roughly its JSON size).

    A list repeated with `*` holds the same inner values many times over, and every later
    step (JSON, `join`, `sum`) expands them, so they count each time. Counting stops once the
    total passes `limit`, so this costs at most about `limit` steps, however large `value` is.
    """
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += max(1, len(item))
        elif isinstance(item, Mapping | list | tuple):
            if len(item) > limit - total:
                return limit + 1
            total += 0 if item else 1
            pending.extend(item.values() if isinstance(item, Mapping) else item)
        else:
            total += 1
        if total > limit:
            return total
    return total


def _integer(value: Any, name: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {describe_type(value)}")
    return value


class ExpressionEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox where `a.b` and `a['b']` both mean "key b of mapping a"."""

    intercepted_binops = frozenset({"*", "**", "%"})

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
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif isinstance(left, str):
            raise SecurityError(
                "`%` is not allowed on text (it would show Python's form of data); "
                "use the format filter, as in '%05d' | format(n), or `~` to join text"
            )
        return super().call_binop(context, operator, left, right)


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        bits = abs(left).bit_length() + abs(right).bit_length()
        if bits > 64:
            _charge(bits, "the result of *", limit=_MAX_BITS, unit="bits")
        return
    for sequence, times in ((left, right), (right, left)):
        if (
            isinstance(sequence, str | list | tuple)
            and sequence
            and isinstance(times, int)
            and times > 0
        ):
            if isinstance(sequence, str):
                size = len(sequence) * times
            else:
                size = _extent(sequence, _MAX_SIZE // times) * times
            _charge(size, "the result of *")


def _check_power(left: Any, right: Any) -> None:
    if not (isinstance(left, int) and isinstance(right, int)) or abs(left) <= 1 or right <= 0:
        return
    if right > _MAX_EXPONENT:
        raise SizeError(f"an integer power may not have an exponent above {_MAX_EXPONENT}")
    bits = abs(left).bit_length() * right
    if bits > 64:
        _charge(bits, "the result of **", limit=_MAX_BITS, unit="bits")


# The string-building filters, each refusing a result above the limits before building it.


def _center(value: Any, width: int = 80) -> str:
    text = str(value)
    _charge(max(len(text), _integer(width, "center's width")), "the result of center")
    return do_center(text, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    indention = len(width) if isinstance(width, str) else _integer(width, "indent's width")
    _charge(len(text) + (text.count("\n") + 2) * max(0, indention), "the result of indent")
    return do_indent(text, width, first, blank)


# A printf conversion: `%`, an optional `(key)`, flags, width, precision, length, type.
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.?)", re.S)
_SCALARS = (str, int, float, bool, type(None))


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise TypeError("format takes positional or keyword arguments, not both")
    text = str(value)
    size = len(text)
    for match in _CONVERSION.finditer(text):
        for number in match.group(1, 2):
            if number == "*":
                raise SecurityError("format may not take a width or precision from `*`")
            if number and (len(number) > 7 or int(number) > _MAX_SIZE):
                _charge(_MAX_SIZE + 1, "the result of format")
            size += int(number or 0)
    arguments = list(kwargs.values()) if kwargs else list(args)
    for argument in arguments:
        if not isinstance(argument, _SCALARS):
            raise TypeError(
                f"format takes text and numbers, not {describe_type(argument)} "
                "(use tojson to show a list or mapping)"
            )
        # A number is at most a few hundred characters (a float's %f, an int's 4,300 digits).
        size += len(argument) if isinstance(argument, str) else 4_400
    _charge(size, "the result of format")
    return text % (kwargs or tuple(args))


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = str(s), str(old), str(new)
    growth = max(0, len(new_text) - len(old_text))
    if growth:
        times = text.count(old_text)
        if count is not None and count >= 0:
            times = min(times, _integer(count, "replace's count"))
        _charge(len(text) + times * growth, "the result of replace")
    return do_replace(eval_ctx, text, old_text, new_text, count)


@pass_eval_context
def _join(
    eval_ctx: EvalContext, value: Iterable[Any], d: Any = "", attribute: str | int | None = None
) -> str:
    separator = str(d)
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    parts: list[str] = []
    size = 0
    for item in value:
        if not isinstance(item, str):
            # A nested list can be far longer as text than it is in memory: count it first.
            if _extent(item, _MAX_SIZE - size) > _MAX_SIZE - size:
                _charge(_MAX_SIZE + 1, "the result of join")
            item = str(item)
        size += len(item) + (len(separator) if parts else 0)
        if size > _MAX_SIZE:
            _charge(size, "the result of join")
        parts.append(item)
    _charge(size, "the result of join")
    return separator.join(parts)


@pass_environment
def _wordwrap(
    environment: Environment,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = str(s)
    wrap = environment.newline_sequence if wrapstring is None else str(wrapstring)
    # Each line holds at least half its width (or one whole word), plus the existing lines.
    lines = 2 * len(text) // max(1, _integer(width, "wordwrap's width")) + text.count("\n") + 1
    _charge(len(text) + lines * len(wrap), "the result of wordwrap")
    return do_wordwrap(environment, text, width, break_long_words, wrap, break_on_hyphens)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if fill_with is not None:
        padding = max(0, _integer(linecount, "batch's size") - 1)
        _charge(padding * _extent(fill_with, _MAX_SIZE // max(1, padding)), "the batches")
    return do_batch(value, linecount, fill_with)


def _slice(value: Collection[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    count = _integer(slices, "slice's count")
    fill = 0 if fill_with is None else _extent(fill_with, _MAX_SIZE // max(1, count))
    _charge(count * (1 + fill), "the slices")
    return sync_do_slice(value, count, fill_with)


@pass_environment
def _sum(
    environment: Environment,
    iterable: Iterable[Any],
    attribute: str | int | None = None,
    start: Any = 0,
) -> Any:
    if not isinstance(start, list | tuple):
        return sync_do_sum(environment, iterable, attribute, start)
    # Python's sum adds lists one by one, which takes time quadratic in their number.
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    kind = type(start)
    result = list(start)
    for item in iterable:
        if not isinstance(item, kind):
            raise TypeError(f"sum can only add {describe_type(start)}, not {describe_type(item)}")
        if len(result) + len(item) > _MAX_SIZE:
            _charge(len(result) + len(item), "the result of sum")
        result.extend(item)
    _charge(len(result), "the result of sum")
    return result if kind is list else tuple(result)


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
    for name, bounded in (
        ("center", _center),
        ("indent", _indent),
        ("format", _format),
        ("replace", _replace),
        ("join", _join),
        ("wordwrap", _wordwrap),
        ("batch", _batch),
        ("slice", _slice),
        ("sum", _sum),
    ):
        env.filters[name] = bounded
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
    state_keys: frozenset[str]
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
        names, references, state_keys = _analyse(expr, text)
        expr.set_environment(ENVIRONMENT)
        constant = _fold(expr)
        if constant:
            return Parsed(names, references, state_keys, constant=constant)
        path = plain_path(expr)
        if path is not None and path[0] in SCOPE_NAMES:
            return Parsed(names, references, state_keys, path=path)
        return Parsed(names, references, state_keys, evaluate=_evaluator(expr, text))
    except TemplateSyntaxError as exc:
        raise ValueError(f"{text}: syntax error: {exc.message}") from None
    except RecursionError:
        raise ValueError(f"{text}: the expression is nested too deeply") from None


def _analyse(expr: nodes.Node, text: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """The free names of `expr`, the step ids it reads as `steps.<id>`, and the state keys
    it reads as `state.<key>`."""
    names: set[str] = set()
    references: set[str] = set()
    state_keys: set[str] = set()
    pending: list[tuple[nodes.Node, nodes.Node | None]] = [(expr, None)]
    while pending:
        node, parent = pending.pop()
        if isinstance(node, nodes.Name):
            names.add(node.name)
            if node.name == "steps":
                step = _attribute(node, parent)
                if step is None:
                    raise ValueError(
                        f"{text}: `steps` must be followed by a step id, as in steps.check.output"
                    )
                references.add(step)
            elif node.name == "state":
                key = _attribute(node, parent)
                if key is not None:  # a bare `state` reads every key
                    state_keys.add(key)
        pending.extend((child, node) for child in node.iter_child_nodes())
    known = SCOPE_NAMES | ENVIRONMENT.globals.keys()
    for name in sorted(names - known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"{text}: unknown name {name!r}{hint}; an expression can read "
            f"input, steps, state, item, index, output and loop where they exist, and call "
            f"the documented functions"
        )
    return frozenset(names), frozenset(references), frozenset(state_keys)


def _attribute(name: nodes.Name, parent: nodes.Node | None) -> str | None:
    """The constant key read from `name` (`steps.check`, `state["drafts"]`), if any."""
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
    budget = _SPENT.set([0])
    try:
        return (json_value(expr.as_const()),)
    except Exception:
        # Not constant (nodes.Impossible), or constant but failing: it then fails at render
        # time with the run's error handling, like any other expression.
        return ()
    finally:
        _SPENT.reset(budget)


def _evaluator(expr: nodes.Expr, text: str) -> Callable[[Mapping[str, Any]], Any]:
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    template = ENVIRONMENT.from_string(nodes.Template(body, lineno=1))
    new_context = template.new_context
    run = template.root_render_func

    def evaluate(scope: Mapping[str, Any]) -> Any:
        budget = _SPENT.set([0])
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
        finally:
            _SPENT.reset(budget)
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
