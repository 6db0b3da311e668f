"""A real uvicorn serving ``create_app`` on 127.0.0.1 (a free port) in a background thread.

Tests and the e2e browser talk to it over real TCP; cues are published on the
app's own bus from the test through ``publish``, which hops onto the server's
event loop. Used by the live websocket, dashboard and benchmark code.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from bridge import eventloop
from inference.cues import Cue

T = TypeVar("T")

#: Seconds the server may take to start (migrations on a fresh database included).
START_TIMEOUT_S = 30.0
#: Seconds it may take to shut down.
STOP_TIMEOUT_S = 15.0


class LiveServer:
    def __init__(self, app: FastAPI, *, ws_max_size: int = 1024 * 1024, port: int = 0) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, log_level="warning", lifespan="on", ws_max_size=ws_max_size, timeout_graceful_shutdown=2
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve(sockets=[self.sock])

        try:
            eventloop.run(main())  # the loop the product's processes run on
        except BaseException as exc:
            self._error = exc

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {START_TIMEOUT_S} s (error: {self._error!r})")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        self.sock.close()
        if self._thread.is_alive():
            raise TimeoutError(f"uvicorn did not stop within {STOP_TIMEOUT_S} s")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Runs a coroutine on the server's loop (its bus and hub live there) and returns its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def publish(self, *cues: Cue) -> None:
        bus = self.app.state.web.service.bus

        async def publish_all() -> None:
            for cue in cues:
                await bus.publish(cue)

        self.call(publish_all())

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
