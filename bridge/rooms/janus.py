"""Janus VideoRoom bot: subscribe to every publisher of a room over Janus's WebSocket API.

The protocol (docs/sources.md "WebRTC and meeting servers", from
``janus_videoroom.c`` and the multistream demo ``mvideoroom.js``):

1. one WebSocket (subprotocol ``janus-protocol``), one Janus session, keepalive
   every 25 s (sessions time out after 60 s);
2. handle A joins as a *publisher that never publishes*, only to receive room
   events: the ``joined`` answer lists current publishers, later events announce
   new ones (``publishers``) and departures (``unpublished`` / ``leaving``);
3. handle B is ONE multistream subscriber for all feeds: ``join`` -> ``attached``
   with an SDP offer -> ``start`` with our answer; ``update`` (subscribe /
   unsubscribe) -> ``updated`` + a new offer -> ``start`` again. Janus's
   ``autoupdate`` also renegotiates on its own when a feed leaves.

Janus may reuse an m-line (mid) for a different feed after renegotiation and
aiortc then keeps the same remote track, so tracks are routed to participants
after every offer from the ``streams`` table (mid -> feed), not only on aiortc's
``track`` event.

Every offer's SSRCs are bound to their receivers (``_bind_ssrcs``): aiortc registers
neither the retransmission (RTX) SSRC nor, on a reused mid, the new stream's SSRCs,
and a reused mid's receiver still holds the old stream's unfinished frame. Once Janus
has the answer, every video mid that carries a new feed gets a keyframe request
(``_request_keyframes``): Janus 1.1 asks the publisher for one only when the
subscriber's first PeerConnection comes up, never after a renegotiation.

When the socket drops or Janus restarts, every peer connection is closed,
participants are detached (their analysers and cue sequence kept, so a feed that
comes back continues), and the bot reconnects with exponential backoff and
subscribes afresh to whoever is in the room then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

import websockets
import websockets.asyncio.client
from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from websockets.asyncio.client import ClientConnection

from bridge.errors import MicroCueError
from bridge.media.analysis import AdapterContext
from bridge.media.peers import fresh_receive_buffer, keyframe_requester, request_keyframe
from bridge.rooms.base import MeetingAdapter

log = logging.getLogger("microcue.janus")

JANUS_SUBPROTOCOL = "janus-protocol"
VIDEOROOM_PLUGIN = "janus.plugin.videoroom"
#: janus.js sends a keepalive every 25 s; Janus drops sessions idle for 60 s (session_timeout).
KEEPALIVE_S = 25.0
#: A Janus request is answered in milliseconds; 10 s means the server or the link is gone.
REQUEST_TIMEOUT_S = 10.0
#: Reconnect backoff: first retry soon (a Janus restart takes ~1 s), then back off to spare a
#: server that is down for longer.
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0
#: Largest Janus message accepted: SDP offers for a full room are tens of kB.
MAX_MESSAGE_BYTES = 1 << 20
#: Unsolicited events buffered between the socket reader and the adapter; room events are a
#: handful per second at most, so a full queue means the adapter is stuck.
EVENT_QUEUE = 256
#: VideoRoom error codes that no reconnect can fix (janus_videoroom.c): no such room,
#: unauthorized, invalid element/request.
FATAL_ERROR_CODES = frozenset({426, 433, 456, 457})
#: Codecs aiortc decodes, by Janus stream type (Janus names them in lower case).
DECODABLE: dict[str, frozenset[str]] = {
    "video": frozenset({"vp8", "h264"}),
    "audio": frozenset({"opus", "pcmu", "pcma"}),
}
#: What people in the room see: that a bot analyses faces (EU AI Act Art. 50(3): people exposed
#: to emotion recognition are told), and how to opt out.
BOT_DISPLAY = "MicroCue bot - analysing faces (ask the host to opt out)"


class _NoRedirects(websockets.asyncio.client.connect):
    """``websockets.connect`` that follows no redirect: a 3xx from the server is an error, so a
    checked target cannot send the bot somewhere else (bridge/targets.py)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class JanusError(MicroCueError):
    """Janus answered with an error; ``code`` is Janus's or the VideoRoom plugin's error code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def plugin_data(msg: dict[str, Any]) -> dict[str, Any]:
    data = msg.get("plugindata", {}).get("data", {})
    return data if isinstance(data, dict) else {}


def _check(msg: dict[str, Any], what: str) -> dict[str, Any]:
    """Raise JanusError for a core or plugin error answer; return the message otherwise."""
    if msg.get("janus") == "error":
        err = msg.get("error", {})
        raise JanusError(f"Janus refused {what}: {err.get('reason', err)}", err.get("code"))
    data = plugin_data(msg)
    if "error_code" in data or "error" in data:
        raise JanusError(f"Janus VideoRoom refused {what}: {data.get('error')}", data.get("error_code"))
    return msg


class JanusSession:
    """One WebSocket and one Janus session: transactions, unsolicited events, keepalive."""

    def __init__(self, url: str, *, keepalive_s: float = KEEPALIVE_S, address: str | None = None) -> None:
        self.url = url
        #: the checked IP to connect to (the URL's host is still sent and verified by TLS);
        #: None: resolve the URL's host (``microcue join``, run by the operator)
        self.address = address
        self.keepalive_s = keepalive_s
        self.session_id: int | None = None
        #: unsolicited messages; ``None`` marks the end of the connection
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENT_QUEUE)
        self._ws: ClientConnection | None = None
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        where: dict[str, Any] = {}
        if self.address is not None:
            where["host"] = self.address
        self._ws = await _NoRedirects(
            self.url,
            subprotocols=[websockets.Subprotocol(JANUS_SUBPROTOCOL)],
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=REQUEST_TIMEOUT_S,
            ping_interval=None,  # Janus keepalives do this job, as janus.js does
            proxy=None,  # connect to the checked address itself, never through an environment proxy
            **where,
        )
        self._tasks.append(asyncio.create_task(self._read(), name="janus-read"))
        created = await self.request({"janus": "create"}, "create a session")
        self.session_id = int(created["data"]["id"])
        self._tasks.append(asyncio.create_task(self._keepalive(), name="janus-keepalive"))

    async def request(self, msg: dict[str, Any], what: str, *, until_ack: bool = False) -> dict[str, Any]:
        """Send ``msg`` in a new transaction; the first non-ack answer (or the ack if asked)."""
        if self._ws is None:
            raise ConnectionError("Janus session is not open")
        tx = secrets.token_hex(8)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tx] = (fut, until_ack)
        body = {**msg, "transaction": tx}
        if self.session_id is not None and "session_id" not in body and msg.get("janus") != "create":
            body["session_id"] = self.session_id
        try:
            await self._ws.send(json.dumps(body))
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                answer = await fut
        except websockets.ConnectionClosed as exc:
            raise ConnectionError(f"Janus websocket closed during '{what}' ({exc})") from exc
        except TimeoutError:
            raise ConnectionError(f"Janus did not answer '{what}' within {REQUEST_TIMEOUT_S:.0f} s") from None
        finally:
            self._pending.pop(tx, None)
        return _check(answer, what)

    async def attach(self, plugin: str = VIDEOROOM_PLUGIN) -> int:
        answer = await self.request({"janus": "attach", "plugin": plugin}, f"attach to {plugin}")
        return int(answer["data"]["id"])

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"janus": "message", "handle_id": handle, "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        return await self.request(msg, f"'{body.get('request')}'")

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    log.warning("Janus sent a message that is not JSON (%d bytes); ignored", len(raw))
                    continue
                if not isinstance(msg, dict):
                    continue
                pending = self._pending.get(str(msg.get("transaction", "")))
                if pending is not None:
                    fut, until_ack = pending
                    if msg.get("janus") == "ack" and not until_ack:
                        continue  # an async plugin request: its event comes with the same transaction
                    if not fut.done():
                        fut.set_result(msg)
                    continue
                try:
                    self.events.put_nowait(msg)
                except asyncio.QueueFull:
                    log.error("Janus event queue full (%d): dropping %s", EVENT_QUEUE, msg.get("janus"))
        except websockets.ConnectionClosed as exc:
            log.info("Janus websocket closed: %s", exc)
        finally:
            for fut, _ in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("Janus websocket closed"))
            while True:  # the end marker must get through even if the queue is full
                try:
                    self.events.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    self.events.get_nowait()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.request({"janus": "keepalive"}, "keepalive", until_ack=True)
            except (ConnectionError, JanusError) as exc:
                log.warning("Janus keepalive failed (%s); dropping the connection", exc)
                if self._ws is not None:
                    await self._ws.close()
                return

    async def close(self) -> None:
        """Destroy the session (best effort: the server may be gone) and close the socket."""
        if self._ws is not None and self.session_id is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._ws.send(
                        json.dumps(
                            {"janus": "destroy", "session_id": self.session_id, "transaction": secrets.token_hex(8)}
                        )
                    )
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a bug in our reader/keepalive must show, but not block shutdown
                log.exception("Janus session task %s failed", task.get_name())
        self._tasks.clear()
        self._ws = None


class JanusAdapter(MeetingAdapter):
    """The bot in one VideoRoom: subscribes to everyone, follows joins/leaves, survives restarts."""

    kind = "janus"

    def __init__(
        self,
        url: str,
        room: int,
        ctx: AdapterContext,
        *,
        keepalive_s: float = KEEPALIVE_S,
        display: str = BOT_DISPLAY,
        address: str | None = None,
    ) -> None:
        super().__init__(ctx)
        if not url.startswith(("ws://", "wss://")):
            raise MicroCueError(f"Janus URL must start with ws:// or wss://, got {url!r}")
        self.url = url
        self.room = room
        self.keepalive_s = keepalive_s
        self.display = display
        self.address = address  # resolved once by the target check: reconnects go to the same address
        self.connections = 0  # successful joins, >1 means the bot reconnected
        self.connected = asyncio.Event()
        self._session: JanusSession | None = None
        self._pub: int | None = None
        self._sub: int | None = None
        self._pc: RTCPeerConnection | None = None
        self._private_id: int | None = None
        self._feeds: dict[int, str] = {}  # feed id -> display name, for everyone subscribed
        self._mid_feed: dict[str, int] = {}
        self._mid_route: dict[str, tuple[int, str]] = {}  # mid -> (feed, track id) it is routed to
        self._negotiate = asyncio.Lock()
        self._closing = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = RECONNECT_MIN_S
        while not self._closing:
            try:
                await self._connect_and_serve()
            except JanusError as exc:
                if exc.code in FATAL_ERROR_CODES:
                    raise
                log.warning("Janus error (%s); reconnecting in %.1f s", exc, backoff)
            except (OSError, ConnectionError, websockets.WebSocketException, TimeoutError) as exc:
                log.warning(
                    "lost Janus at %s (%s); reconnecting in %.1f s", self.url, exc or type(exc).__name__, backoff
                )
            except Exception:  # a bug or a malformed server answer: log it, keep the bot in the room
                log.exception("unexpected error in the Janus session; reconnecting in %.1f s", backoff)
            finally:
                await self._drop_connection()
            if self.connected.is_set():
                backoff = RECONNECT_MIN_S  # it worked last time: retry fast
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def aclose(self) -> None:
        self._closing = True
        await self._drop_connection()
        await super().aclose()

    async def _drop_connection(self) -> None:
        session, self._session = self._session, None
        pc, self._pc = self._pc, None
        if pc is not None:
            await self.peers.close(pc)
        for p in self.participants.values():
            await p.detach("the bot lost its connection to the meeting server")
        self._pub = self._sub = self._private_id = None
        self._feeds.clear()
        self._mid_feed.clear()
        self._mid_route.clear()
        if session is not None:
            await session.close()

    # ---- one connection --------------------------------------------------------------------

    async def _connect_and_serve(self) -> None:
        session = self._session = JanusSession(self.url, keepalive_s=self.keepalive_s, address=self.address)
        await session.open()
        self._pub = await session.attach()
        joined = await session.message(
            self._pub, {"request": "join", "ptype": "publisher", "room": self.room, "display": self.display}
        )
        data = plugin_data(joined)
        if data.get("videoroom") != "joined":
            raise JanusError(f"expected 'joined' from room {self.room}, got {data}")
        self._private_id = data.get("private_id")
        self.connections += 1
        self.connected.set()
        log.info("joined Janus room %s at %s (connection %d)", self.room, self.url, self.connections)
        await self._add_feeds(data.get("publishers", []))
        while True:
            msg = await session.events.get()
            if msg is None:
                raise ConnectionError("Janus websocket closed")
            await self._on_event(msg)

    async def _on_event(self, msg: dict[str, Any]) -> None:
        kind = msg.get("janus")
        if kind == "timeout":
            raise ConnectionError("Janus timed our session out")
        if kind != "event":
            log.debug("Janus %s on handle %s", kind, msg.get("sender"))
            return
        data = plugin_data(msg)
        sender = msg.get("sender")
        if sender == self._pub:
            if data.get("publishers"):
                await self._add_feeds(data["publishers"])
            for key in ("unpublished", "leaving"):
                feed = data.get(key)
                if isinstance(feed, int):
                    await self._remove_feed(feed)
        elif sender == self._sub:
            jsep = msg.get("jsep")
            if jsep and jsep.get("type") == "offer":  # autoupdate renegotiation
                await self._answer(data, jsep)

    async def _add_feeds(self, publishers: list[dict[str, Any]]) -> None:
        session = self._session
        assert session is not None and self._pub is not None
        for p in publishers:  # a known feed listed again: Janus tells of a new display name
            if isinstance(p.get("id"), int) and p["id"] in self._feeds and "display" in p:
                display = str(p.get("display") or "")
                if display and display != self._feeds[p["id"]]:
                    self._feeds[p["id"]] = display
                    self.rename(str(p["id"]), display)
        new = [
            p
            for p in publishers
            if isinstance(p.get("id"), int)
            and p["id"] not in self._feeds
            and not p.get("dummy")
            and p.get("streams", [None])
        ]
        streams: list[dict[str, Any]] = []
        for p in new:
            self._feeds[p["id"]] = str(p.get("display", ""))
            wanted = self._decodable_streams(p)
            log.info("subscribing to feed %s (%s): %d stream(s)", p["id"], p.get("display", ""), len(wanted))
            streams += wanted
        if not streams:
            return
        async with self._negotiate:
            if self._sub is None:
                self._sub = await session.attach()
                body: dict[str, Any] = {"request": "join", "ptype": "subscriber", "room": self.room, "streams": streams}
                if self._private_id is not None:
                    body["private_id"] = self._private_id
                answer = await session.message(self._sub, body)
            else:
                answer = await session.message(self._sub, {"request": "update", "subscribe": streams})
            jsep = answer.get("jsep")
            if jsep and jsep.get("type") == "offer":
                await self._answer_locked(plugin_data(answer), jsep)

    @staticmethod
    def _decodable_streams(publisher: dict[str, Any]) -> list[dict[str, Any]]:
        """The feed's streams aiortc can decode, as subscribe entries. One undecodable m-line
        would fail the whole multistream negotiation, so it is left out with a clear log line."""
        feed = publisher["id"]
        listed = publisher.get("streams")
        if not isinstance(listed, list):  # an older Janus without per-stream info: take all
            return [{"feed": feed}]
        out = []
        for stream in listed:
            kind, codec, mid = stream.get("type"), str(stream.get("codec", "")).lower(), stream.get("mid")
            if kind not in DECODABLE or mid is None or stream.get("disabled"):
                continue
            if codec and codec not in DECODABLE[kind]:
                log.warning(
                    "feed %s sends %s %s, which the bot cannot decode: that stream is not analysed", feed, kind, codec
                )
                continue
            out.append({"feed": feed, "mid": str(mid)})
        return out

    async def _remove_feed(self, feed: int) -> None:
        display = self._feeds.pop(feed, None)
        if display is None:
            return
        log.info("feed %s (%s) left", feed, display)
        p = self.participants.get(str(feed))
        if p is not None:
            await p.detach()
        # Janus's autoupdate renegotiates handle B by itself; its offer arrives as an event.

    async def _answer(self, data: dict[str, Any], jsep: dict[str, Any]) -> None:
        async with self._negotiate:
            await self._answer_locked(data, jsep)

    async def _answer_locked(self, data: dict[str, Any], jsep: dict[str, Any]) -> None:
        session = self._session
        assert session is not None and self._sub is not None
        if self._pc is None:
            self._pc = self.peers.create(f"janus-room-{self.room}")
        pc = self._pc
        streams = data.get("streams") or []
        self._mid_feed = {
            str(s["mid"]): int(s["feed_id"]) for s in streams if s.get("active", True) and "feed_id" in s and "mid" in s
        }
        log.debug("subscriber offer from Janus (streams %s):\n%s", self._mid_feed, jsep["sdp"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        log.debug("subscriber answer to Janus:\n%s", pc.localDescription.sdp)
        self._bind_ssrcs(pc, jsep["sdp"])
        routed = self._route_tracks(pc)
        await session.message(self._sub, {"request": "start"}, jsep={"type": "answer", "sdp": pc.localDescription.sdp})
        # Janus relays a stream only from here on ("start" makes it ready), so ask now
        await self._request_keyframes(routed)
        self.ready.set()

    @staticmethod
    async def _request_keyframes(transceivers: list[RTCRtpTransceiver]) -> None:
        """A PLI for every video mid that just got a (new) feed. Janus 1.1 asks the publisher for a
        keyframe only when the subscriber's PeerConnection first comes up ("New subscriber
        available" in janus_videoroom.c); a feed subscribed by renegotiation, a returning person
        on a reused m-line included, otherwise waits for the next keyframe the publisher happens
        to send (the worker's watchdog asks only after KEYFRAME_WAIT_S)."""
        for transceiver in transceivers:
            if transceiver.kind != "video":
                continue
            try:
                sent = await request_keyframe(transceiver)  # its buffer is fresh: no flush
            except Exception:  # a closed transport: the reader will see the track end
                log.debug("keyframe request on mid %s failed", transceiver.mid, exc_info=True)
                continue
            log.debug("mid %s carries a new feed: %d keyframe request(s) sent", transceiver.mid, sent)

    @staticmethod
    def _bind_ssrcs(pc: RTCPeerConnection, offer_sdp: str) -> None:
        """Bind each offered m-line's SSRCs (media and RTX) to its receiver, as aiortc does not:

        - aiortc routes by SSRC and registers only the media SSRC. Janus retransmits lost
          packets (NACK) on the RTX SSRC, whose payload type every video receiver shares, so
          with two or more people the retransmission matches no receiver and is dropped: a
          lost packet is never repaired.
        - aiortc registers a receiver's SSRCs only when it first starts. Janus gives a freed
          m-line to the next feed with new SSRCs; without this their packets match nothing.
        - A hole the old stream left in the reused receiver's jitter buffer (its last frame
          cut short, a packet never repaired) holds back every later frame, keyframes
          included, until the buffer overflows (512 packets, about 10 s of a 15 fps camera). The
          new stream gets a fresh buffer instead.

        The old stream's SSRCs are forgotten so that keyframe requests go to the new one only.
        (aiortc has no public call for any of this.)"""
        media_by_mid = {m.rtp.muxId: m for m in aiortc_sdp.SessionDescription.parse(offer_sdp).media}
        for transceiver in pc.getTransceivers():
            receiver, media = transceiver.receiver, media_by_mid.get(transceiver.mid or "")
            router = getattr(receiver.transport, "_rtp_router", None)
            if media is None or not media.ssrc or router is None:
                continue  # an inactive m-line (the feed left) announces no SSRC: keep the old ones
            fid = next((g.items for g in media.ssrc_group if g.semantic == "FID"), [])  # media SSRC, RTX SSRC
            ssrc = int(fid[0]) if fid else media.ssrc[0].ssrc
            rtx = int(fid[1]) if fid[1:] else None
            wanted = {ssrc} if rtx is None else {ssrc, rtx}
            known = {s for s, owner in router.ssrc_table.items() if owner is receiver}
            if known == wanted:
                continue
            for stale in known - wanted:
                del router.ssrc_table[stale]
                _forget_source(receiver, stale)
            router.register_receiver(
                receiver,
                ssrcs=sorted(wanted),
                payload_types=[c.payloadType for c in transceiver._codecs],
                mid=transceiver.mid,
            )
            rtx_map = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", None)
            if isinstance(rtx_map, dict):
                rtx_map.clear()
                if rtx is not None:
                    rtx_map[rtx] = ssrc
            if ssrc not in known and known - wanted:  # a reused mid: another stream from now on
                fresh_receive_buffer(receiver)
                log.info("mid %s reused by Janus: now carries SSRC %s (RTX %s)", transceiver.mid, ssrc, rtx)
            else:
                log.debug("mid %s: SSRC %s, RTX %s bound", transceiver.mid, ssrc, rtx)

    def _route_tracks(self, pc: RTCPeerConnection) -> list[RTCRtpTransceiver]:
        """Give every active m-line's track to its feed's participant (again if the mid moved);
        returns the transceivers routed anew."""
        routed: list[RTCRtpTransceiver] = []
        for transceiver in pc.getTransceivers():
            track = transceiver.receiver.track if transceiver.receiver else None
            mid = transceiver.mid
            if track is None or mid is None:
                continue
            feed = self._mid_feed.get(mid)
            if feed is None:
                self._mid_route.pop(mid, None)
                continue
            route = (feed, track.id)
            if self._mid_route.get(mid) == route:
                continue
            self._mid_route[mid] = route
            participant = self.participant(str(feed), self._feeds.get(feed, ""))
            participant.attach(track, self.peers, keyframe_requester(transceiver))
            routed.append(transceiver)
            log.info("mid %s (%s) -> participant %s", mid, track.kind, feed)
        return routed


def _forget_source(receiver: Any, ssrc: int) -> None:
    """Stop reporting on (RTCP receiver reports) and asking keyframes of a stream that is gone."""
    for name in ("_RTCRtpReceiver__remote_streams", "_RTCRtpReceiver__active_ssrc"):
        table = getattr(receiver, name, None)
        if isinstance(table, dict):
            table.pop(ssrc, None)
