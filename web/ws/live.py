"""``WS /ws/meetings/{id}/live?token=``: the presenter's live feed of cues.

Protocol (server to client, JSON text frames):

* ``{"type": "snapshot", "participants": [...], "recent": [...], "policy": {...}}`` once, first;
  sales meetings add ``"coaching"``, computed with the participants' roles as they stand;
* ``{"type": "participant", "participant": {...}}`` when the presenter changes a role or name;
* ``{"type": "coaching", "coaching": {...}}`` (sales) coaching recomputed after a role change;
* ``{"type": "cue", "cue": {...}}`` per cue (the cue schema of docs/contracts.md), filtered by the meeting's policy;
* ``{"type": "skipped", "count": N}`` when this connection fell behind and N cues were dropped;
* ``{"type": "meeting_ended", "meeting_id": ...}`` when the meeting ends;
* ``{"type": "ping"}`` every ``heartbeat_s`` seconds, so idle proxies keep the connection open
  and the dashboard can tell a dead link from a quiet meeting.

The client may send small text frames (``{"type": "pong"}``); they are read and
ignored, and one over ``max_message_bytes`` closes the connection with 1009.

Close codes: 4401 missing or unknown token (also when it is revoked while the feed is open:
the token is checked again every heartbeat), 4403 a real token that is not this meeting's
presenter token (or one that expired while open), 4408 the client stayed stuck (could not take a
message) for ``stuck_timeout_s``, 4410 the meeting was erased, 1009 message too
big, 1001 server shutting down.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from bridge import metrics, policy
from bridge.service import MeetingNotFound, MeetingService
from bridge.tokens import TokenKind, refusal_message
from inference.cues import EXPRESSION_TYPES
from web import ratelimit
from web.hub import (
    RECENT_EXPRESSIONS,
    SEED_STATE_CUES,
    STATE_TYPES,
    LiveConnection,
    encode,
)
from web.state import LiveOptions, web_state
from web.ws.common import (
    CLOSE_FORBIDDEN,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY,
    CLOSE_TOO_SLOW,
    close,
    refusal_code,
    token_from,
)

log = logging.getLogger("microcue.web.live")

router = APIRouter()


@router.websocket("/ws/meetings/{meeting_id}/live")
async def live_feed(websocket: WebSocket, meeting_id: str) -> None:
    """Presenter feed: snapshot, then cues; see the module docstring for the protocol."""
    state = web_state(websocket)
    service, hub, options = state.service, state.live_hub(), state.live_options
    if not ratelimit.websocket_allowed(state.rate_limiter, websocket, "token"):
        await websocket.accept()
        await close(websocket, CLOSE_TOO_MANY, "too many connections from this address; retry in a minute")
        return
    token = token_from(websocket)
    check = await service.check_token(token, meeting_id, TokenKind.PRESENTER)
    # Accept first: a close before accept becomes a bare HTTP 403 and the browser never sees why.
    await websocket.accept()
    if not check.ok:
        metrics.websocket_refused(check.status.value)
        code = refusal_code(check)
        await close(websocket, code, refusal_message(check, TokenKind.PRESENTER))
        return
    try:
        meeting = await service.get_meeting(meeting_id)
        people = await service.participants(meeting_id)
        if hub.needs_seed(meeting_id):
            state_cues = await service.recent_cues(meeting_id, types=frozenset(STATE_TYPES), limit=SEED_STATE_CUES)
            expressions = await service.recent_cues(meeting_id, types=EXPRESSION_TYPES, limit=RECENT_EXPRESSIONS)
            hub.seed(meeting_id, state_cues=state_cues, expression_cues=expressions)
    except MeetingNotFound as exc:  # erased between the token check and here
        await close(websocket, CLOSE_FORBIDDEN, str(exc))
        return
    decision = policy.for_meeting(meeting.context, meeting.policy, service.settings)
    coaching = None
    if meeting.kind == "sales" and service.summary_hook is not None:
        # coaching as the roles stand now, from the stored cues (a preview while the meeting runs)
        summary = await service.summary_hook(meeting_id)
        coaching = None if summary is None else summary.get("coaching")
    conn, snapshot = hub.connect(
        meeting_id,
        allowed_types=decision.allowed_cue_types,
        participants=people,
        policy=decision.to_dict(),
        maxsize=options.send_queue,
        coaching=coaching,
    )
    if meeting.ended_at is not None:
        conn.offer(encode({"type": "meeting_ended", "meeting_id": meeting_id}))
    sender = asyncio.create_task(_send_loop(websocket, conn, options, snapshot), name=f"live-send-{meeting_id}")
    receiver = asyncio.create_task(_receive_loop(websocket, options), name=f"live-recv-{meeting_id}")
    # not awaited with the others: it only asks the sender to close, and the sender must get to
    watcher = asyncio.create_task(
        _watch_token(service, token, conn, options.heartbeat_s), name=f"live-token-{meeting_id}"
    )
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Whichever ends first (client left, client stuck, close requested) ends the other.
        for task in (sender, receiver, watcher):
            task.cancel()
        await asyncio.wait({sender, receiver, watcher})
        for task in (sender, receiver):
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
                log.error("live feed of meeting %s failed", meeting_id, exc_info=error)
        hub.disconnect(conn)
        if conn.skipped_total:
            log.info("live feed of meeting %s: connection skipped %d cue(s)", meeting_id, conn.skipped_total)


async def _watch_token(service: MeetingService, token: str | None, conn: LiveConnection, every_s: float) -> None:
    """A presenter token that is revoked, or expires, ends the feeds it opened within one
    heartbeat. It is the same check the connection passed, against the database, so a revocation
    on one web pod closes feeds on every pod. While the database is away the feed stays open
    (it was valid when last seen) and the check is tried again at the next heartbeat."""
    while True:
        await asyncio.sleep(every_s)
        try:
            check = await service.check_token(token, conn.meeting_id, TokenKind.PRESENTER)
        except Exception as exc:  # the database is away: not a reason to cut the presenter off
            log.warning("live feed of meeting %s: token re-check failed (%s); trying again", conn.meeting_id, exc)
            continue
        if not check.ok:
            code = refusal_code(check)
            log.info(
                "live feed of meeting %s: its token is no longer valid (%s); closing",
                conn.meeting_id,
                check.status.value,
            )
            conn.close_with(code, f"token revoked or no longer valid: {refusal_message(check, TokenKind.PRESENTER)}")
            return


async def _send_loop(websocket: WebSocket, conn: LiveConnection, options: LiveOptions, first: str) -> None:
    """Sends ``first`` (the snapshot), then drains the connection's queue; heartbeats; closes a
    client that stays stuck. Every send is bounded by ``stuck_timeout_s``, the snapshot's too."""
    if not await _send_bounded(websocket, conn, options, first):
        return
    next_ping = time.monotonic() + options.heartbeat_s
    while True:
        await conn.wait(max(0.0, next_ping - time.monotonic()))
        if conn.close_request is not None:
            final = conn.pop()  # e.g. meeting_ended, sent before the close frame
            if final is None or await _send_bounded(websocket, conn, options, final):
                await close(websocket, *conn.close_request)
            return
        if time.monotonic() >= next_ping:
            message: str | None = encode({"type": "ping"})
            next_ping = time.monotonic() + options.heartbeat_s
        elif conn.skipped_unreported:
            message = encode({"type": "skipped", "count": conn.skipped_unreported})
            conn.skipped_unreported = 0
        else:
            message = conn.pop()
        if message is not None and not await _send_bounded(websocket, conn, options, message):
            return


async def _send_bounded(websocket: WebSocket, conn: LiveConnection, options: LiveOptions, message: str) -> bool:
    """One send, given at most ``stuck_timeout_s``; False (and the connection closed) when it stalls."""
    try:
        async with asyncio.timeout(options.stuck_timeout_s):
            await websocket.send_text(message)
    except TimeoutError:
        metrics.websocket_closed_slow()
        log.warning(
            "live feed of meeting %s: client took nothing for %.0f s; closing it",
            conn.meeting_id,
            options.stuck_timeout_s,
        )
        await close(websocket, CLOSE_TOO_SLOW, f"client too slow: nothing read for {options.stuck_timeout_s:g} s")
        return False
    return True


async def _receive_loop(websocket: WebSocket, options: LiveOptions) -> None:
    """Reads (and ignores) client messages; ends on disconnect or an oversized message."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text")
        size = len(data.encode("utf-8")) if data is not None else len(message.get("bytes") or b"")
        if size > options.max_message_bytes:
            await close(
                websocket,
                CLOSE_TOO_BIG,
                f"message too big: {size} bytes, at most {options.max_message_bytes}",
            )
            return
