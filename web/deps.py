"""FastAPI dependencies as ``Annotated`` aliases, so route signatures stay plain.

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

from bridge.config import Settings
from bridge.service import MeetingService
from bridge.tokens import TokenCheck, TokenKind, TokenStatus, refusal_message, same_secret
from web import ratelimit
from web.hub import LiveHub

_bearer = HTTPBearer(auto_error=False, description="Presenter token, or the API key where one is required")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _service(request: Request) -> MeetingService:
    service: MeetingService = request.app.state.service
    return service


def _hub(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.hub
    return hub


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[MeetingService, Depends(_service)]
HubDep = Annotated[LiveHub, Depends(_hub)]
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
    request: Request, meeting_id: str, service: ServiceDep, bearer: BearerDep, token: TokenQuery = None
) -> str:
    """The meeting's presenter token, from the header or the query; returns the meeting id."""
    ratelimit.check(request, "token")
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


def limit_creation(request: Request) -> None:
    ratelimit.check(request, "create")


ApiKey = Annotated[None, Depends(require_api_key)]
CreateLimit = Annotated[None, Depends(limit_creation)]
PresenterMeeting = Annotated[str, Depends(require_presenter)]
