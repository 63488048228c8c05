"""The demos that `podium demo [NAME]` runs, and the input each runs on.

`order-to-cash` (the default) is a workflow of plain Python agents, next to this file. The
others are the examples in `podium/examples/<name>/`: a workflow of chat-model agents, its
Python tools, a README and the input the demo uses. Each is run as it stands, against the
user's endpoint when `OPENAI_BASE_URL` is set, else against a local scripted model
(`scripted_model`, with the replies of `podium.demo.scripts`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.demo.scripts import Script
    from podium.model import Workflow

__all__ = [
    "DEMOS",
    "DEMO_INPUT",
    "EXAMPLES_DIR",
    "WORKFLOW_PATH",
    "Demo",
    "load_demo",
    "model_endpoint",
    "scripted_model",
]

WORKFLOW_PATH = Path(__file__).with_name("order_to_cash.yaml")
EXAMPLES_DIR = Path(__file__).parent.parent / "examples"

# The variables an example's `models:` relies on: where the endpoint is, and the key's name.
BASE_URL_ENV = "OPENAI_BASE_URL"
KEY_ENV = "OPENAI_API_KEY"

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Demo:
    """A bundled workflow, the input it runs on, and the scripted model it may run against.

    `script` names the function of `podium.demo.scripts` that answers for its chat models;
    None for a demo of Python agents only.
    """

    name: str
    summary: str
    path: Path
    script: str | None = None
    input_path: Path | None = None

    @property
    def input(self) -> Any:
        if self.input_path is None:
            return DEMO_INPUT
        return json.loads(self.input_path.read_text(encoding="utf-8"))

    def load(self) -> Workflow:
        """The workflow, read and validated like any other workflow file."""
        from podium.spec import load_workflow

        return load_workflow(self.path)

    def scripted(self, pace: float = 1.0) -> Script | None:
        """The scripted model's replies for this demo (None: it needs no model)."""
        if self.script is None:
            return None
        from podium.demo import scripts

        make: Callable[[float], Script] = getattr(scripts, self.script)
        return make(pace)


def _example(name: str, summary: str) -> Demo:
    """An example of `podium/examples/`: its folder, workflow and script are named alike."""
    folder = name.replace("-", "_")
    here = EXAMPLES_DIR / folder
    return Demo(
        name=name,
        summary=summary,
        path=here / f"{folder}.yaml",
        script=folder,
        input_path=here / "input.json",
    )


DEMOS: dict[str, Demo] = {
    demo.name: demo
    for demo in (
        Demo(
            name="order-to-cash",
            summary="Python agents: a branch, a fan-out over two warehouses, a retried payment",
            path=WORKFLOW_PATH,
        ),
        _example(
            "support", "handoff: triage hands the customer to billing, which looks the invoice up"
        ),
        _example("content", "research, write, edit; legal, brand and tech review at once; revise"),
        _example(
            "software-change",
            "code, check, then a group chat review until the reviewer says APPROVED",
        ),
        _example(
            "research",
            "magentic: a manager plans and directs a researcher, an analyst and a writer",
        ),
    )
}


def load_demo() -> Workflow:
    """The order-to-cash demo workflow, read and validated like any other workflow file."""
    return DEMOS["order-to-cash"].load()


@contextmanager
def model_endpoint(demo: Demo, workflow: Workflow, *, pace: float = 1.0) -> Iterator[str | None]:
    """The chat model `demo` (read as `workflow`) runs against, for the block; yields a line
    saying which.

    With `OPENAI_BASE_URL` set, the user's endpoint (its key variable must be set too);
    otherwise a scripted model on loopback. Yields None for a demo without chat models.
    Raises `InputError` when the endpoint is set and the key is not.
    """
    if demo.script is None:
        yield None
        return
    url = os.environ.get(BASE_URL_ENV)
    if url:
        if not os.environ.get(KEY_ENV):
            from podium.errors import InputError

            raise InputError(
                f"{BASE_URL_ENV} is set ({url}), so the demo uses that endpoint, and it needs "
                f"the key in {KEY_ENV} (any value for a server that needs none)"
            )
        names = sorted({a.model.model for a in workflow.agents.values() if a.model is not None})
        yield f"model: {', '.join(names)} at {url} (from {BASE_URL_ENV})"
        return
    script = demo.scripted(pace)
    assert script is not None
    with scripted_model(script):
        yield (
            f"model: scripted replies, no real model; to use one, set {BASE_URL_ENV} "
            f"(e.g. http://localhost:11434/v1) and {KEY_ENV}"
        )


@contextmanager
def scripted_model(script: Script) -> Iterator[str]:
    """A scripted chat server on loopback, and the environment pointing the examples at it.

    Yields the server's URL. `OPENAI_BASE_URL` and `OPENAI_API_KEY` are set for the block
    and put back as they were after it.
    """
    from podium.testing.chat_server import ChatServer

    saved = {name: os.environ.get(name) for name in (BASE_URL_ENV, KEY_ENV)}
    with ChatServer(respond=script) as server:
        os.environ[BASE_URL_ENV] = server.url
        os.environ[KEY_ENV] = "scripted-demo-key"
        try:
            yield server.url
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
