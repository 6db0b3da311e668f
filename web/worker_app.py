"""The HTTP surface of ``microcue worker``: probes, metrics, and signalling of the built-in rooms it holds.

No API: meetings reach a worker as join requests on the broker. Built-in room participants
reach it through the web role's proxy (``web/ws/signal_proxy.py``), which connects to the
URL the worker wrote into the meeting's lease (``MICROCUE_WORKER_URL``); the signalling
handler is the same as the single-process service's (``web/ws/signal.py``), and the worker's
rooms refuse meetings it does not hold. When the worker stops holding a room (drain, lost
lease, over capacity) it closes that room's signalling websockets with 1012, which the
proxy passes on: the clients reconnect and reach the room's next worker.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, WebSocket

from bridge.cluster.health import create_health_app
from bridge.cluster.worker_role import WorkerRole
from web.state import WebState
from web.ws import signal
from web.ws.common import close
from web.ws.signal_proxy import CLOSE_RECONNECT
from web.ws.sockets import MeetingSockets


def create_worker_app(worker: WorkerRole) -> FastAPI:
    app = FastAPI(title="MicroCue worker", docs_url=None, redoc_url=None, openapi_url=None)
    # the signalling handler's per-meeting socket cap; rate limits per address stay with the web
    # role, which sees the clients (here every connection comes from the web role's proxy)
    app.state.web = WebState(
        settings=worker.settings,
        service=worker.service,
        rooms=worker.rooms,
        signal_sockets=MeetingSockets(),
        analysis=worker.analysis,
    )
    sockets: dict[str, set[WebSocket]] = {}

    @app.websocket("/ws/rooms/{meeting_id}/signal")
    async def room_signal(websocket: WebSocket, meeting_id: str) -> None:
        if worker.draining or not await worker.rooms.wait_held(meeting_id):
            await websocket.accept()  # a stale holder in the lease table, or a drain: try again
            await close(websocket, CLOSE_RECONNECT, "this bridge worker does not hold the meeting; reconnect")
            return
        members = sockets.setdefault(meeting_id, set())
        members.add(websocket)
        try:
            await signal.signal(websocket, meeting_id)
        finally:
            members.discard(websocket)
            if not members:
                sockets.pop(meeting_id, None)

    async def room_closed(meeting_id: str) -> None:
        for websocket in list(sockets.get(meeting_id, ())):
            with contextlib.suppress(Exception):
                await close(
                    websocket,
                    CLOSE_RECONNECT,
                    "this meeting moved to another bridge worker; reconnect and send your offer again",
                )

    worker.room_closed_hooks.append(room_closed)
    app.router.routes.extend(create_health_app(worker).routes)
    return app
