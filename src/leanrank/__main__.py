"""`python -m leanrank`: the `leanrank` command."""

from leanrank.cli.app import main

main()
