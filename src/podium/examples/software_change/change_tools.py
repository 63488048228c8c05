"""The software-change pipeline's tools: read the code, check a change, find its last version.

`REPOSITORY` is a small in-memory stand-in for a checkout; point `read_file` at yours.
`check_patch` checks a new version of a file without running it (it is parsed, never
imported or executed): it parses, keeps every public function the file had, and every
public function is typed and documented. It is the pipeline's `test` step and the tester's
tool; a real pipeline would run the test suite here, in a sandbox.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

REPOSITORY: dict[str, str] = {
    "src/textutil/slug.py": '''"""Text helpers for URLs."""


def slugify(title):
    return title.lower().replace(" ", "-")


def truncate(text: str, length: int) -> str:
    """`text` cut to at most `length` characters, with an ellipsis if it was cut."""
    return text if len(text) <= length else text[: length - 1] + "…"
''',
}

_CODE_BLOCK = re.compile(r"```(?:python)?\n(.*?)```", re.DOTALL)


def read_file(path: str) -> str:
    """The current content of a file of the repository, such as src/textutil/slug.py."""
    try:
        return REPOSITORY[path.strip().lstrip("./")]
    except KeyError:
        raise FileNotFoundError(
            f"no file {path!r} in the repository; files: {', '.join(REPOSITORY)}"
        ) from None


def check_patch(path: str, code: str) -> dict[str, Any]:
    """Check a new version of a file without running it: it parses, keeps its public functions,
    and each is typed and documented."""
    checks: list[dict[str, Any]] = []

    def check(name: str, problems: Sequence[str]) -> None:
        checks.append({"check": name, "ok": not problems, "detail": "; ".join(problems)})

    try:
        tree = ast.parse(code, filename=path)
    except SyntaxError as exc:
        check("parses", [f"line {exc.lineno}: {exc.msg}"])
        return _report(path, checks)
    check("parses", [])
    functions = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
    }
    before = REPOSITORY.get(path.strip().lstrip("./"))
    kept: list[str] = []
    if before is not None:
        kept = [
            f"{node.name} was removed"
            for node in ast.parse(before).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and not node.name.startswith("_")
            and node.name not in functions
        ]
    check("keeps the public functions", kept)
    check(
        "typed",
        [
            f"{name} is not fully typed"
            for name, node in functions.items()
            if node.returns is None or any(a.annotation is None for a in node.args.args)
        ],
    )
    check(
        "documented",
        [
            f"{name} has no docstring"
            for name, node in functions.items()
            if not ast.get_docstring(node)
        ],
    )
    calls = [
        f"line {node.lineno}: {node.func.id}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("print", "breakpoint", "eval", "exec")
    ]
    check("no debugging or eval calls", calls)
    return _report(path, checks)


def _report(path: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [c["check"] for c in checks if not c["ok"]]
    summary = f"{len(checks) - len(failed)} of {len(checks)} checks pass"
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    return {"path": path, "passed": not failed, "summary": summary, "checks": checks}


def latest_code(code: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """The last version of the file the author gave in the review, else the original `code`."""
    for message in reversed(messages):
        if message.get("agent") == "author":
            blocks = _CODE_BLOCK.findall(str(message.get("content") or ""))
            if blocks:
                return str(blocks[-1])
    return code
