"""Stopping background tasks the one way every owner of a task does it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def running(task: asyncio.Task[Any] | None) -> bool:
    return task is not None and not task.done()


class Retired:
    """Tasks that were cancelled (a track replaced, a participant gone) and have not finished.

    They stay owned until they end, so the owner's ``aclose`` awaits them with the rest instead of
    leaving a reader to die with the event loop (and its cleanup never to run).
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def retire(self, task: asyncio.Task[Any] | None) -> None:
        """Cancel ``task`` (None: nothing to do) and keep it until it has finished."""
        if task is None:
            return
        task.cancel()
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def tasks(self) -> list[asyncio.Task[Any]]:
        return list(self._tasks)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every task, then wait for each to end, so their cleanup has run when this returns.

    A task that ends by raising something other than its cancellation still raises here: a
    background failure is never swallowed by the shutdown that follows it.
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task
