"""``microcue join --janus ws://host:8188 --room N`` or ``--page URL --recipe NAME``: the bot
joins an external meeting (a Janus VideoRoom, or any web meeting page in the browser bot;
see ``web/commands/join_page.py``).

Every cue is printed to stdout as one JSON object per line (the cue schema of
docs/contracts.md), logs go to stderr, so ``microcue join ... | jq`` or a parent process
reads cues directly. The bot stays until SIGINT/SIGTERM (or ``--duration``),
reconnecting on its own when the meeting server goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import TYPE_CHECKING

from bridge import eventloop
from bridge.bus import create_bus
from bridge.config import Settings
from bridge.errors import NotBuiltYet, UsageError
from bridge.rooms import JoinTarget, MeetingAdapter, create_adapter
from bridge.rooms.browser import BOT_NAME, available_recipes, check_page_url, load_recipe
from bridge.store.tables import MEETING_CONTEXTS
from bridge.tasks import cancel_and_wait
from web.commands.harness import printing_cues, stop_on_signals

if TYPE_CHECKING:
    from bridge.media.analysis import Analysis

log = logging.getLogger("microcue.join")

#: Longest wait for the cue printer to flush at shutdown (stdout may be a stalled pipe).
PRINT_DRAIN_S = 2.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "join",
        help="the bot joins an external meeting; each cue is one JSON line on stdout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--janus", metavar="URL", help="Janus WebSocket API, e.g. ws://host:8188")
    target.add_argument("--whep", metavar="URL", help="a WHEP endpoint (not built yet)")
    target.add_argument("--page", metavar="URL", help="a web meeting page, joined by the browser bot (with --recipe)")
    p.add_argument("--room", type=int, default=None, help="Janus VideoRoom number (with --janus)")
    p.add_argument("--recipe", default=None, help="how to join --page: a recipe name (bridge/rooms/recipes)")
    p.add_argument("--name", default=BOT_NAME, help=f"the browser bot's display name (default: {BOT_NAME})")
    p.add_argument("--meeting-id", default=None, help="id stamped on every cue (default: janus-room-N)")
    p.add_argument(
        "--context",
        choices=MEETING_CONTEXTS,
        required=True,  # no silent default: the purpose decides what may be inferred (AI Act Art. 5(1)(f))
        help="the meeting's purpose (required); workplace and education get no emotion cues (MICROCUE_POLICY)",
    )
    p.add_argument("--no-gaze", action="store_true", help="skip the iris model (faster, no gaze)")
    p.add_argument("--no-voice", action="store_true", help="no voice activity (speaking cues)")
    p.add_argument("--duration", type=float, default=None, help="leave after this many seconds")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration}")
    if args.page is not None:
        if args.recipe is None:
            raise UsageError(f"--page needs --recipe NAME (how to join that page); available: {available_recipes()}")
        load_recipe(args.recipe)  # an unknown recipe fails here, before anything starts
        check_page_url(args.page)
        from web.commands.join_page import join_page

        return eventloop.run(join_page(args, settings))
    if args.recipe is not None:
        raise UsageError("--recipe only applies to --page")
    if args.whep:
        raise NotBuiltYet("joining over WHEP is not built yet in this version; use --janus URL --room N")
    if args.room is None:
        raise UsageError("--janus needs --room N (the VideoRoom number)")
    if not args.janus.startswith(("ws://", "wss://")):
        raise UsageError(f"--janus takes Janus's WebSocket URL (ws://host:8188), got {args.janus!r}")
    target = JoinTarget(kind="janus", url=args.janus, room=args.room)
    return eventloop.run(_join(args, target, settings))


def _analysis(args: argparse.Namespace, settings: Settings) -> Analysis:
    """The bot's models: without the iris model under ``--no-gaze``, the VAD under ``--no-voice``,
    the emotion model where the purpose allows no emotion cues; analysed in this process."""
    from bridge.media.analysis import Analysis
    from bridge.policy import for_meeting

    allowed = for_meeting(args.context, None, settings).emotions_allowed
    return Analysis(settings, gaze=not args.no_gaze, emotion=allowed, voice=not args.no_voice, processes=0)


async def _join(args: argparse.Namespace, target: JoinTarget, settings: Settings) -> int:
    meeting_id = args.meeting_id or f"janus-room-{target.room}"
    bus = create_bus(settings)
    await bus.start()
    adapter: MeetingAdapter | None = None
    analysis = _analysis(args, settings)
    async with printing_cues(bus.subscribe(meeting_id), drain_s=PRINT_DRAIN_S):
        try:
            async with stop_on_signals() as stop:
                # MICROCUE_JANUS_CONSENT: "announced" analyses everyone once the bot's display name says
                # it analyses faces; "required" analyses nobody (tracks are drained, never analysed).
                ctx = await analysis.context(
                    meeting_id,
                    bus=bus,
                    emotions_allowed=analysis.emotion,
                    consent=settings.janus_consent == "announced",
                )
                adapter = create_adapter(target, ctx)
                runner = asyncio.create_task(adapter.run(), name="join-adapter")
                waiter = asyncio.create_task(stop.wait(), name="join-stop")
                await asyncio.wait({runner, waiter}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
                await cancel_and_wait(runner, waiter)  # a fatal adapter error (e.g. no such room) surfaces here
            return 0
        finally:
            if adapter is not None:
                for pid, p in adapter.participants.items():
                    log.info("participant %s: %s", pid, p.stats())
                await adapter.aclose()
            await analysis.aclose()
            await bus.aclose()  # ends the subscription: the printer prints the last cues, then stops
