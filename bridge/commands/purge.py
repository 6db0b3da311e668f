"""``microcue purge --older-than 30d``: retention (docs/policy.md).

Prints the meetings it removed and the rows per table, so an operator's cron
log is the record of what retention deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import timedelta

from bridge.config import Settings
from bridge.store import migrate, repo
from bridge.store.db import create_engine, create_session_factory
from bridge.store.errors import explain_unavailable

#: ``30d``, ``12h``, ``90m``: days, hours or minutes, a positive whole number.
DURATION_RE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
UNITS: dict[str, str] = {"d": "days", "h": "hours", "m": "minutes"}


def _out(line: str) -> None:
    """Results go to stdout (logs go to stderr), so cron mails and scripts get exactly this."""
    sys.stdout.write(line + "\n")


def parse_duration(text: str) -> timedelta:
    """``Nd``, ``Nh`` or ``Nm``; argparse turns the error into a usage message and exit 2."""
    match = DURATION_RE.match(text)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 30d, 12h or 90m, got {text!r}")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def format_duration(age: timedelta) -> str:
    """Back to the ``Nd``/``Nh``/``Nm`` the operator typed, for the printed record."""
    minutes = int(age.total_seconds()) // 60
    for unit, size in (("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("purge", help="delete meetings (and all their rows) older than a retention period")
    p.add_argument(
        "--older-than",
        required=True,
        type=parse_duration,
        metavar="AGE",
        help="30d, 12h or 90m; age counts from the meeting's end (its start or creation if it never ended)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(run=run)


async def _purge(settings: Settings, older_than: timedelta, dry_run: bool) -> repo.Removed:
    await migrate.require_head(settings)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            return await repo.purge_older_than(session=session, older_than=older_than, dry_run=dry_run)
    finally:
        await engine.dispose()


def run(args: argparse.Namespace, settings: Settings) -> int:
    with explain_unavailable(settings):
        removed = asyncio.run(_purge(settings, args.older_than, args.dry_run))
    verb = "would remove" if args.dry_run else "removed"
    age = format_duration(args.older_than)
    _out(f"purge older than {age}: {verb} {len(removed.meeting_ids)} meeting(s)")
    for meeting_id in removed.meeting_ids:
        _out(f"  meeting {meeting_id}")
    if removed.meeting_ids:
        _out("  rows: " + ", ".join(f"{table} {count}" for table, count in removed.rows.items()))
    return 0
