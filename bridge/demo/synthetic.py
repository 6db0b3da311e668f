"""A synthetic participant's camera: a real face video, rendered once, paced in real time.

Used by ``microcue demo``, the WebRTC tests and ``bench/bridge_load.py``. As in
aiortc's ``examples/videostream-cli`` (``FlagVideoStreamTrack``) all frames are
rendered up front and ``recv()`` only paces them with ``next_timestamp()``, so the
publisher costs nothing but the encoder and its timing is exact. Frames are kept
as shared read-only YUV arrays: many publishers in one process share one copy.

:class:`EncodedFaceTrack` goes one step further for many publishers in one
process (load benchmarks): the loop is VP8-encoded once and its packets are
replayed, so a publisher costs almost no CPU and the machine measures the bridge,
not the senders.

An optional frame index can be drawn into a corner strip (:func:`read_index`
recovers it after a lossy codec round trip) so a benchmark can measure
frame-to-cue latency across processes.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable, Sequence

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

from bridge.demo.scene import Pose, render

#: RTP video clock (RFC 3551); aiortc's encoders expect this time base.
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
#: Replayed VP8 stream: a keyframe every second at 15 fps, so a receiver that joins or loses a
#: packet recovers within a second (a replayed stream cannot answer a keyframe request).
KEYFRAME_EVERY = 15
#: ~1 Mbit/s: what browsers send for 640x480 at 15 fps on a good link.
REPLAY_BITRATE = 1_000_000
#: Index strip: INDEX_BITS blocks of INDEX_BLOCK x INDEX_BLOCK pixels, black or white, along the
#: bottom-left edge. 16-pixel blocks survive VP8/H.264 at webcam bitrates with margin.
INDEX_BITS = 12
INDEX_BLOCK = 16
_WHITE = 235  # studio-swing luma extremes, what an encoder preserves best
_BLACK = 16
_LUMA_THRESHOLD = 128


def face_loop_frames(seconds: float = 4.0, fps: float = 15.0) -> list[np.ndarray]:
    """RGB 640x480 frames of a real face (the astronaut photograph) with gentle head motion, looping seamlessly."""
    n = max(1, round(seconds * fps))
    frames = []
    for i in range(n):
        phase = 2 * math.pi * i / n  # one full cycle per loop: no jump at the seam
        frames.append(render(Pose(dx=12 * math.sin(phase), dy=6 * math.sin(2 * phase), angle=4 * math.sin(phase))))
    return frames


def draw_index(yuv: np.ndarray, index: int, width: int) -> None:
    """Write ``index`` (mod 2**INDEX_BITS) into the luma plane of a yuv420p array (in place)."""
    height = yuv.shape[0] * 2 // 3
    y0 = height - INDEX_BLOCK
    for bit in range(INDEX_BITS):
        x0 = bit * INDEX_BLOCK
        if x0 + INDEX_BLOCK > width:
            raise ValueError(f"frame width {width} too small for a {INDEX_BITS}-bit index strip")
        value = _WHITE if (index >> bit) & 1 else _BLACK
        yuv[y0 : y0 + INDEX_BLOCK, x0 : x0 + INDEX_BLOCK] = value


def read_index(rgb: np.ndarray) -> int:
    """The index drawn by :func:`draw_index`, read back from a decoded RGB frame."""
    height = rgb.shape[0]
    y0 = height - INDEX_BLOCK
    index = 0
    margin = INDEX_BLOCK // 4  # sample block centres: edges bleed after compression
    for bit in range(INDEX_BITS):
        x0 = bit * INDEX_BLOCK
        block = rgb[y0 + margin : y0 + INDEX_BLOCK - margin, x0 + margin : x0 + INDEX_BLOCK - margin]
        if float(block.mean()) > _LUMA_THRESHOLD:
            index |= 1 << bit
    return index


def to_yuv(frames: Sequence[np.ndarray], *, stamp_index: bool = False) -> list[np.ndarray]:
    """RGB frames -> read-only yuv420p arrays (what the encoder wants), optionally index-stamped."""
    out = []
    for i, rgb in enumerate(frames):
        yuv = (
            av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            .reformat(format="yuv420p")
            .to_ndarray()
        )
        if stamp_index:
            draw_index(yuv, i, rgb.shape[1])
        yuv.setflags(write=False)
        out.append(yuv)
    return out


class _Pacer:
    """Wall-clock pacing shared by the synthetic tracks: frame ``index`` is due at ``start + index / fps``.

    Anchored on the first frame, so there is no drift and no burst after a stall.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.index = 0
        self._started_at: float | None = None

    async def next(self) -> int:
        """Wait until the next frame is due; its index (0 for the first)."""
        if self._started_at is None:
            self._started_at = time.time()
        else:
            self.index += 1
            wait = self._started_at + self.index / self.fps - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        return self.index

    @property
    def pts(self) -> int:
        """The current frame's timestamp on the 90 kHz RTP video clock."""
        return round(self.index * VIDEO_CLOCK_RATE / self.fps)


