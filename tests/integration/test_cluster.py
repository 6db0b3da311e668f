"""Meeting leases on the real PostgreSQL and join distribution on the real Mosquitto (127.0.0.1).

The lease is what keeps two workers from analysing one meeting, so its races are run for
real: several stores acquire at once through separate connections, expired holders try to
renew, sweepers compete for one orphan. Distribution is checked against Mosquitto's MQTT v5
shared subscription with three worker links: each request reaches exactly one of them.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from bridge.cluster.distributor import (
    STATUS_FILTER,
    JoinPublisher,
    JoinRequest,
    WorkerLink,
    status_topic,
)
from bridge.cluster.lease import LeaseStore, coverage_gaps
from bridge.config import Settings
from bridge.errors import UsageError
from bridge.service import MeetingService, running_service
from bridge.store import db
from bridge.summary import make_summary_hook
from tests.services import MOSQUITTO, database_settings, require_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MQTT_URL = f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"


@pytest.fixture
def pg_settings(tmp_path: Path) -> Iterator[Settings]:
    yield from database_settings("postgresql", tmp_path, "microcue_cluster")


@pytest.fixture
async def service(pg_settings: Settings) -> AsyncIterator[MeetingService]:
    async with running_service(pg_settings) as svc:
        yield svc


async def _meeting(service: MeetingService) -> str:
    created = await service.create_meeting(title="lease", context="customer")
    return created.meeting.id


def _store(service: MeetingService, holder: str, ttl_s: float = 8.0) -> LeaseStore:
    return LeaseStore(service.sessions, holder, ttl_s=ttl_s)


async def test_only_one_of_many_racing_workers_gets_the_meeting(service: MeetingService) -> None:
    meeting = await _meeting(service)
    stores = [_store(service, f"w{i}") for i in range(6)]
    leases = await asyncio.gather(*(s.acquire(meeting, {"meeting_id": meeting}) for s in stores))
    won = [lease for lease in leases if lease is not None]
    assert len(won) == 1
    assert won[0].token == 1
    assert await _store(service, "late").acquire(meeting, {}) is None
    holder = await _store(service, "reader").holder_of(meeting)
    assert holder is not None and (holder.worker, holder.token) == (won[0].holder, 1)


async def test_an_expired_holder_is_fenced_and_the_successor_gets_a_larger_token(service: MeetingService) -> None:
    meeting = await _meeting(service)
    first, second = _store(service, "first", ttl_s=0.6), _store(service, "second")
    lease = await first.acquire(meeting, {"meeting_id": meeting})
    assert lease is not None and lease.valid()
    assert (await first.renew(lease)).held
    assert await second.acquire(meeting, {}) is None  # still held
    await asyncio.sleep(0.8)  # the first holder stalls past its lease (a GC pause, a partition)
    assert not lease.valid()  # its own deadline already stops its cues
    taken = await second.acquire(meeting, {})
    assert taken is not None and taken.token == lease.token + 1
    stale = await first.renew(lease)
    assert not stale.held and not lease.valid()
    # the successor releases it (drain): the next one needs no wait
    await second.release(taken)
    third = await _store(service, "third").acquire(meeting, {})
    assert third is not None and third.token == taken.token + 1


async def test_an_ended_meeting_cannot_be_taken_and_renewal_says_it_ended(service: MeetingService) -> None:
    meeting = await _meeting(service)
    store = _store(service, "w")
    lease = await store.acquire(meeting, {})
    assert lease is not None
    await service.end_meeting(meeting)
    renewal = await store.renew(lease)
    assert renewal.held and renewal.meeting_ended
    await store.release(lease)
    assert await _store(service, "other").acquire(meeting, {}) is None
    assert await store.acquire("no-such-meeting", {}) is None


async def test_an_orphan_is_offered_once_and_its_gap_is_missing_time(service: MeetingService) -> None:
    meeting = await _meeting(service)
    request = {"meeting_id": meeting, "kind": "janus", "url": "ws://janus", "room": 7}
    dead = await _store(service, "dead", ttl_s=0.3).acquire(meeting, request)
    assert dead is not None
    assert await _store(service, "a").orphans(retry_after_s=30) == []  # not expired yet
    await asyncio.sleep(0.5)
    sweeps = await asyncio.gather(*(_store(service, f"s{i}").orphans(retry_after_s=30) for i in range(4)))
    assert sorted(len(s) for s in sweeps) == [0, 0, 0, 1]
    assert next(s for s in sweeps if s)[0] == request
    assert await _store(service, "a").orphans(retry_after_s=30) == []  # claimed: not offered twice
    await asyncio.sleep(0.3)
    successor = await _store(service, "successor").acquire(meeting, request)
    assert successor is not None and successor.token == 2
    async with service.sessions() as session:
        gaps = await coverage_gaps(session, meeting)
    assert len(gaps) == 1
    assert gaps[0]["missing_s"] >= 0.5  # expired at 0.3 s, taken >= 0.8 s after the last renewal
    summary = await make_summary_hook(service.sessions, service.settings)(meeting)
    assert summary is not None
    assert summary["coverage"] == {"gaps": gaps, "missing_s": gaps[0]["missing_s"]}


async def test_leases_refuse_sqlite(tmp_path: Path) -> None:
    engine = db.create_engine(Settings(data_dir=tmp_path))
    try:
        with pytest.raises(UsageError, match="PostgreSQL"):
            LeaseStore(db.create_session_factory(engine), "w")
    finally:
        await engine.dispose()


async def test_shared_subscription_gives_each_request_to_exactly_one_worker() -> None:
    require_service("Mosquitto", MOSQUITTO)
    got: dict[str, list[str]] = {}
    ids = [f"m{i}" for i in range(30)]
    all_in = asyncio.Event()

    def taker(name: str) -> Callable[[JoinRequest], Awaitable[None]]:
        async def on_join(request: JoinRequest) -> None:
            got.setdefault(request.meeting_id, []).append(name)
            if sum(len(v) for v in got.values()) >= len(ids):
                all_in.set()

        return on_join

    links = [WorkerLink(MQTT_URL, f"test-{i}", taker(f"test-{i}"), lambda: {"participants": 0}) for i in range(3)]
    for link in links:
        await link.start()
    try:
        async with asyncio.timeout(10):
            await asyncio.gather(*(link.subscribed.wait() for link in links))
        publisher = JoinPublisher(MQTT_URL)
        for meeting_id in ids:
            await publisher.publish(JoinRequest(meeting_id=meeting_id, kind="janus", url="ws://x", room=1))
        async with asyncio.timeout(10):
            await all_in.wait()
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        assert sorted(got) == sorted(ids)
        assert all(len(takers) == 1 for takers in got.values()), got
        spread = Counter(takers[0] for takers in got.values())
        assert len(spread) == 3, spread  # the broker spreads them over the group
        # heartbeats are retained with the load
        async with aiomqtt.Client(MOSQUITTO[0], MOSQUITTO[1], protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(STATUS_FILTER)
            seen: dict[str, dict[str, object]] = {}
            async with asyncio.timeout(10):
                async for message in client.messages:
                    body = json.loads(message.payload)
                    seen[str(message.topic)] = body
                    if all(status_topic(link.worker_id) in seen for link in links):
                        break
        assert all(seen[status_topic(link.worker_id)]["state"] == "up" for link in links)
    finally:
        for link in links:
            await link.aclose()
