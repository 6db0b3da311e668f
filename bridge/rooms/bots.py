"""``POST /api/meetings/{id}/bot``: the service itself sends a bot into an external meeting.

The allow-list check happened in MeetingService.request_bot; here a MeetingAdapter is built for
the target and run as a task owned by this manager (one bot per meeting), with the same models
and per-meeting purpose policy as the built-in rooms (``BuiltinRooms.context``). Its cues go
to the service's bus, so the dashboard, store and reports see them like any other meeting's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from bridge.errors import MicroCueError
from bridge.rooms.base import JoinTarget, MeetingAdapter, create_adapter
from bridge.rooms.builtin import BuiltinRooms
from bridge.service import BotTarget

log = logging.getLogger("microcue.bots")


class BotManager:
    def __init__(self, rooms: BuiltinRooms) -> None:
        self.rooms = rooms
        self.bots: dict[str, tuple[MeetingAdapter, asyncio.Task[None]]] = {}
        # One bot per meeting: the check and the start are one step, so two concurrent
        # ``POST .../bot`` calls cannot both start one.
        self._lock = asyncio.Lock()

    async def __call__(self, meeting_id: str, target: BotTarget) -> Mapping[str, Any]:
        """The service's ``bot_hook``."""
        async with self._lock:
            return await self._start(meeting_id, target)

    async def _start(self, meeting_id: str, target: BotTarget) -> Mapping[str, Any]:
        running = self.bots.get(meeting_id)
        if running is not None and not running[1].done():
            return {"status": "already joined", "kind": running[0].kind}
        # external meetings have no consent page: the bot announces itself by its display name
        # MICROCUE_JANUS_CONSENT: "announced" analyses everyone once the bot's name says it analyses
        # faces; "required" analyses nobody (tracks are drained) until consent is granted per person.
        announced = self.rooms.settings.janus_consent == "announced"
        ctx = await self.rooms.context(meeting_id, consent=announced)
        join = JoinTarget(janus=target.url, room=target.room) if target.kind == "janus" else JoinTarget(whep=target.url)
        # connect to the address the target check resolved, never to the name again
        options = {"address": target.address} if target.kind == "janus" and target.address else {}
        adapter = create_adapter(join, ctx, **options)  # raises NotBuiltYet for WHEP
        task = asyncio.create_task(self._run(meeting_id, adapter), name=f"bot-{meeting_id}")
        self.bots[meeting_id] = (adapter, task)
        log.info("bot joining %s %s for meeting %s", target.kind, target.url, meeting_id)
        return {"status": "joining", "kind": adapter.kind}

    async def _run(self, meeting_id: str, adapter: MeetingAdapter) -> None:
        try:
            await adapter.run()
        except MicroCueError as exc:
            log.error("bot of meeting %s stopped: %s", meeting_id, exc)
        except Exception:
            log.exception("bot of meeting %s failed", meeting_id)
        finally:
            await adapter.aclose()

    async def close_meeting(self, meeting_id: str, reason: str) -> bool:
        """The service's closer and ``DELETE .../bot``: the bot leaves now (peers closed, workers
        stopped, no reconnect); False when the meeting had no bot."""
        running = self.bots.pop(meeting_id, None)
        if running is None:
            return False
        adapter, task = running
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await adapter.aclose()
        log.info("bot of meeting %s left: %s", meeting_id, reason)
        return True

    async def aclose(self) -> None:
        bots, self.bots = list(self.bots.values()), {}
        for adapter, task in bots:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await adapter.aclose()
