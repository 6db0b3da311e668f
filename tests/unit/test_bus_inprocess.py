"""InProcessBus: filtering, drop-oldest with exact counts, shutdown, never blocking."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bridge.bus import BusClosedError, InProcessBus, Subscription, create_bus
from bridge.bus.mqtt import BACKOFF_INITIAL_S, BACKOFF_MAX_S, MqttBus, parse_mqtt_url, reconnect_delay
from bridge.config import Settings
from bridge.errors import UsageError
from inference.cues import Cue

pytestmark = pytest.mark.unit

WAIT_S = 2.0  # generous bound for things that should take microseconds


def cue(meeting_id: str, seq: int, participant_id: str = "p1") -> Cue:
    return Cue(type="engagement", t=seq * 0.1, value=0.5).stamped(
        meeting_id=meeting_id, participant_id=participant_id, seq=seq
    )


async def take(sub: Subscription, n: int) -> list[Cue]:
    out: list[Cue] = []
    async with asyncio.timeout(WAIT_S):
        async for c in sub:
            out.append(c)
            if len(out) == n:
                break
    return out


async def test_subscribe_filters_by_meeting_and_none_gets_everything() -> None:
    bus = InProcessBus()
    await bus.start()
    only_a = bus.subscribe("A")
    only_b = bus.subscribe("B")
    every = bus.subscribe()
    for i in range(3):
        await bus.publish(cue("A", i))
        await bus.publish(cue("B", 100 + i))

    assert [c.seq for c in await take(only_a, 3)] == [0, 1, 2]
    assert [c.seq for c in await take(only_b, 3)] == [100, 101, 102]
    assert [(c.meeting_id, c.seq) for c in await take(every, 6)] == [
        ("A", 0),
        ("B", 100),
        ("A", 1),
        ("B", 101),
        ("A", 2),
        ("B", 102),
    ]
    assert only_a.pending == only_b.pending == every.pending == 0
    assert (bus.published, bus.delivered, bus.dropped) == (6, 12, 0)
    await bus.aclose()


async def test_full_queue_drops_oldest_and_counts_exactly() -> None:
    bus = InProcessBus(subscriber_queue=10)
    slow = bus.subscribe("m")
    fast = bus.subscribe("m")
    for i in range(25):
        await bus.publish(cue("m", i))
        if i < 20:  # the fast consumer keeps up for a while, then stops reading too
            assert (await take(fast, 1))[0].seq == i

    assert slow.dropped == 15
    assert [c.seq for c in await take(slow, 10)] == list(range(15, 25))  # the newest 10 survive
    assert fast.dropped == 0
    assert [c.seq for c in await take(fast, 5)] == list(range(20, 25))
    assert bus.dropped == 15
    assert bus.published == 25
    assert bus.delivered == 20 + 10 + 5


async def test_publish_never_awaits_a_slow_consumer() -> None:
    bus = InProcessBus(subscriber_queue=100)
    stuck = bus.subscribe()
    release = asyncio.Event()

    async def consumer() -> None:
        async for _ in stuck:
            await release.wait()  # a consumer that never comes back

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)
    n = 50_000
    # publish() must not yield to the loop at all: run it as a coroutine step by
    # step and check each call finishes in its first step.
    for i in range(n):
        coro = bus.publish(cue("m", i))
        with pytest.raises(StopIteration):
            coro.send(None)
    assert bus.published == n
    assert stuck.pending == 100  # memory stays bounded
    assert stuck.dropped == n - 100  # the consumer never got the loop back to take one
    release.set()
    await bus.aclose()
    async with asyncio.timeout(WAIT_S):
        await task


async def test_aclose_ends_iteration_after_draining_and_refuses_new_work() -> None:
    bus = InProcessBus()
    sub = bus.subscribe("m")
    await bus.publish(cue("m", 1))
    await bus.publish(cue("m", 2))
    got: list[int] = []

    async def consumer() -> None:
        async for c in sub:
            got.append(c.seq)

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)
    await bus.aclose()
    async with asyncio.timeout(WAIT_S):
        await task  # the async for loop ended by itself
    assert got == [1, 2]
    with pytest.raises(BusClosedError):
        await bus.publish(cue("m", 3))
    with pytest.raises(BusClosedError):
        bus.subscribe()


async def test_waiting_consumer_is_released_by_aclose() -> None:
    bus = InProcessBus()
    sub = bus.subscribe()
    task = asyncio.create_task(take(sub, 1))
    await asyncio.sleep(0.01)
    assert not task.done()
    await bus.aclose()
    async with asyncio.timeout(WAIT_S):
        assert await task == []


async def test_subscription_aclose_stops_at_once_and_unregisters() -> None:
    bus = InProcessBus()
    sub = bus.subscribe()
    other = bus.subscribe()
    await bus.publish(cue("m", 1))
    await sub.aclose()
    assert bus.subscriber_count == 1
    assert await take(sub, 1) == []  # queued cue released, not delivered
    await bus.publish(cue("m", 2))
    assert sub.pending == 0
    assert [c.seq for c in await take(other, 2)] == [1, 2]


@pytest.mark.parametrize("meeting_id", ["", "a/b", "a+", "#", "x" * 257, "bad\ud800"])
async def test_publish_refuses_unroutable_meeting_ids(meeting_id: str) -> None:
    bus = InProcessBus()
    with pytest.raises(ValueError, match="meeting_id"):
        await bus.publish(cue(meeting_id, 1))
    assert bus.published == 0


def test_create_bus_picks_by_settings() -> None:
    assert isinstance(create_bus(Settings(mqtt_url="")), InProcessBus)
    bus = create_bus(Settings(mqtt_url="mqtt://user:p%40ss@broker.example:1884"))
    assert isinstance(bus, MqttBus)
    assert (bus.endpoint.hostname, bus.endpoint.port) == ("broker.example", 1884)
    assert (bus.endpoint.username, bus.endpoint.password) == ("user", "p@ss")


@pytest.mark.parametrize("url", ["http://broker:1883", "mqtt://", "mqtt://host:notaport"])
def test_bad_mqtt_urls_say_what_was_expected(url: str) -> None:
    with pytest.raises(UsageError, match="MICROCUE_MQTT_URL"):
        parse_mqtt_url(url)


def test_mqtts_defaults_to_tls_port() -> None:
    ep = parse_mqtt_url("mqtts://broker")
    assert (ep.port, ep.tls) == (8883, True)


def test_reconnect_delay_doubles_from_half_a_second_to_ten_with_jitter() -> None:
    for failures, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (4, 8.0), (5, 10.0), (100, 10.0)]:
        delays = [reconnect_delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered, so a fleet does not reconnect in lockstep
    assert (BACKOFF_INITIAL_S, BACKOFF_MAX_S) == (0.5, 10.0)


def _refusing_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connecting is refused


async def test_mqtt_bus_without_a_broker_queues_drops_oldest_and_closes_promptly() -> None:
    bus = MqttBus(f"mqtt://127.0.0.1:{_refusing_port()}", outbox_size=5)
    await bus.start()
    sub = bus.subscribe("m")
    for i in range(8):
        coro = bus.publish(cue("m", i))
        with pytest.raises(StopIteration):  # returns without ever waiting
            coro.send(None)
    await asyncio.sleep(0.05)  # let it try (and fail) to connect
    assert not bus.connected
    assert (bus.published, bus.outbox_len, bus.dropped_while_disconnected) == (8, 5, 3)
    assert bus.lag_seconds > 0
    async with asyncio.timeout(WAIT_S):  # no flush grace while disconnected
        await bus.aclose()
    assert await take(sub, 1) == []  # the subscription ended with the bus
    with pytest.raises(BusClosedError):
        await bus.publish(cue("m", 9))
