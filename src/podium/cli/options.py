"""The options several `podium` commands share, defined once so they read the same everywhere.

A command whose option means something slightly different (the store `podium simulate` only
reads, say) passes its own help text to the factory; the name, default and environment
variable stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

DEFAULT_DB = "podium.db"

F = TypeVar("F", bound=Callable[..., Any])


def store_option(help: str) -> Callable[[F], F]:
    """`--db PATH` (env `PODIUM_DB`, default `podium.db`): the store to use."""
    return click.option(
        "--db",
        default=DEFAULT_DB,
        envvar="PODIUM_DB",
        show_default=True,
        show_envvar=True,
        metavar="PATH",
        help=help,
    )


def catalog_option(help: str) -> Callable[[F], F]:
    """`--agents FILE` (env `PODIUM_AGENTS`): a shared agent catalog."""
    return click.option(
        "--agents",
        "agents_file",
        envvar="PODIUM_AGENTS",
        show_envvar=True,
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help=help,
    )


def limit_option(help: str) -> Callable[[F], F]:
    """`--max-parallel N`: at most N steps at once."""
    return click.option("--max-parallel", type=click.IntRange(min=1), metavar="N", help=help)


def json_flag(help: str = "Print machine-readable JSON instead of tables.") -> Callable[[F], F]:
    """`--json`, passed to the command as `as_json`."""
    return click.option("--json", "as_json", is_flag=True, help=help)


db_option = store_option(
    "The store: a SQLite file (created if missing), or :memory: to keep nothing."
)
json_option = json_flag()
max_parallel_option = limit_option(
    "Run at most N steps at once (default: the workflow's max_parallel, else no limit)."
)
workflow_file = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
agents_option = catalog_option(
    "A shared agent catalog (agents.yaml): its agents are added to the workflow's, "
    "which win over them."
)
