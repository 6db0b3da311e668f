"""Polling with a deadline (as aiortc's tests do): a regression fails with what was awaited, never hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Seconds between looks: short enough that a test waits no longer than it must.
POLL_S = 0.01


async def wait_until(predicate: Callable[[], object], within: float, what: str) -> None:
    """Returns once ``predicate()`` is true; fails the test after ``within`` seconds naming ``what``."""
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 - polling state another task changes, as a test should
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out after {within} s waiting for: {what}") from None
