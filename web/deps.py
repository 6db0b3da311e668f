"""FastAPI dependencies as ``Annotated`` aliases, so route signatures stay plain.

The app's parts come from its :class:`~web.state.WebState` (``StateDep``, ``ServiceDep``,
``RoomsDep``, ``BotsDep`` ...); websocket handlers, which the worker's app also calls directly,
read it with ``web.state.web_state``.

Each auth failure maps to exactly one HTTPException with a message that says
what was expected. Presenter tokens come as ``Authorization: Bearer <token>``
or ``?token=``; the API key (when ``MICROCUE_API_KEY`` is set) as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, so a call that needs
both (asking for a bot) can carry both.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bridge.cluster.web_role import ClusterBots
from bridge.config import Settings
from bridge.rooms.bots import BotManager
from bridge.rooms.builtin import BuiltinRooms
from bridge.service import MeetingService
from bridge.tokens import TokenCheck, TokenKind, TokenStatus, refusal_message, same_secret
from web import ratelimit
from web.hub import LiveHub
from web.state import WebState, WhipSession, web_state

_bearer = HTTPBearer(auto_error=False, description="Presenter token, or the API key where one is required")


StateDep = Annotated[WebState, Depends(web_state)]


def _settings(state: StateDep) -> Settings:
    return state.settings


def _service(state: StateDep) -> MeetingService:
    return state.service


def _hub(state: StateDep) -> LiveHub:
    return state.live_hub()


def _rooms(state: StateDep) -> BuiltinRooms:
    return state.rooms


def _bots(state: StateDep) -> BotManager | ClusterBots | None:
    return state.bots


def _whip_sessions(state: StateDep) -> dict[str, WhipSession]:
    return state.whip_sessions


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[MeetingService, Depends(_service)]
HubDep = Annotated[LiveHub, Depends(_hub)]
RoomsDep = Annotated[BuiltinRooms, Depends(_rooms)]
#: None in an app that runs no bots (a worker's)
BotsDep = Annotated[BotManager | ClusterBots | None, Depends(_bots)]
WhipSessionsDep = Annotated[dict[str, WhipSession], Depends(_whip_sessions)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
TokenQuery = Annotated[str | None, Query(description="Presenter token, for links opened in a browser")]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def require_api_key(
    settings: SettingsDep,
    bearer: BearerDep,
    x_api_key: Annotated[str | None, Header(description="The API key, when Authorization carries a token")] = None,
) -> None:
    """Creating meetings and asking for bots needs the operator's API key, when one is set."""
    if not settings.api_key:
        return
    candidates = [c for c in (bearer.credentials if bearer else None, x_api_key) if c]
    # Every candidate is compared, so the time taken does not depend on which one matched.
    matches = [same_secret(c, settings.api_key) for c in candidates]
    if not any(matches):
        raise _unauthorized(
            "this call needs the API key (MICROCUE_API_KEY): send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )


async def require_presenter(
    request: Request, meeting_id: str, state: StateDep, bearer: BearerDep, token: TokenQuery = None
) -> str:
    """The meeting's presenter token, from the header or the query; returns the meeting id."""
    ratelimit.check(state.rate_limiter, request, "token")
    service = state.service
    candidates = [c for c in (bearer.credentials if bearer else None, token) if c]
    results: list[TokenCheck] = []
    for candidate in candidates:
        result = await service.check_token(candidate, meeting_id, TokenKind.PRESENTER)
        if result.ok:
            return meeting_id
        results.append(result)
    if not results:
        raise _unauthorized(refusal_message(TokenCheck(TokenStatus.MISSING), TokenKind.PRESENTER))
    refused = next((r for r in results if r.authenticated), None)
    if refused is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=refusal_message(refused, TokenKind.PRESENTER))
    raise _unauthorized(refusal_message(results[0], TokenKind.PRESENTER))


def limit_creation(request: Request, state: StateDep) -> None:
    ratelimit.check(state.rate_limiter, request, "create")


ApiKey = Annotated[None, Depends(require_api_key)]
CreateLimit = Annotated[None, Depends(limit_creation)]
PresenterMeeting = Annotated[str, Depends(require_presenter)]
