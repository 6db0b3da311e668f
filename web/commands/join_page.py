"""``microcue join --page URL --recipe NAME``: the browser bot joins a web meeting page.

The bot forwards each remote participant over WHIP, so this command runs the service itself on
``--host``/``--port`` (a meeting in the configured database, SQLite by default), sends the
browser bot into the page, and prints every cue as one JSON line on stdout; the dashboard URL,
who was forwarded and the report URL go to stderr. It stops on SIGINT/SIGTERM, ``--duration``,
or when the page ends the call; the meeting then ends.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bridge.config import Settings
from bridge.rooms.browser import BrowserBot, check_page_url, load_recipe
from bridge.tasks import cancel_and_wait
from web.commands.harness import bind_tcp, printing_cues, serving, stop_on_signals

#: Seconds to let the last cues (presence 0 of everyone forwarded) reach the bus before ending.
SETTLE_S = 1.0


async def join_page(args: argparse.Namespace, settings: Settings) -> int:
    from web.app import create_app

    recipe = load_recipe(args.recipe)
    page_url = check_page_url(args.page)
    app = create_app(settings)
    async with serving(app, settings, [bind_tcp(settings)], log_level="warning"):
        service = app.state.web.service
        created = await service.create_meeting(title=f"Browser bot: {page_url}"[:200], context=args.context)
        meeting_id = created.meeting.id
        print(f"meeting {meeting_id}; presenter dashboard: {created.dashboard_url}", file=sys.stderr)
        async with printing_cues(service.bus.subscribe(meeting_id)):
            bot = BrowserBot(
                page_url,
                recipe,
                whip_url=f"{settings.base_url}/whip/{meeting_id}",
                join_token=await service.issue_join_token(meeting_id),
                name=args.name,
            )
            running = asyncio.create_task(bot.run(), name="join-page-bot")
            try:
                async with stop_on_signals() as stop:
                    waiter = asyncio.create_task(stop.wait(), name="join-page-stop")
                    await asyncio.wait({running, waiter}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if not running.done():
                        await bot.aclose()  # leaves: forwards end (their participants get presence 0), chromium exits
                    await running  # a failure to join surfaces here
                return 0
            finally:
                if not running.done():  # a bot that failed has raised already; the meeting still ends
                    await cancel_and_wait(running)
                await asyncio.sleep(SETTLE_S)
                await service.end_meeting(meeting_id)
                for p in await service.participants(meeting_id):
                    print(f"participant {p.id}: {p.display_name}", file=sys.stderr)
                print(
                    f"meeting ended; report: {settings.base_url}/api/meetings/{meeting_id}/report.html"
                    f"?token={created.presenter_token}",
                    file=sys.stderr,
                )
