"""A ``bridge.bus.Subscription`` fed by hand, for consumers tested without a bus (the store writer)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from inference.cues import Cue

if TYPE_CHECKING:
    from bridge.bus import Subscription


class FakeSubscription:
    """Like the in-process bus: ``aclose`` stops at once and discards what is queued.

    ``put`` queues a cue and ``end`` ends the stream. ``fail_when_drained`` is raised by the
    iteration instead of waiting once the queue is empty: a broker that went away mid-stream.
    """

    def __init__(self, *, fail_when_drained: BaseException | None = None) -> None:
        self._queue: asyncio.Queue[Cue | None] = asyncio.Queue()
        self.fail_when_drained = fail_when_drained
        self.closed = False

    def put(self, cue: Cue) -> None:
        self._queue.put_nowait(cue)

    def end(self) -> None:
        self._queue.put_nowait(None)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def dropped(self) -> int:
        return 0

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> Cue:
        if self.fail_when_drained is not None and self._queue.empty():
            raise self.fail_when_drained
        if self.closed:
            raise StopAsyncIteration
        cue = await self._queue.get()
        if cue is None or self.closed:
            raise StopAsyncIteration
        return cue

    async def aclose(self) -> None:
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


if TYPE_CHECKING:
    _subscription: Subscription = FakeSubscription()
