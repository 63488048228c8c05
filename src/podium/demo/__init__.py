"""The bundled order-to-cash demo that `podium demo` runs, and the input it runs on.

The workflow is plain YAML next to this file and its agents are ordinary functions in
`podium.demo.agents`, so the demo doubles as an example of both halves of a workflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.model import Workflow

__all__ = ["DEMO_INPUT", "WORKFLOW_PATH", "load_demo"]

WORKFLOW_PATH = Path(__file__).with_name("order_to_cash.yaml")

DEMO_INPUT: dict[str, Any] = {
    "order": {
        "id": "SO-1042",
        "customer": "ACME Corp",
        "lines": [
            {"sku": "WIDGET-1", "qty": 4, "price": 12.5},
            {"sku": "GADGET-7", "qty": 1, "price": 99.0},
            {"sku": "GIZMO-3", "qty": 2, "price": 7.25},
        ],
        "contacts": ["buyer@acme.example", "finance@acme.example", "ops@acme.example"],
    }
}


def load_demo() -> Workflow:
    """The demo workflow, read and validated like any other workflow file."""
    from podium.spec import load_workflow

    return load_workflow(WORKFLOW_PATH)
