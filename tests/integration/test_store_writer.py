"""StoreWriter against the real PostgreSQL while its connections are killed and refused.

Cues travel the real path: ``InProcessBus.publish`` -> subscription -> writer
-> PostgreSQL. The assertions are on the rows in the database: every cue
published is stored exactly once, nothing is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bridge.bus import InProcessBus
from bridge.config import Settings
from bridge.store import migrate, repo
from bridge.store.db import create_engine, create_session_factory
from bridge.store.tables import CueRow
from bridge.store.writer import StoreWriter
from inference.cues import Cue
from tests.services import POSTGRES, POSTGRES_URL, require_service
from tests.support.postgres import asyncpg_dsn, fresh_postgres_database
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
pytest_plugins = ["tests.support.media"]

#: Seconds any wait may take before the test fails instead of hanging.
WAIT_S = 30.0
#: Cues published per test: ~15 per-second cues of 10 participants for 20 s.
N_CUES = 3000
#: Big enough that the bus itself never drops: these tests are about the writer.
BUS_QUEUE = 100_000
MEETING = "m1"


@dataclass
class Store:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    database: str

    @property
    def dsn(self) -> str:
        return asyncpg_dsn(self.settings.effective_database_url)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    require_service("PostgreSQL", POSTGRES)
    async with fresh_postgres_database() as url:
        settings = Settings(database_url=url, data_dir=tmp_path)
        await migrate.upgrade(settings)
        engine = create_engine(settings)
        sessions = create_session_factory(engine)
        async with sessions() as session:
            await repo.create_meeting(session=session, title="outage", meeting_id=MEETING)
        try:
            yield Store(settings, engine, sessions, make_url(url).database or "")
        finally:
            await engine.dispose()


def cue(seq: int) -> Cue:
    return Cue(type="attention", t=seq / 15, meeting_id=MEETING, participant_id=f"p{seq % 10}", seq=seq, value=0.5)


async def stored(store: Store) -> tuple[int, set[tuple[str, int]]]:
    async with store.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(CueRow))
        keys = set((await session.execute(select(CueRow.participant_id, CueRow.seq))).tuples())
    return int(count or 0), keys


async def terminate_all(store: Store) -> int:
    """Kills every backend on the test database (idle pooled connections included)."""
    admin = await asyncpg.connect(store.dsn, timeout=10)
    try:
        return int(
            await admin.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
                store.database,
            )
        )
    finally:
        await admin.close()


async def kill_writer_mid_insert(store: Store) -> int:
    """Holds the cues table locked until the writer's INSERT waits on it, then kills that backend.

    This is the outage that matters: the connection dies inside a write, not
    while idle in the pool where pre-ping would quietly replace it.
    """
    locker = await asyncpg.connect(store.dsn, timeout=10)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE cues IN ACCESS EXCLUSIVE MODE")
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            waiting = await locker.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid()",
                store.database,
            )
            if waiting:
                break
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail("the writer never tried to insert while the table was locked")
            await asyncio.sleep(0.01)
        killed = 0
        for row in waiting:
            killed += bool(await locker.fetchval("SELECT pg_terminate_backend($1)", row["pid"]))
        await tx.rollback()
        return killed
    finally:
        await locker.close()


async def publish_paced(bus: InProcessBus, seqs: range, *, every: int = 50, pause: float = 0.005) -> None:
    for seq in seqs:
        await bus.publish(cue(seq))
        if seq % every == 0:
            await asyncio.sleep(pause)


async def test_no_cue_lost_when_postgres_kills_the_writers_connections(store: Store) -> None:
    bus = InProcessBus(subscriber_queue=BUS_QUEUE)
    await bus.start()
    writer = StoreWriter(
        store.sessions, bus.subscribe(MEETING), batch_size=100, flush_interval=0.02, backoff_initial=0.02
    )
    await writer.start()
    producer = asyncio.create_task(publish_paced(bus, range(N_CUES)))
    killed_mid_insert = 0
    killed_idle = 0
    for _ in range(3):
        killed_mid_insert += await kill_writer_mid_insert(store)
        killed_idle += await terminate_all(store)
        await asyncio.sleep(0.05)
    await producer
    # Service shutdown order: the bus ends its streams (consumers drain), then the writer flushes.
    await bus.aclose()
    async with asyncio.timeout(WAIT_S):
        await writer.aclose()

    assert killed_mid_insert >= 3, "the test must really have killed writes in flight"
    assert writer.retries >= 3
    count, keys = await stored(store)
    assert count == N_CUES
    assert keys == {(f"p{s % 10}", s) for s in range(N_CUES)}
    assert bus.dropped == 0 and writer.dropped == 0 and writer.rejected == 0
    assert writer.received == N_CUES == writer.written + writer.duplicates
    assert writer.pending == 0


async def test_writer_buffers_through_an_outage_and_catches_up(store: Store) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(POSTGRES_URL), timeout=10)  # the server's own db: unaffected
    try:
        bus = InProcessBus(subscriber_queue=BUS_QUEUE)
        writer = StoreWriter(
            store.sessions,
            bus.subscribe(MEETING),
            batch_size=100,
            flush_interval=0.02,
            backoff_initial=0.02,
            backoff_max=0.2,
        )
        async with writer:
            await publish_paced(bus, range(500))
            await wait_until(lambda: writer.written == 500, WAIT_S, "first 500 stored before the outage")

            # The database goes away: no new connections, and the existing ones are killed.
            await admin.execute(f'ALTER DATABASE "{store.database}" ALLOW_CONNECTIONS false')
            await terminate_all_from(admin, store.database)
            await publish_paced(bus, range(500, N_CUES))
            await wait_until(
                lambda: writer.received == N_CUES and writer.retries >= 3,
                WAIT_S,
                "all received, retries failing meanwhile",
            )
            assert writer.written == 500 and writer.pending == N_CUES - 500 and writer.dropped == 0

            await admin.execute(f'ALTER DATABASE "{store.database}" ALLOW_CONNECTIONS true')
            await wait_until(lambda: writer.written == N_CUES, WAIT_S, "the backlog written after the outage")
        await bus.aclose()
    finally:
        await admin.execute(f'ALTER DATABASE "{store.database}" ALLOW_CONNECTIONS true')
        await admin.close()
    count, keys = await stored(store)
    assert count == N_CUES and len(keys) == N_CUES
    assert writer.dropped == 0 and writer.duplicates == 0


async def terminate_all_from(admin: asyncpg.Connection, database: str) -> None:
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )


async def test_a_value_postgres_refuses_is_rejected_without_wedging_the_writer(store: Store) -> None:
    """An over-long participant id is SQLSTATE 22001 on PostgreSQL: one cue refused, never retried forever."""
    bus = InProcessBus(subscriber_queue=BUS_QUEUE)
    writer = StoreWriter(store.sessions, bus.subscribe(MEETING), batch_size=10, flush_interval=0.02)
    async with writer:
        for seq in range(10):
            participant = "x" * 300 if seq == 4 else "p1"
            await bus.publish(Cue(type="presence", t=seq, meeting_id=MEETING, participant_id=participant, seq=seq))
        await wait_until(lambda: writer.written + writer.rejected == 10, WAIT_S, "all ten settled")
    await bus.aclose()
    assert writer.rejected == 1 and writer.written == 9 and writer.retries == 0
    count, keys = await stored(store)
    assert count == 9 and ("p1", 4) not in keys
