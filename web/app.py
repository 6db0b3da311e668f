"""The FastAPI app: ``create_app(settings)`` with a lifespan that owns the service.

Start-up, in order: migrations (unless the caller already ran them), bus, database
engine, store writer subscribed to every meeting (``bridge.service.running_service``),
then the live hub (its own bus subscription) that feeds presenter websockets.
Shutdown runs it backwards: websockets are closed, the hub unsubscribes, the bus
closes (subscriptions drain), the writer flushes, the engine is disposed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from bridge import metrics
from bridge.bus import EventBus
from bridge.bus.mqtt import settings_tls
from bridge.cluster.web_role import ClusterBots, ClusterRooms
from bridge.config import Settings, get_settings
from bridge.errors import NotBuiltYet, UsageError
from bridge.insights.summary import make_summary_hook
from bridge.media.analysis import Analysis
from bridge.rooms.bots import BotManager
from bridge.rooms.builtin import BuiltinRooms
from bridge.service import (
    FeatureUnavailable,
    HostNotAllowed,
    MeetingEnded,
    MeetingNotFound,
    MeetingService,
    ParticipantNotFound,
    TooManyMeetings,
    running_service,
)
from bridge.targets import TargetRefused
from web.hub import LiveHub
from web.limits import BodyLimitMiddleware
from web.ratelimit import RateLimiter
from web.routes import health, meetings, pages, reports, whip
from web.routes.pages import STATIC_DIR
from web.security import SecurityMiddleware
from web.state import LiveOptions, WebState
from web.ws import live, signal, signal_proxy

log = logging.getLogger("microcue.web")

#: Expected failures of the service and the HTTP status each one means.
ERROR_STATUS: dict[type[Exception], int] = {
    MeetingNotFound: status.HTTP_404_NOT_FOUND,
    MeetingEnded: status.HTTP_409_CONFLICT,
    HostNotAllowed: status.HTTP_403_FORBIDDEN,
    ParticipantNotFound: status.HTTP_404_NOT_FOUND,
    NotBuiltYet: status.HTTP_501_NOT_IMPLEMENTED,
    UsageError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    FeatureUnavailable: status.HTTP_501_NOT_IMPLEMENTED,
    TooManyMeetings: status.HTTP_429_TOO_MANY_REQUESTS,
}


def _service_metrics(service: MeetingService, hub: LiveHub) -> CollectorRegistry:
    """This app's live figures, read at scrape time (see ``bridge.metrics``)."""
    bus = service.bus
    writer = service.writer
    registry = CollectorRegistry(auto_describe=True)
    registry.register(
        metrics.ServiceCollector(
            {
                **metrics.bus_sources(bus),
                "microcue_live_hub_pending_cues": lambda: (
                    "gauge",
                    "Cues waiting for the live hub: its lag behind the bus, in cues",
                    float(hub.pending),
                ),
                "microcue_store_written_cues": lambda: (
                    "counter",
                    "Cues the store writer wrote",
                    float(writer.written if writer else 0),
                ),
                "microcue_store_dropped_cues": lambda: (
                    "counter",
                    "Cues the store writer dropped (buffer full during a database outage)",
                    float(writer.dropped if writer else 0),
                ),
                "microcue_store_pending_cues": lambda: (
                    "gauge",
                    "Cues received by the store writer and not written yet",
                    float(writer.pending if writer else 0),
                ),
            }
        )
    )
    return registry


def create_app(
    settings: Settings | None = None,
    *,
    live_options: LiveOptions | None = None,
    apply_migrations: bool = True,
    bus: EventBus | None = None,
    role: Literal["all", "web"] = "all",
) -> FastAPI:
    """The whole HTTP/websocket surface for ``settings`` (default: the environment's).

    ``bus`` hands in an event bus built by the caller (tests, benchmarks, the demo);
    the app then starts and closes it like its own. ``role="web"`` runs no bridge here:
    bot joins go to the workers as join requests on the broker (``bridge.cluster``).
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_service(settings, apply_migrations=apply_migrations, bus=bus) as service:
            # Summary at meeting end and on demand, from stored cues (bridge/insights/summary.py).
            service.summary_hook = make_summary_hook(service.sessions, settings)
            hub = LiveHub(service.bus, min_confidence=settings.min_confidence)
            await hub.start()
            analysis = Analysis(settings)  # loads models only on a first local join or bot
            rooms = BuiltinRooms(settings, service, analysis)
            bots: BotManager | ClusterBots
            cluster_rooms = None
            if role == "web":  # no bridge here: bots and built-in rooms run on the workers
                tls = settings_tls(settings)
                bots = ClusterBots(settings.mqtt_url, service.sessions, tls=tls)
                cluster_rooms = ClusterRooms(settings.mqtt_url, service.sessions, tls=tls)
            else:
                bots = BotManager(service, analysis)
            state = app.state.web = WebState(
                settings=settings,
                service=service,
                rooms=rooms,
                hub=hub,
                live_options=live_options or LiveOptions(),
                metrics_registry=_service_metrics(service, hub),
                bus_started=True,
                analysis=analysis,
                bots=bots,
                cluster_rooms=cluster_rooms,
                rate_limiter=RateLimiter.from_settings(settings),
            )
            if service.bot_hook is None:
                service.bot_hook = bots
                service.bot_recall = bots.close_meeting
            # End and erase stop everything of the meeting: rooms, bots, signalling and live sockets.
            service.closers.extend(
                [rooms.close_meeting, bots.close_meeting, state.signal_sockets.close_meeting, hub.close_meeting]
            )
            log.info("MicroCue %s role ready on %s (bus: %s)", role, settings.base_url, type(service.bus).__name__)
            try:
                yield
            finally:
                state.bus_started = False
                await bots.aclose()
                await rooms.aclose()
                await analysis.aclose()
                await hub.aclose()

    app = FastAPI(
        title="MicroCue",
        summary="Real-time meeting feedback: live cues for presenters. Cues are signals, not truths.",
        version="0.1.0",
        lifespan=lifespan,
    )
    for error, code in ERROR_STATUS.items():
        app.add_exception_handler(error, _error_handler(code))
    app.add_exception_handler(TargetRefused, _target_refused)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(SecurityMiddleware, settings=settings)
    app.include_router(meetings.router)
    app.include_router(reports.router)
    app.include_router(pages.api_router)
    app.include_router(health.router)
    app.include_router(live.router)
    app.include_router(signal_proxy.router if role == "web" else signal.router)
    app.include_router(whip.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 list without the offending input: echoing it back could not encode
    ``Infinity`` (a 500, found by fuzzing) and would reflect whatever the sender put there."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


async def _target_refused(_request: Request, exc: Exception) -> JSONResponse:
    """A bot target refused by ``bridge.targets``: 403 or 422 as the check says, never 500."""
    code = exc.status if isinstance(exc, TargetRefused) else status.HTTP_403_FORBIDDEN
    return JSONResponse({"detail": str(exc)}, status_code=code)


def _error_handler(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """Expected service failures become ``{"detail": message}`` with their status, like HTTPException."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle
