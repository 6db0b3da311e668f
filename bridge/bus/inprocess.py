"""In-process event bus: the embedded default (one process, no broker).

Producers are per-participant workers that must keep up with video; consumers
(dashboard websockets, store writer) can stall at any time. So ``publish`` is
synchronous in effect and each subscriber owns a bounded queue that drops its
*oldest* cue when full: a slow consumer skips ahead to fresh cues and memory
stays bounded, the same trade Frigate's capture makes with frames. Every drop is
counted, per subscription and in the bus totals, so a lagging consumer shows up
in metrics instead of silently growing a backlog.

``QueueSubscription`` is shared with ``MqttBus``, whose local fan-out has the
same needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inference.cues import Cue

logger = logging.getLogger("microcue.bus")

#: Per-subscriber queue bound. At the cue rates of a large meeting (50 participants x
#: ~2 cues/s) this is ~10 s of backlog: enough to ride out a GC pause or a slow
#: websocket write, small enough (~1000 small objects) to never matter for memory.
DEFAULT_SUBSCRIBER_QUEUE = 1000

#: Characters that would change the meaning of an MQTT topic built from a meeting id
#: (level separator and wildcards) or that brokers reject (NUL).
_FORBIDDEN_ID_CHARS = frozenset("/+#\x00")
#: Longest meeting id accepted. Ids are ours (short tokens); the bound keeps a
#: topic far below MQTT's 65535-byte limit, which paho enforces by raising.
MAX_MEETING_ID_LEN = 256


class BusClosedError(RuntimeError):
    """The bus was closed; publishing or subscribing now would silently lose cues."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"cannot {operation}: the event bus is closed")
        self.operation = operation


def check_meeting_id(cue: Cue) -> None:
    """Refuse cues that cannot be routed, the same way on every bus implementation.

    The in-process bus could deliver them, but code that works there and breaks
    once ``MICROCUE_MQTT_URL`` is set is worse than an early error.
    """
    mid = cue.meeting_id
    if not mid:
        raise ValueError(f"cue needs a meeting_id to be published, got {cue!r}")
    bad = _FORBIDDEN_ID_CHARS.intersection(mid)
    if bad:
        raise ValueError(f"meeting_id must not contain {sorted(bad)}, got {mid!r}")
    if len(mid) > MAX_MEETING_ID_LEN:
        raise ValueError(f"meeting_id must be at most {MAX_MEETING_ID_LEN} characters, got {len(mid)}")
    try:
        mid.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"meeting_id must be valid UTF-8 text, got {mid!r}") from None


@dataclass
class BusCounters:
    """Totals shared by a bus and all its subscriptions, closed ones included."""

    published: int = 0
    delivered: int = 0
    dropped: int = 0


class QueueSubscription:
    """One consumer's bounded, drop-oldest view of the bus.

    Two ways to stop, on purpose different: ``aclose()`` (the consumer leaves)
    stops at once and frees the queue; ``end()`` (the bus shuts down) lets the
    consumer drain what is already queued, so a store writer keeps the last cues.
    """

    def __init__(
        self,
        meeting_id: str | None,
        *,
        maxsize: int = DEFAULT_SUBSCRIBER_QUEUE,
        counters: BusCounters | None = None,
        on_close: Callable[[QueueSubscription], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.meeting_id = meeting_id
        self.maxsize = maxsize
        self._buffer: deque[Cue] = deque()
        self._wakeup = asyncio.Event()
        self._counters = counters if counters is not None else BusCounters()
        self._on_close = on_close
        self._closed = False
        self._ended = False
        self._dropped = 0
        self._delivered = 0

    @property
    def dropped(self) -> int:
        """Cues this subscriber lost because it fell behind (bounded queue)."""
        return self._dropped

    @property
    def delivered(self) -> int:
        """Cues handed to this consumer by its async iteration."""
        return self._delivered

    @property
    def pending(self) -> int:
        """Cues queued but not yet consumed: a consumer's lag in cues."""
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        return self._closed or self._ended

    async def wait_ready(self) -> None:
        """In-process delivery starts at ``subscribe()``; here for symmetry with MQTT,
        where it waits for the broker's SUBACK."""

    def matches(self, meeting_id: str) -> bool:
        return self.meeting_id is None or self.meeting_id == meeting_id

    def offer(self, cue: Cue) -> None:
        """Queue without ever waiting: when full, forget the oldest cue and count it."""
        if self._closed or self._ended:
            return
        if len(self._buffer) >= self.maxsize:
            self._buffer.popleft()
            self._dropped += 1
            self._counters.dropped += 1
        self._buffer.append(cue)
        self._wakeup.set()

    def end(self) -> None:
        """End of stream from the bus side: iteration stops once the queue is drained."""
        self._ended = True
        self._wakeup.set()

    async def aclose(self) -> None:
        """The consumer leaves: iteration stops now and queued cues are released."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._wakeup.set()
        if self._on_close is not None:
            self._on_close(self)

    def __aiter__(self) -> QueueSubscription:
        return self

    async def __anext__(self) -> Cue:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._buffer:
                self._delivered += 1
                self._counters.delivered += 1
                return self._buffer.popleft()
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()


class InProcessBus:
    """Fan-out inside one process; the default when no MQTT broker is configured."""

    def __init__(self, *, subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE) -> None:
        self._subscriber_queue = subscriber_queue
        self._subscriptions: set[QueueSubscription] = set()
        self._counters = BusCounters()
        self._closed = False

    @property
    def published(self) -> int:
        return self._counters.published

    @property
    def delivered(self) -> int:
        """Cues consumers actually took (a cue fanned out to 3 consumers counts 3)."""
        return self._counters.delivered

    @property
    def dropped(self) -> int:
        """Cues lost to full subscriber queues, over all subscriptions ever opened."""
        return self._counters.dropped

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    async def start(self) -> None:
        """Nothing to connect; present so callers treat every bus alike."""
        if self._closed:
            raise BusClosedError("start")

    async def aclose(self) -> None:
        """Ends every subscription; consumers drain what they already hold, then stop."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, set()
        for sub in subscriptions:
            sub.end()

    async def publish(self, cue: Cue) -> None:
        """Hands the cue to every matching queue without awaiting anything."""
        if self._closed:
            raise BusClosedError("publish")
        check_meeting_id(cue)
        self._counters.published += 1
        for sub in self._subscriptions:
            if sub.matches(cue.meeting_id):
                sub.offer(cue)

    def subscribe(self, meeting_id: str | None = None) -> QueueSubscription:
        """All cues of one meeting, or of every meeting when ``meeting_id`` is None."""
        if self._closed:
            raise BusClosedError("subscribe")
        sub = QueueSubscription(
            meeting_id,
            maxsize=self._subscriber_queue,
            counters=self._counters,
            on_close=self._subscriptions.discard,
        )
        self._subscriptions.add(sub)
        return sub