class SyntheticFaceTrack(VideoStreamTrack):
    """Loops pre-rendered yuv420p frames at ``fps``; ``on_sent(index, perf_counter)`` per frame."""

    def __init__(
        self, yuv_frames: Sequence[np.ndarray], fps: float = 15.0, on_sent: Callable[[int, float], None] | None = None
    ) -> None:
        super().__init__()
        if not yuv_frames:
            raise ValueError("a synthetic track needs at least one frame")
        self.frames = list(yuv_frames)
        self.fps = fps
        self.on_sent = on_sent
        self.sent = 0
        self._pacer = _Pacer(fps)

    async def next_timestamp(self) -> tuple[int, fractions.Fraction]:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacer.next()
        return self._pacer.pts, VIDEO_TIME_BASE

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        i = self._pacer.index % len(self.frames)
        frame = av.VideoFrame.from_ndarray(self.frames[i], format="yuv420p")
        frame.pts = pts
        frame.time_base = time_base
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent(i, time.perf_counter())
        return frame


def encode_vp8(
    yuv_frames: Sequence[np.ndarray],
    fps: float = 15.0,
    *,
    bitrate: int = REPLAY_BITRATE,
    keyframe_every: int = KEYFRAME_EVERY,
) -> list[bytes]:
    """Encode yuv420p frames once to VP8 packets (the first a keyframe) for :class:`EncodedFaceTrack`."""
    height, width = yuv_frames[0].shape[0] * 2 // 3, yuv_frames[0].shape[1]
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
    ctx.framerate = fractions.Fraction(fps).limit_denominator(1001)
    ctx.bit_rate = bitrate
    ctx.gop_size = keyframe_every
    ctx.options = {"deadline": "realtime", "cpu-used": "4", "lag-in-frames": "0", "kf-max-dist": str(keyframe_every)}
    packets: list[bytes] = []
    for i, yuv in enumerate(yuv_frames):
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = round(i * VIDEO_CLOCK_RATE / fps)
        frame.time_base = ctx.time_base
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    if len(packets) != len(yuv_frames):
        raise RuntimeError(f"VP8 encoder returned {len(packets)} packets for {len(yuv_frames)} frames")
    return packets


class EncodedFaceTrack(MediaStreamTrack):
    """Replays pre-encoded VP8 packets at ``fps`` with ever-increasing timestamps (looping).

    Pair it with a VP8-only transceiver (``prefer_codec(pc, "video", "video/VP8")``): aiortc
    packetizes the packets as they are, with no encoder in the loop.
    """

    kind = "video"

    def __init__(
        self, packets: Sequence[bytes], fps: float = 15.0, on_sent: Callable[[int, float], None] | None = None
    ) -> None:
        super().__init__()
        if not packets:
            raise ValueError("an encoded track needs at least one packet")
        self.packets = list(packets)
        self.fps = fps
        self.on_sent = on_sent
        self.sent = 0
        self._pacer = _Pacer(fps)

    async def recv(self) -> av.Packet:  # a packet track: aiortc sends its packets as they are
        if self.readyState != "live":
            raise MediaStreamError
        i = await self._pacer.next() % len(self.packets)
        packet = av.Packet(self.packets[i])
        packet.pts = self._pacer.pts
        packet.time_base = VIDEO_TIME_BASE
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent(i, time.perf_counter())
        return packet
