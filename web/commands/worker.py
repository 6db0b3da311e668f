"""``microcue worker``: a bridge worker (also ``microcue serve --role worker``).

Needs the shared services of a multi-process install: PostgreSQL (meeting leases) and an MQTT
v5 broker (join requests, cues). It listens on ``--host``/``--port`` for ``/healthz``,
``/readyz`` and ``/metrics``, and for the signalling of the built-in rooms it holds, which the
web role proxies to it (``MICROCUE_WORKER_URL`` says where the web role finds it).
SIGTERM drains: meetings go to the other workers, then the process exits; a second SIGTERM (or SIGINT) exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bridge.config import Settings
from bridge.errors import MicroCueError, UsageError
from bridge.store import db, migrate
from bridge.store.errors import DatabaseUnavailable, is_unavailable
from web.commands.serve import WS_MAX_SIZE

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("microcue.worker")

#: Seconds a drain may take before the worker exits anyway; below Kubernetes' default
#: terminationGracePeriodSeconds (30 s) so the pod ends on its own terms.
DRAIN_TIMEOUT_S = 20.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="bridge worker: takes meetings from the MQTT broker (needs PostgreSQL)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    check_settings(settings)
    from web.commands.serve import bind_tcp

    sock = bind_tcp(settings)
    try:
        asyncio.run(serve_worker(settings, sock))
    except Exception as exc:
        if is_unavailable(exc):  # one clear line, not a traceback from inside asyncpg
            raise DatabaseUnavailable(settings, exc) from exc
        raise
    finally:
        sock.close()
    return 0


def check_settings(settings: Settings, who: str = "a worker") -> None:
    """Workers and the web role meet only on the broker and in PostgreSQL: both must be set."""
    if not settings.mqtt_url:
        raise UsageError(f"{who} needs the MQTT broker: set MICROCUE_MQTT_URL (mqtt://host:1883)")
    if not settings.database_url or db.is_sqlite(settings.effective_database_url):
        raise UsageError(f"{who} needs PostgreSQL for meeting leases: set MICROCUE_DATABASE_URL=postgresql://...")


def worker_name(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


async def _check_schema(settings: Settings) -> None:
    current, head = await migrate.current(settings), migrate.head_revision(settings)
    if current != head:
        raise MicroCueError(
            f"the database is at revision {current or 'none'}, this worker needs {head}: start the web role "
            "first or run `microcue db upgrade` (workers never migrate, so two never race to)"
        )


async def serve_worker(settings: Settings, sock: socket.socket) -> None:
    import uvicorn

    from bridge.bus.mqtt import MqttBus
    from bridge.cluster.worker_role import WorkerRole
    from web.worker_app import create_worker_app

    await _check_schema(settings)
    engine = db.create_engine(settings)
    sessions = db.create_session_factory(engine)
    bus = MqttBus(settings.mqtt_url)
    await bus.start()
    worker = WorkerRole(settings, bus=bus, sessions=sessions, worker_id=worker_name(settings))
    await worker.start()
    server = _quiet_server(
        uvicorn.Config(
            create_worker_app(worker),
            lifespan="off",
            log_level=settings.log_level.lower(),
            server_header=False,
            ws_max_size=WS_MAX_SIZE,
        )
    )
    http = asyncio.create_task(server.serve(sockets=[sock]), name="worker-http")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # asked twice: no more waiting for the drain
            log.warning("second %s: exiting without draining", sig.name)
            os._exit(1)
        log.info("%s: draining meetings to the other workers", sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    print(
        f"MicroCue worker {worker.worker_id} ready (capacity {worker.capacity} participants, "
        f"health on http://{settings.host}:{settings.port}/readyz)",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
        with _logged("drain"):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await worker.drain()
    finally:
        server.should_exit = True
        await worker.aclose()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await bus.flush()
        await bus.aclose()
        await engine.dispose()
        await asyncio.wait([http])


def _quiet_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server without its signal handling: the worker drains before it exits, while
    ``uvicorn.Server.serve`` would re-raise SIGTERM as soon as it stops listening."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        log.error("%s did not finish within %.0f s; exiting anyway (leases expire on their own)", what, DRAIN_TIMEOUT_S)
