"""The Janus bot when a person leaves and comes back as a new feed, against a scripted Janus.

CI once saw a returning Chromium publisher's audio analysed but no video frame in 10 s, eight
keyframe requests notwithstanding (issue 22 follow-up). Janus (1.1, janus_videoroom.c) gives the
returning feed the m-lines it freed, with new SSRCs (media and RTX), and asks the publisher for a
keyframe only when a subscriber's first PeerConnection comes up. Checked here, on the bot's real
aiortc PeerConnection with offers shaped like Janus's: the new stream's packets and
retransmissions reach the m-line's receiver, nothing of the old stream holds the new one back,
and a keyframe is requested from the new stream as soon as Janus has the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiortc import RTCRtpReceiver, RTCRtpTransceiver
from aiortc.rtp import RtpPacket

from bridge.bus import InProcessBus
from bridge.media import worker
from bridge.media.peers import keyframe_requester
from bridge.rooms import AdapterContext
from bridge.rooms.janus import JanusAdapter
from tests.support.fakes.analyzers import FakeAnalyzer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOM = 1234
PUB, SUB = 11, 22  # the bot's two Janus handles: room events, and the one subscription
VP8, RTX, OPUS = 96, 97, 111  # the payload types Janus offers (its offer to the bot, in CI's log)
ALICE, BOB, BOB_BACK = 101, 102, 103


@dataclass(frozen=True)
class Line:
    """One m-line of a Janus subscriber offer; ``ssrc`` None: inactive (its feed left)."""

    mid: str
    kind: str
    feed: int
    ssrc: int | None = None
    rtx: int | None = None


def janus_offer(version: int, lines: list[Line]) -> str:
    """A subscriber offer as Janus 1.1 writes it (BUNDLE, sendonly, VP8 with RTX in a FID group)."""
    out = [
        "v=0",
        f"o=- 1796643684696110 {version} IN IP4 127.0.0.1",
        "s=VideoRoom 1234",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(line.mid for line in lines),
        "a=fingerprint:sha-256 " + ":".join(["9D"] * 32),
        "a=msid-semantic: WMS *",
    ]
    for line in lines:
        payloads = f"{VP8} {RTX}" if line.kind == "video" else str(OPUS)
        out += [
            f"m={line.kind} 9 UDP/TLS/RTP/SAVPF {payloads}",
            "c=IN IP4 127.0.0.1",
            "a=sendonly" if line.ssrc is not None else "a=inactive",
            f"a=mid:{line.mid}",
            "a=rtcp-mux",
            "a=ice-ufrag:hTy1",
            "a=ice-pwd:4bBpydwmgaUHNOD/nscPsP",
            "a=setup:actpass",
        ]
        if line.kind == "video":
            out += [
                f"a=rtpmap:{VP8} VP8/90000",
                f"a=rtcp-fb:{VP8} nack",
                f"a=rtcp-fb:{VP8} nack pli",
                f"a=rtpmap:{RTX} rtx/90000",
                f"a=fmtp:{RTX} apt={VP8}",
            ]
        else:
            out.append(f"a=rtpmap:{OPUS} opus/48000/2")
        if line.ssrc is not None:
            if line.rtx is not None:
                out.append(f"a=ssrc-group:FID {line.ssrc} {line.rtx}")
            out += [f"a=ssrc:{s} cname:janus" for s in (line.ssrc, line.rtx) if s is not None]
    return "\r\n".join(out) + "\r\n"


def streams(lines: list[Line]) -> list[dict[str, Any]]:
    """The ``streams`` list Janus sends with an offer (mid -> feed; a freed m-line is inactive)."""
    return [
        {"mid": line.mid, "type": line.kind, "active": line.ssrc is not None}
        | ({"feed_id": line.feed} if line.ssrc is not None else {})
        for line in lines
    ]


def publisher(feed: int, display: str) -> dict[str, Any]:
    """A ``publishers`` entry of the room: Chromium publishing audio (mid 0) and video (mid 1)."""
    return {
        "id": feed,
        "display": display,
        "streams": [{"type": "audio", "mid": "0", "codec": "opus"}, {"type": "video", "mid": "1", "codec": "vp8"}],
    }


class ScriptedJanus:
    """The two requests of the bot's subscription that carry offers (join, update) answered with the
    next scripted offer; every request and every keyframe request (PLI) in one ordered log."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, list[Line]]] = []
        self.log: list[tuple[str, Any]] = []
        self.version = 0

    async def attach(self, plugin: str = "") -> int:
        return SUB

    def offer(self, lines: list[Line]) -> tuple[dict[str, Any], dict[str, Any]]:
        self.version += 1
        return {"videoroom": "updated", "room": ROOM, "streams": streams(lines)}, {
            "type": "offer",
            "sdp": janus_offer(self.version, lines),
        }

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        self.log.append((body["request"], body))
        if body["request"] in ("join", "update"):
            data, offer = self.offer(self.offers.pop(0)[1])
            return {"janus": "event", "sender": SUB, "plugindata": {"data": data}, "jsep": offer}
        assert body["request"] == "start" and jsep is not None and jsep["type"] == "answer"
        return {"janus": "event", "sender": SUB, "plugindata": {"data": {"videoroom": "event", "started": "ok"}}}


