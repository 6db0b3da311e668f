"""``microcue serve``: HTTP API, presenter websockets and dashboard on ``--host``/``--port``.

Migrations run first (a no-op at head), so a fresh ``MICROCUE_DATA_DIR`` works on
first start and a database problem is one clear line instead of a traceback
from inside uvicorn. The socket is bound here too, for the same reason: a port
already in use is reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket
import sys

from bridge import logsafe
from bridge.config import Settings
from bridge.errors import MicroCueError, UsageError
from bridge.store import migrate
from bridge.store.errors import DatabaseUnavailable, is_unavailable

log = logging.getLogger("microcue.serve")

#: Largest websocket message uvicorn accepts from any client (it closes with 1009 above it).
#: Presenters send tiny control messages and signalling carries SDP of a few kB; 1 MiB leaves
#: room for large SDP while bounding what one client can make the server buffer (uvicorn's default is 16 MiB).
WS_MAX_SIZE = 1024 * 1024
#: Seconds uvicorn lets open connections finish at shutdown before closing them.
GRACEFUL_SHUTDOWN_S = 5
#: Pending connections the kernel queues for us.
LISTEN_BACKLOG = 2048
#: Process roles: everything in one (the embedded default), or the API side and the bridge
#: workers as separate processes that share only the broker and the database.
ROLES = ("all", "web", "worker")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="HTTP API, live websockets and dashboard (default http://127.0.0.1:8080)")
    p.add_argument(
        "--role",
        choices=ROLES,
        default="all",
        help="all: API and bridge in one process (default); web: API, dashboard and store writer, bots "
        "run on workers; worker: same as `microcue worker`",
    )
    p.set_defaults(run=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_tcp(settings: Settings) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear line, not a uvicorn traceback."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise MicroCueError(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
            "stop what uses that port or pick another with --port / MICROCUE_PORT"
        ) from exc
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def _migrate(settings: Settings) -> None:
    try:
        asyncio.run(migrate.upgrade(settings))
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(settings, exc) from exc
        raise


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from web.app import create_app

    role = getattr(args, "role", "all")
    if role == "worker":
        from web.commands import worker

        return worker.run(args, settings)
    if role == "web":
        from web.commands.worker import check_settings

        check_settings(settings, who="the web role")
    if not _is_loopback(settings.host) and not settings.api_key:
        raise UsageError(
            f"refusing to listen on {settings.host} without an API key: anyone who can reach it could create "
            "meetings; set MICROCUE_API_KEY (or --api-key), or listen on 127.0.0.1"
        )
    _migrate(settings)
    sock = bind_tcp(settings)
    config = uvicorn.Config(
        create_app(settings, apply_migrations=False, role="web" if role == "web" else "all"),
        ws_max_size=WS_MAX_SIZE,
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )
    # uvicorn.Config set up its own handlers just now; its access log prints every query string.
    logsafe.install()
    server = uvicorn.Server(config)
    print(f"MicroCue serving on {settings.base_url} (API docs: {settings.base_url}/docs)", file=sys.stderr)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise MicroCueError("the service failed to start; the log above says why")
    return 0
