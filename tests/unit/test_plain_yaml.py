"""Plain block YAML read without libyaml: libyaml's reading exactly, or a refusal.

`read_plain` is the first way `parse_yaml` reads a file. Whenever it gives an answer, the
answer must be the one built from libyaml's events (`_quick_build`): the same values and the
same (line, column) for every key and list item. These tests compare the two on documents
written by `yaml.safe_dump` in every style, on hand-written files and on mangled ones, and
check that what the reader refuses is still read, or reported, by the careful path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from podium.errors import DefinitionError, Location
from podium.runtime.prepare import prepare
from podium.spec import load_workflow, loader
from podium.spec.plain_yaml import Positions, read_plain

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src/podium/demo/order_to_cash.yaml"
REPO_FILES = [DEMO, *sorted((ROOT / "src/podium/examples").rglob("*.yaml"))]

Reading = tuple[Any, Positions]


def plain(text: str, *, max_values: int = 1_000_000) -> Reading | None:
    """What `read_plain` reads, with its positions (found by reading the text again)."""
    reading = read_plain(text, max_depth=64, max_values=max_values)
    return None if reading is None else (reading[0], reading[1]())


def from_events(text: str) -> Reading | None:
    """What libyaml's events give for `text`, with each position as (line, column)."""
    parser = loader._Loader(text)
    try:
        quick = loader._quick_build(parser, "t.yaml")
    except Exception:
        return None
    finally:
        parser.dispose()
    if quick is None:
        return None
    data, positions = quick
    return data, {path: (where.line, where.column) for path, where in positions.items()}


def read_as_libyaml_does(text: str) -> Reading | None:
    """`read_plain`'s answer, checked to be libyaml's when there is one."""
    reading = plain(text)
    if reading is not None:
        assert reading == from_events(text), text
        # Positions are recorded while reading only when the text is as long as `max_values`,
        # for `read_plain` counts on each position but one standing at a character of its own.
        positions = reading[1]
        assert len(positions) <= len(text) + 1, text
        recorded = plain(text, max_values=len(text))
        assert recorded == (reading if len(positions) <= len(text) else None), text
    return reading


# Strings YAML gives a meaning of their own, or that need quoting, or that cannot be plain.
TRICKY = [
    *("yes", "on", "No", "y", "~", "null", "true", "1:30", "0x1F", "0o17", "1_000", "1e3"),
    *(".inf", "-.5", "+1", "", " ", "#x", "a #b", "a#b", "a: b", "a:b", "a:", ":", " lead"),
    *("trail ", "it's", '"q"', "\\", "${{ input.x }}", "é", "日本", "😀", "-", "- a", "-x"),
    *("[x]", "{x}", ",", "a, b", "?", "?x", ":x", "*a", "&a", "!t", "|", ">", "%", "@", "`"),
    *("<<", "---", "...", "--- a", "2024-05-01", "=", "\t", "a\tb", "a\nb", "\x85", "\u2028"),
    *("\x00", "\x1b", "\ufeff", "\xa0", "x" * 130, "y " * 60),
]
IDENTIFIERS = st.builds(str.__add__, st.sampled_from("abcxyz_"), st.text("abcxyz_019", max_size=7))
WORDS = st.lists(st.text("abcxyz", min_size=1, max_size=6), min_size=1, max_size=4).map(" ".join)

KEYS = st.one_of(IDENTIFIERS, st.sampled_from(TRICKY), st.text(max_size=6))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    IDENTIFIERS,
    st.sampled_from(TRICKY),
    st.text(max_size=12),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=25,
)
STYLES = st.fixed_dictionaries(
    {
        "default_flow_style": st.sampled_from([False, None, True]),
        "indent": st.sampled_from([2, 3, 4]),
        "width": st.sampled_from([80, 10**9]),  # 80 folds long scalars over several lines
        "allow_unicode": st.booleans(),
        "explicit_start": st.booleans(),
    }
)


@settings(max_examples=500, deadline=None)
@given(DOCUMENTS, STYLES)
def test_any_dumped_document_is_read_as_libyaml_reads_it(doc: Any, style: dict[str, Any]) -> None:
    read_as_libyaml_does(yaml.safe_dump(doc, sort_keys=False, **style))


