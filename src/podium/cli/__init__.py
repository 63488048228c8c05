"""The `podium` command line: a thin shell over `podium.spec`, `podium.runtime` and `podium.store`.

`main` is the click command group (the console script, and what `CliRunner` invokes). Only
click is imported here; each command imports what it needs when it runs.
"""

from podium.cli.app import main

__all__ = ["main"]
