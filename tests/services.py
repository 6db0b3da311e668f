"""Reaching the real servers this machine kind runs (PostgreSQL, Mosquitto).

Locally a missing server skips the test with the reason; with
``MICROCUE_REQUIRE_SERVICES=1`` (CI) it fails instead, so CI never goes green
by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from bridge.config import Settings

POSTGRES = ("127.0.0.1", 5432)
MOSQUITTO = ("127.0.0.1", 1883)
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def services_required() -> bool:
    return os.environ.get("MICROCUE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, address: tuple[str, int]) -> None:
    """Skip (locally) or fail (CI) when ``name`` does not answer on ``address``."""
    if port_open(*address):
        return
    message = f"{name} is not reachable on {address[0]}:{address[1]}"
    if services_required():
        pytest.fail(f"{message} and MICROCUE_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def _admin_dsn() -> str:
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg(statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_admin_dsn(), timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def database_settings(kind: str, data_dir: Path, prefix: str) -> Iterator[Settings]:
    """Settings on a SQLite file in ``data_dir``, or on a fresh PostgreSQL database dropped
    afterwards (``yield from`` it in a fixture parametrised over "sqlite" and "postgresql")."""
    from sqlalchemy.engine import make_url

    from bridge.config import Settings

    if kind == "sqlite":
        yield Settings(data_dir=data_dir)
        return
    require_service("PostgreSQL", POSTGRES)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        yield Settings(data_dir=data_dir, database_url=url)
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
