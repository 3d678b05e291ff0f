"""`python -m sdc COMMAND ...`, the same as the `sdc` console script."""

from sdc.cli import main

main()
