"""The server harness the long-running commands share: ``serve``, ``worker``, ``demo``, ``join``.

Each of them binds a socket, runs uvicorn, waits for SIGINT/SIGTERM and (but ``serve`` and
``worker``) prints cues as JSON lines; written once here, so that a port in use is the same
one clear line everywhere, every server gets the same websocket bound and log redaction, and
every command stops on a signal the same way, by ending its meeting instead of being killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bridge import eventloop, logsafe
from bridge.bus import Subscription
from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.tasks import cancel_and_wait

if TYPE_CHECKING:
    import uvicorn

#: Largest websocket message uvicorn accepts from any client (it closes with 1009 above it).
#: Presenters send tiny control messages and signalling carries SDP of a few kB; 1 MiB leaves
#: room for large SDP while bounding what one client can make the server buffer (uvicorn's default is 16 MiB).
WS_MAX_SIZE = 1024 * 1024
#: Seconds uvicorn lets open connections finish at shutdown before closing them.
GRACEFUL_SHUTDOWN_S = 5
#: Pending connections the kernel queues for us.
LISTEN_BACKLOG = 2048
#: Pending connections on the demo's Unix socket (one local forwarder connects to it).
UNIX_BACKLOG = 128
#: How often ``serving`` looks whether uvicorn has started listening.
START_POLL_S = 0.05
#: What stops a command: Ctrl-C, and what service managers and Kubernetes send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Lifespan = Literal["auto", "on", "off"]


# --- binding ------------------------------------------------------------------------------------


def cannot_listen(settings: Settings, exc: OSError) -> MicroCueError:
    """The one line for a port that cannot be had (in use, not permitted)."""
    return MicroCueError(
        f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
        "stop what uses that port or pick another with --port / MICROCUE_PORT"
    )


def bind_tcp(settings: Settings) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear line, not a uvicorn traceback."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise cannot_listen(settings, exc) from exc
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket that only this user may connect to."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(UNIX_BACKLOG)
    return sock


# --- serving ------------------------------------------------------------------------------------


def _server(
    app: Any, settings: Settings, *, log_level: str | None, lifespan: Lifespan, own_signals: bool
) -> uvicorn.Server:
    """uvicorn configured the one way MicroCue runs it. Without ``own_signals`` uvicorn leaves
    SIGINT/SIGTERM alone (``uvicorn.Server.serve`` would otherwise take them, and re-raise them
    when it stops): the command decides what a signal does (``stop_on_signals``)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        loop=eventloop.UVICORN_LOOP,
        ws_max_size=WS_MAX_SIZE,
        log_level=(log_level or settings.log_level).lower(),
        lifespan=lifespan,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )
    # uvicorn.Config set up its own handlers just now; its access log prints every query string.
    logsafe.install()
    if own_signals:
        return uvicorn.Server(config)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


def _not_started() -> MicroCueError:
    return MicroCueError("the service failed to start; the log above says why")


def run_server(app: Any, settings: Settings, sockets: Sequence[socket.socket], *, lifespan: Lifespan) -> None:
    """Serves until SIGINT/SIGTERM, which uvicorn takes itself: its graceful shutdown (the app's
    lifespan ends the meetings), then the signal's own exit. For a process that only serves."""
    server = _server(app, settings, log_level=None, lifespan=lifespan, own_signals=True)
    server.run(sockets=list(sockets))
    if not server.started:
        raise _not_started()


@contextlib.asynccontextmanager
async def serving(
    app: Any,
    settings: Settings,
    sockets: Sequence[socket.socket],
    *,
    log_level: str | None = None,
    lifespan: Lifespan = "auto",
) -> AsyncIterator[uvicorn.Server]:
    """``app`` served on ``sockets`` in this event loop while the block runs, for a command that
    does more than serve. The block starts once uvicorn listens; a server that could not start is
    an error here. At the end it stops listening and lets connections finish (``GRACEFUL_SHUTDOWN_S``)."""
    server = _server(app, settings, log_level=log_level, lifespan=lifespan, own_signals=False)
    task = asyncio.create_task(server.serve(sockets=list(sockets)), name="microcue-server")
    try:
        while not server.started:
            if task.done():
                task.result()  # re-raises why it could not start
                raise _not_started()
            await asyncio.sleep(START_POLL_S)
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait([task])
    task.result()  # a failure while shutting down is not swallowed


# --- stopping -----------------------------------------------------------------------------------


class Stop:
    """Set by the first stop signal, or by its owner; ``signal`` is the signal that set it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.signal: signal.Signals | None = None

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


@contextlib.asynccontextmanager
async def stop_on_signals(*, on_second: Callable[[signal.Signals], object] | None = None) -> AsyncIterator[Stop]:
    """While the block runs, SIGINT and SIGTERM set the ``Stop`` it is given instead of killing
    the process, so the command ends its way (its meeting ended, its report printed). A second
    signal calls ``on_second`` when given (the worker: exit without waiting for the drain)."""
    stop = Stop()
    loop = asyncio.get_running_loop()

    def received(sig: signal.Signals) -> None:
        if stop.signal is None:
            stop.signal = sig
            stop.set()
        elif on_second is not None:
            on_second(sig)

    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):  # an event loop without signal handlers
            loop.add_signal_handler(sig, received, sig)
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# --- cues on stdout -----------------------------------------------------------------------------


async def _print_cues(subscription: Subscription) -> None:
    async for cue in subscription:
        sys.stdout.write(json.dumps(cue.to_dict(), separators=(",", ":")) + "\n")
        sys.stdout.flush()


@contextlib.asynccontextmanager
async def printing_cues(subscription: Subscription, *, drain_s: float | None = None) -> AsyncIterator[None]:
    """Every cue of ``subscription`` as one JSON line on stdout while the block runs (the cue
    schema of docs/contracts.md, so ``| jq`` or a parent process reads them); the subscription
    is closed after. Where the block ends the subscription itself (it closed the bus),
    ``drain_s`` gives the printer that long to print the last cues (stdout may be a stalled pipe)."""
    printer = asyncio.create_task(_print_cues(subscription), name="microcue-cue-printer")
    try:
        yield
    finally:
        if drain_s is not None:
            await asyncio.wait([printer], timeout=drain_s)
        await cancel_and_wait(printer)
        await subscription.aclose()
