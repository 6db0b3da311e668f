"""``/api/meetings``: create, end, erase, participants, summary and bots (docs/api.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from bridge import policy
from bridge.cluster.web_role import ClusterBots
from bridge.rooms.bots import BotManager
from bridge.rooms.builtin import BuiltinRooms
from bridge.store.tables import Meeting, Participant
from bridge.targets import JoinTarget
from bridge.tokens import TokenKind
from web.deps import ApiKey, BotsDep, CreateLimit, HubDep, PresenterMeeting, RoomsDep, ServiceDep
from web.schemas import (
    BotAccepted,
    BotRecalled,
    BotRequest,
    Erased,
    InviteRequest,
    JoinLink,
    MeetingCreate,
    MeetingCreated,
    MeetingPublic,
    ParticipantPublic,
    ParticipantUpdate,
    PolicyPublic,
    SummaryPublic,
    TokenRevoke,
    TokensRevoked,
)

router = APIRouter(prefix="/api/meetings", tags=["meetings"])

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown presenter token"},
    403: {"description": "A token of another meeting, or a participant's join token"},
}


def meeting_public(meeting: Meeting, service: ServiceDep) -> MeetingPublic:
    decision = policy.for_meeting(meeting.context, meeting.policy, service.settings)
    return MeetingPublic(
        id=meeting.id,
        title=meeting.title,
        kind=meeting.kind,
        context=meeting.context,
        created_at=meeting.created_at,
        started_at=meeting.started_at,
        ended_at=meeting.ended_at,
        retention_days=meeting.retention_days,
        policy=PolicyPublic(**decision.to_dict()),
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MeetingCreated,
    responses={401: {"description": "MICROCUE_API_KEY is set and was not sent"}},
)
async def create_meeting(body: MeetingCreate, service: ServiceDep, _limit: CreateLimit, _key: ApiKey) -> MeetingCreated:
    """Creates a meeting; the presenter token in the answer is shown once, keep it."""
    created = await service.create_meeting(
        title=body.title, kind=body.kind, context=body.context, retention_days=body.retention_days
    )
    return MeetingCreated(
        id=created.meeting.id,
        presenter_token=created.presenter_token,
        join_url=created.join_url,
        dashboard_url=created.dashboard_url,
    )


@router.get("/{meeting_id}", response_model=MeetingPublic, responses=_AUTH_RESPONSES)
async def get_meeting(meeting_id: PresenterMeeting, service: ServiceDep) -> MeetingPublic:
    """The meeting and the policy it runs under."""
    return meeting_public(await service.get_meeting(meeting_id), service)


@router.post("/{meeting_id}/end", response_model=MeetingPublic, responses=_AUTH_RESPONSES)
async def end_meeting(meeting_id: PresenterMeeting, service: ServiceDep, hub: HubDep) -> MeetingPublic:
    """Ends the meeting (repeating it is harmless) and computes its summary where this build can;
    its room closes and its bot leaves (the service's closers)."""
    meeting = await service.end_meeting(meeting_id)
    hub.meeting_ended(meeting_id)  # also the service's closer; repeated for a process without it
    return meeting_public(meeting, service)


@router.get(
    "/{meeting_id}/summary",
    response_model=SummaryPublic,
    responses={**_AUTH_RESPONSES, 404: {"description": "No summary (yet) for this meeting"}},
)
async def get_summary(meeting_id: PresenterMeeting, service: ServiceDep) -> SummaryPublic:
    """The summary stored when the meeting ended, or computed from the stored cues when there is none."""
    meeting = await service.get_meeting(meeting_id)
    body = await service.summary(meeting_id)
    if body is None and service.summary_hook is not None:
        # Not stored (yet): computed now from the stored cues; stored too once the meeting has ended.
        body = await service.summary_hook(meeting_id)
    if body is None:
        if meeting.ended_at is None:
            detail = f"no summary for meeting {meeting_id} yet: it is computed when the meeting ends"
        elif service.summary_hook is None:
            detail = f"no summary for meeting {meeting_id}: summaries are not available in this build"
        else:
            detail = f"no summary for meeting {meeting_id}: computing it failed or is still under way"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=detail)
    return SummaryPublic(meeting_id=meeting_id, summary=body)


@router.delete("/{meeting_id}", response_model=Erased, responses=_AUTH_RESPONSES)
async def erase_meeting(meeting_id: PresenterMeeting, service: ServiceDep, hub: HubDep) -> Erased:
    """Erasure: removes every row of the meeting (cues, participants, summary, tokens) and
    closes its live feeds; the presenter token stops working."""
    removed = await service.erase_meeting(meeting_id)
    hub.forget(meeting_id)
    return Erased(meeting_id=meeting_id, rows=removed.rows)


@router.post(
    "/{meeting_id}/participants",
    status_code=status.HTTP_201_CREATED,
    response_model=JoinLink,
    responses={**_AUTH_RESPONSES, 409: {"description": "The meeting has ended"}},
)
async def invite_participant(
    meeting_id: PresenterMeeting, service: ServiceDep, body: InviteRequest | None = None
) -> JoinLink:
    """A new join token (participant scope, this meeting only) and its join page URL; with
    ``{"role": "buyer"}`` (or ``rep``) whoever joins with it takes that role."""
    role = body.role if body is not None else None
    token = await service.issue_join_token(meeting_id, role=role)
    return JoinLink(meeting_id=meeting_id, join_token=token, join_url=service.join_url(meeting_id, token), role=role)


