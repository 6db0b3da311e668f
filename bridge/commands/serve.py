"""``microcue serve``: not built yet; it lands with its issue (see the README's status table)."""

from __future__ import annotations

import argparse

from bridge.config import Settings
from bridge.errors import NotBuiltYet


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="(not built yet)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    raise NotBuiltYet("'microcue serve' is not built yet in this version")
