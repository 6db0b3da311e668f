"""StoreWriter on a real SQLite file, fed by a fake subscription.

Every test checks the accounting invariant
``received == written + duplicates + rejected + dropped + pending``:
a cue is either stored or counted, never silently lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.config import Settings
from bridge.store import migrate, repo
from bridge.store.db import create_engine, create_session_factory
from bridge.store.tables import CueRow
from bridge.store.writer import StoreWriter, is_poison
from inference.cues import Cue
from tests.support.fakes.bus import FakeSubscription
from tests.support.fakes.store import FakeDriverError, FakeSessionFactory
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

#: Seconds any wait in these tests may take before the test fails instead of hanging.
WAIT_S = 10.0
#: Fast retries so outage tests take milliseconds.
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = Settings(data_dir=tmp_path, database_url="")
    await migrate.upgrade(settings)
    engine = create_engine(settings)
    factory = create_session_factory(engine)
    async with factory() as session:
        await repo.create_meeting(session=session, title="writer test", meeting_id="m1")
    yield factory
    await engine.dispose()


def cue(seq: int, meeting_id: str = "m1") -> Cue:
    return Cue(type="engagement", t=seq / 10, meeting_id=meeting_id, participant_id="p1", seq=seq, value=0.5)


async def stored_seqs(factory: async_sessionmaker[AsyncSession]) -> list[int]:
    async with factory() as session:
        return list(await session.scalars(select(CueRow.seq).order_by(CueRow.seq)))


def assert_accounted(writer: StoreWriter) -> None:
    s = writer.stats()
    assert s["received"] == s["written"] + s["duplicates"] + s["rejected"] + s["dropped"] + s["pending"], s


async def test_writes_in_batches_and_flushes_the_rest_on_close(sessions: async_sessionmaker[AsyncSession]) -> None:
    counting = FakeSessionFactory(sessions)
    sub = FakeSubscription()
    # A flush interval far beyond the test: only full batches are written before close.
    writer = StoreWriter(counting, sub, batch_size=10, flush_interval=60.0)
    await writer.start()
    for i in range(25):
        sub.put(cue(i))
    await wait_until(lambda: writer.written == 20, WAIT_S, "two full batches written")
    await asyncio.sleep(0.05)
    assert writer.written == 20 and writer.pending == 5 and counting.calls == 2
    assert await stored_seqs(sessions) == list(range(20))
    await writer.aclose()
    assert writer.written == 25 and writer.pending == 0 and counting.calls == 3
    assert await stored_seqs(sessions) == list(range(25))
    assert sub.closed
    assert_accounted(writer)


async def test_flush_interval_writes_a_partial_batch(sessions: async_sessionmaker[AsyncSession]) -> None:
    sub = FakeSubscription()
    async with StoreWriter(sessions, sub, batch_size=1000, flush_interval=0.05) as writer:
        for i in range(3):
            sub.put(cue(i))
        await wait_until(lambda: writer.written == 3, WAIT_S, "partial batch written by the interval")
        assert await stored_seqs(sessions) == [0, 1, 2]
    assert_accounted(writer)


async def test_close_takes_cues_still_queued_on_the_subscription(sessions: async_sessionmaker[AsyncSession]) -> None:
    sub = FakeSubscription()
    writer = StoreWriter(sessions, sub, batch_size=1000, flush_interval=60.0)
    await writer.start()
    for i in range(50):
        sub.put(cue(i))
    # Close at once: the subscription discards its queue on aclose, so the writer must drain it first.
    await writer.aclose()
    assert await stored_seqs(sessions) == list(range(50))
    assert writer.received == writer.written == 50
    assert_accounted(writer)


async def test_retries_with_backoff_while_the_database_is_away(sessions: async_sessionmaker[AsyncSession]) -> None:
    factory = FakeSessionFactory(sessions, failures=4)
    sub = FakeSubscription()
    async with StoreWriter(factory, sub, batch_size=10, flush_interval=0.02, **FAST) as writer:
        for i in range(35):
            sub.put(cue(i))
        await wait_until(lambda: writer.written == 35, WAIT_S, "all written after the outage")
    assert writer.retries == 4 and factory.failed == 4
    assert writer.dropped == 0
    assert await stored_seqs(sessions) == list(range(35))
    assert_accounted(writer)


async def test_backoff_grows_exponentially_to_its_cap(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    factory = FakeSessionFactory(sessions, failures=6)
    sub = FakeSubscription()
    with caplog.at_level(logging.WARNING, logger="microcue.store"):
        async with StoreWriter(
            factory, sub, batch_size=1, flush_interval=0.01, backoff_initial=0.01, backoff_max=0.08
        ) as writer:
            sub.put(cue(0))
            await wait_until(lambda: writer.written == 1, WAIT_S, "written after six failures")
    # The retry log line carries (batch, error type, message, retry number, delay, pending).
    delays = [r.args[4] for r in caplog.records if "retry" in r.msg]  # type: ignore[index]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08, 0.08])
    assert writer.retries == 6


async def test_full_buffer_drops_oldest_and_counts(sessions: async_sessionmaker[AsyncSession]) -> None:
    factory = FakeSessionFactory(sessions, away=True)  # away until up()
    sub = FakeSubscription()
    writer = StoreWriter(factory, sub, batch_size=10, flush_interval=0.01, max_buffer=50, **FAST)
    await writer.start()
    for i in range(10):
        sub.put(cue(i))
    await wait_until(lambda: writer.retries >= 1, WAIT_S, "first batch (0-9) in flight and failing")
    for i in range(10, 100):
        sub.put(cue(i))
    await wait_until(lambda: writer.received == 100 and writer.retries >= 2, WAIT_S, "all received during the outage")
    assert writer.pending == 50 and writer.dropped == 50 and writer.written == 0
    factory.up()
    await wait_until(lambda: writer.written == 50, WAIT_S, "the kept cues written once the database is back")
    await writer.aclose()
    # The batch already in flight (0-9) is kept; the buffer kept the newest 40.
    assert await stored_seqs(sessions) == [*range(10), *range(60, 100)]
    assert writer.dropped == 50
    assert_accounted(writer)


async def test_close_gives_up_after_its_timeout_and_counts_the_rest_dropped(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    factory = FakeSessionFactory(sessions, away=True)  # never comes back
    sub = FakeSubscription()
    writer = StoreWriter(factory, sub, batch_size=10, flush_interval=0.01, close_timeout=0.2, **FAST)
    await writer.start()
    for i in range(15):
        sub.put(cue(i))
    await wait_until(lambda: writer.received == 15, WAIT_S, "received")
    with caplog.at_level(logging.ERROR, logger="microcue.store"):
        async with asyncio.timeout(WAIT_S):
            await writer.aclose()
    assert writer.written == 0 and writer.dropped == 15 and writer.pending == 0
    assert "15 cue(s) unwritten" in caplog.text
    assert_accounted(writer)


async def test_redelivered_cues_are_stored_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    sub = FakeSubscription()
    async with StoreWriter(sessions, sub, batch_size=4, flush_interval=0.01) as writer:
        for i in [0, 1, 2, 1, 2, 3, 0]:
            sub.put(cue(i))
        await wait_until(lambda: writer.written + writer.duplicates == 7, WAIT_S, "settled")
    assert await stored_seqs(sessions) == [0, 1, 2, 3]
    assert writer.written == 4 and writer.duplicates == 3
    assert_accounted(writer)


async def test_cues_of_unknown_meetings_are_rejected_not_retried(sessions: async_sessionmaker[AsyncSession]) -> None:
    sub = FakeSubscription()
    async with StoreWriter(sessions, sub, batch_size=5, flush_interval=0.01) as writer:
        for i in range(5):
            sub.put(cue(i, meeting_id="m1" if i % 2 == 0 else "erased"))
        await wait_until(lambda: writer.written + writer.rejected == 5, WAIT_S, "settled")
    assert writer.rejected == 2 and writer.retries == 0
    assert await stored_seqs(sessions) == [0, 2, 4]
    assert_accounted(writer)


async def test_a_refused_row_does_not_block_its_batch(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_insert = repo.insert_cues

    async def refusing(*, session: AsyncSession, cues: list[Cue]) -> repo.CueInsert:
        if any(c.seq == 3 for c in cues):
            raise IntegrityError("INSERT INTO cues", {}, ValueError("constraint failed"))
        return await real_insert(session=session, cues=cues)

    monkeypatch.setattr("bridge.store.writer.repo.insert_cues", refusing)
    sub = FakeSubscription()
    async with StoreWriter(sessions, sub, batch_size=6, flush_interval=0.01) as writer:
        for i in range(6):
            sub.put(cue(i))
        await wait_until(lambda: writer.written + writer.rejected == 6, WAIT_S, "settled")
    assert writer.rejected == 1 and writer.written == 5 and writer.retries == 0
    assert await stored_seqs(sessions) == [0, 1, 2, 4, 5]
    assert_accounted(writer)


async def test_a_failing_subscription_is_logged_and_buffered_cues_still_written(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    sub = FakeSubscription(fail_when_drained=ConnectionResetError("broker went away"))
    for i in range(3):
        sub.put(cue(i))
    with caplog.at_level(logging.ERROR, logger="microcue.store"):
        async with StoreWriter(sessions, sub, batch_size=100, flush_interval=0.01) as writer:
            await wait_until(lambda: writer.written == 3, WAIT_S, "buffered cues written")
    assert "subscription failed" in caplog.text
    assert_accounted(writer)


async def test_counts_are_exact_under_a_steady_stream(sessions: async_sessionmaker[AsyncSession]) -> None:
    factory = FakeSessionFactory(sessions, failures=3)
    sub = FakeSubscription()
    async with StoreWriter(factory, sub, batch_size=50, flush_interval=0.01, **FAST) as writer:
        for i in range(2000):
            sub.put(cue(i))
            if i % 100 == 0:
                await asyncio.sleep(0)
    assert writer.written == 2000 and writer.dropped == 0 and writer.pending == 0
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CueRow)) == 2000
    assert_accounted(writer)


def test_refuses_nonsense_settings() -> None:
    sub = FakeSubscription()
    with pytest.raises(ValueError, match="batch_size"):
        StoreWriter(lambda: None, sub, batch_size=0)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="flush_interval"):
        StoreWriter(lambda: None, sub, flush_interval=0)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize(
    ("exc", "poison"),
    [
        (IntegrityError("stmt", {}, ValueError("unique")), True),
        (DBAPIError("stmt", {}, FakeDriverError("22001")), True),  # value too long, as asyncpg reports it
        (DBAPIError("stmt", {}, FakeDriverError("23503")), True),  # foreign key
        (DBAPIError("stmt", {}, FakeDriverError("57P01")), False),  # admin shutdown: the database is away
        (OperationalError("connect", {}, ConnectionRefusedError()), False),
        (ConnectionResetError(), False),
    ],
)
def test_poison_means_the_data_not_the_connection(exc: BaseException, poison: bool) -> None:
    assert is_poison(exc) is poison
