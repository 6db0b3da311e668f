"""``WS /ws/rooms/{id}/signal?token=JOIN_TOKEN``: signalling for built-in rooms.

Protocol (JSON text messages):
  server -> {"type": "welcome", "bot": <announcement>, "participant_id": ...}
  client -> {"type": "join", "name": str, "consent": bool,        (once, first)
             "resume": {"participant_id": str, "secret": str}}    (optional: rejoin as before)
  server -> {"type": "joined", "participant_id": ..., "resume": {"participant_id", "secret"},
             "resumed": bool}
            ``joined``'s participant_id is the one that counts: with a valid ``resume`` (the
            pair an earlier ``joined`` gave, for this meeting, not connected now) it is the
            earlier participant, whose analysis continues on the meeting's timeline; otherwise
            the welcome's new one (a refused resume is not an error: it joins as someone new).
  client -> {"type": "offer", "pc": "publish", "sdp": str}      (once: camera + microphone up)
  server -> {"type": "answer", "pc": "publish", "sdp": str}
  client -> {"type": "offer", "pc": "subscribe", "sdp": str}    (once: receive-only slots)
  server -> {"type": "answer", "pc": "subscribe", "sdp": str}
  server -> {"type": "slots", "slots": [{"mid", "kind", "participant_id", "name"}]}
            who is in which receive slot now; sent whenever someone comes or goes
Each connection is offered once by the participant and never renegotiated (bridge/rooms/builtin.py).
  server -> {"type": "error", "message": str}; a refused message ends the connection (4400)
Close codes: 4401/4403 token refused (as the live feed), 4400 a message out of order or
malformed, 1009 a message over MAX_MESSAGE_BYTES, 1012 "service restart" (the service stops or
a bridge worker hands the room over): reconnect, join with ``resume`` and offer again. Leaving
(closing the socket) ends the participant's media; the other participants are never affected by
one client's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from bridge import policy
from bridge.rooms.builtin import BuiltinRooms, SignalError
from bridge.service import MeetingNotFound, MeetingService
from bridge.tokens import TokenKind, refusal_message
from web import ratelimit
from web.state import web_state
from web.ws.common import CLOSE_FORBIDDEN, CLOSE_TOO_MANY, close, refusal_code, token_from

log = logging.getLogger("microcue.signal")
router = APIRouter()

#: An offer is 3-8 kB; the join message a few hundred bytes.
MAX_MESSAGE_BYTES = 128 * 1024
CLOSE_PROTOCOL = 4400
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
#: No offer within ``MICROCUE_JOIN_TIMEOUT_S`` of connecting.
CLOSE_TIMEOUT = 4408
MAX_NAME = 80
#: 18 random bytes (144 bits, 24 URL-safe characters): a resume secret cannot be guessed, and
#: only its SHA-256 is stored (participants.resume_hash).
RESUME_SECRET_BYTES = 18
MAX_RESUME_SECRET = 64
BOT_ANNOUNCEMENT = (
    "MicroCue bot is in this meeting. With your consent it reads facial signals from your camera "
    "(engagement, attention{emotions}) and when you speak; no video or audio is stored."
)


class JoinTimeout(Exception):
    """The client connected and sent no offer in time."""


def _announcement(context: str, stored_policy: str | None, settings: Any) -> str:
    allowed = policy.for_meeting(context, stored_policy, settings).emotions_allowed
    return BOT_ANNOUNCEMENT.format(emotions=", sentiment and brief expressions" if allowed else "")


async def _refuse(websocket: WebSocket, code: int, message: str) -> None:
    log.warning("signalling refused: %s", message)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(json.dumps({"type": "error", "message": message}))
    await close(websocket, code, message)


def _parse(text: str) -> dict[str, Any]:
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise OverflowError(f"message of {len(text.encode())} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SignalError(f"not JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise SignalError("a message must be a JSON object with a 'type'")
    return data


async def _resumable(service: MeetingService, meeting_id: str, claim: Any, present: set[str]) -> tuple[str, str] | None:
    """(participant id, secret) when ``claim`` lets this connection rejoin as an earlier participant
    of this meeting: the secret's hash matches the stored one and that participant is not in the
    room now (two connections never analyse one person). Anything else: None, join as new."""
    if claim is None:
        return None
    if not isinstance(claim, dict) or not all(isinstance(claim.get(k), str) for k in ("participant_id", "secret")):
        raise SignalError('\'resume\' must be {"participant_id": str, "secret": str}')
    participant_id, secret = claim["participant_id"], claim["secret"]
    if participant_id in present or len(secret) > MAX_RESUME_SECRET:
        return None
    if not await service.resume_allowed(meeting_id, participant_id, secret):
        return None
    return participant_id, secret


@router.websocket("/ws/rooms/{meeting_id}/signal")
async def signal(websocket: WebSocket, meeting_id: str) -> None:
    state = web_state(websocket)
    service, rooms, sockets = state.service, state.rooms, state.signal_sockets
    if not ratelimit.websocket_allowed(state.rate_limiter, websocket, "join"):
        await websocket.accept()
        await close(websocket, CLOSE_TOO_MANY, "too many joins from this address; retry in a minute")
        return
    check = await service.check_token(token_from(websocket), meeting_id, TokenKind.JOIN)
    await websocket.accept()
    if not check.ok:
        code = refusal_code(check)
        # the reason as an error message too: clients (join page, RoomClient) show it
        await _refuse(websocket, code, refusal_message(check, TokenKind.JOIN))
        return
    if sockets.count(meeting_id) >= service.settings.max_signal_sockets:
        await _refuse(
            websocket, CLOSE_TOO_MANY, f"this meeting has {service.settings.max_signal_sockets} connections already"
        )
        return
    # Registered before the ended check: an end from now on closes this socket too.
    sockets.add(meeting_id, websocket)
    try:
        await _signal(websocket, meeting_id, service, rooms, role=check.role or "participant")
    finally:
        sockets.discard(meeting_id, websocket)


async def _receive_text(websocket: WebSocket, deadline: float | None) -> str:
    """The next text message; a binary one is a protocol error, not a crash. Before the first
    offer the client has until ``deadline`` (loop time), so an idle socket cannot hold a slot."""
    timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
    try:
        async with asyncio.timeout(timeout):
            message = await websocket.receive()
    except TimeoutError:
        raise JoinTimeout("no offer within the join timeout; reconnect to join") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise SignalError("binary messages are not part of this protocol: send JSON text")
    return str(text)


async def _signal(
    websocket: WebSocket, meeting_id: str, service: MeetingService, rooms: BuiltinRooms, *, role: str
) -> None:
    """One participant's signalling; ``role`` comes from their invitation (rep, buyer or participant)."""
    try:
        meeting = await service.get_meeting(meeting_id)
    except MeetingNotFound as exc:
        await close(websocket, CLOSE_FORBIDDEN, str(exc))
        return
    if meeting.ended_at is not None:
        await _refuse(websocket, CLOSE_FORBIDDEN, "this meeting has ended")
        return
    participant_id = uuid.uuid4().hex[:12]
    await websocket.send_text(
        json.dumps(
            {
                "type": "welcome",
                "participant_id": participant_id,
                "bot": _announcement(meeting.context, meeting.policy, service.settings),
            }
        )
    )
    joined: dict[str, Any] | None = None
    room = None
    send_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:  # slot updates come from other participants' tasks
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.send_text(json.dumps(message))

    # from connect to the first offer answered: an idle socket cannot hold a place in the room
    deadline = asyncio.get_running_loop().time() + service.settings.join_timeout_s
    answered = False
    try:
        while True:
            try:
                text = await _receive_text(websocket, None if answered else deadline)
                msg = _parse(text)
                if msg["type"] == "join":
                    if joined is not None:
                        raise SignalError("'join' was already sent")
                    name = str(msg.get("name") or "")[:MAX_NAME].strip() or "Participant"
                    consent = msg.get("consent") is True
                    room = await rooms.room(meeting_id)
                    resumed = await _resumable(service, meeting_id, msg.get("resume"), set(room.members))
                    if resumed is not None:
                        participant_id, secret = resumed
                    else:
                        secret = secrets.token_urlsafe(RESUME_SECRET_BYTES)
                    room.join(participant_id, name, consent, notify=send)
                    await service.join_participant(
                        meeting_id, participant_id, display_name=name, consent=consent, role=role, resume_secret=secret
                    )
                    joined = {"name": name, "consent": consent}
                    await send(
                        {
                            "type": "joined",
                            "participant_id": participant_id,
                            "resumed": resumed is not None,
                            "resume": {"participant_id": participant_id, "secret": secret},
                        }
                    )
                elif msg["type"] == "offer":
                    if joined is None or room is None:
                        raise SignalError("send 'join' (with your consent choice) before an 'offer'")
                    which = msg.get("pc", "publish")
                    if which == "publish":
                        answer = await room.publish(participant_id, msg.get("sdp"))
                    elif which == "subscribe":
                        answer = await room.subscribe(participant_id, msg.get("sdp"))
                    else:
                        raise SignalError(f"unknown connection {which!r} (expected 'publish' or 'subscribe')")
                    await send({"type": "answer", "pc": which, "sdp": answer})
                    answered = True
                else:
                    raise SignalError(f"unknown message type {msg['type']!r} (expected 'join' or 'offer')")
            except JoinTimeout as exc:
                await _refuse(websocket, CLOSE_TIMEOUT, str(exc))
                return
            except OverflowError as exc:
                await _refuse(websocket, CLOSE_TOO_BIG, str(exc))
                return
            except SignalError as exc:
                await _refuse(websocket, CLOSE_PROTOCOL, str(exc))
                return
            except (WebSocketDisconnect, asyncio.CancelledError):
                raise
            except Exception:  # a bug of ours: tell this participant, keep the room running
                log.exception("signalling for participant %s of meeting %s failed", participant_id, meeting_id)
                await _refuse(websocket, CLOSE_INTERNAL, "the bridge failed to handle this message")
                return
    except WebSocketDisconnect:
        pass
    finally:
        if room is not None:
            await room.leave(participant_id)
        if joined is not None:
            log.info("participant %s left meeting %s", participant_id, meeting_id)