def participant_public(p: Participant, live: dict[str, Any] | None = None) -> ParticipantPublic:
    """A stored participant, with the running room's or bot's view of them where there is one."""
    live = live or {}
    return ParticipantPublic(
        id=p.id,
        display_name=p.display_name,
        role=p.role,
        consent=p.consent,
        joined_at=p.joined_at,
        left_at=p.left_at,
        consent_basis=live.get("consent_basis"),
        video=live.get("video"),
        audio=live.get("audio"),
    )


@router.patch(
    "/{meeting_id}/participants/{participant_id}",
    response_model=ParticipantPublic,
    responses={**_AUTH_RESPONSES, 404: {"description": "No such participant in this meeting"}},
)
async def update_participant(
    meeting_id: PresenterMeeting, participant_id: str, body: ParticipantUpdate, service: ServiceDep, hub: HubDep
) -> ParticipantPublic:
    """Sets a participant's role (rep, buyer, participant) and/or display name. Live feeds get a
    ``participant`` message, sales meetings a fresh ``coaching`` one; reports follow at once."""
    row = await service.update_participant(meeting_id, participant_id, role=body.role, display_name=body.display_name)
    public = participant_public(row)
    hub.participant_changed(meeting_id, public.model_dump(mode="json"))
    meeting = await service.get_meeting(meeting_id)
    if meeting.kind == "sales" and service.summary_hook is not None:
        # recomputed from the stored cues with the roles as they now stand (and stored if ended)
        summary = await service.summary_hook(meeting_id)
        if summary is not None:
            hub.coaching_changed(meeting_id, summary.get("coaching"))
    return public


@router.get("/{meeting_id}/participants", response_model=list[ParticipantPublic], responses=_AUTH_RESPONSES)
async def list_participants(
    meeting_id: PresenterMeeting, service: ServiceDep, rooms: RoomsDep, bots: BotsDep
) -> list[ParticipantPublic]:
    """Who joined, with their consent state; in joining order. While the meeting runs, each also
    says what their consent rests on (asked on the join page, or announced by the bot in an
    external meeting) and whether their video arrives."""
    live = _live_participants(rooms, bots, meeting_id)
    return [participant_public(p, live.get(p.id)) for p in await service.participants(meeting_id)]


def _live_participants(
    rooms: BuiltinRooms, bots: BotManager | ClusterBots | None, meeting_id: str
) -> dict[str, dict[str, Any]]:
    """The running room's or bot's view of each participant (empty when nothing runs)."""
    live: dict[str, dict[str, Any]] = {}
    room = rooms.rooms.get(meeting_id)
    if room is not None:
        live.update(room.live())
    if bots is not None:
        live.update(bots.live(meeting_id))
    return live


@router.post(
    "/{meeting_id}/bot",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BotAccepted,
    responses={
        **_AUTH_RESPONSES,
        403: {"description": "Token refused, or the host is not on MICROCUE_JOIN_ALLOW"},
        501: {"description": "Bot joining is not available in this build"},
    },
)
async def request_bot(meeting_id: PresenterMeeting, body: BotRequest, service: ServiceDep, _key: ApiKey) -> BotAccepted:
    """Asks a bridge to join an external meeting (Janus VideoRoom, WHEP, or a web meeting page in the
    browser bot) whose host the operator allows."""
    if body.janus is not None:
        target = JoinTarget(kind="janus", url=body.janus, room=body.room)
    elif body.page is not None:
        target = JoinTarget(kind="page", url=body.page, recipe=body.recipe)
    else:
        target = JoinTarget(kind="whep", url=body.whep or "")
    detail = await service.request_bot(meeting_id, target)
    return BotAccepted(meeting_id=meeting_id, detail=dict(detail))


@router.delete(
    "/{meeting_id}/bot",
    response_model=BotRecalled,
    responses={**_AUTH_RESPONSES, 404: {"description": "No bot is in this meeting"}},
)
async def recall_bot(meeting_id: PresenterMeeting, service: ServiceDep) -> BotRecalled:
    """The bot leaves the external meeting now: its peers close and no cue is produced after."""
    if not await service.recall_bot(meeting_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no bot is in meeting {meeting_id}")
    return BotRecalled(meeting_id=meeting_id)


@router.post("/{meeting_id}/tokens/revoke", response_model=TokensRevoked, responses=_AUTH_RESPONSES)
async def revoke_tokens(meeting_id: PresenterMeeting, body: TokenRevoke, service: ServiceDep) -> TokensRevoked:
    """Revokes one token of this meeting, or every token of a kind (``{"kind": "join"}``: nobody
    new can join with an old link). Revoking the presenter token locks the caller out too."""
    kind = TokenKind(body.kind) if body.kind else None
    revoked = await service.revoke_tokens(meeting_id, token=body.token, kind=kind)
    return TokensRevoked(meeting_id=meeting_id, revoked=revoked)
