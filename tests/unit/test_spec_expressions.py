"""`${{ }}` expressions: typed results, text, operators, the sandbox, and the fast path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podium.errors import DefinitionError, ExpressionError, Location
from podium.spec import Template, compile_condition, compile_template, truthy

HERE = Location("wf.yaml", 3, 5)

SCOPE: dict[str, Any] = {
    "input": {
        "order": {"contacts": ["ann", "bob"], "items": [{"sku": "a", "qty": 2}], "total": 12.5},
        "name": "Ada",
        "flag": False,
    },
    "steps": {
        "check": {"output": {"in_stock": True, "count": 3}, "status": "succeeded"},
        "odd-id": {"output": [10, 20], "status": "failed"},
    },
    "item": "ann",
    "index": 1,
}


def render(value: Any, scope: dict[str, Any] = SCOPE) -> Any:
    return compile_template(value, where=HERE).render(scope)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ item }}", "ann"),
        ("${{ index }}", 1),
        ("${{ input.order.total }}", 12.5),
        ("${{ input.order.items }}", [{"sku": "a", "qty": 2}]),
        ("${{ input.order.items[0].qty }}", 2),
        ("${{ input.order.items.0.sku }}", "a"),
        ("${{ input['order']['contacts'][1] }}", "bob"),
        ("${{ steps.check.output }}", {"in_stock": True, "count": 3}),
        ("${{ steps['odd-id'].output[-1] }}", 20),
        ("${{ steps.check.status == 'succeeded' }}", True),
        ("${{ input.flag }}", False),
        ("  ${{ index }}\n", 1),
    ],
)
def test_a_lone_expression_keeps_its_type(text: str, expected: Any) -> None:
    assert render(text) == expected
    assert type(render(text)) is type(expected)


def test_text_around_expressions_interpolates() -> None:
    assert render("Hi ${{ input.name }}, ${{ index }}/${{ input.flag }}") == "Hi Ada, 1/False"
    assert render("to ${{ input.order.contacts }}") == 'to ["ann", "bob"]'
    assert render("${{ input.order.items[0] }}!") == '{"sku": "a", "qty": 2}!'
    assert render("${{ none }} ${{ 1 + 1 }}") == "None 2"


def test_values_are_rendered_through_mappings_and_lists() -> None:
    value = {"to": "${{ item }}", "n": "${{ index }}", "k": ["x", "${{ input.name }}", 3]}
    template = compile_template(value, where=HERE)
    assert template.render(SCOPE) == {"to": "ann", "n": 1, "k": ["x", "Ada", 3]}
    assert template.uses_item
    assert not template.is_constant
    assert value == {"to": "${{ item }}", "n": "${{ index }}", "k": ["x", "${{ input.name }}", 3]}


def test_constant_templates_need_no_scope() -> None:
    value = {"a": [1, "two", None], "b": {"c": True}}
    template = compile_template(value, where=HERE)
    assert template.is_constant
    assert template.render({}) == value
    assert template.references == frozenset()
    folded = compile_template({"n": "${{ 1 + 2 }}", "t": "a${{ 'b' | upper }}"}, where=HERE)
    assert folded.is_constant
    assert folded.render({}) == {"n": 3, "t": "aB"}


def test_references_name_the_steps_read() -> None:
    template = compile_template(
        ["${{ steps.check.output }}", "${{ steps['odd-id'].status }} ${{ input.x }}"], where=HERE
    )
    assert template.references == frozenset({"check", "odd-id"})
    assert not template.uses_item


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3 - 4", 3),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("-index", -1),
        ("'a' ~ 1", "a1"),
        ("input.name + '!'", "Ada!"),
        ("index == 1 and not input.flag", True),
        ("input.flag or 'fallback'", "fallback"),
        ("index != 1", False),
        ("index < 2 and index <= 1 and index > 0 and index >= 1", True),
        ("'ann' in input.order.contacts", True),
        ("'zed' not in input.order.contacts", True),
        ("'in_stock' in steps.check.output", True),
        ("'yes' if steps.check.output.in_stock else 'no'", "yes"),
        ("[1, 'two', none, True, false, None, true]", [1, "two", None, True, False, None, True]),
        ("{'a': [1, 2], 'b': {'c': null}}", {"a": [1, 2], "b": {"c": None}}),
        ("(1, 2)", [1, 2]),
        ("length(input.order.contacts)", 2),
        ("input.order.contacts | length", 2),
        ("input.missing | default('none')", "none"),
        ("input.missing is defined", False),
        ("input.order.contacts | join(', ')", "ann, bob"),
        ("input.name | lower", "ada"),
        ("input.name | upper", "ADA"),
        ("'42' | int", 42),
        ("'2.5' | float", 2.5),
        ("index | string", "1"),
        ("(input.order.total + 0.1) | round", 13.0),
        ("input.order.contacts | first", "ann"),
        ("input.order.contacts | last", "bob"),
        ("[1, 2, 3] | sum", 6),
        ("[3, 1, 2] | min", 1),
        ("[3, 1, 2] | max", 3),
        ("[3, 1, 2] | sort", [1, 2, 3]),
        ("[1, 1, 2] | unique | list", [1, 2]),
        ("[1, 1, 2] | unique", [1, 2]),
        ("input.order.contacts | map('upper')", ["ANN", "BOB"]),
        ("input.order.items | map(attribute='sku') | list", ["a"]),
        ("input.order.items | selectattr('qty', 'gt', 1) | list", [{"sku": "a", "qty": 2}]),
        ("keys(steps.check.output)", ["in_stock", "count"]),
        ("steps.check.output | values", [True, 3]),
        ("input.order.items | tojson", '[{"sku": "a", "qty": 2}]'),
        ("range(3)", [0, 1, 2]),
        ("dict(a=1)", {"a": 1}),
        ("input.order.contacts[0:1]", ["ann"]),
        ("input.name[0]", "A"),
    ],
)
def test_operators_literals_functions_and_filters(text: str, expected: Any) -> None:
    assert render(f"${{{{ {text} }}}}") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "steps.check.output.foo",
            "'foo' is not a key of steps.check.output (its keys: in_stock, count)",
        ),
        (
            "steps.check.output.foo + 1",
            "'foo' is not a key of steps.check.output (its keys: in_stock, count)",
        ),
        ("input.order.items[3]", "index 3 is out of range: input.order.items has 1 items"),
        ("input.name.upper", "input.name is a string, which has no key 'upper'"),
        (
            "input.order.contacts.append",
            "input.order.contacts is a list, which has no key 'append'",
        ),
        (
            "(input.order.items | first).nope",
            "'nope' is not a key of the value (its keys: sku, qty)",
        ),
        ("1 / 0", "division by zero"),
        ("input.name - 1", "unsupported operand type(s) for -: 'str' and 'int'"),
        ("{1: 2}", "mapping keys must be strings, not a number"),
        ("length", "the result is a function, which is not JSON data"),
    ],
)
def test_failures_name_the_expression_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        render(f"${{{{ {text} }}}}")
    assert str(caught.value) == f"${{{{ {text} }}}}: {message}"


def test_missing_scope_names_are_reported() -> None:
    with pytest.raises(ExpressionError, match=r"^\$\{\{ item \}\}: 'item' is not defined$"):
        render("${{ item }}", {"input": {}, "steps": {}})
    with pytest.raises(ExpressionError, match="'item' is not defined"):
        render("${{ item | upper }}", {"input": {}, "steps": {}})


@pytest.mark.parametrize(
    "text",
    [
        "''.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "input.__class__.__mro__",
        "steps.check.__init__",
        "steps.check.output.__class__",
        "input.items",
        "input.order.contacts.pop()",
        "input['__class__']",
        "(input.order.contacts | first).__class__",
        "range.__globals__",
        "length.__code__",
        "'{0.__class__}'.format(input)",
        "input.order.contacts | attr('__class__')",
        "'a' * 10000000",
        "[0] * 10000000",
        "10 ** 100000",
        "lipsum()",
        "cycler(1)",
        "namespace()",
        "[1] | random",
        "'<b>' | safe",
    ],
)
def test_the_sandbox_refuses_to_reach_python(text: str) -> None:
    with pytest.raises((ExpressionError, DefinitionError)):
        render(f"${{{{ {text} }}}}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("'a' | center(20000000)", "center would have more than the limit of 1,000,000"),
        ("'%20000000d' | format(1)", "format would have more than the limit of 1,000,000"),
        ("'%.20000000f' | format(1.5)", "format would have more than the limit"),
        ("'%*d' | format(20000000, 1)", "may not take a width or precision from `*`"),
        ("'%s' | format(input)", "format takes text and numbers, not a mapping"),
        ("'%20000000d' % 1", "`%` is not allowed on text"),
        ("'%s' % input", "`%` is not allowed on text"),
        ("range(20) | join('x' * 1000000)", "join would have more than the limit"),
        ("[['x' * 1000] * 1000] | join", "join would have more than the limit"),
        ("('a' * 1000) | replace('a', 'b' * 20000)", "replace would have more than the limit"),
        ("('\\n' * 1000) | indent(20000, blank=true)", "indent would have more than the limit"),
        ("'a b c' | wordwrap(1, wrapstring='x' * 500000)", "wordwrap would have more than"),
        ("[1] | batch(1000000000, 'x') | list", "the batches would have more than the limit"),
        ("[1] | slice(1000000000) | list", "the slices would have more than the limit"),
        ("((2 ** 1024) ** 1024) ** 64 > 1", "** would have more than the limit of 4,000,000 bits"),
        ("(2 ** 1024) ** 1024 * (2 ** 1024) ** 1024 * (2 ** 1024) ** 1024 ** 2 > 1", "bits"),
        ("(2 ** 1000) ** 1000 * (2 ** 1000) ** 1000 * ((2 ** 1000) ** 1000) * 9 > 1", "in all"),
        ("[['x'] * 1000000] * 1000000", "* would have more than the limit of 1,000,000"),
        ("range(100000) | map('center', 1000000) | list", "more than the limit of 10,000,000"),
    ],
)
def test_the_sandbox_refuses_to_build_huge_values(text: str, message: str) -> None:
    began = time.perf_counter()
    with pytest.raises((ExpressionError, DefinitionError)) as caught:
        render(f"${{{{ {text} }}}}")
    assert message in str(caught.value)
    assert time.perf_counter() - began < 1.0, "refused, but only after building it"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'%05d|%s|%.2f' | format(42, 'x', 1.5)", "00042|x|1.50"),
        ("'%(n)s!' | format(n=input.name)", "Ada!"),
        ("'ab' | center(6)", "  ab  "),
        ("'a\\nb' | indent(2, true)", "  a\n  b"),
        ("input.order.contacts | join(', ')", "ann, bob"),
        ("input.order.items | join(',', attribute='sku')", "a"),
        ("'abc' | replace('b', 'xx')", "axxc"),
        ("[[1], [2]] | sum(start=[])", [1, 2]),
        ("[1, 2, 3] | batch(2, 0) | list", [[1, 2], [3, 0]]),
        ("[1, 2, 3] | slice(2) | list", [[1, 2], [3]]),
        ("('a' * 1000000) | length", 1000000),
        ("([[]] * 1000000) | length", 1000000),
        ("(2 ** 1024) ** 1024 > 1", True),
        ("7 % 3", 1),
    ],
)
def test_bounded_operators_and_filters_still_work(text: str, expected: Any) -> None:
    assert render(f"${{{{ {text} }}}}") == expected


def test_attribute_access_means_a_key() -> None:
    scope = {"input": {"items": [1], "keys": "k", "__class__": "data"}}
    assert render("${{ input.items }}", scope) == [1]
    assert render("${{ input.keys }}", scope) == "k"
    assert render("${{ input.__class__ }}", scope) == "data"
    assert render("${{ input.items | length }}", scope) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{ 1 + }}", "${{ 1 + }}: syntax error: unexpected 'end of template'"),
        ("${{ a b }}", "${{ a b }}: syntax error: unexpected 'b' after the expression"),
        ("${{ }}", "${{  }}: the expression is empty"),
        ("x ${{ input", "'x ${{ input': `${{` is not closed by `}}`"),
        (
            "${{ inptu.x }}",
            (
                "${{ inptu.x }}: unknown name 'inptu' (did you mean 'input'?); an "
                "expression can read input, steps, state, item, index, output and loop "
                "where they exist, and call the documented functions"
            ),
        ),
        (
            "${{ steps }}",
            "${{ steps }}: `steps` must be followed by a step id, as in steps.check.output",
        ),
        (
            "${{ steps[input.x].output }}",
            (
                "${{ steps[input.x].output }}: `steps` must be followed by a step id, "
                "as in steps.check.output"
            ),
        ),
        ("${{ input | nosuch }}", "${{ input | nosuch }}: syntax error: No filter named 'nosuch'."),
        ("${{ input is nosuch }}", "${{ input is nosuch }}: syntax error: No test named 'nosuch'."),
    ],
)
def test_bad_expressions_are_located_definition_errors(text: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_template({"x": text}, where=HERE)
    assert caught.value.problems == (f"wf.yaml:3:5: {message}",)


def test_every_bad_expression_in_a_value_is_reported_at_its_place() -> None:
    def where(path: tuple[str | int, ...]) -> Location:
        return Location("wf.yaml", 10 + len(path), len(path))

    with pytest.raises(DefinitionError) as caught:
        compile_template({"a": "${{ 1 + }}", "b": ["ok", {"c": "${{ nope }}"}]}, where=where)
    assert [line.split(": ")[0] for line in caught.value.problems] == [
        "wf.yaml:11:1",
        "wf.yaml:13:3",
    ]


def test_braces_and_quotes_inside_expressions() -> None:
    assert render("${{ {'a': {'b': 1}} }}") == {"a": {"b": 1}}
    assert render("${{ '}}' }}") == "}}"
    assert render("${{ 'it\\'s' ~ \"}}\" }}") == "it's}}"


def test_conditions_accept_expressions_bare_text_and_booleans() -> None:
    def check(text: str | bool) -> Any:
        return compile_condition(text, where=HERE).render(SCOPE)

    assert check("${{ steps.check.output.in_stock }}") is True
    assert check("steps.check.output.count > 2") is True
    assert check(" input.order.contacts ") == ["ann", "bob"]
    assert check(False) is False
    assert compile_condition("false", where=HERE).is_constant
    assert compile_condition("index", where=HERE).uses_item
    with pytest.raises(DefinitionError, match="a condition must be one expression"):
        compile_condition("${{ index }} and ${{ item }}", where=HERE)
    with pytest.raises(DefinitionError, match="a condition must be one expression"):
        compile_condition("yes ${{ index }}", where=HERE)
    with pytest.raises(DefinitionError, match=r"^wf\.yaml:3:5: .*syntax error"):
        compile_condition("1 +", where=HERE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, False), ("", False), ([], False), ({}, False), (None, False), ("false", True), (1, True)],
)
def test_truthy_is_python_truth(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


def test_each_expression_is_compiled_once() -> None:
    from podium.spec.expressions import _compile_expression

    compile_template("${{ input.order.total * 2 }}", where=HERE)
    hits = _compile_expression.cache_info().hits
    second = compile_template({"k": "${{ input.order.total * 2 }}"}, where=HERE)
    assert _compile_expression.cache_info().hits == hits + 1
    assert second.render(SCOPE) == {"k": 25.0}


def test_rendering_a_for_each_payload_is_fast() -> None:
    template = compile_template({"to": "${{ item }}", "n": "${{ index }}"}, where=HERE)
    rounds = 20_000
    start = time.perf_counter()
    for _ in range(rounds):
        template.render(SCOPE)
    per_call = (time.perf_counter() - start) / rounds
    assert per_call < 20e-6  # about 1 µs here; generous for slow CI machines


# Random JSON data and random paths through it: the fast path (a plain path) and the Jinja
# path (the same path inside a conditional, which Jinja must evaluate) agree on every value
# and every error message.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab", max_size=2),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "items", "c d"]), inner, max_size=3),
    max_leaves=12,
)
_key = st.sampled_from(["a", "b", "items", "c d", "zz"]) | st.integers(-1, 3)


def _path_text(keys: list[str | int]) -> str:
    parts = ["input"]
    for key in keys:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif key.isidentifier():
            parts.append(f".{key}")
        else:
            parts.append(f"[{key!r}]")
    return "".join(parts)


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("value", call())
    except ExpressionError as exc:
        return ("error", str(exc).split("}}: ", 1)[1])


@settings(max_examples=300, deadline=None)
@given(_json, st.lists(_key, max_size=4))
def test_fast_path_and_jinja_agree(data: Any, keys: list[str | int]) -> None:
    path = _path_text(keys)
    fast = compile_template(f"${{{{ {path} }}}}", where=HERE)
    slow = compile_template(f"${{{{ {path} if true else 0 }}}}", where=HERE)
    scope = {"input": data}
    assert _outcome(lambda: fast.render(scope)) == _outcome(lambda: slow.render(scope))


def test_template_is_the_public_type() -> None:
    assert isinstance(compile_template("x", where=HERE), Template)
