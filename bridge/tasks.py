"""Stopping background tasks the one way every owner of a task does it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


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
