"""Work distribution on the MQTT v5 broker: join requests, worker heartbeats and wills.

Join requests (a bot for a Janus room, a built-in room session) are published to
``microcue/join``; every worker subscribes to the shared subscription
``$share/bridges/microcue/join``, so the broker hands each request to one worker of the group
(MQTT v5, section 4.8.2; Mosquitto 2 and EMQX/HiveMQ clusters implement it). The broker is
only the dispatcher: which worker *holds* a meeting is decided by the lease in PostgreSQL
(``bridge.cluster.lease``), so a request delivered twice, or to a worker that then dies,
never makes two holders.

Each worker keeps a retained heartbeat on ``microcue/workers/{id}/status`` with its load,
and registers a retained will on the same topic saying ``down``: the broker publishes it
when the worker's connection dies without a DISCONNECT (kill -9, a lost node), so anyone
watching sees the death at once, while takeover itself waits for the lease to expire.

The worker's link uses a clean session: a persistent session of a dead worker would make
the broker queue join requests for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import aiomqtt

from bridge.bus.mqtt import OPERATION_TIMEOUT_S, parse_mqtt_url, reconnect_delay

log = logging.getLogger("microcue.cluster")

#: Where join requests are published, and the shared subscription workers take them from
#: (``$share/<group>/<filter>``: group "bridges").
JOIN_TOPIC = "microcue/join"
SHARED_GROUP = "bridges"
JOIN_SUBSCRIPTION = f"$share/{SHARED_GROUP}/{JOIN_TOPIC}"
STATUS_TOPIC = "microcue/workers/{worker}/status"
STATUS_FILTER = "microcue/workers/+/status"
#: QoS 1 for requests and heartbeats: at least once; the lease makes duplicates harmless.
QOS = 1
#: Heartbeat period; a reader treats a worker silent for 3 periods as gone even without a will.
HEARTBEAT_S = 2.0
#: PINGREQ interval of the link: the broker declares a half-open connection dead (and sends
#: the will) after 1.5x this.
KEEPALIVE_S = 5


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Ask the bridge workers to analyse a meeting.

    ``participants`` is the sender's estimate of the load, in participants, used for capacity
    before the worker has joined; ``hops`` counts workers that passed it on for lack of room.
    """

    meeting_id: str
    kind: Literal["janus", "builtin"]
    url: str = ""
    room: int | None = None
    participants: int = 1
    hops: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> JoinRequest:
        if not isinstance(data, dict):
            raise ValueError("a join request is a JSON object")
        meeting_id, kind = data.get("meeting_id"), data.get("kind")
        if not isinstance(meeting_id, str) or not meeting_id:
            raise ValueError("join request without a meeting_id")
        if kind not in ("janus", "builtin"):
            raise ValueError(f"join request of unknown kind {kind!r}")
        room = data.get("room")
        participants = data.get("participants", 1)
        if room is not None and type(room) is not int:
            raise ValueError("room must be an integer")
        if type(participants) is not int or participants < 1:
            raise ValueError("participants must be a positive integer")
        return cls(
            meeting_id=meeting_id,
            kind=kind,
            url=str(data.get("url") or ""),
            room=room,
            participants=participants,
            hops=int(data.get("hops") or 0),
            id=str(data.get("id") or uuid.uuid4().hex[:12]),
        )

    @classmethod
    def from_json(cls, payload: bytes | bytearray) -> JoinRequest:
        return cls.from_dict(json.loads(payload))


def status_topic(worker_id: str) -> str:
    return STATUS_TOPIC.format(worker=worker_id)


def _client(
    url: str, client_id: str, will: aiomqtt.Will | None = None, *, tls: ssl.SSLContext | None = None
) -> aiomqtt.Client:
    """``tls``: the context of the process's settings (``bridge.bus.mqtt.settings_tls``: a private
    CA, a client certificate); without one an ``mqtts://`` URL is checked against the system store."""
    endpoint = parse_mqtt_url(url)
    return aiomqtt.Client(
        endpoint.hostname,
        endpoint.port,
        username=endpoint.username,
        password=endpoint.password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,
        keepalive=KEEPALIVE_S,
        timeout=OPERATION_TIMEOUT_S,
        will=will,
        tls_context=tls if tls is not None else (ssl.create_default_context() if endpoint.tls else None),
        logger=logging.getLogger("microcue.cluster.paho"),
    )


