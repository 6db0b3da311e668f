"""Forward a local TCP port to a Unix socket: how a demo inside a network namespace reaches a browser.

A private network namespace keeps WebRTC off the machine's real interfaces, but it also hides
the service's ``127.0.0.1:8080`` from the user's browser, which lives in the host namespace. A
Unix socket is a file, so it crosses namespaces: the service inside listens on one, and this
forwarder listens on ``127.0.0.1:PORT`` outside and copies bytes both ways. HTTP and websockets
pass through unchanged, so the printed dashboard URL works as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

log = logging.getLogger("microcue.demo.forward")

#: Bytes read per chunk in each direction (a websocket frame of cues is a few hundred bytes).
CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            if writer.can_write_eof():
                writer.write_eof()


class UnixForwarder:
    """``async with UnixForwarder(host, port, path)``: TCP connections on host:port go to ``path``."""

    def __init__(self, host: str, port: int, socket_path: Path) -> None:
        self.host, self.port, self.socket_path = host, port, socket_path
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError as exc:  # the service inside is not up (yet) or has gone
            log.warning("demo service not reachable on %s: %s", self.socket_path, exc)
            client_w.close()
            return
        try:
            await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
        finally:
            for w in (client_w, upstream_w):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()

    def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._handle(reader, writer), name="demo-forward")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> UnixForwarder:
        self._server = await asyncio.start_server(self._track, self.host, self.port, reuse_address=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
