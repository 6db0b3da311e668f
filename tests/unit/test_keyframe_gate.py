"""KeyframeGate: after a break in a received video stream, the decoder sees nothing until a keyframe.

Frames come from aiortc's own encoders and depayloaders (VP8 and H.264), as the receive path has
them; the gate is installed on a real aiortc receiver through the private attributes the
bridge reaches into, so an aiortc upgrade that renames them fails here."""

from __future__ import annotations

import fractions
import threading

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs import depayload, get_encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from bridge.media.peers import KeyframeGate, fresh_receive_buffer, gate_until_keyframe, is_keyframe

pytestmark = pytest.mark.unit

CODECS = {
    "VP8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "H264": RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=102,
        parameters={"packetization-mode": "1", "level-asymmetry-allowed": "1", "profile-level-id": "42e01f"},
    ),
}


def _frames(n: int) -> list[av.VideoFrame]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = np.full((240, 320, 3), 90, np.uint8)
        img[60 + i : 120 + i, 100:180] = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        out.append(frame)
    return out


def _packets(name: str, n: int) -> list[list[RtpPacket]]:
    """n encoded frames as RTP packets (depayloaded like aiortc's receiver does), a list per frame."""
    codec = CODECS[name]
    encoder = get_encoder(codec)
    seq, out = 1000, []
    for i, frame in enumerate(_frames(n)):
        payloads, _ = encoder.encode(frame, force_keyframe=(i == 0))
        packets = []
        for k, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=codec.payloadType, sequence_number=seq, timestamp=i * 3000)
            packet.marker = int(k == len(payloads) - 1)
            packet.payload = payload
            packet._data = depayload(codec, payload)  # type: ignore[attr-defined]
            packets.append(packet)
            seq += 1
        out.append(packets)
    return out


def _feed(buffer: JitterBuffer, frames: list[list[RtpPacket]]) -> list[int]:
    """RTP timestamps of the frames the buffer hands to the decoder."""
    out = []
    for packets in frames:
        for packet in packets:
            _, frame = buffer.add(packet)
            if frame is not None:
                out.append(frame.timestamp)
    return out


@pytest.mark.parametrize("name", ["VP8", "H264"])
def test_only_the_first_frame_of_an_encoded_stream_is_a_keyframe(name: str) -> None:
    frames = _packets(name, 6)
    whole = [b"".join(p._data for p in packets) for packets in frames]  # type: ignore[attr-defined]
    assert [is_keyframe(data) for data in whole] == [True] + [False] * 5


def test_non_video_bytes_are_not_keyframes() -> None:
    assert not is_keyframe(b"")
    assert not is_keyframe(b"\x01\x02")
    assert not is_keyframe(b"\x00\x00\x01\x01" + bytes(20))  # an H.264 non-IDR slice


@pytest.mark.parametrize("name", ["VP8", "H264"])
def test_a_waiting_gate_drops_frames_until_the_next_keyframe(name: str) -> None:
    first, second = _packets(name, 4), _packets(name, 4)
    stream = first[1:] + second  # from mid-stream: three deltas, then a new keyframe and its deltas
    seq = 1000
    for i, packets in enumerate(stream):
        for p in packets:
            p.sequence_number, seq = seq, seq + 1
            p.timestamp = 37 * 3000 + i * 3000
    gate = KeyframeGate(capacity=512, is_video=True, waiting=True)
    released = _feed(gate, stream)
    # a frame is released when the next one's first packet arrives: the last one stays in the buffer
    assert released == [40 * 3000 + 3000 * i for i in range(3)]  # the keyframe and two deltas after it
    assert gate.held_back == 3  # the three deltas before it, each reassembled and dropped
    assert not gate.waiting


def test_a_decode_error_closes_the_gate_until_a_keyframe() -> None:
    frames = _packets("VP8", 5)
    error = threading.Event()
    gate = KeyframeGate(capacity=512, is_video=True, decode_error=error)
    assert _feed(gate, frames[:3]) == [0, 3000]
    error.set()  # aiortc's decoder thread failed on a frame
    assert _feed(gate, frames[3:]) == []
    assert gate.waiting


async def test_gate_installs_on_a_real_receiver_and_keeps_what_it_holds() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        old = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        frames = _packets("VP8", 2)
        _feed(old, frames[:1])  # the keyframe sits in the buffer
        gate_until_keyframe(receiver)
        gate = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        assert isinstance(gate, KeyframeGate) and not gate.waiting
        assert gate.decode_error is receiver._RTCRtpReceiver__decoder_error  # type: ignore[attr-defined]
        assert gate.capacity == old.capacity
        assert _feed(gate, frames[1:]) == [0]  # the keyframe held before the swap comes out
        fresh_receive_buffer(receiver)
        fresh = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        assert isinstance(fresh, KeyframeGate) and fresh.waiting and fresh is not gate
    finally:
        await pc.close()
