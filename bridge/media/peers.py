"""Owns every RTCPeerConnection of a process: created here, closed on failure, all closed at shutdown.

aiortc's ``examples/server/server.py`` lifecycle, kept in one object instead of a
module global: a set of live peers, a ``connectionstatechange`` handler that closes
a failed one, and ``aclose()`` that closes them all with ``gather``. Tracks nobody
analyses are sent to ``MediaBlackhole`` so their unbounded receive queues are
drained (docs/sources.md "WebRTC and meeting servers").
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.contrib.media import MediaBlackhole
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from bridge.media import consent
from bridge.tasks import cancel_and_wait

log = logging.getLogger("microcue.peers")

consent.install()  # every peer connection of the bridge keeps consent under load (bridge.media.consent)

#: States after which a peer connection never recovers (W3C RTCPeerConnectionState).
DEAD_STATES = frozenset({"failed", "closed"})
#: How long ICE + DTLS may take before a connection that never completes is closed. Host
#: candidates on one network connect in well under a second; 15 s covers a busy 2-core CI box.
CONNECT_TIMEOUT_S = 15.0


def peer_configuration() -> RTCConfiguration:
    """No STUN/TURN: aiortc would otherwise default to a public STUN server and wait for it.
    The bridge and the meeting server share a network (or a test namespace).

    ``max-bundle``: every media section on the first one's transport. Under aiortc's default
    (``balanced``) a remote offer with two video sections (Janus subscribing us to two people,
    a browser offering receive slots) puts the second video section on the first video
    section's *provisional* transport and marks it bundled, so the BUNDLE step never moves it
    to the real one: its receiver never starts and its packets, unknown by SSRC, are routed by
    payload type into the other person's receiver (aiortc issue #1414). Janus and browsers
    always bundle, so nothing is lost by insisting."""
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def prefer_codec(pc: RTCPeerConnection, kind: str, mime_type: str) -> None:
    """Restrict every ``kind`` transceiver of ``pc`` to one codec (e.g. ``video/H264``) before an offer."""
    codecs = [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == mime_type.lower()]
    if not codecs:
        raise ValueError(f"aiortc has no {mime_type} codec for {kind}")
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            transceiver.setCodecPreferences(codecs)


KeyframeRequest = Callable[[], Awaitable[int]]


class KeyframeRecovery:
    """What the worker's watchdog holds for one received video track.

    Called when no frame has come out of the track for a while: empties the receiver's jitter
    buffer (whatever it holds sits behind a packet that will not come, and would hold the
    requested keyframe back too; ``fresh_receive_buffer``) and asks the sender for a keyframe
    (``request_keyframe``); returns how many requests went out. Built, it gates the receiver's
    decoder (``gate_until_keyframe``), the other half of that recovery: nothing decoded against
    a lost frame reaches the analyzer. ``receiving`` tells a stalled decoder (packets still
    arrive) from a camera that stopped sending."""

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        self.transceiver = transceiver
        gate_until_keyframe(transceiver.receiver)

    async def __call__(self) -> int:
        fresh_receive_buffer(self.transceiver.receiver)
        return await request_keyframe(self.transceiver)

    def receiving(self, within_s: float) -> bool:
        """Whether video packets reached the receiver in the last ``within_s`` seconds."""
        gate = getattr(self.transceiver.receiver, "_RTCRtpReceiver__jitter_buffer", None)
        return isinstance(gate, KeyframeGate) and time.monotonic() - gate.last_packet_at < within_s


def keyframe_requester(transceiver: RTCRtpTransceiver) -> KeyframeRecovery:
    """The worker's watchdog call for ``transceiver``'s video (``KeyframeRecovery``)."""
    return KeyframeRecovery(transceiver)


async def request_keyframe(transceiver: RTCRtpTransceiver) -> int:
    """Ask the sender of ``transceiver``'s video for a keyframe: one PLI (RFC 4585 6.3.1) per
    media SSRC received on it or announced for it; returns how many went out.

    Only PLI: aiortc does not negotiate ``ccm fir`` (RFC 5104) for its video codecs, so FIR
    would never be "negotiated" with an aiortc answer. aiortc sends a PLI by itself only after a
    decode error or a jitter-buffer overflow; a stream whose first keyframe never comes (or
    stalls) gets nothing.
    """
    receiver = transceiver.receiver
    ssrcs = {source.source for source in receiver.getSynchronizationSources()}
    # before any packet: the SSRCs the remote description announced for this receiver
    router = getattr(receiver.transport, "_rtp_router", None)
    if router is not None:
        ssrcs |= {ssrc for ssrc, owner in router.ssrc_table.items() if owner is receiver}
    # not the retransmission (RTX) stream: the sender answers a PLI on the media SSRC
    ssrcs -= set(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}))
    for ssrc in ssrcs:
        await receiver._send_rtcp_pli(ssrc)
    if log.isEnabledFor(logging.DEBUG):  # what reached this receiver, to tell "no keyframe" from "no RTP"
        streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", {})
        log.debug(
            "PLI on mid %s to SSRC(s) %s; RTP packets received per SSRC: %s",
            transceiver.mid,
            sorted(ssrcs),
            {ssrc: getattr(stats, "packets_received", "?") for ssrc, stats in streams.items()},
        )
    return len(ssrcs)


#: RFC 6386 9.1: bytes 3-5 of a VP8 key frame
VP8_START_CODE = b"\x9d\x01\x2a"
VP8_START_AT, VP8_START_END = 3, 6
#: ITU-T H.264 table 7-1: coded slice of an IDR picture, sequence parameter set
H264_KEY_NAL_TYPES = frozenset({5, 7})


def is_keyframe(data: bytes) -> bool:
    """Whether a reassembled video frame (aiortc's depayloaded bytes) starts a decodable stream.

    VP8 (RFC 6386 9.1): the frame tag's first bit is 0 for a key frame, whose 3-byte tag is
    followed by the start code 9d 01 2a. H.264 (aiortc emits Annex B): an IDR slice
    (NAL type 5) or a sequence parameter set (7), which a sender puts before its IDR."""
    if len(data) >= VP8_START_END and data[VP8_START_AT:VP8_START_END] == VP8_START_CODE:
        return not data[0] & 0x01
    start = data.find(b"\x00\x00\x01")
    while 0 <= start < len(data) - 3:
        if data[start + 3] & 0x1F in H264_KEY_NAL_TYPES:
            return True
        start = data.find(b"\x00\x00\x01", start + 3)
    return False


class KeyframeGate(JitterBuffer):
    """aiortc's video jitter buffer, passing nothing to the decoder from a break in the stream
    until the next keyframe.

    aiortc decodes every frame it reassembles, also after its buffer skipped packets that never
    came (an overflow), after a frame failed to decode, and after ``fresh_receive_buffer``: the
    decoder then predicts from a picture it never had and hands out smeared blocks until a
    keyframe arrives. Three chromium participants on a loaded 2-core bridge showed such frames
    for 0.3-0.5 s after each stall, read by face detection as "no face in view" and by the
    spotter as motion. aiortc asks the sender for a keyframe itself on those breaks (PLI), and
    the worker's watchdog asks again when none comes (``keyframe_requester``)."""

    def __init__(
        self,
        capacity: int,
        prefetch: int = 0,
        is_video: bool = False,
        *,
        decode_error: threading.Event | None = None,
        waiting: bool = False,
    ) -> None:
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        #: set by aiortc's decoder thread when a frame fails to decode (read before aiortc clears it)
        self.decode_error = decode_error
        self.waiting = waiting
        self.held_back = 0  # frames not decoded while waiting for a keyframe
        self.last_packet_at = time.monotonic()

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.last_packet_at = time.monotonic()
        skipped, frame = super().add(packet)
        if skipped or (self.decode_error is not None and self.decode_error.is_set()):
            self.waiting = True
        if frame is not None and self.waiting:
            if not is_keyframe(frame.data):
                self.held_back += 1
                return skipped, None
            self.waiting = False
        return skipped, frame


def gate_until_keyframe(receiver: RTCRtpReceiver, *, waiting: bool = False) -> None:
    """Give a video receiver a ``KeyframeGate`` in place of its jitter buffer, keeping the packets
    it holds (``waiting``: drop frames until a keyframe from now on). No-op for audio."""
    old = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    if not isinstance(old, JitterBuffer) or not old._is_video:
        return
    gate = KeyframeGate(
        old.capacity,
        prefetch=old._prefetch,
        is_video=True,
        decode_error=getattr(receiver, "_RTCRtpReceiver__decoder_error", None),
        waiting=waiting or (isinstance(old, KeyframeGate) and old.waiting),
    )
    if not waiting:  # keep what the old buffer holds: the frames it will release are whole
        gate._origin, gate._packets = old._origin, old._packets
    if isinstance(old, KeyframeGate):  # an emptied buffer has not heard from the sender since
        gate.last_packet_at, gate.held_back = old.last_packet_at, old.held_back
    receiver._RTCRtpReceiver__jitter_buffer = gate  # type: ignore[attr-defined]


def fresh_receive_buffer(receiver: RTCRtpReceiver) -> None:
    """Empty a receiver's jitter buffer and NACK state (same size and kind).

    aiortc's video jitter buffer hands out frames in sequence order only and keeps everything
    behind a missing packet until 512 packets have arrived (about 10 s of a 15 fps camera),
    keyframes included; the NACK generator asks for a lost packet again only when another loss
    happens. A stream stalled behind a packet that never came (its retransmission lost too, or
    asked for after Janus dropped it from its history, or a reused m-line's old stream cut off)
    thus stays stalled however many keyframes are requested. Emptied, the buffer starts from the
    next packet and the requested keyframe decodes; the frames before it are not decoded
    (``KeyframeGate``). aiortc has no public call for this."""
    old = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    if isinstance(old, JitterBuffer):
        if old._is_video:
            gate_until_keyframe(receiver, waiting=True)
        else:
            receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(  # type: ignore[attr-defined]
                capacity=old.capacity, prefetch=old._prefetch, is_video=False
            )
    nacks = getattr(receiver, "_RTCRtpReceiver__nack_generator", None)
    if nacks is not None:
        receiver._RTCRtpReceiver__nack_generator = type(nacks)()  # type: ignore[attr-defined]


class PeerSet:
    """The peer connections of one bridge process (or one meeting adapter)."""

    def __init__(self) -> None:
        self._peers: set[RTCPeerConnection] = set()
        self._blackholes: set[MediaBlackhole] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.failed = 0
        #: connections ever created here (tests count them: one per direction per participant)
        self.created = 0

    def __len__(self) -> int:
        return len(self._peers)

    def __iter__(self) -> Iterable[RTCPeerConnection]:
        return iter(set(self._peers))

    def create(self, name: str = "peer") -> RTCPeerConnection:
        pc = RTCPeerConnection(configuration=peer_configuration())
        self._peers.add(pc)
        self.created += 1

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.info("%s connection state %s", name, state)
            if state == "failed":
                self.failed += 1
                await self.close(pc)

        return pc

    async def close(self, pc: RTCPeerConnection) -> None:
        """Close one peer (idempotent); its remote tracks end, so their workers see the end."""
        self._peers.discard(pc)
        try:
            await pc.close()
        except Exception:
            log.exception("closing a peer connection failed")

    def blackhole(self, track: MediaStreamTrack) -> None:
        """Drain a track we do not analyse (audio without VAD, a consent-less relay...)."""
        sink = MediaBlackhole()
        sink.addTrack(track)
        self._blackholes.add(sink)
        task = asyncio.create_task(sink.start(), name=f"blackhole-{track.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Close every peer and sink; safe to call twice."""
        peers, self._peers = list(self._peers), set()
        await asyncio.gather(*(pc.close() for pc in peers), return_exceptions=True)
        sinks, self._blackholes = list(self._blackholes), set()
        await asyncio.gather(*(s.stop() for s in sinks), return_exceptions=True)
        await cancel_and_wait(*self._tasks)


async def wait_connected(pc: RTCPeerConnection, within: float = CONNECT_TIMEOUT_S) -> None:
    """Wait until ICE + DTLS complete; raise TimeoutError (ICE never completes) or ConnectionError."""
    done = asyncio.Event()

    def check() -> None:
        if pc.connectionState == "connected" or pc.connectionState in DEAD_STATES:
            done.set()

    pc.on("connectionstatechange", check)
    try:
        check()
        await asyncio.wait_for(done.wait(), within)
    finally:
        pc.remove_listener("connectionstatechange", check)
    if pc.connectionState != "connected":
        raise ConnectionError(f"peer connection ended in state {pc.connectionState!r}")


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """In-process offer/answer between two local peers (tests, benchmarks, built-in rooms).

    aiortc gathers all candidates before ``setLocalDescription`` returns, so the SDPs carry them.
    """
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


#: The RTP header extension aiortc's receive-side bandwidth estimate (REMB) is fed from.
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def without_receive_estimate(answer: str) -> str:
    """``answer`` without the abs-send-time extension, so the sender gets no REMB from us.

    aiortc estimates the bandwidth from when packets reach its Python event loop, so the
    bridge's own CPU stalls read as network queueing: the estimate falls, the participant's
    browser lowers its bitrate and, keeping its resolution as the join page asks, its frame
    rate. Three chromium participants on a busy 2-core bridge were seen sending 7-8 fps where
    the bridge had room for 14-15 (tests/e2e/test_builtin_browsers.py). Without REMB the
    browser relies on its loss-based estimate from our RTCP receiver reports, which a slow
    event loop does not distort."""
    return "".join(
        line
        for line in answer.splitlines(keepends=True)
        if not (line.startswith("a=extmap:") and ABS_SEND_TIME in line)
    )
