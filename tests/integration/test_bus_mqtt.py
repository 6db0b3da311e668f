"""MqttBus against the real Mosquitto on 127.0.0.1:1883, broker restarts included.

Every test uses its own meeting id (so its own topic), like aiomqtt's
``unique_topic``, so parallel runs and other suites never see each other's cues.
Tests that stop the broker always start it again, even when they fail: other
suites need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from bridge.bus.mqtt import DEFAULT_OUTBOX, MqttBus, MqttSubscription
from inference.cues import Cue
from tests.services import MOSQUITTO, port_open, require_service, services_required
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

URL = f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"
MOSQUITTO_START = ["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"]
MOSQUITTO_PID_FILE = Path("/run/mosquitto/mosquitto.pid")
BROKER_TIMEOUT_S = 10.0  # stopping (persisting its store) or starting takes well under 1 s
READY_TIMEOUT_S = 5.0  # SUBACK from a local broker
RECONNECT_TIMEOUT_S = 20.0  # backoff after ~3 s down is <= 2-4 s; generous for a loaded CI box
OUTAGE_S = 3.0
PUBLISH_INTERVAL_S = 0.1  # 10 cues/s

BusFactory = Callable[..., Awaitable[MqttBus]]


def unique_meeting(request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").replace("]", "")
    return f"test-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def cue(meeting_id: str, seq: int) -> Cue:
    return Cue(type="engagement", t=seq * PUBLISH_INTERVAL_S, value=0.5).stamped(
        meeting_id=meeting_id, participant_id="p1", seq=seq
    )


# -- broker control (sync: called through asyncio.to_thread) ---------------------


def _broker_pids() -> list[int]:
    """The running mosquitto: the pid file first, pgrep -x as a fallback."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(MOSQUITTO_PID_FILE.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() == "mosquitto":
            return [pid]
    out = subprocess.run(["pgrep", "-x", "mosquitto"], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BROKER_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {BROKER_TIMEOUT_S} s")
        time.sleep(0.05)


def stop_broker() -> None:
    pids = _broker_pids()
    assert pids, "no mosquitto process to stop"
    for pid in pids:
        os.kill(pid, signal.SIGTERM)  # clean shutdown: mosquitto saves its persistent store
    _wait(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), "mosquitto did not exit")
    _wait(lambda: not port_open(*MOSQUITTO, timeout=0.2), "port 1883 still open")


def start_broker() -> None:
    """Idempotent, so every cleanup path may call it."""
    if port_open(*MOSQUITTO, timeout=0.2):
        return
    subprocess.run(MOSQUITTO_START, check=True, timeout=BROKER_TIMEOUT_S)
    _wait(lambda: port_open(*MOSQUITTO, timeout=0.2), "mosquitto did not start listening")


@contextlib.asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    await asyncio.to_thread(stop_broker)
    try:
        yield
    finally:
        await asyncio.to_thread(start_broker)


@pytest.fixture(autouse=True)
def broker() -> Iterator[None]:
    """Needs the broker up before, and leaves it up after, whatever happened."""
    require_service("Mosquitto", MOSQUITTO)
    try:
        yield
    finally:
        start_broker()


@pytest.fixture
def controllable_broker() -> None:
    """Restart tests must own the broker process, not just reach its port."""
    if not _broker_pids():
        message = "Mosquitto answers but runs elsewhere: cannot stop and restart it here"
        if services_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
async def buses() -> AsyncIterator[BusFactory]:
    """Makes started buses and closes them all at the end."""
    made: list[MqttBus] = []

    async def make(*, client_id: str | None = None, outbox_size: int = DEFAULT_OUTBOX) -> MqttBus:
        bus = MqttBus(URL, client_id=client_id, outbox_size=outbox_size)
        made.append(bus)
        await bus.start()
        return bus

    yield make
    for bus in made:
        await bus.aclose()


class FlakyProxy:
    """A TCP hop between a client and the broker that can swallow the client's
    packets (a broker that dies after reading a PUBLISH, before its PUBACK) and
    cut connections: the one failure a real broker restart hits only by chance."""

    def __init__(self) -> None:
        self.blackhole = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*MOSQUITTO)
            self._writers |= {writer, up_writer}
            await asyncio.gather(self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False))
        finally:
            self._handlers.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while data := await reader.read(65536):
                if upstream and self.blackhole:
                    continue
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=BROKER_TIMEOUT_S)


@pytest.fixture
async def proxy() -> AsyncIterator[FlakyProxy]:
    p = FlakyProxy()
    await p.start()
    yield p
    await p.aclose()


# -- waiting helpers ---------------------------------------------------------------


async def ready(sub: MqttSubscription) -> MqttSubscription:
    async with asyncio.timeout(READY_TIMEOUT_S):
        await sub.wait_ready()
    return sub


