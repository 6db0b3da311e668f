"""``WS /ws/rooms/{id}/signal`` in the web role: a transparent proxy to the worker holding the room.

The web role runs no WebRTC. It checks the join token (so strangers cannot make workers take
meetings), finds the worker holding the meeting through the lease table, asking the workers
for one when nobody does (``bridge.cluster.web_role.ClusterRooms``), and then forwards
websocket frames both ways exactly as they are: text as text, bytes as bytes, nothing
parsed, so the signalling protocol (``web/ws/signal.py``) can change without touching this.

A close from the worker (normal, or one of the protocol's 4xxx codes) is passed to the
client with its code and reason. When the worker goes away without closing (it crashed, or
its pod was killed), the client is closed with 1012 "service restart" (RFC 6455 section
7.4, IANA registry): reconnect and send the offer again; the meeting is meanwhile taken over
by another worker and the next connection is proxied there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import websockets
from fastapi import APIRouter, WebSocket
from websockets.asyncio.client import ClientConnection

from bridge.cluster.web_role import ClusterRooms
from bridge.service import MeetingNotFound
from bridge.tokens import TokenKind, refusal_message
from web.state import web_state
from web.ws.common import CLOSE_FORBIDDEN, close, refusal_code, token_from
from web.ws.signal import MAX_MESSAGE_BYTES

log = logging.getLogger("microcue.signal.proxy")
router = APIRouter()

#: "Service Restart": the bridge worker went away; reconnect (RFC 6455 7.4.1 / IANA registry).
CLOSE_RECONNECT = 1012
#: "Try Again Later": no worker could take the meeting in time.
CLOSE_TRY_LATER = 1013
#: Seconds to open the websocket to a worker; a live worker answers in milliseconds.
UPSTREAM_CONNECT_TIMEOUT_S = 3.0
#: Close codes a client may not receive from a server as-is (reserved, RFC 6455 7.4.1).
_RESERVED = frozenset({1005, 1006, 1015})


@router.websocket("/ws/rooms/{meeting_id}/signal")
async def signal_proxy(websocket: WebSocket, meeting_id: str) -> None:
    state = web_state(websocket)
    service, rooms = state.service, state.cluster_rooms
    if rooms is None:
        raise RuntimeError("signalling is proxied only by the web role, which locates the rooms' workers")
    check = await service.check_token(token_from(websocket), meeting_id, TokenKind.JOIN)
    if not check.ok:
        await websocket.accept()
        code = refusal_code(check)
        await close(websocket, code, refusal_message(check, TokenKind.JOIN))
        return
    try:
        meeting = await service.get_meeting(meeting_id)
    except MeetingNotFound as exc:
        await websocket.accept()
        await close(websocket, CLOSE_FORBIDDEN, str(exc))
        return
    if meeting.ended_at is not None:
        await websocket.accept()
        await close(websocket, CLOSE_FORBIDDEN, "this meeting has ended")
        return
    upstream = await _connect_upstream(rooms, meeting_id, websocket.url.query)
    await websocket.accept()
    if upstream is None:
        await close(websocket, CLOSE_TRY_LATER, "no bridge worker can take this meeting now; try again shortly")
        return
    await _pipe(websocket, upstream, meeting_id)


async def _connect_upstream(rooms: ClusterRooms, meeting_id: str, query: str) -> ClientConnection | None:
    """A websocket to the holder's signalling; a holder that does not answer (it just died, its
    lease not expired yet) is skipped until the meeting has another."""
    failed = ""
    for _ in range(100):  # bounded: locate() itself gives up after LOCATE_TIMEOUT_S
        holder = await rooms.locate(meeting_id, avoid=failed)
        if holder is None:
            return None
        base = holder.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        try:
            async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT_S):
                return await websockets.connect(
                    f"{base}/ws/rooms/{meeting_id}/signal?{query}", max_size=MAX_MESSAGE_BYTES, open_timeout=None
                )
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            log.warning(
                "worker %s of meeting %s does not answer (%s); waiting for another", holder.worker, meeting_id, exc
            )
            failed = holder.url
            await asyncio.sleep(0.5)
    return None


async def _pipe(websocket: WebSocket, upstream: ClientConnection, meeting_id: str) -> None:
    async def client_to_worker() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def worker_to_client() -> None:
        async for frame in upstream:
            if isinstance(frame, str):
                await websocket.send_text(frame)
            else:
                await websocket.send_bytes(frame)

    up = asyncio.create_task(client_to_worker())
    down = asyncio.create_task(worker_to_client())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
    if up in done:  # the client left: tell the worker, so the participant leaves the room
        with contextlib.suppress(Exception):
            await upstream.close()
        return
    received = upstream.protocol.close_rcvd  # the worker's close frame, if it sent one
    if received is not None and received.code not in _RESERVED:
        await close(websocket, received.code, received.reason)  # passed on as it is
    else:
        exc = None if down.cancelled() else down.exception()
        log.warning("the worker of meeting %s went away (%r); the client reconnects", meeting_id, exc)
        await close(
            websocket,
            CLOSE_RECONNECT,
            "the bridge worker of this meeting went away; reconnect and send your offer again",
        )
    with contextlib.suppress(Exception):
        await upstream.close()
