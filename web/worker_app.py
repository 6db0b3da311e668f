"""The HTTP surface of ``microcue worker``: probes, metrics, and signalling of the built-in rooms it holds.

No API: meetings reach a worker as join requests on the broker. Built-in room participants
reach it through the web role's proxy (``web/ws/signal_proxy.py``), which connects to the
URL the worker wrote into the meeting's lease (``MICROCUE_WORKER_URL``); the signalling
handler is the same as the single-process service's (``web/ws/signal.py``), and the worker's
rooms refuse meetings it does not hold.
"""

from __future__ import annotations

from fastapi import FastAPI

from bridge.cluster.health import create_health_app
from bridge.cluster.worker_role import WorkerRole
from web.ws import signal


def create_worker_app(worker: WorkerRole) -> FastAPI:
    app = FastAPI(title="MicroCue worker", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = worker.settings
    app.state.service = worker.service
    app.state.rooms = worker.rooms
    app.include_router(signal.router)
    app.router.routes.extend(create_health_app(worker).routes)
    return app
