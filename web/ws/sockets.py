"""Open websockets per meeting: end and erase close them, and the per-meeting cap counts them.

The signalling endpoint registers each socket here for as long as it is open; the service's
closer (``close_meeting``) closes every socket of a meeting that ended (4409) or was erased
(4410), so a participant is not left connected to a room that no longer analyses or relays.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import WebSocket

from bridge.service import REASON_ERASED
from web.ws.common import close

log = logging.getLogger("microcue.web.sockets")

#: The meeting ended: final (the join page does not reconnect), like HTTP 409 for a late join.
CLOSE_MEETING_ENDED = 4409
#: The meeting was erased.
CLOSE_MEETING_GONE = 4410


class MeetingSockets:
    """Which websockets are open for which meeting (signalling only; the hub has the live feeds)."""

    def __init__(self) -> None:
        self._open: dict[str, set[WebSocket]] = {}

    def count(self, meeting_id: str) -> int:
        return len(self._open.get(meeting_id, ()))

    def add(self, meeting_id: str, websocket: WebSocket) -> None:
        self._open.setdefault(meeting_id, set()).add(websocket)

    def discard(self, meeting_id: str, websocket: WebSocket) -> None:
        sockets = self._open.get(meeting_id)
        if sockets is not None:
            sockets.discard(websocket)
            if not sockets:
                del self._open[meeting_id]

    async def close_meeting(self, meeting_id: str, reason: str) -> None:
        """The service's closer: every socket of the meeting closes with the reason's code."""

        code = CLOSE_MEETING_GONE if reason == REASON_ERASED else CLOSE_MEETING_ENDED
        sockets = list(self._open.pop(meeting_id, ()))
        if sockets:
            log.info("closing %d signalling socket(s) of meeting %s: %s", len(sockets), meeting_id, reason)
        await asyncio.gather(*(close(ws, code, reason) for ws in sockets), return_exceptions=True)
