"""The async engine and session factory, built from Settings and nowhere else.

SQLite (the embedded default) gets WAL, foreign keys and a busy timeout on
every connection: WAL lets the dashboard read while the writer writes, and
without ``foreign_keys`` SQLite ignores ``ON DELETE CASCADE`` entirely.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bridge.config import Settings

log = logging.getLogger("microcue.store")

#: Milliseconds a SQLite writer waits for a lock held by another connection before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000
#: PRAGMAs run on every new SQLite connection (they are per connection, not per file).
SQLITE_PRAGMAS: tuple[str, ...] = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    # NORMAL is durable across application crashes in WAL mode; only power loss can drop the last commits.
    "PRAGMA synchronous=NORMAL",
    # Erased rows are overwritten with zeros instead of lingering in free pages, where a copy of
    # the file would still show them (https://www.sqlite.org/pragma.html#pragma_secure_delete).
    "PRAGMA secure_delete=ON",
)
#: The database holds people's cues and names: only the service's own user may read it.
SQLITE_FILE_MODE = 0o600
SQLITE_DIR_MODE = 0o700
#: Seconds asyncpg waits for a TCP connection, so an unreachable server fails fast and the writer retries.
POSTGRES_CONNECT_TIMEOUT_S = 5


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def safe_url(url: str | URL) -> str:
    """The URL for logs and error messages, password masked."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def create_private_file(path: Path) -> None:
    """Creates the SQLite file (and its folder) readable by this user only, before SQLite does.

    SQLite creates a missing file with the process umask (often 0644: world-readable) and gives
    its ``-wal``/``-shm`` files the database file's mode, so creating it 0600 first covers all
    three. An existing file is tightened too.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=SQLITE_DIR_MODE, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, SQLITE_FILE_MODE)
    os.close(fd)
    os.chmod(path, SQLITE_FILE_MODE)


def create_engine(settings: Settings, *, url: str | None = None, **kwargs: Any) -> AsyncEngine:
    """Engine for ``settings.effective_database_url`` (or ``url``); extra kwargs go to SQLAlchemy.

    The SQLite file's folder is created here, so a fresh ``MICROCUE_DATA_DIR``
    works on first start.
    """
    parsed = make_url(url or settings.effective_database_url)
    if is_sqlite(parsed):
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            create_private_file(Path(database))
        engine = create_async_engine(parsed, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    connect_args = {"timeout": POSTGRES_CONNECT_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    # pre_ping: after a server restart or pg_terminate_backend, pooled connections are dead;
    # check them out fresh instead of failing the next statement.
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(parsed, connect_args=connect_args, **kwargs)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (routes serialise them afterwards)."""
    return async_sessionmaker(engine, expire_on_commit=False)
