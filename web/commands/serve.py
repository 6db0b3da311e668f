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
import sys

from bridge.config import Settings
from bridge.errors import UsageError
from bridge.store import migrate
from bridge.store.errors import explain_unavailable
from web.commands.harness import bind_tcp, run_server

log = logging.getLogger("microcue.serve")

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


def _migrate(settings: Settings) -> None:
    with explain_unavailable(settings):
        asyncio.run(migrate.upgrade(settings))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from web.app import create_app

    role = getattr(args, "role", "all")
    if role == "worker":
        from web.commands import worker

        return worker.run(args, settings)
    if role == "web":
        from bridge.cluster import check_settings

        check_settings(settings, who="the web role")
    if not _is_loopback(settings.host) and not settings.api_key:
        raise UsageError(
            f"refusing to listen on {settings.host} without an API key: anyone who can reach it could create "
            "meetings; set MICROCUE_API_KEY (or --api-key), or listen on 127.0.0.1"
        )
    _migrate(settings)
    sock = bind_tcp(settings)
    try:
        app = create_app(settings, apply_migrations=False, role="web" if role == "web" else "all")
        print(f"MicroCue serving on {settings.base_url} (API docs: {settings.base_url}/docs)", file=sys.stderr)
        run_server(app, settings, [sock], lifespan="on")
    finally:
        sock.close()
    return 0
