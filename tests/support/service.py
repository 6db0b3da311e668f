"""The running service for API tests: ``server`` (the app on a real port, on the ``settings`` the
test module provides) and an HTTP ``client`` for it. A module brings its own ``settings`` fixture
(SQLite and PostgreSQL, via ``tests.support.postgres.database_settings``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bridge.config import Settings
from tests.live_server import LiveServer
from web.app import create_app

#: Seconds an API call may take: report rendering on a busy 2-core machine takes a few.
CLIENT_TIMEOUT_S = 60.0


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings)) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT_S) as c:
        yield c
