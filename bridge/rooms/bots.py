"""``POST /api/meetings/{id}/bot``: the service itself sends a bot into an external meeting.

The allow-list check happened in MeetingService.request_bot; here a bot is built for the target
and run as a task owned by this manager (one bot per meeting):

* a Janus VideoRoom or WHEP target gets a MeetingAdapter with the process's analysis (the same
  models as the built-in rooms, ``bridge.media.analysis``) under the meeting's purpose policy;
  its cues go to the service's bus, so the dashboard, store and reports see them like any
  other meeting's;
* a web page gets the browser bot (``bridge/rooms/browser.py``), which forwards each remote
  participant into the meeting's built-in room over WHIP with a join token issued here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from bridge.errors import MicroCueError, NotBuiltYet
from bridge.media.analysis import Analysis
from bridge.rooms import create_adapter
from bridge.rooms.browser import BrowserBot, load_recipe
from bridge.service import MeetingService
from bridge.targets import JoinTarget
from bridge.tasks import cancel_and_wait

#: Janus allows long display names; the store keeps this many characters (as the join page).
MAX_DISPLAY = 80

log = logging.getLogger("microcue.bots")


class Bot(Protocol):
    kind: str

    async def run(self) -> None: ...

    def live(self) -> dict[str, dict[str, Any]]:
        """Per participant the bot itself analyses: what the presenter's tile shows besides cues."""
        ...

    async def aclose(self) -> None: ...


class BotManager:
    def __init__(self, service: MeetingService, analysis: Analysis) -> None:
        self.service = service
        self.analysis = analysis
        self.bots: dict[str, tuple[Bot, asyncio.Task[None]]] = {}
        # One bot per meeting: the check and the start are one step, so two concurrent
        # ``POST .../bot`` calls cannot both start one.
        self._lock = asyncio.Lock()

    async def __call__(self, meeting_id: str, target: JoinTarget) -> Mapping[str, Any]:
        """The service's ``bot_hook``."""
        async with self._lock:
            return await self._start(meeting_id, target)

    async def _start(self, meeting_id: str, target: JoinTarget) -> Mapping[str, Any]:
        running = self.bots.get(meeting_id)
        if running is not None and not running[1].done():
            return {"status": "already joined", "kind": running[0].kind}
        bot: Bot
        if target.kind == "whep":  # before loading any model: nothing will run
            raise NotBuiltYet("joining over WHEP is not built yet in this version; use 'janus' or 'page'")
        if target.kind == "page":
            bot = await self._browser_bot(meeting_id, target)
        else:
            # external meetings have no consent page: the bot announces itself by its display name.
            # MICROCUE_JANUS_CONSENT: "announced" analyses everyone once the bot's name says it
            # analyses faces; "required" analyses nobody (tracks are drained) until consent is
            # granted per person.
            announced = self.service.settings.janus_consent == "announced"
            allowed = await self.service.emotions_allowed(meeting_id)
            ctx = await self.analysis.context(
                meeting_id, bus=self.service.bus, emotions_allowed=allowed, consent=announced
            )
            ctx.consent_basis = "announced"
            ctx.on_participant = self._recorder(meeting_id, consent=announced)
            # connects to the address the target check resolved, never to the name again
            bot = create_adapter(target, ctx)
        task = asyncio.create_task(self._run(meeting_id, bot), name=f"bot-{meeting_id}")
        self.bots[meeting_id] = (bot, task)
        log.info("bot joining %s %s for meeting %s", target.kind, target.url, meeting_id)
        return {"status": "joining", "kind": bot.kind}

    def _recorder(self, meeting_id: str, *, consent: bool) -> Callable[[str, str], Coroutine[Any, Any, None]]:
        """Stores each participant of the external meeting under their display name there."""
        service = self.service

        async def record(participant_id: str, display: str) -> None:
            await service.join_participant(
                meeting_id, participant_id, display_name=display[:MAX_DISPLAY], consent=consent
            )

        return record

    def live(self, meeting_id: str) -> dict[str, dict[str, Any]]:
        running = self.bots.get(meeting_id)
        return running[0].live() if running is not None and not running[1].done() else {}

    async def _browser_bot(self, meeting_id: str, target: JoinTarget) -> BrowserBot:
        recipe = load_recipe(target.recipe or "")
        service = self.service
        # the bot's own invitation: what it forwards arrives like any WHIP publisher's
        token = await service.issue_join_token(meeting_id)
        whip = f"{service.settings.base_url}/whip/{meeting_id}"
        return BrowserBot(target.url, recipe, whip_url=whip, join_token=token)

    async def _run(self, meeting_id: str, bot: Bot) -> None:
        try:
            await bot.run()
        except MicroCueError as exc:
            log.error("bot of meeting %s stopped: %s", meeting_id, exc)
        except Exception:
            log.exception("bot of meeting %s failed", meeting_id)
        finally:
            await bot.aclose()

    def running(self, meeting_id: str) -> Bot | None:
        entry = self.bots.get(meeting_id)
        return entry[0] if entry is not None and not entry[1].done() else None

    async def close_meeting(self, meeting_id: str, reason: str = "recalled") -> bool:
        """The service's closer (meeting ended or erased) and ``DELETE .../bot``: the bot leaves now
        (peers closed, workers stopped, chromium gone, no reconnect); False when none was running."""
        entry = self.bots.pop(meeting_id, None)
        if entry is None:
            return False
        bot, task = entry
        was_running = not task.done()
        await cancel_and_wait(task)
        await bot.aclose()
        log.info("bot of meeting %s left: %s", meeting_id, reason)
        return was_running

    async def aclose(self) -> None:
        for meeting_id in list(self.bots):
            await self.close_meeting(meeting_id, "service stopping")
