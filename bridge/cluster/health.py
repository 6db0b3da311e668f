"""The worker's only HTTP surface: ``/healthz``, ``/readyz`` and ``/metrics`` (for probes and scraping).

A worker has no API: meetings reach it through the broker. ``/readyz`` is ready while the
database answers and the broker link is up (a worker that cannot hear join requests or keep
its leases should get no traffic and no new meetings); ``/metrics`` carries
``microcue_worker_participants``, the gauge a HorizontalPodAutoscaler scales workers on.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge import metrics
from bridge.cluster.worker_role import WorkerRole


def worker_metrics(worker: WorkerRole) -> CollectorRegistry:
    bus = worker.bus
    registry = CollectorRegistry(auto_describe=True)
    registry.register(
        metrics.ServiceCollector(
            {
                "microcue_worker_participants": lambda: (
                    "gauge",
                    "Participants this worker analyses now (its load)",
                    float(worker.participants),
                ),
                "microcue_worker_capacity_participants": lambda: (
                    "gauge",
                    "Participants this worker takes at most (MICROCUE_WORKER_CAPACITY)",
                    float(worker.capacity),
                ),
                "microcue_worker_meetings": lambda: (
                    "gauge",
                    "Meetings this worker holds a lease on",
                    float(len(worker.held)),
                ),
                "microcue_worker_meetings_taken": lambda: (
                    "counter",
                    "Meetings this worker took (lease acquired)",
                    float(worker.taken),
                ),
                "microcue_worker_leases_lost": lambda: (
                    "counter",
                    "Meetings stopped because their lease was lost (fenced)",
                    float(worker.lost),
                ),
                "microcue_worker_requests_passed_on": lambda: (
                    "counter",
                    "Join requests passed back to the group for lack of room",
                    float(worker.passed_on),
                ),
                **metrics.bus_sources(bus),
            }
        )
    )
    return registry


def create_health_app(worker: WorkerRole) -> Starlette:
    registry = worker_metrics(worker)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        database = await worker.service.database_ok()
        broker = worker.link.connected
        ready = database and broker and not worker.draining
        body = {
            "status": "ready" if ready else "not ready",
            "database": database,
            "broker": broker,
            "worker": worker.worker_id,
            **worker.status(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def prometheus(_request: Request) -> Response:
        return Response(metrics.render(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", prometheus)])
