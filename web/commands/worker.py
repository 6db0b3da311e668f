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

from bridge import eventloop
from bridge.cluster import check_settings
from bridge.config import Settings
from bridge.store.errors import explain_unavailable
from web.commands.harness import bind_tcp, serving, stop_on_signals

log = logging.getLogger("microcue.worker")

#: Seconds a drain may take before the worker exits anyway; below Kubernetes' default
#: terminationGracePeriodSeconds (30 s) so the pod ends on its own terms.
DRAIN_TIMEOUT_S = 20.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="bridge worker: takes meetings from the MQTT broker (needs PostgreSQL)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    check_settings(settings)
    sock = bind_tcp(settings)
    try:
        with explain_unavailable(settings):  # one clear line, not a traceback from inside asyncpg
            eventloop.run(serve_worker(settings, sock))
    finally:
        sock.close()
    return 0


async def serve_worker(settings: Settings, sock: socket.socket) -> None:
    from bridge.cluster.worker_role import running_worker
    from web.worker_app import create_worker_app

    # Signals are taken once the worker has started (until then one ends the process at once)
    # and given back when the HTTP side has stopped, before the worker's own teardown.
    async with (
        running_worker(settings) as worker,
        stop_on_signals(on_second=_exit_without_draining) as stop,
        serving(create_worker_app(worker), settings, [sock], lifespan="off"),
    ):
        print(
            f"MicroCue worker {worker.worker_id} ready (capacity {worker.capacity} participants, "
            f"health on http://{settings.host}:{settings.port}/readyz)",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        log.info("%s: draining meetings to the other workers", stop.signal.name if stop.signal else "stop")
        with _logged("drain"):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await worker.drain()


def _exit_without_draining(sig: signal.Signals) -> None:
    """Asked twice: no more waiting for the drain."""
    log.warning("second %s: exiting without draining", sig.name)
    os._exit(1)


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        log.error("%s did not finish within %.0f s; exiting anyway (leases expire on their own)", what, DRAIN_TIMEOUT_S)
