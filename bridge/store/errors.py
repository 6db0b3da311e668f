"""Turning database failures into one clear line for a person (CLI, start-up)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.store.db import safe_url


class DatabaseUnavailable(MicroCueError):
    """The database did not answer or refused the connection."""

    def __init__(self, settings: Settings, cause: BaseException) -> None:
        self.url = safe_url(settings.effective_database_url)
        first_line = (str(cause).splitlines() or [type(cause).__name__])[0]
        super().__init__(
            f"cannot use the database at {self.url} ({first_line}); "
            "start it, or point MICROCUE_DATABASE_URL at a running one"
        )


class SchemaOutdated(MicroCueError):
    """The database is not at the migration head this code expects."""

    def __init__(self, *, current: str | None, head: str | None) -> None:
        self.current, self.head = current, head
        super().__init__(self.explain())

    def explain(self) -> str:
        """The line a person reads; a caller with other advice (a worker) subclasses this."""
        return (
            f"database schema is at revision {self.current or 'none (empty database)'}, this MicroCue needs "
            f"{self.head}; run 'microcue db upgrade'"
        )


#: Failures that mean "the server is not there", as opposed to a bug in a query.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, OSError)


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, UNAVAILABLE_ERRORS)


@contextmanager
def explain_unavailable(settings: Settings) -> Iterator[None]:
    """Around a command's database work: a database that is not there becomes one clear line
    (``DatabaseUnavailable``) instead of a traceback from inside the driver; any other failure
    passes unchanged."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(settings, exc) from exc
        raise