class Collector:
    """Reads a subscription in the background, as a dashboard would."""

    def __init__(self, sub: MqttSubscription) -> None:
        self.seqs: list[int] = []
        self.cues: list[Cue] = []
        self._task = asyncio.create_task(self._run(sub))

    async def _run(self, sub: MqttSubscription) -> None:
        async for c in sub:
            self.cues.append(c)
            self.seqs.append(c.seq)

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.wait([self._task])

    async def ended(self) -> bool:
        """True when the subscription's iteration stopped by itself."""
        await asyncio.wait([self._task], timeout=READY_TIMEOUT_S)
        return self._task.done() and not self._task.cancelled()


# -- tests ---------------------------------------------------------------------------


async def test_round_trip_of_100_cues_in_order(request: pytest.FixtureRequest, buses: BusFactory) -> None:
    meeting = unique_meeting(request)
    pub = await buses()
    sub_bus = await buses()
    sub = await ready(sub_bus.subscribe(meeting))
    sent = [cue(meeting, i) for i in range(100)]
    for c in sent:
        await pub.publish(c)
    got = Collector(sub)
    await wait_until(lambda: len(got.cues) >= 100, 10, "100 cues")
    assert got.cues == sent  # same cues, same order, nothing extra
    async with asyncio.timeout(5):
        await pub.flush()
    assert (pub.published, pub.acked, pub.outbox_len, pub.lag_seconds) == (100, 100, 0, 0.0)
    assert sub_bus.malformed == sub_bus.duplicates == 0
    assert pub.connected and sub_bus.connected
    await sub_bus.aclose()
    assert await got.ended()  # closing the bus ends its subscriptions' iteration


async def test_wildcard_subscription_gets_every_meeting(request: pytest.FixtureRequest, buses: BusFactory) -> None:
    a, b = unique_meeting(request) + "-a", unique_meeting(request) + "-b"
    pub = await buses()
    sub_bus = await buses()
    every = Collector(await ready(sub_bus.subscribe()))
    only_a = Collector(await ready(sub_bus.subscribe(a)))
    await pub.publish(cue(a, 1))
    await pub.publish(cue(b, 2))
    mine = lambda: [(c.meeting_id, c.seq) for c in every.cues if c.meeting_id in (a, b)]  # noqa: E731
    await wait_until(lambda: len(mine()) == 2 and len(only_a.cues) == 1, 10, "both meetings")
    assert mine() == [(a, 1), (b, 2)]
    assert [(c.meeting_id, c.seq) for c in only_a.cues] == [(a, 1)]
    await every.aclose()
    await only_a.aclose()


async def test_malformed_payloads_are_skipped_and_duplicates_removed(
    request: pytest.FixtureRequest, buses: BusFactory
) -> None:
    meeting = unique_meeting(request)
    topic = f"microcue/meetings/{meeting}/cues"
    sub_bus = await buses()
    got = Collector(await ready(sub_bus.subscribe(meeting)))
    good = json.dumps(cue(meeting, 7).to_dict()).encode()
    bad = [
        b"\xff\xfe not utf-8",
        b"{not json",
        b"[1, 2, 3]",
        json.dumps({"type": "gossip", "t": 1.0, "meeting_id": meeting}).encode(),
        json.dumps({"type": "engagement", "t": "soon", "meeting_id": meeting}).encode(),
        json.dumps({"type": "engagement", "t": 1.0, "meeting_id": meeting, "aus": 5}).encode(),
        json.dumps({"type": "engagement", "t": 1.0, "meeting_id": meeting, "seq": [1]}).encode(),
        json.dumps(cue("someone-else", 1).to_dict()).encode(),  # wrong meeting for this topic
    ]
    async with aiomqtt.Client(*MOSQUITTO) as raw:
        for payload in [*bad, good, good]:  # the good one twice: a redelivery
            await raw.publish(topic, payload, qos=1)
        await raw.publish(topic, json.dumps(cue(meeting, 8).to_dict()), qos=1)
    await wait_until(lambda: len(got.seqs) >= 2, 10, "the two good cues")
    await wait_until(lambda: sub_bus.received == len(bad) + 3, 10, "all messages seen")
    assert got.seqs == [7, 8]
    assert sub_bus.malformed == len(bad)
    assert sub_bus.duplicates == 1
    assert sub_bus.connects == 1  # nothing above broke the connection
    await got.aclose()


async def test_persistent_session_delivers_what_was_queued_while_away(
    request: pytest.FixtureRequest, buses: BusFactory
) -> None:
    meeting = unique_meeting(request)
    client_id = f"microcue-test-{uuid.uuid4().hex[:12]}"
    pub = await buses()
    first = await buses(client_id=client_id)
    await ready(first.subscribe(meeting))
    await first.aclose(keep_session=True)  # a pod going away for a restart
    for i in range(20):
        await pub.publish(cue(meeting, i))
    async with asyncio.timeout(5):
        await pub.flush()  # the broker has them all, nobody is connected to read them
    successor = await buses(client_id=client_id)
    got = Collector(successor.subscribe(meeting))
    await wait_until(lambda: len(got.seqs) >= 20, 10, "20 queued cues after the reconnect")
    assert got.seqs == list(range(20))
    await got.aclose()


