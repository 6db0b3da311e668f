"""The event loop every MicroCue process that carries media runs on: uvloop where it is
installed (a dependency on Linux), asyncio's own loop elsewhere.

Why it matters: asyncio's selector loop reads one datagram per socket per turn of the loop. A
bridge that receives each participant's audio and video (50 + 30-100 RTP packets a second each)
while its threads decode, encode and analyse turns its loop too slowly under load, the socket's
receive queue fills and the kernel drops what comes next. libuv drains up to 32 datagrams per
wake-up in C. Measured on this project's three-chromium built-in meeting
(tests/e2e/test_builtin_browsers.py, 2 cores, a bench beside it), the bridge on asyncio's loop:
3,173-4,625 datagrams dropped by the kernel for a full socket buffer (UDP RcvbufErrors), 11-36 %
of the publishers' RTP lost, 3-8 keyframe requests per publisher; on uvloop, same load: none
dropped, none lost, no keyframe request (docs/rooms.md).

``microcue serve`` gets the same from uvicorn (``loop="auto"`` picks uvloop when installed); the
other commands and the test server use :func:`run` / :func:`loop_factory`.

Never start a subprocess from this loop. uvloop runs the interpreter's after-fork code in the
child it forks (uvloop issue 749, open), which frees the other threads' thread-local objects
there; PyAV's per-thread scaler waits forever on its slice threads' condition in that child, and
uvloop waits for the exec holding the GIL, so the whole process stops. The browser bot runs
Playwright (which spawns its driver) on its own thread with asyncio's loop
(``bridge/rooms/browser.py``); ``tests/e2e/test_browser_bot_steps.py`` checks it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - a dependency on Linux; not built for Windows
    uvloop = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default loop) where uvloop is not installed."""
    if uvloop is None:  # pragma: no cover
        log.warning("uvloop is not installed: media sockets run on asyncio's loop and drop packets under load")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the loop :func:`loop_factory` chooses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
