"""Browser pages: the presenter dashboard and the participant join page (static files).

The pages are served only to a valid token, so a wrong link gets a readable
refusal instead of a dashboard that silently never connects. They carry
``Referrer-Policy: no-referrer`` (the token is in the URL) and ``no-store``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bridge import policy
from bridge.tokens import TokenKind, refusal_message
from inference.cues import CUE_TYPES
from web import ratelimit
from web.deps import ServiceDep
from web.schemas import JoinInfo
from web.state import web_state

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/join", tags=["join"])

WEB_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES = Jinja2Templates(directory=WEB_DIR / "templates")

#: Headers for pages whose URL carries a token.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
#: The dashboard loads nothing from elsewhere (it works offline) and talks only to us.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: Cookie that lets the dashboard reload after its URL lost the token (sent to that page only).
DASHBOARD_COOKIE = "microcue_dashboard"
#: Eight hours: a working day of reloads; the presenter token itself lasts longer (bridge/tokens.py).
DASHBOARD_COOKIE_MAX_AGE_S = 8 * 3600
#: Human wording of cue kinds for the join page disclosure.
CUE_WORDING = {
    "micro_expression": "brief facial expressions (micro-expressions)",
    "macro_expression": "facial expressions",
    "sentiment": "overall sentiment (positive / negative)",
    "engagement": "engagement",
    "attention": "attention (where you look, head pose)",
    "presence": "whether a face is in view",
    "speaking": "when you speak (not what you say)",
}


def _refusal(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "message.html",
        {"title": title, "message": message},
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


@router.get("/")
async def index() -> RedirectResponse:
    return RedirectResponse("/docs")


@router.get("/meetings/{meeting_id}/dashboard", response_model=None)
async def dashboard(
    request: Request, meeting_id: str, service: ServiceDep, token: str | None = Query(default=None)
) -> Response:
    """The presenter dashboard. The page takes its token from its URL once, keeps it in the
    tab's sessionStorage and removes it from the address bar (``history.replaceState``), where
    it would show during screen sharing. A reload then comes without ``?token=``: the short-lived
    cookie set here (this page's path only, HttpOnly, SameSite=Strict) lets the page load again."""
    ratelimit.check(web_state(request).rate_limiter, request, "token")
    presented = token or request.cookies.get(DASHBOARD_COOKIE)
    check = await service.check_token(presented, meeting_id, TokenKind.PRESENTER)
    if not check.ok:
        code = status.HTTP_403_FORBIDDEN if check.authenticated else status.HTTP_401_UNAUTHORIZED
        return _refusal(request, code, "Dashboard not available", refusal_message(check, TokenKind.PRESENTER) + ".")
    response = FileResponse(
        STATIC_DIR / "dashboard.html",
        media_type="text/html",
        headers={**PAGE_HEADERS, "Content-Security-Policy": DASHBOARD_CSP},
    )
    if token:
        response.set_cookie(
            DASHBOARD_COOKIE,
            token,
            max_age=DASHBOARD_COOKIE_MAX_AGE_S,
            path=f"/meetings/{meeting_id}/dashboard",
            httponly=True,
            samesite="strict",
            secure=service.settings.base_url.startswith("https://"),
        )
    return response


@router.get("/join/{meeting_id}", response_model=None)
async def join_page(
    request: Request, meeting_id: str, service: ServiceDep, token: str | None = Query(default=None)
) -> Response:
    """The participant's page: disclosure and consent first, then (when built) the WebRTC join."""
    ratelimit.check(web_state(request).rate_limiter, request, "join")
    check = await service.check_token(token, meeting_id, TokenKind.JOIN)
    if not check.ok:
        code = status.HTTP_403_FORBIDDEN if check.authenticated else status.HTTP_401_UNAUTHORIZED
        return _refusal(request, code, "This join link does not work", refusal_message(check, TokenKind.JOIN) + ".")
    state = web_state(request)
    if state.analysis is not None and state.cluster_rooms is None:  # this process hosts the room
        state.analysis.preload()
    return FileResponse(STATIC_DIR / "join.html", media_type="text/html", headers=PAGE_HEADERS)


@api_router.get("/{meeting_id}", response_model=JoinInfo)
async def join_info(
    request: Request, meeting_id: str, service: ServiceDep, token: str | None = Query(default=None)
) -> JoinInfo:
    """What the join page shows before consent: the meeting and what is (not) inferred.

    Needs a join token of this meeting (``?token=``)."""
    ratelimit.check(web_state(request).rate_limiter, request, "token")
    check = await service.check_token(token, meeting_id, TokenKind.JOIN)
    if not check.ok:
        code = status.HTTP_403_FORBIDDEN if check.authenticated else status.HTTP_401_UNAUTHORIZED
        raise HTTPException(code, detail=refusal_message(check, TokenKind.JOIN))
    meeting = await service.get_meeting(meeting_id)
    decision = policy.for_meeting(meeting.context, meeting.policy, service.settings)
    order = list(CUE_WORDING)
    inferred = [CUE_WORDING[t] for t in order if t in decision.allowed_cue_types]
    not_inferred = [CUE_WORDING[t] for t in order if t in (CUE_TYPES - decision.allowed_cue_types)]
    return JoinInfo(
        meeting_id=meeting.id,
        title=meeting.title,
        context=meeting.context,
        emotions_allowed=decision.emotions_allowed,
        inferred=inferred,
        not_inferred=not_inferred,
        notice=decision.notice,
        signal_url=f"/ws/rooms/{meeting.id}/signal",
    )