PLAIN_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), IDENTIFIERS, WORDS
)
PLAIN_DOCUMENTS = st.dictionaries(
    IDENTIFIERS,
    st.recursive(
        PLAIN_SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(IDENTIFIERS, inner, max_size=4),
        max_leaves=15,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    PLAIN_DOCUMENTS,
    st.sampled_from([False, None]),
    st.sampled_from([2, 4]),
    st.sampled_from([*TRICKY, "plain text"]),
)
def test_the_block_yaml_of_plain_data_is_read_here(
    doc: dict[str, Any], flow_style: bool | None, indent: int, text: str
) -> None:
    # Quoted scalars, flow collections and escapes are read here too, not only plain words;
    # the document is a block mapping, as a workflow is, whatever its leaves are.
    leaf = text if "\n" not in text and "\u2028" not in text else "plain text"
    document = {"name": leaf, "steps": doc}
    dumped = yaml.safe_dump(
        document, sort_keys=False, default_flow_style=flow_style, indent=indent, width=10**9
    )
    assert read_as_libyaml_does(dumped) is not None, dumped


HAND_WRITTEN = [
    "name: x\nsteps:\n  a:\n    uses: m:f\n  b:\n    needs: [a]\n    uses: m:g\n",
    "steps:\n  b:\n    needs: [a, 'c', \"d\"]  # after a\n",
    'steps:\n  a: {uses: "m:f", with: {x: 1, y: "${{ input.order }}"}}\n',
    "# a comment\n\nname: x   # why\n\n\nsteps:\n  # inside\n  a:\n    uses: m:f\n",
    "---\nname: x\n",
    "# licence\n--- # the one document\nname: x\n",
    "name: x\r\nsteps:\r\n  a:\r\n    uses: m:f\r\n",
    "items:\n- a: 1\n  b: [x, y]\n-   c: 2\n    d:\n    - - 1\n      - 2\n    -\n",
    "a:\n    - x\n    - y\nb:\n  -\n  - # nothing\n  - z\n",
    "'quoted key': 1\n\"dq\\tkey\": 2\nyes: 3\n1: 4\n~: 5\n",
    "values: [yes, on, 0x1F, 1_000, .inf, -.inf, ~, null, '', \"\\u00e9\\x41\\/\"]\nat: 1:30\n",
    "empty:\nnull_too: ~\nlast:\n",
    "- top\n- level: list\n",
    "a: b#c\nd: e # f\ng: h:i\nj: k :l\n",
]


@pytest.mark.parametrize("text", HAND_WRITTEN)
def test_hand_written_plain_yaml_is_read_here(text: str) -> None:
    assert read_as_libyaml_does(text) is not None


GOOD = """\
# Most of what plain YAML offers, for mangling.
name: order
input:
  type: object
  required: [order]
steps:
  check:
    uses: "shop.agents:check"
    with: {order: "${{ input.order }}", n: 1}
  reserve:
    needs:
    - check
    if: yes
    retry: {attempts: 3, backoff: 200ms}
  notify:
    needs: [check, 'reserve']
    for_each:
      - a: 1
        b: [x, y]
      -
      - - 1
        - 2.5
    description: it's done   # said plainly
"""
_EDITS = st.sampled_from(
    [*"{}[]:,'\"-$ \n\t#&*!|>%?~09az.\r", "${{", "}}", "- ", ": ", "\n  ", "---\n", "..."]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 3), _EDITS), max_size=6))
def test_mangled_files_are_read_as_libyaml_reads_them(edits: list[tuple[int, int, str]]) -> None:
    text = GOOD
    for position, cut, insert in edits:
        text = text[:position] + insert + text[position + cut :]
    read_as_libyaml_does(text)


