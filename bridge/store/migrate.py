"""Run the Alembic migrations from code: the service start-up and ``microcue db``.

The functions are async because their callers already run an event loop (the
FastAPI lifespan); Alembic gets an open connection through
``config.attributes`` and runs on that loop instead of starting its own.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.store.db import create_engine, safe_url
from bridge.store.errors import SchemaOutdated

log = logging.getLogger("microcue.store")

#: The ``migrations`` package (Alembic's env.py and versions/), found through the installed
#: distribution's resources: the same folder in a checkout and in a wheel.
MIGRATIONS_DIR = Path(str(files("migrations")))


def alembic_config(settings: Settings) -> Config:
    """An Alembic Config that needs no alembic.ini and no working directory."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise MicroCueError(
            f"migrations not found at {MIGRATIONS_DIR}: the MicroCue installation is incomplete; "
            "reinstall it (pip install --force-reinstall microcue)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    config.attributes["skip_logging_config"] = True
    return config


def head_revision(settings: Settings) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()


async def _run(settings: Settings, action: str, **kwargs: Any) -> None:
    config = alembic_config(settings)
    engine = create_engine(settings, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:

            def run(sync_connection: Connection) -> None:
                config.attributes["connection"] = sync_connection
                getattr(command, action)(config, **kwargs)

            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


async def upgrade(settings: Settings, rev: str = "head") -> None:
    """Brings the schema to ``rev``; a no-op when it is already there, so start-up can always call it."""
    log.info("migrating %s up to %s", safe_url(settings.effective_database_url), rev)
    await _run(settings, "upgrade", revision=rev)


async def downgrade(settings: Settings, rev: str) -> None:
    """Down to ``rev`` (``base`` drops every table, and with them all data)."""
    log.warning("migrating %s down to %s", safe_url(settings.effective_database_url), rev)
    await _run(settings, "downgrade", revision=rev)


async def current(settings: Settings) -> str | None:
    """The revision the database is at; None for an empty (never migrated) database."""
    engine = create_engine(settings, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


async def require_head(settings: Settings, *, outdated: type[SchemaOutdated] = SchemaOutdated) -> None:
    """For whoever uses the store but never migrates it (reports, purge, workers): a schema
    that is not this code's head is one clear line up front, not a failing query later.
    ``outdated`` is the error to raise, for a caller whose advice differs (a worker's)."""
    at, head = await current(settings), head_revision(settings)
    if at != head:
        raise outdated(current=at, head=head)
