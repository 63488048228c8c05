"""A workflow's dependency graph as Mermaid or Graphviz dot text, for docs and reviews.

Both formats draw the same facts: one node per step labelled with its id and who runs it,
one edge per `needs` entry. A conditional step (`if`) is drawn with a dashed outline and its
condition; a `for_each` step with a double outline and the list it fans out over, because
those are the two things a reader cannot see from the arrows alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from podium.model import Step, Workflow

FORMATS = ("mermaid", "dot")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def render_graph(workflow: Workflow, fmt: str) -> str:
    """The graph of `workflow` in `fmt` (one of `FORMATS`), ending with a newline."""
    renderers: dict[str, Callable[[Workflow], str]] = {"mermaid": to_mermaid, "dot": to_dot}
    return renderers[fmt](workflow)


def label_lines(step: Step) -> list[str]:
    """What a node says: the step id, who runs it, and its condition or fan-out."""
    lines = [step.id, step.target]
    if step.condition is not None:
        lines.append(f"if {_bare(step.condition)}")
    if step.for_each is not None:
        lines.append(f"for each {_bare(step.for_each)}")
    if step.trigger != "all_success":
        lines.append(f"trigger {step.trigger}")
    return lines


def _bare(expression: str) -> str:
    """`${{ x }}` as `x`: in a small box the markers are noise, and both spellings are valid."""
    text = expression.strip()
    inner = text.removeprefix("${{").removesuffix("}}")
    if len(inner) + 5 == len(text) and "${{" not in inner:
        return inner.strip()
    return text


def to_mermaid(workflow: Workflow) -> str:
    """A Mermaid flowchart: `step_a --> step_b` for each need; ids are prefixed so that a
    step called `end` (a Mermaid keyword) or with odd characters still parses."""
    names = {
        step_id: f"step_{step_id}" if _IDENTIFIER.fullmatch(step_id) else f"step_{number}"
        for number, step_id in enumerate(workflow.steps)
    }
    lines = ["flowchart TD"]
    for step in workflow.steps.values():
        label = "<br/>".join(_mermaid_escape(line) for line in label_lines(step))
        opening, closing = ("[[", "]]") if step.for_each is not None else ("[", "]")
        lines.append(f'    {names[step.id]}{opening}"{label}"{closing}')
    for step in workflow.steps.values():
        arrow = "-.->" if step.condition is not None else "-->"
        lines.extend(f"    {names[need]} {arrow} {names[step.id]}" for need in step.needs)
    conditional = [names[s.id] for s in workflow.steps.values() if s.condition is not None]
    if conditional:
        lines.append("    classDef conditional stroke-dasharray: 5 5")
        lines.append(f"    class {','.join(conditional)} conditional")
    return "\n".join(lines) + "\n"


def _mermaid_escape(text: str) -> str:
    """Mermaid labels take HTML entities in its own `#name;` spelling, not backslashes."""
    for char, entity in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, entity)
    return text


def to_dot(workflow: Workflow) -> str:
    """A Graphviz digraph, left to right: `"a" -> "b"` for each need."""
    lines = [f"digraph {_dot_quote(workflow.name)} {{", "    rankdir=LR;", "    node [shape=box];"]
    for step in workflow.steps.values():
        attributes = [f"label={_dot_quote(chr(10).join(label_lines(step)))}"]
        if step.condition is not None:
            attributes.append('style="rounded,dashed"')
        if step.for_each is not None:
            attributes.append("peripheries=2")
        lines.append(f"    {_dot_quote(step.id)} [{', '.join(attributes)}];")
    for step in workflow.steps.values():
        style = " [style=dashed]" if step.condition is not None else ""
        lines.extend(
            f"    {_dot_quote(need)} -> {_dot_quote(step.id)}{style};" for need in step.needs
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