@pytest.fixture
async def bot(netns: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[JanusAdapter, ScriptedJanus]]:
    # the worker's own watchdog must not send the keyframe request this test looks for
    monkeypatch.setattr(worker, "KEYFRAME_WAIT_S", 3600.0)
    janus = ScriptedJanus()

    async def record_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
        janus.log.append(("PLI", media_ssrc))

    monkeypatch.setattr(RTCRtpReceiver, "_send_rtcp_pli", record_pli)
    ctx = AdapterContext(
        meeting_id="m",
        bus=InProcessBus(),
        analyzer_factory=lambda: FakeAnalyzer(refuse_frames="no frames in this test"),
        consent=True,
        consent_basis="announced",
    )
    adapter = JanusAdapter(f"ws://{netns}:1", ROOM, ctx)
    adapter._session = janus  # type: ignore[assignment]
    adapter._pub = PUB
    try:
        yield adapter, janus
    finally:
        adapter._session = None
        await adapter.aclose()


def transceiver(adapter: JanusAdapter, mid: str) -> RTCRtpTransceiver:
    assert adapter._pc is not None
    return next(t for t in adapter._pc.getTransceivers() if t.mid == mid)


async def connect(adapter: JanusAdapter) -> None:
    """What aiortc does once ICE and DTLS are up (``RTCPeerConnection.__connect``): start each
    receiving transceiver's receiver with the remote description's parameters, once."""
    pc = adapter._pc
    assert pc is not None
    for t in pc.getTransceivers():
        if t.currentDirection in ("recvonly", "sendrecv"):
            await t.receiver.receive(pc._RTCPeerConnection__remoteRtp(t))  # type: ignore[attr-defined]


def routed_to(adapter: JanusAdapter, payload_type: int, ssrc: int) -> str | None:
    """The mid whose receiver an RTP packet with this SSRC and payload type reaches, if any."""
    router = transceiver(adapter, "1").receiver.transport._rtp_router
    receiver = router.route_rtp(RtpPacket(payload_type=payload_type, sequence_number=1, ssrc=ssrc))
    assert adapter._pc is not None
    return next((t.mid for t in adapter._pc.getTransceivers() if t.receiver is receiver), None)


def vp8_packet(seq: int, timestamp: int, ssrc: int, keyframe: bool = False) -> RtpPacket:
    packet = RtpPacket(payload_type=VP8, sequence_number=seq, timestamp=timestamp, ssrc=ssrc)
    # what the depayloader leaves for the jitter buffer: a VP8 frame tag (RFC 6386 9.1), a key
    # frame's with its start code
    packet._data = b"\x50\x02\x00\x9d\x01\x2a" if keyframe else b"\x01"  # type: ignore[attr-defined]
    return packet


