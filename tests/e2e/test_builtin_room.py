"""Built-in rooms over real WebRTC: aiortc participants publish a real face to the bridge inside a
private network namespace; cues reach the presenter's live feed; bad signalling is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from bridge.config import Settings
from bridge.demo.client import JoinRefused, join_room
from bridge.demo.synthetic import SyntheticFaceTrack, face_loop_frames, to_yuv
from bridge.rooms.builtin import RELAY_BOX
from tests.live_server import LiveServer
from tests.support.rooms import create_meeting, cues_for
from web.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
pytest_plugins = ["tests.support.service"]


@pytest.mark.parametrize("processes", [0, 1], ids=["in-process", "analysis-process"])
async def test_a_participant_publishes_and_cues_arrive_only_with_consent(
    netns: str, tmp_path: Path, processes: int
) -> None:
    frames = to_yuv(face_loop_frames(seconds=2.0))
    with LiveServer(create_app(Settings(data_dir=tmp_path, analysis_processes=processes))) as server:
        m = create_meeting(server)
        yes = await join_room(
            server.ws_url, m["id"], m["join_token"], name="Ada", consent=True, tracks=[SyntheticFaceTrack(frames)]
        )
        no = await join_room(
            server.ws_url, m["id"], m["join_token"], name="Bo", consent=False, tracks=[SyntheticFaceTrack(frames)]
        )
        try:
            assert "MicroCue bot" in yes.bot  # the bot announces itself
            got = await cues_for(server, m, yes.participant_id, {"presence", "engagement"})
            assert {"presence", "engagement"} <= got
            # the participant who declined is relayed but never analysed
            rooms = server.app.state.web.rooms
            room = rooms.rooms[m["id"]]
            assert room.participants[no.participant_id].video.stats.as_dict()["analysed"] == 0
            assert room.participants[yes.participant_id].video.stats.as_dict()["analysed"] > 0
            pool = server.app.state.web.analysis.pool
            assert (pool is not None) == (processes > 0)  # MICROCUE_ANALYSIS_PROCESSES was honoured
            people = (
                await asyncio.to_thread(
                    httpx.get,
                    f"{server.base_url}/api/meetings/{m['id']}/participants",
                    headers={"Authorization": f"Bearer {m['presenter_token']}"},
                    timeout=30,
                )
            ).json()
            names = {p["display_name"]: p["consent"] for p in people}
            assert names == {"Ada": True, "Bo": False}
        finally:
            await yes.aclose()
            await no.aclose()


async def _raw(
    server: LiveServer, m: dict[str, Any], messages: list[str], token: str | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    url = f"{server.ws_url}/ws/rooms/{m['id']}/signal?token={token or m['join_token']}"
    got: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=2**22) as ws:
        try:
            got.append(json.loads(await ws.recv()))
            for text in messages:
                await ws.send(text)
                got.append(json.loads(await ws.recv()))
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        except websockets.ConnectionClosed:
            pass
        return got, ws.close_code


JOIN = json.dumps({"type": "join", "name": "Eve", "consent": True})
UNKNOWN_CODEC = (
    "v=0\r\no=- 1 1 IN IP4 10.254.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 120\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:120 FANCY/90000\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 "
    + ":".join(["AA"] * 32)
    + "\r\na=setup:actpass\r\na=rtcp-mux\r\n"
)
AUDIO_ONLY = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


@pytest.mark.parametrize(
    ("messages", "error", "code"),
    [
        ([json.dumps({"type": "offer", "sdp": "v=0\r\n"})], "before an 'offer'", 4400),
        ([JOIN, json.dumps({"type": "offer", "sdp": "hello"})], "not SDP", 4400),
        ([JOIN, json.dumps({"type": "offer", "sdp": AUDIO_ONLY})], "no video", 4400),
        ([JOIN, json.dumps({"type": "offer", "sdp": "v=0\r\nm=video x\r\n" + "a=x\r\n" * 15000})], "bytes", 4400),
        (
            [JOIN, json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nbroken"})],
            "could not be used",
            4400,
        ),
        ([JOIN, json.dumps({"type": "offer", "sdp": UNKNOWN_CODEC})], "no codec in common", 4400),
        (["{not json"], "not JSON", 4400),
        ([json.dumps({"type": "dance"})], "unknown message type", 4400),
        (["x" * 200_000], "more than", 1009),
        (
            [json.dumps({"type": "join", "name": "x", "consent": True, "resume": "me, as before"})],
            "'resume' must be",
            4400,
        ),
    ],
)
async def test_bad_signalling_is_refused_clearly_and_others_are_unaffected(
    netns: str, tmp_path: Path, messages: list[str], error: str, code: int
) -> None:
    frames = to_yuv(face_loop_frames(seconds=2.0))
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = create_meeting(server)
        good = await join_room(
            server.ws_url, m["id"], m["join_token"], name="Ok", consent=True, tracks=[SyntheticFaceTrack(frames)]
        )
        try:
            got, close_code = await _raw(server, m, messages)
            errors = [g["message"] for g in got if g.get("type") == "error"]
            assert errors and error in errors[0], got
            assert close_code == code
            assert "presence" in await cues_for(server, m, good.participant_id, {"presence"})
        finally:
            await good.aclose()


async def test_wrong_token_and_ended_meeting_are_refused(netns: str, tmp_path: Path) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = create_meeting(server)
        _, code = await _raw(server, m, [], token="not-a-token")
        assert code == 4401
        _, code = await _raw(server, m, [], token=m["presenter_token"])  # presenter token is not a join token
        assert code == 4403
        await asyncio.to_thread(
            httpx.post,
            f"{server.base_url}/api/meetings/{m['id']}/end",
            headers={"Authorization": f"Bearer {m['presenter_token']}"},
            timeout=30,
        )
        with pytest.raises(JoinRefused, match="ended"):
            await join_room(server.ws_url, m["id"], m["join_token"], name="Late", consent=True, tracks=[])


async def test_participants_see_each_other_through_the_bridge(netns: str, tmp_path: Path) -> None:
    frames = to_yuv(face_loop_frames(seconds=2.0))
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = create_meeting(server)
        first = await join_room(
            server.ws_url, m["id"], m["join_token"], name="First", consent=True, tracks=[SyntheticFaceTrack(frames)]
        )
        second = await join_room(
            server.ws_url, m["id"], m["join_token"], name="Second", consent=True, tracks=[SyntheticFaceTrack(frames)]
        )
        try:
            # each is put in the other's receive slots, without any renegotiation
            def carries(pid: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
                return lambda slots: {s["participant_id"] for s in slots.values()} == {pid}

            await second.wait_slots(carries(first.participant_id))
            await first.wait_slots(carries(second.participant_id))
            assert {s["name"] for s in first.slots.values()} == {"Second"}
            # media flows, as a grid tile: the 640x480 camera relayed to fit RELAY_BOX, aspect kept
            tile = RELAY_BOX
            frame = await asyncio.wait_for(first.received()[second.participant_id].recv(), 30)
            assert (frame.width, frame.height) == tile
            frame = await asyncio.wait_for(second.received()[first.participant_id].recv(), 30)
            assert (frame.width, frame.height) == tile
            # the first is still analysed from its one stream: no new track, no reset, one offer per connection
            assert "engagement" in await cues_for(server, m, first.participant_id, {"engagement"})
            room = server.app.state.web.rooms.rooms[m["id"]]
            stats = room.stats()
            for who in (first, second):
                assert stats[who.participant_id]["offers"] == {"publish": 1, "subscribe": 1}
                assert stats[who.participant_id]["tracks"] == 1
                assert stats[who.participant_id]["resets"] == 0
            # the second leaves: the first's slot is emptied and the second's workers are gone
            await second.aclose()
            await first.wait_slots(lambda slots: not slots)
            assert second.participant_id not in room.participants
        finally:
            await first.aclose()
            await second.aclose()


async def _next_cue_t(server: LiveServer, m: dict[str, Any], participant_id: str, after: float = -1.0) -> float:
    """Meeting time of the next cue of ``participant_id`` later than ``after`` on the live feed."""
    url = f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}"
    async with websockets.connect(url) as ws, asyncio.timeout(90):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "cue" and msg["cue"]["participant_id"] == participant_id and msg["cue"]["t"] > after:
                return float(msg["cue"]["t"])


async def test_a_restarted_service_takes_its_participants_back_as_themselves(netns: str, tmp_path: Path) -> None:
    """The service stops (uvicorn closes the signalling with 1012, "service restart") and starts
    again on the same port and database: the participant rejoins with its resume pair, keeps its
    id, and its cues continue the meeting's timeline. A wrong secret, or the right one while the
    participant is still connected, joins someone new instead."""
    frames = to_yuv(face_loop_frames(seconds=2.0))
    settings = Settings(data_dir=tmp_path)
    first = LiveServer(create_app(settings)).start()
    port, clients = first.port, []
    try:
        m = create_meeting(first)
        ada = await join_room(
            first.ws_url, m["id"], m["join_token"], name="Ada", consent=True, tracks=[SyntheticFaceTrack(frames)]
        )
        clients.append(ada)
        assert ada.resume is not None and ada.resume["participant_id"] == ada.participant_id and not ada.resumed
        forged = await join_room(
            first.ws_url,
            m["id"],
            m["join_token"],
            name="Eve",
            consent=True,
            tracks=[],
            resume={"participant_id": ada.participant_id, "secret": "guessed"},
        )
        twice = await join_room(
            first.ws_url, m["id"], m["join_token"], name="Ada", consent=True, tracks=[], resume=ada.resume
        )  # Ada is still here: nobody is analysed twice
        clients += [forged, twice]
        for other in (forged, twice):
            assert not other.resumed and other.participant_id != ada.participant_id
        before = await _next_cue_t(first, m, ada.participant_id, after=3.0)
    finally:
        first.stop()
    code, _ = await ada.closed(10.0)
    assert code == 1012, code  # "service restart": what the join page reconnects on
    with LiveServer(create_app(settings), port=port) as second:
        again = await join_room(
            second.ws_url,
            m["id"],
            m["join_token"],
            name="Ada",
            consent=True,
            tracks=[SyntheticFaceTrack(frames)],
            resume=ada.resume,
        )
        clients.append(again)
        try:
            assert again.resumed and again.participant_id == ada.participant_id
            after = await _next_cue_t(second, m, ada.participant_id)
            assert after > before, (before, after)  # the timeline goes on; it does not restart at 0
            people = (
                await asyncio.to_thread(
                    httpx.get,
                    f"{second.base_url}/api/meetings/{m['id']}/participants",
                    headers={"Authorization": f"Bearer {m['presenter_token']}"},
                    timeout=30,
                )
            ).json()
            assert sorted(p["display_name"] for p in people) == ["Ada", "Ada", "Eve"]  # Ada once, plus the two
        finally:
            for c in clients:
                await c.aclose()
