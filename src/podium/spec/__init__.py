"""The workflow language: reading, checking and writing definitions, and their expressions.

`load_workflow` turns a YAML or JSON file into a validated `podium.model.Workflow`, reporting
every problem at once as `FILE:LINE:COL: message` lines; with a `load_catalog` catalog,
its shared agents are added to the workflow's own. `validate_workflow` applies the same
semantic rules to a workflow built in Python. `compile_template` and `compile_condition`
compile the `${{ }}` expressions that the runtime renders for each unit of work. The language
itself is described in docs/spec.md and, for editors, in docs/schema/workflow.schema.json.
"""

from podium.spec.catalog import Catalog, load_catalog
from podium.spec.document import workflow_from_document, workflow_to_document
from podium.spec.durations import parse_duration
from podium.spec.expressions import Template, compile_condition, compile_template, truthy
from podium.spec.loader import load_workflow
from podium.spec.validate import validate_workflow

__all__ = [
    "Catalog",
    "Template",
    "compile_condition",
    "compile_template",
    "load_catalog",
    "load_workflow",
    "parse_duration",
    "truthy",
    "validate_workflow",
    "workflow_from_document",
    "workflow_to_document",
]