async def test_a_returning_person_gets_a_clean_stream_and_a_keyframe_request(
    bot: tuple[JanusAdapter, ScriptedJanus],
) -> None:
    adapter, janus = bot
    alice = [Line("0", "audio", ALICE, 1001), Line("1", "video", ALICE, 1011, 1012)]
    bob = [Line("2", "audio", BOB, 2001), Line("3", "video", BOB, 2011, 2012)]
    janus.offers.append(("join", alice + bob))
    await adapter._add_feeds([publisher(ALICE, "Alice"), publisher(BOB, "Bob")])
    assert adapter._mid_feed == {"0": ALICE, "1": ALICE, "2": BOB, "3": BOB}
    await connect(adapter)
    assert routed_to(adapter, VP8, 2011) == "3"

    # every video m-line's retransmissions reach it (they share one RTX payload type)
    assert routed_to(adapter, RTX, 1012) == "1"
    assert routed_to(adapter, RTX, 2012) == "3"

    # Bob's page closes in the middle of his last frame: packet 101 never comes
    jitter = transceiver(adapter, "3").receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    for seq in (99, 100, 102):
        jitter.add(vp8_packet(seq, 9000 if seq > 99 else 6000, 2011))

    # Bob leaves; Janus's autoupdate offers his two m-lines as inactive
    await adapter._on_event({"janus": "event", "sender": PUB, "plugindata": {"data": {"unpublished": BOB}}})
    gone = [Line("2", "audio", BOB), Line("3", "video", BOB)]
    data, offer = janus.offer(alice + gone)
    await adapter._on_event({"janus": "event", "sender": SUB, "plugindata": {"data": data}, "jsep": offer})
    assert adapter._mid_feed == {"0": ALICE, "1": ALICE}

    # Bob comes back: a new feed, which Janus puts on the freed m-lines with new SSRCs
    back = [Line("2", "audio", BOB_BACK, 3001), Line("3", "video", BOB_BACK, 3011, 3012)]
    janus.offers.append(("update", alice + back))
    janus.log.clear()
    await adapter._on_event(
        {"janus": "event", "sender": PUB, "plugindata": {"data": {"publishers": [publisher(BOB_BACK, "Bob")]}}}
    )
    update = janus.log[0][1]
    assert update == {
        "request": "update",
        "subscribe": [{"feed": BOB_BACK, "mid": "0"}, {"feed": BOB_BACK, "mid": "1"}],
    }
    assert adapter._mid_feed["3"] == BOB_BACK
    assert adapter.participants[str(BOB_BACK)].video.attached

    # the new stream's packets and retransmissions reach mid 3; the old stream is forgotten
    assert routed_to(adapter, VP8, 3011) == "3"
    assert routed_to(adapter, RTX, 3012) == "3"
    assert routed_to(adapter, VP8, 2011) is None
    rtx_map = transceiver(adapter, "3").receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
    assert rtx_map == {3012: 3011}

    # Janus continues the sequence numbers: the new stream's first frame comes out at once,
    # not after the old stream's missing packet 101 times out of a 512-packet buffer
    jitter = transceiver(adapter, "3").receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    assert jitter.add(vp8_packet(103, 12000, 3011, keyframe=True)) == (False, None)
    _, frame = jitter.add(vp8_packet(104, 15000, 3011))
    assert frame is not None and frame.timestamp == 12000

    # once Janus has the answer (the stream is relayed from then on), a keyframe is requested
    # from the new stream only: not the old one, not the retransmission stream
    requests = [what for what, _ in janus.log]
    assert requests == ["update", "start", "PLI"], janus.log
    assert janus.log[-1] == ("PLI", 3011)


async def test_a_stream_stalled_behind_a_lost_packet_restarts_on_the_watchdogs_request(
    bot: tuple[JanusAdapter, ScriptedJanus],
) -> None:
    """A packet that never comes (its retransmission lost too) held every later frame back,
    requested keyframes included, until 512 more packets had arrived: the watchdog's request
    now empties the buffer, so the keyframe it asks for decodes."""
    adapter, janus = bot
    janus.offers.append(("join", [Line("0", "audio", ALICE, 1001), Line("1", "video", ALICE, 1011, 1012)]))
    await adapter._add_feeds([publisher(ALICE, "Alice")])
    await connect(adapter)
    receiver = transceiver(adapter, "1").receiver
    stalled = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    for seq, timestamp in ((10, 3000), (11, 6000), (13, 6000), (14, 9000)):  # 12 is lost for good
        stalled.add(vp8_packet(seq, timestamp, 1011))
    assert stalled.add(vp8_packet(15, 12000, 1011)) == (False, None), "frames wait behind the hole"

    janus.log.clear()
    assert await keyframe_requester(transceiver(adapter, "1"))() == 1
    assert janus.log == [("PLI", 1011)]  # the media SSRC, not the retransmission stream's

    jitter = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    jitter.add(vp8_packet(16, 15000, 1011))  # sent before the keyframe: predicted from the lost frame
    assert jitter.add(vp8_packet(17, 18000, 1011, keyframe=True)) == (False, None), "not decoded"
    _, frame = jitter.add(vp8_packet(18, 21000, 1011))  # the keyframe asked for comes out
    assert frame is not None and frame.timestamp == 18000
