"""The store writer's session factory (``bridge.store.writer.SessionFactory``) with the database
away on demand, and the error a PostgreSQL driver raises, for tests of how the writer copes."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from bridge.store.writer import SessionFactory


class FakeSessionFactory:
    """Hands out ``inner``'s sessions and counts the calls, unless the database is away.

    Away for the first ``failures`` calls, or, with ``away=True``, until ``up()``; "away" is
    the ``OperationalError`` SQLAlchemy raises when the connection is refused.
    """

    def __init__(self, inner: async_sessionmaker[AsyncSession], *, failures: int = 0, away: bool = False) -> None:
        self.inner = inner
        self.failures = failures
        self.away = away
        self.calls = 0
        self.failed = 0

    def up(self) -> None:
        self.away, self.failures = False, 0

    def __call__(self) -> AbstractAsyncContextManager[AsyncSession]:
        self.calls += 1
        if self.away or self.failed < self.failures:
            self.failed += 1
            raise OperationalError("connect", {}, ConnectionRefusedError("database is away"))
        return self.inner()


class FakeDriverError(Exception):
    """What asyncpg raises under SQLAlchemy's ``DBAPIError``: the cause is in ``sqlstate``."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


if TYPE_CHECKING:
    _sessions: SessionFactory = FakeSessionFactory(async_sessionmaker())