OnJoin = Callable[[JoinRequest], Coroutine[Any, Any, None]]
Status = Callable[[], dict[str, Any]]


class WorkerLink:
    """A worker's connection to the broker: takes join requests, keeps its heartbeat and will."""

    def __init__(
        self, url: str, worker_id: str, on_join: OnJoin, status: Status, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.url = url
        self.tls = tls
        self.worker_id = worker_id
        self.on_join = on_join
        self.status = status
        self.connected = False
        #: set while the broker has confirmed our place in the shared subscription
        self.subscribed = asyncio.Event()
        self.accepting = True
        self.received = 0
        self.malformed = 0
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"microcue-link-{self.worker_id}")

    def _heartbeat(self, state: str) -> bytes:
        body = {"worker": self.worker_id, "state": state, "at": time.time()}
        if state == "up":
            body.update(self.status())
        return json.dumps(body, separators=(",", ":")).encode()

    async def _run(self) -> None:
        failures = 0
        will = aiomqtt.Will(status_topic(self.worker_id), self._heartbeat("down"), qos=QOS, retain=True)
        while True:
            try:
                async with _client(self.url, f"microcue-worker-{self.worker_id}", will, tls=self.tls) as client:
                    failures = 0
                    self._client = client
                    self.connected = True
                    log.info("worker %s connected to the broker; taking join requests", self.worker_id)
                    if self.accepting:
                        await client.subscribe(JOIN_SUBSCRIPTION, qos=QOS)
                        self.subscribed.set()
                    beat = asyncio.create_task(self._beat(client))
                    try:
                        async for message in client.messages:
                            self._dispatch(message.payload)
                    finally:
                        beat.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await beat
            except aiomqtt.MqttError as exc:
                log.warning("worker %s lost the broker: %s", self.worker_id, exc)
            finally:
                self.connected = False
                self.subscribed.clear()
                self._client = None
            await asyncio.sleep(reconnect_delay(failures))
            failures += 1

    async def _beat(self, client: aiomqtt.Client) -> None:
        while True:
            await client.publish(status_topic(self.worker_id), self._heartbeat("up"), qos=QOS, retain=True)
            await asyncio.sleep(HEARTBEAT_S)

    def _dispatch(self, payload: object) -> None:
        self.received += 1
        try:
            if not isinstance(payload, bytes | bytearray):
                raise ValueError("payload is not bytes")
            request = JoinRequest.from_json(payload)
        except (ValueError, TypeError) as exc:
            self.malformed += 1
            log.warning("skipping a malformed join request: %s", exc)
            return
        task = asyncio.create_task(self.on_join(request), name=f"join-{request.meeting_id}")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def publish_join(self, request: JoinRequest) -> None:
        """Passes a request back to the group (this worker cannot serve it, or drains)."""
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected to the broker")
        await client.publish(JOIN_TOPIC, request.to_json(), qos=QOS)

    async def stop_accepting(self) -> None:
        """Leaves the shared subscription, so the broker sends new requests to the others."""
        self.accepting = False
        self.subscribed.clear()
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.unsubscribe(JOIN_SUBSCRIPTION)

    async def aclose(self) -> None:
        """Clean goodbye: a retained ``stopped`` status (a DISCONNECT suppresses the will)."""
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.publish(
                    status_topic(self.worker_id), self._heartbeat("stopped"), qos=QOS, retain=True
                )
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        for task in list(self._handlers):
            task.cancel()


class JoinPublisher:
    """The web role's side: publishes join requests for the workers to take."""

    def __init__(self, url: str, *, tls: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.tls = tls

    async def publish(self, request: JoinRequest) -> None:
        # One short connection per request: joins are rare (a few per meeting), and this keeps
        # the web role free of a second long-lived broker session to look after.
        async with _client(self.url, f"microcue-web-{uuid.uuid4().hex[:12]}", tls=self.tls) as client:
            await client.publish(JOIN_TOPIC, request.to_json(), qos=QOS)
        log.info("join request %s for meeting %s published", request.id, request.meeting_id)
