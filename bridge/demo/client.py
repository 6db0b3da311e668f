"""A participant of a built-in room, from Python: what the join page does, over aiortc.

Used by ``microcue demo`` (its synthetic participant) and by the tests; a browser does the
same through ``web/static/join-webrtc.js``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from bridge.errors import MicroCueError
from bridge.media.peers import peer_configuration

#: Signalling answers within a second; the first join also loads the models (a few seconds).
ANSWER_TIMEOUT_S = 60.0
#: Receive slots per kind: enough for the rest of a full room (bridge.rooms.builtin.MAX_PARTICIPANTS).
RECEIVE_SLOTS = 7


class JoinRefused(MicroCueError):
    """The bridge refused the join; the message is the bridge's."""


class RoomClient:
    def __init__(self, ws: Any, participant_id: str, bot: str, sources: list[MediaStreamTrack]) -> None:
        self.ws, self.participant_id, self.bot = ws, participant_id, bot
        self.relay = MediaRelay()  # each (re)negotiated connection gets its own copy of the sources
        self.sources = sources
        self.pc = RTCPeerConnection(configuration=peer_configuration())
        self.received: list[MediaStreamTrack] = []

    async def negotiate(self) -> None:
        """(Re)connect: a fresh peer with every source, offer, answer. The bridge answers each
        offer from a fresh peer of its own, relaying everyone present at that moment."""
        await self.pc.close()
        self.pc = RTCPeerConnection(configuration=peer_configuration())
        self.pc.on("track", self.received.append)
        for track in self.sources:
            self.pc.addTrack(self.relay.subscribe(track, buffered=False))
        for _ in range(RECEIVE_SLOTS):  # room for the others' camera and microphone
            self.pc.addTransceiver("video", direction="recvonly")
            self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp}))
        answer = await _expect(self.ws, "answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def next_message(self) -> dict[str, Any]:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            return dict(json.loads(await self.ws.recv()))

    async def aclose(self) -> None:
        await self.pc.close()
        await self.ws.close()


async def _expect(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        msg = json.loads(await ws.recv())
    if msg.get("type") == "error":
        raise JoinRefused(msg.get("message", "refused"))
    if msg.get("type") != kind:
        raise JoinRefused(f"expected {kind!r} from the bridge, got {msg.get('type')!r}")
    return msg


async def join_room(ws_base: str, meeting_id: str, join_token: str, *, name: str, consent: bool,
                    tracks: list[MediaStreamTrack]) -> RoomClient:
    """Join, publish ``tracks`` and return once the bridge answered (media flows after ICE)."""
    ws = await websockets.connect(f"{ws_base}/ws/rooms/{meeting_id}/signal?token={join_token}", max_size=2**20)
    client: RoomClient | None = None
    try:
        welcome = await _expect(ws, "welcome")
        await ws.send(json.dumps({"type": "join", "name": name, "consent": consent}))
        await _expect(ws, "joined")
        client = RoomClient(ws, welcome["participant_id"], welcome.get("bot", ""), tracks)
        await client.negotiate()
    except BaseException:
        if client is not None:
            await client.pc.close()
        await ws.close()
        raise
    return client
