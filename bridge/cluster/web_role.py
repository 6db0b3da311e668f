"""The web role's half of distribution: bot joins and built-in rooms become join requests.

``microcue serve --role web`` runs no bridge: ``POST /api/meetings/{id}/bot`` publishes a
``JoinRequest`` and returns. A request can be lost between the broker and a worker (the
worker that got it died before taking the lease), so the web role watches the lease table
and publishes again until a worker holds the meeting. A built-in room's signalling
websocket is proxied to the worker holding the meeting (``web/ws/signal_proxy.py``), which
``ClusterRooms.locate`` finds in the lease table, asking the workers for one if needed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.cluster.distributor import JoinPublisher, JoinRequest
from bridge.cluster.lease import Holder, LeaseStore
from bridge.errors import NotBuiltYet
from bridge.targets import JoinTarget

log = logging.getLogger("microcue.cluster.web")

#: A worker takes a request within a second when it has room; after this long without a
#: lease the request is published again.
CONFIRM_S = 10.0
#: Publications of one request in all before the web role gives up (and logs it).
MAX_ATTEMPTS = 5
CONFIRM_POLL_S = 0.5


class ClusterBots:
    """``MeetingService.bot_hook`` of the web role."""

    def __init__(
        self, mqtt_url: str, sessions: async_sessionmaker[AsyncSession], *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.publisher = JoinPublisher(mqtt_url, tls=tls)
        self.leases = LeaseStore(sessions, holder="web")
        self._watchers: set[asyncio.Task[None]] = set()

    async def __call__(self, meeting_id: str, target: JoinTarget) -> Mapping[str, Any]:
        held = await self.leases.holder_of(meeting_id)
        if held is not None:
            return {"status": "already joined", "kind": target.kind, "worker": held.worker}
        if target.kind != "janus":
            raise NotBuiltYet("joining over WHEP is not built yet in this version; use a Janus room")
        request = JoinRequest(meeting_id=meeting_id, kind="janus", url=target.url, room=target.room)
        await self.publisher.publish(request)
        task = asyncio.create_task(self._confirm(request), name=f"confirm-{meeting_id}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return {"status": "requested", "kind": "janus", "request_id": request.id}

    async def _confirm(self, request: JoinRequest) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            for _ in range(int(CONFIRM_S / CONFIRM_POLL_S)):
                await asyncio.sleep(CONFIRM_POLL_S)
                if await self.leases.holder_of(request.meeting_id) is not None:
                    return
            if attempt < MAX_ATTEMPTS:
                log.warning(
                    "no worker took meeting %s within %.0f s; publishing its request again",
                    request.meeting_id,
                    CONFIRM_S,
                )
                await self.publisher.publish(request)
        log.error(
            "no worker took meeting %s after %d requests; are workers running with room?",
            request.meeting_id,
            MAX_ATTEMPTS,
        )

    def live(self, meeting_id: str) -> dict[str, dict[str, Any]]:
        """The bots run on the workers: this process has no live view of their participants."""
        return {}

    async def close_meeting(self, meeting_id: str, reason: str = "recalled") -> bool:
        """The service's closer. The holding worker stops the meeting's bot by itself within a
        lease renewal (``RENEW_S``): it sees the meeting ended, or its lease erased. Recalling a
        bot of a running meeting from the web role is not built; False says nothing was stopped here."""
        log.info("meeting %s %s: its worker stops its bot at the next lease renewal", meeting_id, reason)
        return False

    async def aclose(self) -> None:
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


#: How long a built-in room client waits for a worker to hold its meeting: a worker that just
#: died keeps its lease up to LEASE_TTL_S, then a sweep offers the meeting again.
LOCATE_TIMEOUT_S = 20.0
LOCATE_POLL_S = 0.25


class ClusterRooms:
    """Finds (and if need be asks for) the worker that runs a built-in room, for the web role's proxy."""

    def __init__(
        self, mqtt_url: str, sessions: async_sessionmaker[AsyncSession], *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.publisher = JoinPublisher(mqtt_url, tls=tls)
        self.leases = LeaseStore(sessions, holder="web")
        self._asked: dict[str, float] = {}  # meeting -> loop time of the last join request

    async def locate(self, meeting_id: str, *, avoid: str = "") -> Holder | None:
        """The live holder of the meeting (not ``avoid``, a URL that just failed), publishing a
        join request for a built-in room when nobody holds it; None after LOCATE_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCATE_TIMEOUT_S
        while loop.time() < deadline:
            holder = await self.leases.holder_of(meeting_id)
            if holder is not None and holder.url != avoid:
                return holder
            if holder is None and loop.time() - self._asked.get(meeting_id, -CONFIRM_S) >= CONFIRM_S:
                self._asked[meeting_id] = loop.time()
                await self.publisher.publish(JoinRequest(meeting_id=meeting_id, kind="builtin"))
            await asyncio.sleep(LOCATE_POLL_S)
        return None
