"""The ``microcue`` console script: the bridge's commands plus those that run the web service.

This is the composition root of the command line. ``serve`` and ``demo`` start the FastAPI app,
so they live in ``web.commands``; everything else is a bridge-level command
(:mod:`bridge.cli`). Layers stay one-way: ``web`` imports ``bridge``, never the reverse.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bridge import cli as bridge_cli

#: Every subcommand module, in the order ``microcue --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "bridge.commands.analyze",
    "bridge.commands.models",
    "web.commands.serve",
    "web.commands.worker",
    "web.commands.demo",
    "web.commands.join",
    "bridge.commands.report",
    "bridge.commands.db",
    "bridge.commands.purge",
)


def main(argv: Sequence[str] | None = None) -> int:
    return bridge_cli.main(argv, COMMAND_MODULES)


if __name__ == "__main__":
    sys.exit(main())
