"""One module per ``microcue`` subcommand (see bridge.cli)."""
