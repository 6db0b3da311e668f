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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bridge.errors import MicroCueError
from bridge.rooms.base import JoinTarget, MeetingAdapter, create_adapter
from bridge.rooms.builtin import BuiltinRooms
from bridge.service import BotTarget
from bridge.store import repo

#: Janus allows long display names; the store keeps this many characters (as the join page).
MAX_DISPLAY = 80

log = logging.getLogger("microcue.bots")


class BotManager:
    def __init__(self, rooms: BuiltinRooms) -> None:
        self.rooms = rooms
        self.bots: dict[str, tuple[MeetingAdapter, asyncio.Task[None]]] = {}

    async def __call__(self, meeting_id: str, target: BotTarget) -> Mapping[str, Any]:
        """The service's ``bot_hook``."""
        running = self.bots.get(meeting_id)
        if running is not None and not running[1].done():
            return {"status": "already joined", "kind": running[0].kind}
        # external meetings have no consent page: the bot announces itself by its display name
        ctx = await self.rooms.context(meeting_id, consent=True)
        ctx.consent_basis = "announced"
        ctx.on_participant = self._recorder(meeting_id)
        join = JoinTarget(janus=target.url, room=target.room) if target.kind == "janus" else JoinTarget(whep=target.url)
        adapter = create_adapter(join, ctx)  # raises NotBuiltYet for WHEP
        task = asyncio.create_task(self._run(meeting_id, adapter), name=f"bot-{meeting_id}")
        self.bots[meeting_id] = (adapter, task)
        log.info("bot joining %s %s for meeting %s", target.kind, target.url, meeting_id)
        return {"status": "joining", "kind": adapter.kind}

    def _recorder(self, meeting_id: str) -> Callable[[str, str], Awaitable[None]]:
        """Stores each participant of the external meeting under their display name there."""
        service = self.rooms.service

        async def record(participant_id: str, display: str) -> None:
            async with service.sessions() as session:
                await repo.add_participant(session=session, meeting_id=meeting_id, participant_id=participant_id,
                                           display_name=display[:MAX_DISPLAY], consent=True)

        return record

    def live(self, meeting_id: str) -> dict[str, dict[str, Any]]:
        running = self.bots.get(meeting_id)
        return running[0].live() if running is not None and not running[1].done() else {}

    async def _run(self, meeting_id: str, adapter: MeetingAdapter) -> None:
        try:
            await adapter.run()
        except MicroCueError as exc:
            log.error("bot of meeting %s stopped: %s", meeting_id, exc)
        except Exception:
            log.exception("bot of meeting %s failed", meeting_id)
        finally:
            await adapter.aclose()

    async def aclose(self) -> None:
        bots, self.bots = list(self.bots.values()), {}
        for adapter, task in bots:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await adapter.aclose()
