"""Store writer: cues from the bus into the database, in batches, surviving outages.

One consumer task moves cues from the subscription into a bounded buffer; one
flusher task writes them ``batch_size`` at a time or every ``flush_interval``
seconds. While the database is away the flusher retries the same batch with
exponential backoff and the buffer keeps filling; when it is full the oldest
cue is dropped and counted. Accounting invariant, checked by the tests:

    received == written + duplicates + rejected + dropped + pending
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.bus import Subscription
from bridge.store import repo
from bridge.tasks import cancel_and_wait
from inference.cues import Cue

log = logging.getLogger("microcue.store")

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]

#: Cues per INSERT: a few hundred amortises the round trip; a 10-participant meeting
#: produces roughly 10-50 cues/s, so a batch rarely fills before the interval.
DEFAULT_BATCH_SIZE = 200
#: Seconds a cue may wait for a batch to fill; summaries at meeting end see it within this.
DEFAULT_FLUSH_INTERVAL_S = 0.5
#: Cues held while the database is away: about 15-80 minutes of a 10-person meeting,
#: and a few tens of MB at most.
DEFAULT_MAX_BUFFER = 50_000
#: First retry delay after a failed write; doubled per failure up to the maximum.
DEFAULT_BACKOFF_INITIAL_S = 0.1
DEFAULT_BACKOFF_MAX_S = 5.0
#: On ``aclose``, seconds to keep trying to flush what is buffered before counting it as dropped.
DEFAULT_CLOSE_TIMEOUT_S = 10.0
#: Seconds the consumer gets to finish after its subscription is closed, before it is cancelled.
CONSUMER_STOP_TIMEOUT_S = 1.0
#: Log the first overflow drop and then one line per this many, not one per cue.
DROP_LOG_EVERY = 1000
#: Errors that one bad row causes; retrying the same batch would never succeed.
POISON_ERRORS: tuple[type[BaseException], ...] = (IntegrityError, DataError)
#: SQLSTATE classes of the same kind: 22 data exception (value too long...), 23 integrity
#: violation. The asyncpg dialect reports most of class 22 as a plain DBAPIError.
POISON_SQLSTATE_CLASSES: frozenset[str] = frozenset({"22", "23"})


#: Decides whether a cue may be stored (the meeting's purpose policy); see ``bridge.service``.
Admit = Callable[[Cue], Awaitable[bool]]


class StoreWriter:
    """Owns its two tasks and its subscription: ``aclose()`` closes both and flushes.

    ``session_factory`` is an ``async_sessionmaker`` (or anything that returns an
    async context manager yielding an ``AsyncSession``).
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        subscription: Subscription,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max: float = DEFAULT_BACKOFF_MAX_S,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_S,
        admit: Admit | None = None,
    ) -> None:
        if batch_size < 1 or max_buffer < 1:
            raise ValueError(f"batch_size and max_buffer must be >= 1, got {batch_size} and {max_buffer}")
        if flush_interval <= 0 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("flush_interval and backoff_initial must be > 0, backoff_max >= backoff_initial")
        self._session_factory = session_factory
        self._subscription = subscription
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._close_timeout = close_timeout
        self._admit = admit
        self._buffer: deque[Cue] = deque()
        # The batch being written: it leaves the buffer only once the database has it.
        self._inflight: deque[Cue] = deque()
        self._wake = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._consumer_done = False
        self._closed = False
        self.received = 0
        self.written = 0
        self.duplicates = 0
        self.rejected = 0
        self.retries = 0
        self.dropped = 0
        #: Cues not stored because the meeting's purpose policy withholds their kind.
        self.withheld = 0

    @property
    def pending(self) -> int:
        """Cues received and not yet settled (buffered or being written)."""
        return len(self._buffer) + len(self._inflight)

    def stats(self) -> dict[str, int]:
        return {
            "received": self.received,
            "written": self.written,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "retries": self.retries,
            "dropped": self.dropped,
            "withheld": self.withheld,
            "pending": self.pending,
            # Lost upstream, before the writer saw them (the subscription's bounded queue).
            "bus_dropped": int(getattr(self._subscription, "dropped", 0)),
        }

    async def start(self) -> None:
        if self._consumer is not None:
            raise RuntimeError("StoreWriter already started")
        self._consumer = asyncio.create_task(self._consume(), name="store-writer-consume")
        self._flusher = asyncio.create_task(self._flush_loop(), name="store-writer-flush")
        for task in (self._consumer, self._flusher):
            task.add_done_callback(_log_task_failure)

    async def __aenter__(self) -> StoreWriter:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stops consuming, then flushes everything buffered (up to ``close_timeout``)."""
        if self._closed:
            return
        self._closed = True
        await self._drain_subscription()
        await self._subscription.aclose()
        if self._consumer is not None:
            # A closed subscription ends the iteration; cancel only if it does not.
            done, _ = await asyncio.wait({self._consumer}, timeout=CONSUMER_STOP_TIMEOUT_S)
            if not done:
                await cancel_and_wait(self._consumer)
        self._consumer_done = True
        self._wake.set()
        if self._flusher is not None:
            done, _ = await asyncio.wait({self._flusher}, timeout=self._close_timeout)
            if not done:
                await cancel_and_wait(self._flusher)
        if self.pending:
            log.error(
                "store writer closed with %d cue(s) unwritten after %.1f s; counted as dropped",
                self.pending,
                self._close_timeout,
            )
            self.dropped += self.pending
            self._buffer.clear()
            self._inflight.clear()
        log.info("store writer closed: %s", self.stats())

    async def _drain_subscription(self) -> None:
        """Takes what the bus already queued for us: closing a subscription may discard its queue.

        The consumer does not suspend while cues are queued, so yielding to it
        empties the queue; ``pending`` (when the subscription has it) says when.
        """
        if self._consumer is None or self._consumer.done():
            return
        deadline = asyncio.get_running_loop().time() + CONSUMER_STOP_TIMEOUT_S
        while not self._consumer.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0)
            if not getattr(self._subscription, "pending", 0):
                break

    # --- consumer --------------------------------------------------------------------------------

    async def _consume(self) -> None:
        try:
            async for cue in self._subscription:
                self.received += 1
                if self._admit is not None and not await self._admit(cue):
                    self.withheld += 1
                    continue
                self._enqueue(cue)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The flusher keeps writing what is buffered; the owner sees this in the log.
            log.exception("store writer: the cue subscription failed; no more cues will be stored")
        finally:
            self._consumer_done = True
            self._wake.set()

    def _enqueue(self, cue: Cue) -> None:
        if self.pending >= self._max_buffer:
            # Keep the newest: a live dashboard and the end-of-meeting summary care most about recent cues.
            if self._buffer:
                self._buffer.popleft()
                self._buffer.append(cue)
            self.dropped += 1
            if self.dropped == 1 or self.dropped % DROP_LOG_EVERY == 0:
                log.warning("store writer buffer full (%d); dropped %d cue(s) so far", self._max_buffer, self.dropped)
        else:
            self._buffer.append(cue)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    # --- flusher ---------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        backoff = self._backoff_initial
        while True:
            if not self._inflight and not self._consumer_done and len(self._buffer) < self._batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._flush_interval)
            if not self._inflight:
                for _ in range(min(self._batch_size, len(self._buffer))):
                    self._inflight.append(self._buffer.popleft())
            if not self._inflight:
                if self._consumer_done:
                    return
                continue
            try:
                await self._write_inflight()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.retries += 1
                log.warning(
                    "store writer: write of %d cue(s) failed (%s: %s); retry %d in %.2f s, %d pending",
                    len(self._inflight),
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    self.retries,
                    backoff,
                    self.pending,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
            else:
                backoff = self._backoff_initial

    async def _insert(self, cues: list[Cue]) -> None:
        async with self._session_factory() as session:
            result = await repo.insert_cues(session=session, cues=cues)
        self.written += result.inserted
        self.duplicates += result.duplicates
        self.rejected += result.unknown_meeting

    async def _write_inflight(self) -> None:
        """Writes the in-flight batch; transient errors propagate and the same batch is retried."""
        try:
            await self._insert(list(self._inflight))
        except Exception as exc:
            if not is_poison(exc):
                raise
            log.warning("store writer: batch of %d refused; writing its cues one by one", len(self._inflight))
        else:
            self._inflight.clear()
            return
        # One bad row must not block the rest: each cue on its own, the refused ones counted.
        while self._inflight:
            cue = self._inflight[0]
            try:
                await self._insert([cue])
            except Exception as exc:
                if not is_poison(exc):
                    raise
                log.exception("store writer: cue refused by the database and not stored: %s", cue)
                self.rejected += 1
            self._inflight.popleft()


def is_poison(exc: BaseException) -> bool:
    """A refusal of the data itself, as opposed to the database being away (which is retried)."""
    if isinstance(exc, POISON_ERRORS):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in POISON_SQLSTATE_CLASSES


def _log_task_failure(task: asyncio.Task[None]) -> None:
    """Background failures are never silent."""
    if not task.cancelled() and task.exception() is not None:
        log.error("store writer task %s crashed", task.get_name(), exc_info=task.exception())
