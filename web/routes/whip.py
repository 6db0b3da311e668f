"""WHIP ingest (RFC 9725): any WHIP publisher puts a camera into a MicroCue meeting.

``POST /whip/{meeting_id}?consent=yes|no&name=...`` with a join token as ``Authorization: Bearer``
and the SDP offer (``application/sdp``) as body answers **201** with the SDP answer, a
``Location`` for the session and an ``ETag``. The publisher then becomes a participant of the
meeting's built-in room, exactly like one who came through the join page: analysed only with
consent, relayed to the others, with the role of a role-bound invitation.

* ``PATCH`` on the session with ``application/trickle-ice-sdpfrag`` adds trickled candidates
  (**204**). ICE restarts are not supported (aiortc cannot restart ICE), so a fragment with new
  ICE credentials or ``If-Match: *`` gets **422**, which RFC 9725 section 4.3.1 asks of a
  session that supports trickle but not restarts; the publisher then starts a new session.
  An ``If-Match`` that is not the session's ETag gets **412**.
* ``DELETE`` on the session ends it (**200**); the participant leaves. A publisher whose
  connection fails or is closed without DELETE leaves too, and its session is gone (**404**).
* CORS is open (``*``): only bearer tokens authorise, never cookies, so browser publishers on
  any origin work (RFC 9725 section 4.8 notes browsers need it).

The room is used through ``BuiltinRooms.publish/trickle/unpublish`` only, and the participant is
recorded through ``MeetingService`` (``join_participant``, ``leave_participant``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from bridge.rooms.builtin import RemoteCandidate, SignalError, check_offer
from bridge.service import MeetingNotFound, MeetingService
from bridge.tokens import TokenKind, TokenStatus, refusal_message
from web.deps import RoomsDep, ServiceDep, WhipSessionsDep
from web.state import WhipSession

log = logging.getLogger("microcue.web.whip")

router = APIRouter(tags=["whip"])

SDP_TYPE = "application/sdp"
SDPFRAG_TYPE = "application/trickle-ice-sdpfrag"
#: A display name as the join page allows it (web/ws/signal.py MAX_NAME).
MAX_NAME = 80
DEFAULT_NAME = "WHIP publisher"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch",
}
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)
_PWD = re.compile(r"^a=ice-pwd:(\S+)", re.MULTILINE)


def _error(code: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code, headers={**CORS_HEADERS, **headers})


def _bearer(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip() or None


async def _check_join_token(service: MeetingService, meeting_id: str, token: str | None) -> JSONResponse | str:
    """The role of a valid join token of this meeting ("" for none), or the refusal to send."""
    check = await service.check_token(token, meeting_id, TokenKind.JOIN)
    if check.ok:
        return check.role or ""
    message = refusal_message(check, TokenKind.JOIN).replace("'?token='", "nothing else (WHIP takes Bearer only)")
    if check.status in (TokenStatus.MISSING, TokenStatus.UNKNOWN):
        return _error(status.HTTP_401_UNAUTHORIZED, message, **{"WWW-Authenticate": "Bearer"})
    return _error(status.HTTP_403_FORBIDDEN, message)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


@router.options("/whip/{meeting_id}", include_in_schema=False)
@router.options("/whip/{meeting_id}/{resource_id}", include_in_schema=False)
async def preflight() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={**CORS_HEADERS, "Accept-Post": SDP_TYPE})


@router.post("/whip/{meeting_id}", status_code=status.HTTP_201_CREATED, response_class=Response)
async def publish(
    request: Request,
    *,
    meeting_id: str,
    service: ServiceDep,
    rooms: RoomsDep,
    sessions: WhipSessionsDep,
    consent: Annotated[str | None, Query(description="yes: analyse my camera; no: relay only")] = None,
    name: Annotated[str | None, Query(max_length=MAX_NAME)] = None,
    authorization: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> Response:
    """An SDP offer in (``application/sdp``), the answer out; ``Location`` names the session."""
    token = _bearer(authorization)
    checked = await _check_join_token(service, meeting_id, token)
    if isinstance(checked, JSONResponse):
        return checked
    if _media_type(content_type) != SDP_TYPE:
        return _error(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"the body must be an SDP offer ({SDP_TYPE})")
    if consent not in ("yes", "no"):
        return _error(
            status.HTTP_400_BAD_REQUEST,
            "say whether this camera may be analysed: add ?consent=yes or ?consent=no to the WHIP URL "
            f"(GET /api/join/{meeting_id}?token=... tells what is inferred); with 'no' it is only relayed",
        )
    try:
        meeting = await service.get_meeting(meeting_id)
    except MeetingNotFound as exc:
        return _error(status.HTTP_404_NOT_FOUND, str(exc))
    if meeting.ended_at is not None:
        return _error(status.HTTP_409_CONFLICT, f"meeting {meeting_id} has ended")
    sdp = (await request.body()).decode("utf-8", errors="replace")
    try:
        check_offer(sdp)  # before anyone is recorded as joined
    except SignalError as exc:
        return _error(status.HTTP_400_BAD_REQUEST, str(exc))
    participant_id = uuid.uuid4().hex[:12]
    display = (name or "").strip()[:MAX_NAME] or DEFAULT_NAME
    await service.join_participant(
        meeting_id, participant_id, display_name=display, consent=consent == "yes", role=checked or "participant"
    )
    resource_id = secrets.token_urlsafe(16)

    async def lost() -> None:  # the publisher went without DELETE (closed, crashed, network gone)
        if sessions.pop(resource_id, None) is not None:
            await service.leave_participant(meeting_id, participant_id)
            log.info("WHIP publisher %s of meeting %s lost its connection", participant_id, meeting_id)

    try:
        answer = await rooms.publish(meeting_id, participant_id, display, consent == "yes", sdp, on_lost=lost)
    except SignalError as exc:
        await service.leave_participant(meeting_id, participant_id)
        return _error(status.HTTP_400_BAD_REQUEST, str(exc))
    etag = secrets.token_hex(8)
    sessions[resource_id] = WhipSession(
        meeting_id=meeting_id,
        participant_id=participant_id,
        token_hash=hashlib.sha256((token or "").encode()).hexdigest(),
        etag=etag,
        ice_ufrag=_first(_UFRAG, sdp),
        ice_pwd=_first(_PWD, sdp),
    )
    log.info("WHIP publisher %s (%s) joined meeting %s", participant_id, display, meeting_id)
    return Response(
        answer,
        status_code=status.HTTP_201_CREATED,
        media_type=SDP_TYPE,
        headers={
            **CORS_HEADERS,
            "Location": f"/whip/{meeting_id}/{resource_id}",
            "ETag": f'"{etag}"',
            "Accept-Patch": SDPFRAG_TYPE,
        },
    )


async def _session(
    sessions: dict[str, WhipSession],
    service: MeetingService,
    meeting_id: str,
    resource_id: str,
    authorization: str | None,
) -> WhipSession | JSONResponse:
    token = _bearer(authorization)
    checked = await _check_join_token(service, meeting_id, token)
    if isinstance(checked, JSONResponse):
        return checked
    found = sessions.get(resource_id)
    if found is None or found.meeting_id != meeting_id:
        return _error(status.HTTP_404_NOT_FOUND, "no such WHIP session (ended, or never created here)")
    if not secrets.compare_digest(found.token_hash, hashlib.sha256((token or "").encode()).hexdigest()):
        return _error(status.HTTP_403_FORBIDDEN, "this WHIP session was created with another join token")
    return found


@router.patch("/whip/{meeting_id}/{resource_id}", response_class=Response)
async def trickle(
    request: Request,
    *,
    meeting_id: str,
    resource_id: str,
    service: ServiceDep,
    rooms: RoomsDep,
    sessions: WhipSessionsDep,
    authorization: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Trickled ICE candidates (``application/trickle-ice-sdpfrag``); ICE restarts get 422."""
    found = await _session(sessions, service, meeting_id, resource_id, authorization)
    if isinstance(found, JSONResponse):
        return found
    if _media_type(content_type) != SDPFRAG_TYPE:
        return _error(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"PATCH takes an SDP fragment ({SDPFRAG_TYPE})")
    restart = "ICE restarts are not supported here: DELETE this session and POST a new offer"
    if if_match is not None and if_match.strip() == "*":
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, restart)
    if if_match is not None and if_match.strip().strip('"') != found.etag:
        return _error(status.HTTP_412_PRECONDITION_FAILED, "If-Match does not match this session's ETag")
    fragment = (await request.body()).decode("utf-8", errors="replace")
    ufrag, pwd = _first(_UFRAG, fragment), _first(_PWD, fragment)
    if (ufrag is not None and ufrag != found.ice_ufrag) or (pwd is not None and pwd != found.ice_pwd):
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, restart)
    candidates, end = parse_sdpfrag(fragment)
    try:
        await rooms.trickle(meeting_id, found.participant_id, candidates, end=end)
    except SignalError as exc:
        return _error(status.HTTP_400_BAD_REQUEST, str(exc))
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=CORS_HEADERS)


