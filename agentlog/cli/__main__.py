"""`python -m agentlog.cli` runs the `agentlog` command."""

from agentlog.cli.main import main

main()