@pytest.mark.parametrize("path", REPO_FILES, ids=lambda path: path.name)
def test_the_files_in_the_repository_are_read_as_libyaml_reads_them(path: Path) -> None:
    read_as_libyaml_does(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("text", [GOOD, DEMO.read_text(encoding="utf-8")], ids=["good", "demo"])
def test_realistic_files_are_read_here(text: str) -> None:
    assert read_as_libyaml_does(text) is not None


def _outcome(text: str) -> object:
    """What `parse_yaml` makes of `text`: the data, or its first problem or error."""
    try:
        data, _, problems = loader.parse_yaml(text, "f.yaml")
    except DefinitionError as error:
        return str(error)
    return problems[0].problems[0] if problems else data


REFUSED: list[tuple[str, str, object]] = [
    ("literal block scalar", "a: |\n  x\n", {"a": "x\n"}),
    ("folded block scalar", "a: >-\n  x\n  y\n", {"a": "x y"}),
    ("anchor and alias", "a: &x 1\nb: *x\n", {"a": 1, "b": 1}),
    ("tag", "a: !!str 1\n", {"a": "1"}),
    ("plain scalar over two lines", "a: hello\n  world\n", {"a": "hello world"}),
    ("quoted scalar over two lines", "a: 'x\n  y'\n", {"a": "x y"}),
    ("flow collection over two lines", "a: [x,\n  y]\n", {"a": ["x", "y"]}),
    ("timestamp", "a: 2024-05-01\n", {"a": "2024-05-01"}),
    ("merge key", "b: &b {x: 1}\na:\n  <<: *b\n", {"b": {"x": 1}, "a": {"x": 1}}),
    ("complex key", "? a\n: 1\n", {"a": 1}),
    ("directive", "%YAML 1.1\n---\na: 1\n", {"a": 1}),
    ("document end", "a: 1\n...\n", {"a": 1}),
    ("a scalar document", "just text\n", "just text"),
    ("tab in indentation", "a:\n\tb: 1\n", "f.yaml:2:1: YAML syntax error"),
    ("control character", "# a\x01\n---\na: 1\n", "f.yaml:1:4: YAML syntax error: character"),
    ("two documents", "a: 1\n---\nb: 2\n", "f.yaml:2:1: YAML syntax error: but found another"),
    ("duplicate key", "a: 1\na: 2\n", "f.yaml:2:1: duplicate key 'a' (first defined at line 1)"),
    ("mapping value in a scalar", "a: b: c\n", "f.yaml:1:5: YAML syntax error"),
    ("nothing", "# only a comment\n", "f.yaml: the file is empty"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(text, expected) for _, text, expected in REFUSED],
    ids=[name for name, _, _ in REFUSED],
)
def test_what_is_not_plain_goes_the_careful_way(text: str, expected: object) -> None:
    assert plain(text) is None
    outcome = _outcome(text)
    if isinstance(expected, str) and expected.startswith("f.yaml"):
        assert str(outcome).startswith(expected)
    else:
        assert outcome == expected


def test_parse_yaml_gives_the_plain_reading_with_locations() -> None:
    data, positions, problems = loader.parse_yaml("a:\n  - x\n  - {y: 1}\n", "f.yaml")
    assert (data, problems) == ({"a": ["x", {"y": 1}]}, [])
    assert positions[("a", 1, "y")] == Location("f.yaml", 3, 6)
    assert dict(positions) == {
        (): Location("f.yaml", 1, 1),
        ("a",): Location("f.yaml", 1, 1),
        ("a", 0): Location("f.yaml", 2, 5),
        ("a", 1): Location("f.yaml", 3, 5),
        ("a", 1, "y"): Location("f.yaml", 3, 6),
    }


def _nested(depth: int, *, flow: bool) -> str:
    if flow:
        return "a: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n"
    return "".join(f"{'  ' * level}k:\n" for level in range(depth - 1)) + "  " * depth + "- x\n"


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize("depth", [63, 64, 65])
def test_depth_is_limited_as_on_the_event_path(depth: int, flow: bool) -> None:
    text = _nested(depth, flow=flow)
    assert from_events(text) is not None or depth > 64
    assert (read_as_libyaml_does(text) is None) == (from_events(text) is None)


def test_too_many_values_go_the_careful_way() -> None:
    text = "a: 1\nb: [2, 3]\n"  # the document, a, b and two items: five values
    assert plain(text, max_values=5) is not None
    assert plain(text, max_values=4) is None


TEMPLATED = """\
name: templated
input: {type: object}
agents:
  echo: {uses: "json:dumps", capabilities: [text]}
steps:
  first:
    agent: echo
    with: {obj: "${{ input }}"}
  each:
    needs: [first]
    if: "${{ steps.first.status == 'succeeded' }}"
    for_each: "${{ input.items }}"
    capability: text
    with: {obj: "${{ item }}"}
output: "${{ steps.each.output }}"
"""


@pytest.mark.parametrize("text", [TEMPLATED, DEMO.read_text(encoding="utf-8")], ids=["t", "demo"])
def test_a_valid_workflow_is_loaded_and_prepared_without_finding_its_positions(
    text: str, tmp_path: Path
) -> None:
    """Positions are found by reading the file again when a problem needs one: nothing on the
    way of a valid workflow may ask for a location, or every file would be read twice."""
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    workflow = load_workflow(path)
    prepare(workflow)
    positions = workflow.locations
    assert isinstance(positions, loader._Positions)  # the file was read the plain way
    assert positions._found is None
    assert positions[("steps",)] == Location(
        str(path), text.count("\n", 0, text.index("steps:")) + 1, 1
    )
