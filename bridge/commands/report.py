"""``microcue report MEETING_ID [--format html|json|csv] [--out FILE]``: the post-meeting report.

Reads the database the settings name (``MICROCUE_DATABASE_URL`` or the SQLite
file under ``MICROCUE_DATA_DIR``), so an operator can produce a report without
the service running, e.g. after a crash. Output goes to stdout unless ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.store import migrate
from bridge.store.db import create_engine, create_session_factory
from bridge.store.errors import explain_unavailable

FORMATS: tuple[str, ...] = ("html", "json", "csv")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="post-meeting report of a stored meeting (HTML, JSON or CSV)")
    p.add_argument("meeting_id", metavar="MEETING_ID")
    p.add_argument("--format", choices=FORMATS, default="html", help="default: html")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(run=run)


async def _load(settings: Settings, meeting_id: str) -> dict[str, Any] | None:
    from bridge.insights.reports.meeting_report import report_data

    await migrate.require_head(settings)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            return await report_data(session=session, meeting_id=meeting_id, settings=settings)
    finally:
        await engine.dispose()


def render(data: dict[str, Any], fmt: str) -> str:
    from bridge.insights.reports.exports import render_csv, render_json
    from bridge.insights.reports.meeting_report import render_html

    return {"html": render_html, "json": render_json, "csv": render_csv}[fmt](data)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with explain_unavailable(settings):
        data = asyncio.run(_load(settings, args.meeting_id))
    if data is None:
        raise MicroCueError(f"no meeting with id {args.meeting_id!r} in this database (never created, or erased)")
    text = render(data, args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"report of meeting {args.meeting_id} written to {args.out}", file=sys.stderr)
    return 0
