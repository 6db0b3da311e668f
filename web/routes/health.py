"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from bridge import metrics
from web.deps import ServiceDep
from web.schemas import Health, Readiness
from web.state import web_state

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers; says nothing about its dependencies (that is /readyz)."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(request: Request, response: Response, service: ServiceDep) -> Readiness:
    """Ready when the database answers and the bus was started; an MQTT bus that is
    reconnecting still counts as started (it buffers cues), its state is reported."""
    database = await service.database_ok()
    bus_started = web_state(request).bus_started
    connected = getattr(service.bus, "connected", None)
    ready = database and bus_started
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(
        status="ready" if ready else "not ready",
        database=database,
        bus=bus_started,
        bus_kind=type(service.bus).__name__,
        bus_connected=connected if isinstance(connected, bool) else None,
    )


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format: process metrics plus this app's bus, writer and hub figures."""
    registry = web_state(request).metrics_registry
    if registry is None:
        raise RuntimeError("this app has no metrics registry (a worker serves its own /metrics)")
    return Response(metrics.render(registry), media_type=CONTENT_TYPE_LATEST)
