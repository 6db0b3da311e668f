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
(``bridge/rooms/browser.py``); ``tests/e2e/test_browser_bot_steps.py`` checks it. The loop made
here (``MediaLoop``) refuses ``subprocess_exec``/``subprocess_shell`` with an error that says
this, so a new spawn fails at once, in tests, rather than hanging a loaded bridge; ``microcue
serve`` runs on it too (uvicorn's ``loop="bridge.eventloop:media_loop"``). ``subprocess.run`` in a
worker thread is not affected (CPython's own fork runs no after-fork code without ``preexec_fn``).
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
#: What uvicorn is given as its loop (an import string naming the factory below).
UVICORN_LOOP = "bridge.eventloop:media_loop"


class SubprocessRefused(RuntimeError):
    """A child process was asked of the media loop, where uvloop's spawn can hang the process."""

    def __init__(self) -> None:
        super().__init__(
            "no subprocess may be started from the media event loop: uvloop's spawn can hang the whole "
            "process (uvloop issue 749, bridge/eventloop.py); start it from a thread running asyncio's own "
            "loop, or with subprocess in a worker thread"
        )


if uvloop is not None:

    class MediaLoop(uvloop.Loop):
        """uvloop without child processes (see the module's docstring)."""

        async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
            raise SubprocessRefused

        async def subprocess_shell(self, *args: Any, **kwargs: Any) -> Any:
            raise SubprocessRefused


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The media loop's factory (uvloop that refuses children), or None (asyncio's default loop)
    where uvloop is not installed."""
    if uvloop is None:  # pragma: no cover
        log.warning("uvloop is not installed: media sockets run on asyncio's loop and drop packets under load")
        return None
    return MediaLoop


def media_loop() -> asyncio.AbstractEventLoop:
    """A new media loop: the factory uvicorn imports (``UVICORN_LOOP``)."""
    factory = loop_factory()
    return asyncio.new_event_loop() if factory is None else factory()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the loop :func:`loop_factory` chooses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