@router.delete("/whip/{meeting_id}/{resource_id}", response_class=Response)
async def stop(
    *,
    meeting_id: str,
    resource_id: str,
    service: ServiceDep,
    rooms: RoomsDep,
    sessions: WhipSessionsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Ends the WHIP session: the publisher leaves the meeting."""
    found = await _session(sessions, service, meeting_id, resource_id, authorization)
    if isinstance(found, JSONResponse):
        return found
    sessions.pop(resource_id, None)
    await rooms.unpublish(meeting_id, found.participant_id)
    await service.leave_participant(meeting_id, found.participant_id)
    log.info("WHIP publisher %s left meeting %s", found.participant_id, meeting_id)
    return Response(status_code=status.HTTP_200_OK, headers=CORS_HEADERS)


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text.replace("\r\n", "\n"))
    return match.group(1) if match else None


def parse_sdpfrag(fragment: str) -> tuple[list[RemoteCandidate], bool]:
    """The candidates of an ``application/trickle-ice-sdpfrag`` (RFC 8840), each with the mid of
    its m-line, and whether it signals end-of-candidates."""
    candidates: list[RemoteCandidate] = []
    mid: str | None = None
    end = False
    for raw in fragment.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=candidate:"):
            candidates.append((mid, line[len("a=") :]))
        elif line == "a=end-of-candidates":
            end = True
    return candidates, end
