"""`python -m podium`: the same command as the `podium` console script."""

from podium.cli import main

main(prog_name="podium")
