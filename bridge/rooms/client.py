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
from aiortc.mediastreams import MediaStreamTrack

from bridge.errors import MicroCueError
from bridge.peers import peer_configuration

#: Signalling answers within a second; the first join also loads the models (a few seconds).
ANSWER_TIMEOUT_S = 60.0


class JoinRefused(MicroCueError):
    """The bridge refused the join; the message is the bridge's."""


class RoomClient:
    def __init__(self, ws: Any, pc: RTCPeerConnection, participant_id: str, bot: str) -> None:
        self.ws, self.pc, self.participant_id, self.bot = ws, pc, participant_id, bot

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
    pc = RTCPeerConnection(configuration=peer_configuration())
    try:
        welcome = await _expect(ws, "welcome")
        await ws.send(json.dumps({"type": "join", "name": name, "consent": consent}))
        await _expect(ws, "joined")
        for track in tracks:
            pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
        answer = await _expect(ws, "answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    except BaseException:
        await pc.close()
        await ws.close()
        raise
    return RoomClient(ws, pc, welcome["participant_id"], welcome.get("bot", ""))
