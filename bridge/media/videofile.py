"""Decoding a video file into RGB frames with media timestamps, with errors a person can act on.

Decoding runs in its own thread with a small bounded queue so it overlaps with inference
(the other core) without buffering the whole file; on a single CPU it runs inline.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from bridge.errors import MicroCueError

# Frames decoded ahead of the analyzer: enough to hide decode jitter, small enough to bound memory
# (8 x 1080p RGB = 50 MB).
READ_AHEAD_FRAMES = 8
# Fewer decoded frames than this share of the announced count means the file was cut short.
TRUNCATED_SHARE = 0.9


class VideoError(MicroCueError):
    """The file cannot be analysed; the message says why and what to do."""

    exit_code = 4


class TruncatedVideo(VideoError):
    """Decoding stopped before the end the container announced; frames before it are usable."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    path: Path
    codec: str
    width: int
    height: int
    fps: float
    frames: int | None  # as announced by the container; None when it does not say


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int
    t: float
    rgb: np.ndarray


def probe(path: Path) -> VideoInfo:
    """Open the container and check there is a decodable video stream, before any work starts."""
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # the container names a codec no decoder handles
                raise VideoError(
                    f"{path}: the video codec is not supported (no decoder in this FFmpeg build); "
                    "convert the file to H.264, VP8/VP9 or HEVC first"
                )
            codec = stream.codec_context.name
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            return VideoInfo(
                path=path,
                codec=codec,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=float(rate) if rate else 0.0,
                frames=stream.frames or None,
            )
    except VideoError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: cannot be read as a video ({_reason(exc)}); is it corrupt or truncated?") from exc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@dataclass
class _DecodeEnd:
    frames: int
    bad_packets: int
    first_error: str | None


#: libav's colour range value for full-range ("JPEG") YUV; OpenCV's I420 conversion assumes the
#: limited range that camera and web video use (and that swscale assumes when a file says nothing).
_FULL_RANGE = 2


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB uint8 (H, W, 3).

    Limited-range 4:2:0 (what H.264/VP8/VP9 cameras and web video send) is converted by OpenCV
    from the decoder's planes (BT.601, as swscale does for unlabelled video) in one pass with no
    intermediate frame; profiled on a 640x480 clip at 0.17 ms for swscale's rgb24 against
    0.08 ms. Anything else (full range, 4:4:4, odd sizes, 10 bit) goes through swscale.
    """
    if (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and getattr(frame, "color_range", 0) != _FULL_RANGE
    ):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def _decode_items(path: Path, stop: threading.Event, fps: float) -> Iterator[object]:
    """Decoded frames, then one ``_DecodeEnd`` (or the exception that stopped decoding).

    Packet by packet so one corrupt packet costs its frame, not the rest of the file.
    (Decoding the whole stream in one call with frame threading raised on the first bad packet
    before handing back the good frames decoded ahead of it: a half-cut file gave 0 frames.)
    """
    index = bad = 0
    first_error: str | None = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    bad += 1
                    first_error = first_error or _reason(exc)
                    continue
                for frame in frames:
                    t = float(frame.time) if frame.time is not None else (index / fps if fps else float(index))
                    yield DecodedFrame(index, t, to_rgb(frame))
                    index += 1
    except av.error.FFmpegError as exc:  # the container itself broke off
        bad += 1
        first_error = first_error or _reason(exc)
    except Exception as exc:  # handed to the consumer, which re-raises it in its own thread
        yield exc
        return
    yield _DecodeEnd(index, bad, first_error)


def _decode(path: Path, out: queue.Queue[object], stop: threading.Event, fps: float) -> None:
    for item in _decode_items(path, stop, fps):
        out.put(item)


def _one_cpu() -> bool:
    """This process may run on one CPU only (``taskset``, a container limit): a decode thread
    would then only add thread switches (and GIL hand-offs), never overlap."""
    try:
        return len(os.sched_getaffinity(0)) == 1
    except (AttributeError, OSError):  # no affinity API (macOS)
        return (os.cpu_count() or 1) == 1


def read_frames(info: VideoInfo) -> Iterator[DecodedFrame]:
    """Yield every frame in decode order; raises TruncatedVideo / VideoError at the point of failure."""
    q: queue.Queue[object] = queue.Queue(maxsize=READ_AHEAD_FRAMES)
    stop = threading.Event()
    worker: threading.Thread | None = None
    if _one_cpu():
        items: Iterator[object] = _decode_items(info.path, stop, info.fps)
    else:
        worker = threading.Thread(target=_decode, args=(info.path, q, stop, info.fps), name="video-decode", daemon=True)
        worker.start()
        items = iter(q.get, None)  # the decoder always ends with _DecodeEnd or an exception
    decoded = 0
    try:
        for item in items:
            if isinstance(item, DecodedFrame):
                decoded += 1
                yield item
                continue
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, _DecodeEnd)
            end = item
            break
        if decoded == 0:
            why = f" ({end.first_error})" if end.first_error else ""
            raise TruncatedVideo(f"{info.path}: no frame could be decoded{why}; the file is corrupt or truncated")
        # Containers state their length; decoding far less than that means the file was cut short.
        if info.frames and decoded < TRUNCATED_SHARE * info.frames:
            raise TruncatedVideo(
                f"{info.path}: only {decoded} of the {info.frames} frames the file announces could be "
                "decoded; the file is truncated"
            )
        if end.bad_packets:
            raise TruncatedVideo(
                f"{info.path}: {end.bad_packets} damaged packet(s) skipped ({end.first_error}); "
                "the file is corrupt or truncated"
            )
    finally:
        stop.set()
        close = getattr(items, "close", None)  # the inline generator: close its container now
        if worker is None and close is not None:
            close()
        while worker is not None and worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Decoded audio, 16 kHz mono int16 (what the voice activity detector reads); ``t`` is the
    media time of its first sample on the container's clock, the one video frames are stamped on."""

    t: float
    samples: np.ndarray


def audio_chunks(path: Path, rate: int) -> Iterator[AudioChunk]:
    """The first audio track, resampled to ``rate`` Hz mono int16 as the bridge resamples WebRTC
    audio (``av.AudioResampler``); nothing when the file has no audio track. Packet by packet, so a
    damaged packet costs its own samples; raises ``VideoError`` when the track cannot be decoded at all."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return
            stream = container.streams.audio[0]
            if stream.codec_context is None:
                raise VideoError(f"{path}: the audio codec is not supported (no decoder in this FFmpeg build)")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            t: float | None = None
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in frames:
                    if t is None:
                        t = float(frame.time) if frame.time is not None else 0.0
                    for out in resampler.resample(frame):
                        yield AudioChunk(t, out.to_ndarray().reshape(-1))
                        t += out.samples / rate
            for out in resampler.resample(None):
                yield AudioChunk(t or 0.0, out.to_ndarray().reshape(-1))
                t = (t or 0.0) + out.samples / rate
    except VideoError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: the audio track cannot be read ({_reason(exc)})") from exc
