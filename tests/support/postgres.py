"""Fresh PostgreSQL databases on the test server, one per test, dropped afterwards.

One helper for async tests (``fresh_postgres_database``) and one for sync fixtures that hand
out ``Settings`` (``database_settings``); both create and force-drop the same way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bridge.config import Settings
from tests.services import POSTGRES, POSTGRES_URL, require_service


def asyncpg_dsn(url: str) -> str:
    """asyncpg speaks plain ``postgresql://``, without SQLAlchemy's ``+asyncpg``."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(POSTGRES_URL), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@asynccontextmanager
async def fresh_postgres_database(prefix: str = "microcue_test") -> AsyncIterator[str]:
    """A new, empty database's URL; force-dropped on exit even if connections linger."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _url(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_settings(kind: str, data_dir: Path, prefix: str) -> Iterator[Settings]:
    """Settings on a SQLite file in ``data_dir``, or on a fresh PostgreSQL database dropped
    afterwards (``yield from`` it in a sync fixture parametrised over "sqlite" and "postgresql")."""
    if kind == "sqlite":
        yield Settings(data_dir=data_dir)
        return
    require_service("PostgreSQL", POSTGRES)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield Settings(data_dir=data_dir, database_url=_url(name))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
