"""``microcue db upgrade|downgrade|current``: the schema migrations (Alembic) for the configured database."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bridge.config import Settings
from bridge.store import migrate
from bridge.store.db import safe_url
from bridge.store.errors import explain_unavailable


def _out(line: str) -> None:
    """Results go to stdout (logs go to stderr), so scripts can read them."""
    sys.stdout.write(line + "\n")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="database schema migrations")
    actions = p.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    up = actions.add_parser("upgrade", help="migrate up to REV (default: head); safe to repeat")
    up.add_argument("rev", nargs="?", default="head", help="target revision (default: head)")
    down = actions.add_parser("downgrade", help="migrate down to REV ('base' drops every table and all data)")
    down.add_argument("rev", help="target revision, e.g. 0001 or base")
    actions.add_parser("current", help="print the database's revision and the code's head")
    p.set_defaults(run=run)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    url = safe_url(settings.effective_database_url)
    if args.db_action == "upgrade":
        await migrate.upgrade(settings, args.rev)
        _out(f"{url}: at revision {await migrate.current(settings) or 'none'}")
    elif args.db_action == "downgrade":
        await migrate.downgrade(settings, args.rev)
        _out(f"{url}: at revision {await migrate.current(settings) or 'none'}")
    else:
        rev = await migrate.current(settings)
        head = migrate.head_revision(settings)
        state = "up to date" if rev == head else "run 'microcue db upgrade'"
        _out(f"{url}: at revision {rev or 'none (empty database)'}, head is {head} ({state})")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    with explain_unavailable(settings):
        return asyncio.run(_run(args, settings))
