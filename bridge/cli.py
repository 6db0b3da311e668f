"""The ``microcue`` command-line machinery and the bridge-level subcommands.

Each subcommand lives in its own module with ``register(subparsers)`` and a
``run(args, settings) -> int``; this file only wires settings flags and turns
expected failures into one clear line and a non-zero exit, never a traceback.

The console script itself is ``web.cli:main``: it adds the commands that start the web
service (``serve``, ``demo``) to the ones listed here, so nothing in ``bridge`` imports ``web``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from bridge import logsafe
from bridge.config import Settings
from bridge.errors import MicroCueError

#: The subcommand modules of the bridge layer (no web service needed), in ``--help`` order.
COMMAND_MODULES: tuple[str, ...] = tuple(
    f"bridge.commands.{name}" for name in ("analyze", "models", "report", "db", "purge")
)

log = logging.getLogger("microcue")


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    """``MICROCUE_PORT`` is ``--port``: one flag per settings field, same name."""
    group = parser.add_argument_group("settings (each also read from MICROCUE_<NAME>)")
    for name, field in Settings.model_fields.items():
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"setting_{name}",
            default=None,
            metavar=name.upper(),
            help=field.description or f"default: {field.get_default(call_default_factory=False)!s}",
        )


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microcue", description="Real-time meeting feedback.")
    _settings_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None, modules: Sequence[str] = COMMAND_MODULES) -> int:
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    try:
        settings = _settings_from(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"microcue: invalid setting {first['loc'][0]}: {first['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logsafe.install()
    try:
        return int(args.run(args, settings) or 0)
    except MicroCueError as exc:
        print(f"microcue: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("microcue: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