async def test_cues_published_but_never_acknowledged_are_resent_after_reconnect(
    request: pytest.FixtureRequest, buses: BusFactory, proxy: FlakyProxy
) -> None:
    meeting = unique_meeting(request)
    sub_bus = await buses()
    got = Collector(await ready(sub_bus.subscribe(meeting)))
    pub = MqttBus(f"mqtt://127.0.0.1:{proxy.port}")
    await pub.start()
    try:
        await pub.publish(cue(meeting, 0))
        await wait_until(lambda: got.seqs == [0], 10, "the first cue through the proxy")
        proxy.blackhole = True  # the broker "reads nothing more" and never acknowledges
        for i in range(1, 11):
            await pub.publish(cue(meeting, i))
        await wait_until(lambda: pub.in_flight == 10, 5, "10 publishes sent and waiting for PUBACK")
        await asyncio.sleep(0.3)
        assert got.seqs == [0]  # really swallowed
        assert pub.connected
        proxy.blackhole = False
        proxy.cut()  # the connection dies with 10 cues unacknowledged
        await wait_until(lambda: len(got.seqs) >= 11, RECONNECT_TIMEOUT_S, "the 10 unacknowledged cues")
        assert got.seqs == list(range(11))  # resent, in order
        assert pub.resent == 10
        assert pub.connects == 2
        async with asyncio.timeout(5):
            await pub.flush()
    finally:
        await pub.aclose()
    await got.aclose()


@pytest.mark.usefixtures("controllable_broker")
async def test_broker_restart_mid_stream_loses_nothing(request: pytest.FixtureRequest, buses: BusFactory) -> None:
    meeting = unique_meeting(request)
    pub = await buses()
    sub_bus = await buses()
    got = Collector(await ready(sub_bus.subscribe(meeting)))
    next_seq = itertools.count()
    sent: list[int] = []
    stop = asyncio.Event()

    async def producer() -> None:
        while not stop.is_set():
            seq = next(next_seq)
            await pub.publish(cue(meeting, seq))
            sent.append(seq)
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    producing = asyncio.create_task(producer())
    try:
        await wait_until(lambda: len(got.seqs) >= 10, 10, "the stream flowing before the outage")
        async with broker_stopped():
            await wait_until(lambda: not pub.connected and not sub_bus.connected, 5, "both see the outage")
            await asyncio.sleep(OUTAGE_S)
            assert producing.done() is False  # publish() kept returning while the broker was down
            assert pub.outbox_len > 0
        await wait_until(lambda: pub.connected and sub_bus.connected, RECONNECT_TIMEOUT_S, "reconnects")
        await asyncio.sleep(1.0)  # keep streaming on the new connection
    finally:
        stop.set()
        await asyncio.wait([producing])
    producing.result()
    expected = set(sent)
    await wait_until(lambda: expected <= set(got.seqs), RECONNECT_TIMEOUT_S, "every seq")
    assert len(sent) >= 40  # ~1 s + 3 s + reconnect + 1 s at 10 cues/s
    assert sorted(got.seqs) == sorted(expected)  # nothing lost, nothing extra
    assert len(got.seqs) == len(set(got.seqs))  # the bus removed any redelivered duplicates
    assert pub.connects >= 2 and sub_bus.connects >= 2  # reconnected by themselves
    assert pub.dropped_while_disconnected == 0
    await got.aclose()


@pytest.mark.usefixtures("controllable_broker")
async def test_outbox_overflow_while_broker_down_drops_oldest_exactly(
    request: pytest.FixtureRequest, buses: BusFactory
) -> None:
    meeting = unique_meeting(request)
    outbox = 50
    pub = await buses(outbox_size=outbox)
    sub_bus = await buses()
    got = Collector(await ready(sub_bus.subscribe(meeting)))
    await wait_until(lambda: pub.connected, READY_TIMEOUT_S, "publisher connected")
    async with broker_stopped():
        await wait_until(lambda: not pub.connected, 5, "publisher sees the outage")
        for i in range(80):
            await pub.publish(cue(meeting, i))
        assert pub.dropped_while_disconnected == 30
        assert pub.outbox_len == outbox
        await asyncio.sleep(0.2)
        assert pub.lag_seconds >= 0.2
    await wait_until(lambda: len(got.seqs) >= outbox, RECONNECT_TIMEOUT_S, "the 50 newest cues")
    await asyncio.sleep(0.3)  # anything extra would show up now
    assert got.seqs == list(range(30, 80))  # the 30 oldest were dropped, the rest kept in order
    assert pub.dropped_while_disconnected == 30
    async with asyncio.timeout(5):
        await pub.flush()
    assert pub.lag_seconds == 0.0
    await got.aclose()
