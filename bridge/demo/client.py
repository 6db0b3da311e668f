"""A participant of a built-in room, from Python: what the join page does, over aiortc.

Used by ``microcue demo`` (its synthetic participant) and by the tests; a browser does the
same through ``web/static/join-webrtc.js``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from bridge.errors import MicroCueError
from bridge.media.peers import peer_configuration
from bridge.tasks import cancel_and_wait

#: Signalling answers within a second; the first join also loads the models (a few seconds).
ANSWER_TIMEOUT_S = 60.0
#: Receive slots per kind: enough for the rest of a full room (bridge.rooms.builtin.MAX_PARTICIPANTS).
RECEIVE_SLOTS = 7


class JoinRefused(MicroCueError):
    """The bridge refused the join; the message is the bridge's."""


class RoomClient:
    """Two connections, as the join page makes them: ``up`` publishes ``sources``, ``down``
    receives; each is offered once. ``slots`` says who is in which receive slot (mid -> info)."""

    def __init__(self, ws: Any, participant_id: str, bot: str, sources: list[MediaStreamTrack]) -> None:
        self.ws, self.participant_id, self.bot = ws, participant_id, bot
        self.sources = sources
        self.up = RTCPeerConnection(configuration=peer_configuration())
        self.down = RTCPeerConnection(configuration=peer_configuration())
        self.slots: dict[str, dict[str, Any]] = {}
        self._slots_changed = asyncio.Event()
        self._answers: dict[str, asyncio.Future[str]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed_reason: str | None = None
        #: what the bridge gave to rejoin as this participant after a 1012, and whether this
        #: client is such a rejoin
        self.resume: dict[str, str] | None = None
        self.resumed = False

    async def connect(self) -> None:
        """Offer both connections (publish first) and return once both are answered."""
        self._reader = asyncio.create_task(self._read(), name=f"room-client-{self.participant_id}")
        for track in self.sources:
            self.up.addTransceiver(track, direction="sendonly")
        for _ in range(RECEIVE_SLOTS):  # room for the others' camera and microphone
            self.down.addTransceiver("video", direction="recvonly")
            self.down.addTransceiver("audio", direction="recvonly")
        if self.sources:
            await self._offer("publish", self.up)
        await self._offer("subscribe", self.down)

    async def _offer(self, which: str, pc: RTCPeerConnection) -> None:
        await pc.setLocalDescription(await pc.createOffer())
        answer = self._answers[which] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"type": "offer", "pc": which, "sdp": pc.localDescription.sdp}))
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            sdp = await answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                msg = json.loads(text)
                if msg.get("type") == "answer" and msg.get("pc") in self._answers:
                    self._answers[msg["pc"]].set_result(msg["sdp"])
                elif msg.get("type") == "slots":
                    self.slots = {s["mid"]: s for s in msg["slots"]}
                    self._slots_changed.set()
                elif msg.get("type") == "error":
                    self._fail(JoinRefused(msg.get("message", "refused")))
        except websockets.ConnectionClosed:
            pass
        self._fail(JoinRefused("the bridge closed the signalling connection"))

    def _fail(self, exc: Exception) -> None:
        for future in self._answers.values():
            if not future.done():
                future.set_exception(exc)

    def received(self, kind: str = "video") -> dict[str, MediaStreamTrack]:
        """The tracks carrying someone now, by the publisher's participant id."""
        out = {}
        for transceiver in self.down.getTransceivers():
            info = self.slots.get(transceiver.mid or "")
            if info is not None and info["kind"] == kind and transceiver.receiver.track is not None:
                out[info["participant_id"]] = transceiver.receiver.track
        return out

    async def wait_slots(self, predicate: Callable[[dict[str, dict[str, Any]]], bool]) -> None:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            while not predicate(self.slots):
                self._slots_changed.clear()
                await self._slots_changed.wait()

    async def closed(self, within: float) -> tuple[int | None, str]:
        """Wait up to ``within`` seconds for the bridge to close the signalling socket; its close
        code and reason (None, "" while it is still open). A bridge worker that moves the room
        closes with 1012: reconnect and offer again."""
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(within):
                    await asyncio.shield(self._reader)
        return self.ws.close_code, self.ws.close_reason or ""

    async def aclose(self) -> None:
        await self.up.close()
        await self.down.close()
        await self.ws.close()
        await cancel_and_wait(self._reader)


async def _expect(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        msg = json.loads(await ws.recv())
    if msg.get("type") == "error":
        raise JoinRefused(msg.get("message", "refused"))
    if msg.get("type") != kind:
        raise JoinRefused(f"expected {kind!r} from the bridge, got {msg.get('type')!r}")
    return msg


async def join_room(
    ws_base: str,
    meeting_id: str,
    join_token: str,
    *,
    name: str,
    consent: bool,
    tracks: list[MediaStreamTrack],
    resume: dict[str, str] | None = None,
) -> RoomClient:
    """Join, publish ``tracks`` and return once the bridge answered (media flows after ICE).
    ``resume``: an earlier client's ``resume`` pair, to rejoin as that participant after a 1012."""
    ws = await websockets.connect(f"{ws_base}/ws/rooms/{meeting_id}/signal?token={join_token}", max_size=2**20)
    client: RoomClient | None = None
    try:
        welcome = await _expect(ws, "welcome")
        join: dict[str, Any] = {"type": "join", "name": name, "consent": consent}
        if resume is not None:
            join["resume"] = resume
        await ws.send(json.dumps(join))
        joined = await _expect(ws, "joined")
        client = RoomClient(ws, joined["participant_id"], welcome.get("bot", ""), tracks)
        client.resume = joined.get("resume")
        client.resumed = bool(joined.get("resumed"))
        await client.connect()
    except BaseException:
        if client is not None:
            await client.aclose()
        else:
            await ws.close()
        raise
    return client
