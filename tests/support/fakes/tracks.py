"""aiortc media tracks (``MediaStreamTrack``) standing in for a participant's camera and
microphone: what a worker reads, or what a test's publisher sends over a real peer."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame

from inference.voice import SAMPLE_RATE

#: RTP's clock for video (RFC 3551): the time base of every frame a camera sends.
VIDEO_CLOCK_RATE = 90000
#: Milliseconds of sound in one frame: WebRTC's Opus packets carry 20 ms.
AUDIO_FRAME_MS = 20


class FakeCamera(MediaStreamTrack):
    """Grey frames at ``fps`` (or, given ``source``, that track's frames) while ``flowing`` is set.

    ``size`` may change mid-stream (a new resolution). ``flowing`` cleared is a paused camera
    that sends nothing at all; ``flowing=False`` at the start is a camera that is announced
    but sends nothing until set (a publisher whose keyframe never came), or ever (a silent one).
    ``stop()`` ends the track.
    """

    kind = "video"

    def __init__(
        self,
        fps: float = 30.0,
        size: tuple[int, int] = (320, 240),
        *,
        source: MediaStreamTrack | None = None,
        flowing: bool = True,
    ) -> None:
        super().__init__()
        self.fps = fps
        self.size = size
        self.source = source
        self.flowing = asyncio.Event()
        if flowing:
            self.flowing.set()
        self._n = 0
        self._t0 = time.monotonic()

    async def recv(self) -> Frame | av.Packet:
        if self.source is not None:
            await self.flowing.wait()
            return await self.source.recv()
        if self.readyState != "live":
            raise MediaStreamError
        if not self.flowing.is_set():
            await self.flowing.wait()
            self._n, self._t0 = 0, time.monotonic()
        self._n += 1
        await asyncio.sleep(max(0.0, self._t0 + self._n / self.fps - time.monotonic()))
        if self.readyState != "live":
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(np.full((self.size[1], self.size[0], 3), 128, np.uint8), format="rgb24")
        frame.pts = int(self._n * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class FakeMic(MediaStreamTrack):
    """``samples`` (16 kHz mono int16) in 20 ms frames paced in real time, then no packets at
    all: silence as WebRTC delivers it (DTX, a muted mic).

    ``garbled``: every 20 ms a frame the resampler cannot take (a video frame on an audio track).
    """

    kind = "audio"

    def __init__(self, samples: np.ndarray | None = None, *, garbled: bool = False) -> None:
        super().__init__()
        self.samples = np.zeros(0, np.int16) if samples is None else samples
        self.garbled = garbled
        self.pos = 0
        self.t0: float | None = None

    async def recv(self) -> av.AudioFrame | av.VideoFrame:
        if self.garbled:
            await asyncio.sleep(AUDIO_FRAME_MS / 1000)
            return av.VideoFrame(16, 16, "rgb24")
        loop = asyncio.get_running_loop()
        self.t0 = loop.time() if self.t0 is None else self.t0
        if self.pos >= len(self.samples):
            await asyncio.Event().wait()  # silence as WebRTC delivers it: nothing
        chunk = self.samples[self.pos : self.pos + SAMPLE_RATE * AUDIO_FRAME_MS // 1000]
        await asyncio.sleep(max(0.0, self.t0 + self.pos / SAMPLE_RATE - loop.time()))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.pos
        self.pos += len(chunk)
        return frame
