"""MQTT event bus (aiomqtt 2.5.1): cues cross processes through a broker.

Delivery guarantee, checked in aiomqtt 2.5.1 ``client.py`` and paho-mqtt 2.2.0:
``await Client.publish(..., qos=1)`` waits on an event that aiomqtt's
``_on_publish`` sets, and paho calls ``on_publish`` for QoS 1 only from
``_handle_pubackcomp``, i.e. when the broker's PUBACK arrives. So a completed
publish means "the broker took responsibility", not "a subscriber got it". What
it does *not* give:

* if the connection drops before the PUBACK, aiomqtt's wait does not watch the
  disconnect: it times out (``timeout``) with ``MqttError``, and a new client
  starts with empty paho state, so nothing is resent by the library;
* aiomqtt ignores the PUBACK reason code (MQTT v5 "not authorized" looks like
  success), so an ACL refusal is invisible here;
* the broker's own durability: Mosquitto with ``persistence true`` writes its
  store on clean shutdown and every ``autosave_interval``; a hard crash after
  the PUBACK can still lose the cue.

So this bus keeps every cue in its own outbox until its PUBACK is seen, and
after a reconnect resends everything not acknowledged. That is at-least-once;
subscribers drop the duplicates by ``(meeting_id, participant_id, seq)``, the
key the bridge stamps on every cue (``Cue.stamped``), plus ``t``: a resend is
byte-identical so ``t`` matches, while a worker restarted for the same meeting
that counts ``seq`` from 0 again is not mistaken for a redelivery.

The session is persistent (MQTT v5 ``clean_start=False`` plus a session expiry,
one stable client id per bus instance), so QoS 1 cues the broker queued while a
subscriber was disconnected, or while the broker itself restarted with
persistence on, reach it after the reconnect. v5 rather than 3.1.1
``clean_session=False`` because a 3.1.1 session never expires: every pod that
ever ran would leave one on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import ssl
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.bus.inprocess import (
    DEFAULT_SUBSCRIBER_QUEUE,
    BusClosedError,
    BusCounters,
    QueueSubscription,
    check_meeting_id,
)
from bridge.config import Settings
from bridge.errors import UsageError
from inference.cues import Cue

logger = logging.getLogger("microcue.bus")

#: Topic layout (docs/architecture.md): cues fan out per meeting, joins go to a shared subscription.
TOPIC_PREFIX = "microcue/meetings"
TOPIC_SUFFIX = "cues"
#: QoS 1: at-least-once. QoS 2 would cost two more round trips per cue for a
#: guarantee the subscriber-side dedupe already gives.
CUE_QOS = 1

#: Cues waiting for the broker's PUBACK. At ~100 cues/s for a busy bridge this is
#: ~100 s of broker outage survived without loss, at ~300 bytes each ~3 MB.
DEFAULT_OUTBOX = 10_000
#: Publishes in flight at once per connection: paho's default max_inflight_messages,
#: so paho never queues behind our back; a window hides broker RTT (one-at-a-time
#: would cap a 50 ms link at 20 cues/s).
SEND_WINDOW = 20

#: Room above SEND_WINDOW for pending SUBSCRIBE/UNSUBSCRIBE calls before aiomqtt's
#: "pending calls" warning, which then means something is really stuck.
PENDING_CALLS_SLACK = 10

#: Reconnect backoff: first retry fast (a broker restart takes ~1 s), then double
#: up to a ceiling that still notices a recovered broker within seconds.
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
#: Each delay is drawn from [base * (1 - JITTER), base]: desynchronises a fleet of
#: bridges reconnecting to the same broker after it restarts.
BACKOFF_JITTER = 0.5

#: While the broker stays unreachable, repeat the warning every this many failed
#: attempts (~3 min at the 10 s ceiling), so an outage is visible but not spammy.
OUTAGE_LOG_EVERY = 20

#: PINGREQ interval. Detects a dead broker that sent no FIN (power loss, partition)
#: within ~1.5x this, instead of paho's default 60 s (90 s of silent outage).
KEEPALIVE_S = 15
#: How long aiomqtt waits for CONNACK/SUBACK/PUBACK before raising MqttError; a
#: publish unacknowledged this long on a "live" connection means reconnect.
OPERATION_TIMEOUT_S = 10.0
#: Persistent-session lifetime after a disconnect. Covers broker restarts, network
#: blips and pod restarts; after that a dashboard reloads history from the store.
SESSION_EXPIRY_S = 3600
#: aiomqtt's incoming queue (messages already PUBACKed by paho). Unbounded by
#: default; our receive loop only parses and fans out, so this is a safety cap.
MAX_QUEUED_INCOMING = 10_000
#: Keys remembered for dedupe. Resends after a reconnect are at most one outbox
#: (DEFAULT_OUTBOX) behind, so a window of that size catches all of them.
DEDUPE_WINDOW = DEFAULT_OUTBOX
#: A misbehaving publisher must not flood the log: the first few malformed messages
#: are logged with their reason, then one line per this many (the counter has all).
MALFORMED_LOG_FIRST = 10
MALFORMED_LOG_EVERY = 1000
#: Outbox overflow is logged at its first drop and then once per this many drops.
DROP_LOG_EVERY = 1000
#: Time aclose() gives queued cues and unsubscribes before cutting the connection.
CLOSE_FLUSH_TIMEOUT_S = 2.0

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A parsed ``MICROCUE_MQTT_URL``."""

    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise UsageError(f"MICROCUE_MQTT_URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise UsageError(f"MICROCUE_MQTT_URL needs a host (mqtt://host:1883), got {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise UsageError(f"MICROCUE_MQTT_URL has a bad port: {exc}") from None
    return MqttEndpoint(
        hostname=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "mqtts",
    )


def tls_context(
    endpoint: MqttEndpoint, *, ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext | None:
    """TLS for ``mqtts://``: the broker's certificate is verified (against ``ca_file`` when given,
    else the system store) and its host name checked; ``cert_file``/``key_file`` authenticate
    this client, so the broker's ACL can tell bridges (which may publish cues) from readers.
    Certificates given for a plain ``mqtt://`` URL are a configuration error, not ignored."""
    if not endpoint.tls:
        if ca_file or cert_file or key_file:
            raise UsageError("MICROCUE_MQTT_CA/CERT/KEY need an mqtts:// MICROCUE_MQTT_URL")
        return None
    if (cert_file is None) != (key_file is None):
        raise UsageError("MICROCUE_MQTT_CERT and MICROCUE_MQTT_KEY go together (client certificate and its key)")
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the MQTT TLS files: {exc}") from exc
    return context


def settings_tls(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every MQTT client a process opens (bus, worker link, join publisher),
    from ``MICROCUE_MQTT_URL`` and ``MICROCUE_MQTT_CA/CERT/KEY``: one reading of the settings, so
    no client of a cluster connects without the certificates the broker's ACL asks for."""
    return tls_context(
        parse_mqtt_url(settings.mqtt_url),
        ca_file=settings.mqtt_ca,
        cert_file=settings.mqtt_cert,
        key_file=settings.mqtt_key,
    )


def cue_topic(meeting_id: str | None) -> str:
    """The topic of one meeting, or the wildcard filter for all when None."""
    return f"{TOPIC_PREFIX}/{meeting_id if meeting_id is not None else '+'}/{TOPIC_SUFFIX}"


def _meeting_of_topic(topic: str) -> str | None:
    head, _, rest = topic.partition(TOPIC_PREFIX + "/")
    if head or not rest:
        return None
    meeting_id, _, suffix = rest.partition("/")
    return meeting_id if meeting_id and suffix == TOPIC_SUFFIX else None


def reconnect_delay(failures: int) -> float:
    """Exponential backoff with "equal jitter" after ``failures`` failed attempts in a row."""
    base = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** min(failures, 32))
    return random.uniform(base * (1 - BACKOFF_JITTER), base)


class MalformedCueError(ValueError):
    """A message on a cue topic is not a cue we can route; it is skipped and counted."""


def _parse_message(topic: str, payload: object) -> Cue:
    meeting_id = _meeting_of_topic(topic)
    if meeting_id is None:
        raise MalformedCueError(f"expected topic {cue_topic('<id>')}, got {topic!r}")
    if not isinstance(payload, bytes | bytearray):
        raise MalformedCueError(f"expected a JSON payload in bytes, got {type(payload).__name__}")
    try:
        cue = Cue.from_dict(json.loads(payload))
    except (ValueError, TypeError) as exc:  # JSON, UTF-8, CueError and wrong field types
        raise MalformedCueError(f"not a cue: {exc}") from None
    if cue.meeting_id != meeting_id:
        raise MalformedCueError(f"cue of meeting {cue.meeting_id!r} on the topic of {meeting_id!r}")
    # Cue does not type-check these two, but dedupe hashes them.
    if not isinstance(cue.participant_id, str) or type(cue.seq) is not int:
        raise MalformedCueError(f"participant_id must be str and seq int, got {cue.participant_id!r}, {cue.seq!r}")
    return cue


@dataclass(slots=True)
class _Outgoing:
    key: int  # position in publish order; keeps resends in order
    topic: str
    payload: bytes
    enqueued_at: float  # time.monotonic()


class MqttSubscription(QueueSubscription):
    """A local bounded queue fed by the bus's broker subscription to ``topic``."""

    def __init__(self, bus: MqttBus, meeting_id: str | None, maxsize: int) -> None:
        super().__init__(meeting_id, maxsize=maxsize, counters=bus.local_counters, on_close=bus.unsubscribed)
        self.topic = cue_topic(meeting_id)
        self._ready = asyncio.Event()

    def mark_ready(self) -> None:
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Returns once the broker acknowledged the subscription: cues published after
        this reach us. Callers bound it with ``asyncio.timeout``."""
        await self._ready.wait()


class MqttBus:
    """EventBus over an MQTT broker; one background task owns the connection."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        outbox_size: int = DEFAULT_OUTBOX,
        subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        if outbox_size < 1:
            raise ValueError(f"outbox_size must be >= 1, got {outbox_size}")
        self.endpoint = parse_mqtt_url(url)
        self._tls = tls_context(self.endpoint, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        # Stable for the bus's life: the broker finds our persistent session by it.
        self.client_id = client_id or f"microcue-{uuid.uuid4().hex[:16]}"
        self._outbox_size = outbox_size
        self._subscriber_queue = subscriber_queue
        self._outbox: deque[_Outgoing] = deque()
        self._unacked: OrderedDict[int, _Outgoing] = OrderedDict()
        self._keys = itertools.count()
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._subscriptions: set[MqttSubscription] = set()
        self._topic_refs: dict[str, int] = {}
        self._session_topics: set[str] = set()  # subscribed in our broker session
        self._confirmed_topics: set[str] = set()  # subscribed on the current connection
        self._subs_changed = asyncio.Event()
        self._session_clean = asyncio.Event()  # set while our broker session has no subscriptions
        self._session_clean.set()
        self._seen: OrderedDict[tuple[str, str, int, float], None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = False
        self.local_counters = BusCounters()
        # Counters (monotonic, for /metrics).
        self.published = 0  # cues accepted by publish()
        self.acked = 0  # PUBACKs received (a resent cue can count twice)
        self.resent = 0  # cues sent again after a reconnect
        self.dropped_while_disconnected = 0  # outbox overflow, oldest first
        self.rejected = 0  # cues paho refused to send (never expected; logged)
        self.received = 0  # messages from the broker, before dedupe
        self.malformed = 0  # messages skipped as not-a-cue
        self.duplicates = 0  # redeliveries removed by dedupe
        self.connects = 0  # successful connections, first one included

    # -- state -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def outbox_len(self) -> int:
        """Cues not yet acknowledged by the broker (queued or in flight)."""
        return len(self._outbox) + len(self._unacked)

    @property
    def in_flight(self) -> int:
        """Cues sent on the current connection whose PUBACK has not arrived yet."""
        return len(self._unacked)

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest unacknowledged cue: how far the broker is behind us."""
        oldest = next(iter(self._unacked.values()), None) or (self._outbox[0] if self._outbox else None)
        return 0.0 if oldest is None else time.monotonic() - oldest.enqueued_at

    @property
    def delivered(self) -> int:
        return self.local_counters.delivered

    @property
    def dropped(self) -> int:
        """Cues lost on either side: outbox overflow plus slow local consumers."""
        return self.dropped_while_disconnected + self.local_counters.dropped

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> MqttBus:
        """The bus of ``MICROCUE_MQTT_URL`` with the TLS files of ``MICROCUE_MQTT_CA/CERT/KEY``."""
        return cls(
            settings.mqtt_url,
            ca_file=settings.mqtt_ca,
            cert_file=settings.mqtt_cert,
            key_file=settings.mqtt_key,
            **options,
        )

    async def start(self) -> None:
        """Starts the connection task; returns at once, connecting happens in the background."""
        if self._closed:
            raise BusClosedError("start")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"microcue-bus-{self.client_id}")

    async def flush(self) -> None:
        """Waits until every published cue was acknowledged by the broker.

        Never returns while the broker is unreachable; bound it with ``asyncio.timeout``.
        """
        await self._drained.wait()

    async def aclose(self, *, keep_session: bool = False) -> None:
        """Gives queued cues a short grace to reach the broker, then stops.

        Subscriptions are ended (they drain what they hold). By default they are also
        unsubscribed at the broker, so our persistent session stops collecting cues
        for nobody. ``keep_session=True`` leaves them: a successor started with the
        same ``client_id`` (a restarted pod) then gets what was published meanwhile.
        """
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subscriptions):
            sub.end()
            if keep_session:
                self._subscriptions.discard(sub)
            else:
                self.unsubscribed(sub)
        if self._task is not None and self._connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT_S):
                    await self.flush()
                    if not keep_session:
                        await self._session_clean.wait()
        if self.outbox_len:
            logger.warning("closing MQTT bus with %d cues never acknowledged by the broker", self.outbox_len)
        if self._task is not None:
            self._task.cancel()
            # wait() rather than awaiting the task: its CancelledError is expected,
            # while a cancellation of aclose() itself must still propagate.
            await asyncio.wait([self._task])
            self._task = None

    # -- publish ---------------------------------------------------------------

    async def publish(self, cue: Cue) -> None:
        """Queues the cue in the outbox and returns; never waits for the broker."""
        if self._closed:
            raise BusClosedError("publish")
        check_meeting_id(cue)
        if self.outbox_len >= self._outbox_size:
            self._drop_oldest()
        self._outbox.append(
            _Outgoing(
                key=next(self._keys),
                topic=cue_topic(cue.meeting_id),
                payload=json.dumps(cue.to_dict(), separators=(",", ":")).encode(),
                enqueued_at=time.monotonic(),
            )
        )
        self.published += 1
        self._drained.clear()
        self._outbox_ready.set()

    def _drop_oldest(self) -> None:
        # The oldest overall is in flight if anything is; its late PUBACK is then ignored.
        if self._unacked:
            self._unacked.popitem(last=False)
        else:
            self._outbox.popleft()
        self.dropped_while_disconnected += 1
        if self.dropped_while_disconnected == 1 or self.dropped_while_disconnected % DROP_LOG_EVERY == 0:
            logger.warning(
                "MQTT outbox full (%d cues): dropping oldest, %d dropped so far",
                self._outbox_size,
                self.dropped_while_disconnected,
            )

    # -- subscribe -------------------------------------------------------------

    def subscribe(self, meeting_id: str | None = None) -> MqttSubscription:
        """Cues of one meeting (or all); ``await sub.wait_ready()`` to know the broker has it."""
        if self._closed:
            raise BusClosedError("subscribe")
        sub = MqttSubscription(self, meeting_id, self._subscriber_queue)
        self._subscriptions.add(sub)
        self._topic_refs[sub.topic] = self._topic_refs.get(sub.topic, 0) + 1
        if sub.topic in self._confirmed_topics:
            sub.mark_ready()
        self._subs_changed.set()
        return sub

    def unsubscribed(self, sub: QueueSubscription) -> None:
        """A local subscription left; the broker subscription goes with its last user."""
        if not isinstance(sub, MqttSubscription) or sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        refs = self._topic_refs[sub.topic] - 1
        if refs:
            self._topic_refs[sub.topic] = refs
        else:
            del self._topic_refs[sub.topic]
            self._subs_changed.set()

    # -- connection ------------------------------------------------------------

    def _new_client(self) -> aiomqtt.Client:
        connect_properties = Properties(PacketTypes.CONNECT)
        connect_properties.SessionExpiryInterval = SESSION_EXPIRY_S
        client = aiomqtt.Client(
            self.endpoint.hostname,
            self.endpoint.port,
            username=self.endpoint.username,
            password=self.endpoint.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect_properties,
            keepalive=KEEPALIVE_S,
            timeout=OPERATION_TIMEOUT_S,
            max_queued_incoming_messages=MAX_QUEUED_INCOMING,
            tls_context=self._tls,
            logger=logging.getLogger("microcue.bus.paho"),
        )
        # aiomqtt warns above 10 pending calls; a full send window is normal here.
        client.pending_calls_threshold = SEND_WINDOW + PENDING_CALLS_SLACK
        return client

    async def _run(self) -> None:
        """Reconnect loop (aiomqtt 2.x has no built-in reconnect: docs/reconnection.md).

        A fresh ``Client`` per attempt: paho state from a dead connection must not
        resend on its own, our outbox does that, in order.
        """
        failures = 0
        down_since: float | None = None
        where = f"{self.endpoint.hostname}:{self.endpoint.port}"
        while True:
            try:
                async with self._new_client() as client:
                    failures = 0
                    self._connected = True
                    self.connects += 1
                    if down_since is None:
                        logger.info("MQTT bus connected to %s as %s", where, self.client_id)
                    else:
                        logger.warning(
                            "MQTT bus reconnected to %s after %.1f s; sending %d queued cues",
                            where,
                            time.monotonic() - down_since,
                            self.outbox_len,
                        )
                    down_since = None
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                # Loud once per outage (and every few minutes of it), quiet in between.
                level = logging.WARNING if failures % OUTAGE_LOG_EVERY == 0 else logging.DEBUG
                cause = f" ({exc.__cause__!r})" if exc.__cause__ is not None else ""
                logger.log(level, "MQTT bus connection to %s lost or refused: %s%s", where, exc, cause)
            except Exception:
                # A bug must not leave a silently dead bus: log it loudly and reconnect.
                logger.exception("MQTT bus connection loop failed; reconnecting")
            finally:
                self._connected = False
                self._confirmed_topics.clear()
                self._requeue_unacked()
            if down_since is None:
                down_since = time.monotonic()
            await asyncio.sleep(reconnect_delay(failures))
            failures += 1

    def _requeue_unacked(self) -> None:
        # Unacked cues were taken from the outbox front in order, so they go back in
        # front of it: the resend keeps publish order.
        if self._unacked:
            self.resent += len(self._unacked)
            self._outbox.extendleft(reversed(self._unacked.values()))
            self._unacked.clear()

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Runs the connection's loops until one fails; the receive loop is also the
        disconnect detector, since aiomqtt's message iterator raises on disconnect."""
        tasks = [
            asyncio.create_task(self._receive_loop(client), name=f"microcue-bus-{self.client_id}-recv"),
            asyncio.create_task(self._subscription_loop(client), name=f"microcue-bus-{self.client_id}-subs"),
        ]
        tasks += [
            asyncio.create_task(self._send_loop(client), name=f"microcue-bus-{self.client_id}-send-{i}")
            for i in range(SEND_WINDOW)
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
        raise aiomqtt.MqttError("a connection loop ended unexpectedly")

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        """One of SEND_WINDOW workers; taking from the outbox and paho's publish happen
        without an await in between, so cues leave on the wire in outbox order."""
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            item = self._outbox.popleft()
            self._unacked[item.key] = item
            try:
                await client.publish(item.topic, item.payload, qos=CUE_QOS)  # returns after PUBACK
            except (ValueError, TypeError):
                # paho refused this one message (not the connection): resending it after
                # a reconnect would fail forever and block the cues behind it.
                self._unacked.pop(item.key, None)
                self.rejected += 1
                logger.exception("MQTT client refused a cue on %s; dropped", item.topic)
            else:
                if self._unacked.pop(item.key, None) is not None:
                    self.acked += 1
            if not self._outbox and not self._unacked:
                self._drained.set()

    async def _subscription_loop(self, client: aiomqtt.Client) -> None:
        """Brings the broker's subscriptions in line with local subscribers, on every
        (re)connect: a broker restarted without persistence forgot them."""
        while True:
            self._subs_changed.clear()
            wanted = set(self._topic_refs)
            to_subscribe = sorted(wanted - self._confirmed_topics)
            to_unsubscribe = sorted(self._session_topics - wanted)
            if to_subscribe:
                codes: Any = await client.subscribe([(topic, CUE_QOS) for topic in to_subscribe])
                for topic, code in zip(to_subscribe, codes, strict=True):
                    if getattr(code, "is_failure", False):
                        logger.error("broker refused subscription to %s: %s", topic, code)
                        continue
                    self._confirmed_topics.add(topic)
                    self._session_topics.add(topic)
                for sub in self._subscriptions:
                    if sub.topic in self._confirmed_topics:
                        sub.mark_ready()
            if to_unsubscribe:
                await client.unsubscribe(to_unsubscribe)
                self._session_topics.difference_update(to_unsubscribe)
                self._confirmed_topics.difference_update(to_unsubscribe)
            if self._session_topics:
                self._session_clean.clear()
            else:
                self._session_clean.set()
            await self._subs_changed.wait()

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._on_message(message)
            # aiomqtt 2.5.1's MessagesIterator.__anext__ creates a task and an asyncio.wait per
            # message: at least two event-loop iterations each. In a busy process (the web app
            # sending to 50 websockets) that capped receiving near 250 msgs/s and 200 cues/s
            # queued up seconds of lag (bench/ws_fanout.py --mqtt). What is already queued is
            # taken here without waiting; the next __anext__ still notices a disconnect.
            queue: asyncio.Queue[aiomqtt.Message] = client._queue
            while not queue.empty():
                self._on_message(queue.get_nowait())

    def _on_message(self, message: aiomqtt.Message) -> None:
        self.received += 1
        try:
            cue = _parse_message(message.topic.value, message.payload)
        except MalformedCueError as exc:
            self.malformed += 1
            if self.malformed <= MALFORMED_LOG_FIRST or self.malformed % MALFORMED_LOG_EVERY == 0:
                logger.warning(
                    "skipping malformed message on %s (%d so far): %s",
                    message.topic.value,
                    self.malformed,
                    exc,
                )
            return
        if self._is_duplicate(cue):
            self.duplicates += 1
            return
        for sub in self._subscriptions:
            if sub.matches(cue.meeting_id):
                sub.offer(cue)

    def _is_duplicate(self, cue: Cue) -> bool:
        key = (cue.meeting_id, cue.participant_id, cue.seq, cue.t)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > DEDUPE_WINDOW:
            self._seen.popitem(last=False)
        return False
