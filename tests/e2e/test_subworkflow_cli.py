"""Sub-workflows from the command line: a parent with a child file in a subfolder and an
inline child runs; `podium show` prints the child runs with the parent's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import podium

SRC = Path(podium.__file__).resolve().parents[1]

CHILD = """\
name: child
steps:
  a: {uses: "json:dumps", with: {obj: "${{ input }}", sort_keys: true}}
output: "${{ steps.a.output }}"
"""

PARENT = """\
name: parent
steps:
  filed: {workflow: flows/child.yaml, with: {x: 1}}
  inline:
    needs: filed
    workflow:
      name: inline
      steps:
        b: {uses: "json:loads", with: {s: "${{ input }}"}}
      output: "${{ steps.b.output }}"
    with: "${{ steps.filed.output }}"
output: "${{ steps.inline.output }}"
"""


def podium_json(cwd: Path, *args: str) -> Any:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), environ.get("PYTHONPATH")]))
    for name in ("PODIUM_DB", "PODIUM_AGENTS"):
        environ.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "podium", *args, "--json"],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_run_a_parent_with_a_child_file_and_an_inline_child_then_show_it(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "child.yaml").write_text(CHILD)
    (tmp_path / "parent.yaml").write_text(PARENT)
    result = podium_json(tmp_path, "run", "parent.yaml")
    assert result["status"] == "succeeded"
    assert result["output"] == {"x": 1}
    run_id = result["run_id"]

    shown = podium_json(tmp_path, "show", run_id)
    children = shown["children"]
    assert set(children) == {f"{run_id}/filed", f"{run_id}/inline"}
    assert children[f"{run_id}/filed"]["status"] == "succeeded"
    assert children[f"{run_id}/filed"]["parent"] == run_id
    assert children[f"{run_id}/inline"]["output"] == {"x": 1}
