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
from sqlalchemy import text

from bridge.cluster.distributor import (
    STATUS_FILTER,
    JoinPublisher,
    JoinRequest,
    WorkerLink,
    status_topic,
)
from bridge.cluster.lease import Lease, LeaseStore, coverage_gaps
from bridge.cluster.worker_role import FencedBus, WorkerRole
from bridge.config import Settings
from bridge.errors import UsageError
from bridge.insights.summary import make_summary_hook
from bridge.media.analysis import Analysis
from bridge.rooms import AdapterContext, MeetingAdapter
from bridge.service import MeetingService, running_service
from bridge.store import db
from tests.services import MOSQUITTO, require_service
from tests.support.fakes.adapters import FakeMeeting
from tests.support.fakes.analyzers import FakeAnalyzer
from tests.support.postgres import database_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: A Janus target the workers may join: a documentation address (RFC 5737) listed as itself.
ALLOWED_JANUS = "192.0.2.7:8188"
JANUS_URL = f"ws://{ALLOWED_JANUS}"

MQTT_URL = f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"


@pytest.fixture
def pg_settings(tmp_path: Path) -> Iterator[Settings]:
    yield from database_settings("postgresql", tmp_path, "microcue_cluster")


@pytest.fixture
async def service(pg_settings: Settings) -> AsyncIterator[MeetingService]:
    async with running_service(pg_settings) as svc:
        yield svc


async def create_meeting(service: MeetingService) -> str:
    created = await service.create_meeting(title="lease", context="customer")
    return created.meeting.id


def _store(service: MeetingService, holder: str, ttl_s: float = 8.0) -> LeaseStore:
    return LeaseStore(service.sessions, holder, ttl_s=ttl_s)


async def test_only_one_of_many_racing_workers_gets_the_meeting(service: MeetingService) -> None:
    meeting = await create_meeting(service)
    stores = [_store(service, f"w{i}") for i in range(6)]
    leases = await asyncio.gather(*(s.acquire(meeting, {"meeting_id": meeting}) for s in stores))
    won = [lease for lease in leases if lease is not None]
    assert len(won) == 1
    assert won[0].token == 1
    assert await _store(service, "late").acquire(meeting, {}) is None
    holder = await _store(service, "reader").holder_of(meeting)
    assert holder is not None and (holder.worker, holder.token) == (won[0].holder, 1)


async def test_an_expired_holder_is_fenced_and_the_successor_gets_a_larger_token(service: MeetingService) -> None:
    meeting = await create_meeting(service)
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
    meeting = await create_meeting(service)
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
    meeting = await create_meeting(service)
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


class _TestWorker(WorkerRole):
    """The real worker logic on the real database; meetings are stand-ins, the broker a list."""

    def __init__(self, settings: Settings, service: MeetingService, name: str, people: dict[str, int]) -> None:
        # the stand-in meetings analyse nothing: the process's analysis is never loaded
        super().__init__(
            settings, bus=service.bus, sessions=service.sessions, worker_id=name, analysis=Analysis(settings)
        )
        self.people = people
        self.published: list[JoinRequest] = []

        async def publish_join(request: JoinRequest) -> None:
            self.published.append(request)

        self.link.publish_join = publish_join  # type: ignore[method-assign]

    async def _adapter(self, request: JoinRequest, lease: Lease) -> MeetingAdapter:
        ctx = AdapterContext(
            meeting_id=request.meeting_id,
            bus=FencedBus(self.bus, lease),
            analyzer_factory=lambda: FakeAnalyzer(refuse_frames="the stand-in meetings analyse nothing"),
        )
        return FakeMeeting(ctx, self.people.get(request.meeting_id, 1))


async def test_a_worker_keeps_to_its_capacity_and_lets_go_of_what_it_cannot_hold(
    service: MeetingService, pg_settings: Settings
) -> None:
    settings = pg_settings.model_copy(update={"worker_capacity": 3, "mqtt_url": MQTT_URL, "join_allow": ALLOWED_JANUS})
    m1, m2, m3, m4 = [await create_meeting(service) for _ in range(4)]
    worker = _TestWorker(settings, service, "cap", people={m1: 2, m2: 1, m3: 1, m4: 1})
    other = _store(service, "other")
    try:
        await worker.on_join(JoinRequest(meeting_id=m1, kind="janus", url=JANUS_URL, room=1, participants=2))
        await worker.on_join(JoinRequest(meeting_id=m2, kind="janus", url=JANUS_URL, room=1))
        assert sorted(worker.held) == sorted([m1, m2]) and worker.participants == 3
        # a target the operator did not allow is refused here too, whoever published the request
        await worker.on_join(JoinRequest(meeting_id=m3, kind="janus", url="ws://192.0.2.8:8188", room=1))
        assert m3 not in worker.held and worker.published == []
        # full: the next one goes back to the group, one hop further, and is not leased here
        await worker.on_join(JoinRequest(meeting_id=m3, kind="janus", url=JANUS_URL, room=1))
        assert m3 not in worker.held and [(r.meeting_id, r.hops) for r in worker.published] == [(m3, 1)]
        assert await other.acquire(m3, {}) is not None
        # a meeting ended by the web role: the next renewal stops it and releases the lease
        await service.end_meeting(m2)
        await worker._renew(m2, worker.held[m2])
        assert m2 not in worker.held
        assert await _store(service, "reader").holder_of(m2) is None
        # a lease lost behind the worker's back (stalled past expiry, taken over): fenced, not released
        await worker.on_join(JoinRequest(meeting_id=m4, kind="janus", url=JANUS_URL, room=1))
        held = worker.held[m4]
        held.lease.deadline = 0.0
        async with service.sessions.begin() as session:
            await session.execute(
                text("UPDATE meeting_leases SET expires_at = clock_timestamp() WHERE meeting_id = :m"), {"m": m4}
            )
        await worker._renew(m4, held)
        assert m4 not in worker.held and worker.lost == 1
        # drain: what is left is released and passed on at once
        worker.published.clear()
        await worker.drain()
        assert worker.held == {} and [r.meeting_id for r in worker.published] == [m1]
        holder = await _store(service, "reader").holder_of(m1)
        assert holder is None  # released, free for the next worker without waiting
    finally:
        await worker.aclose()


async def test_meetings_that_outgrow_a_worker_are_handed_over_newest_first(
    service: MeetingService, pg_settings: Settings
) -> None:
    settings = pg_settings.model_copy(update={"worker_capacity": 3, "mqtt_url": MQTT_URL, "join_allow": ALLOWED_JANUS})
    big, late = await create_meeting(service), await create_meeting(service)
    worker = _TestWorker(settings, service, "grow", people={big: 3, late: 1})
    try:
        await worker.on_join(JoinRequest(meeting_id=big, kind="janus", url=JANUS_URL, room=1))  # estimate 1, has 3
        await worker.on_join(JoinRequest(meeting_id=late, kind="janus", url=JANUS_URL, room=1))
        await asyncio.sleep(0.1)  # the stand-ins see their people
        assert worker.participants == 4
        await worker._shed_overload()
        assert list(worker.held) == [big] and worker.participants == 3
        assert [r.meeting_id for r in worker.published] == [late]
        assert await _store(service, "reader").holder_of(late) is None  # released for the next worker
    finally:
        await worker.aclose()
