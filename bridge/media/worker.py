"""ParticipantWorker: one participant's camera, analysed at a target rate, newest frame first.

Why this shape (docs/sources.md "WebRTC and meeting servers"): aiortc decodes every received
frame into an *unbounded* queue, so a consumer slower than the sender grows
memory without limit. The worker therefore has two tasks:

- the **reader** drains the track as fast as frames arrive and keeps only the
  newest one in a one-frame slot (as ``MediaRelay(buffered=False)`` does); a frame
  overwritten before it was analysed is counted as dropped;
- the **sampler** wakes at the target rate (``Settings.analysis_fps``), takes the
  newest frame and runs colour conversion plus ``ParticipantAnalyzer.push`` on a
  pool thread through :mod:`bridge.executor`, never on the loop.

Each worker has at most one analysis in flight, so a slow participant (a large
frame, a hard face) costs one pool thread and skips its own frames; it never
queues work ahead of the others. Consent is checked in the reader: a participant
without consent has every frame discarded before any conversion or inference.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bridge.bus import EventBus
from bridge.executor import BlockingExecutor, default_executor
from bridge.media.peers import KeyframeRequest
from bridge.tasks import Retired, cancel_and_wait, running
from inference.analyzer import AnalysisStep
from inference.cues import Cue
from inference.speech import SpeechUpdate

log = logging.getLogger("microcue.worker")

#: Latency samples kept for the percentiles: ~34 s at 15 fps, enough for a stable p95
#: while still following a change in load.
LATENCY_WINDOW = 512
#: RTP video clock (RFC 3551): aiortc stamps decoded frames with the 32-bit RTP timestamp.
RTP_VIDEO_CLOCK = 90_000
RTP_WRAP = 1 << 32
#: A jump in media time larger than this (either way) is a new stream, not jitter: re-anchor
#: the media clock on arrival time instead of trusting the sender's timestamps.
MAX_TS_JUMP_S = 5.0
#: No video frame for this long means the camera is paused or muted (a webcam at 15 fps never
#: leaves such a hole): presence 0 is published and the next frame starts a fresh stream.
VIDEO_GAP_S = 2.0
#: ... unless video packets still arrive and only a decodable frame is missing (lost packets,
#: a keyframe on its way: ``bridge.media.peers.KeyframeRecovery``); a stream that stays
#: undecodable this long is treated as stopped all the same.
UNDECODABLE_GRACE_S = 10.0
#: A video track with no decoded frame this long after it starts (or after its last frame) is
#: waiting for a keyframe: the watchdog asks the sender for one (the issue's 1 s), then again
#: after twice the wait each time, up to KEYFRAME_MAX_WAIT_S between requests.
KEYFRAME_WAIT_S = 1.0
KEYFRAME_MAX_WAIT_S = 8.0
#: At most one analysis-error traceback per this many seconds per participant.
ERROR_LOG_EVERY_S = 10.0


class Analyzer(Protocol):
    """What a worker needs from ``inference.analyzer.ParticipantAnalyzer`` (fakes in tests).

    Optional, looked up when used: ``push_frame`` (YUV planes, for an analyzer in another process)
    and ``hear(SpeechUpdate)`` (when the person talks, from their voice worker)."""

    def push(self, rgb: np.ndarray, t: float) -> AnalysisStep: ...

    def reset(self) -> None: ...


def _close(analyzer: Analyzer) -> None:
    """Free an analyzer that holds resources elsewhere (``bridge.media.analysis_pool.RemoteAnalyzer``)."""
    close = getattr(analyzer, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing an analyzer failed")


def percentile(samples: deque[float] | list[float], q: float) -> float | None:
    if not samples:
        return None
    return float(np.percentile(np.fromiter(samples, dtype=np.float64), q))


@dataclass
class WorkerStats:
    """Per-participant counters (received, analysed, dropped, latency: what the dashboard shows)."""

    received: int = 0
    analysed: int = 0
    #: frames overwritten in the slot before the sampler took them (stale, never analysed)
    dropped: int = 0
    #: frames discarded because the participant has not consented
    refused: int = 0
    errors: int = 0
    resets: int = 0
    #: of those resets, how many were a change of picture size within one stream
    resolution_changes: int = 0
    cues: int = 0
    tracks: int = 0
    #: no decoded frame for KEYFRAME_WAIT_S on the current track (start or stall)
    waiting_for_keyframe: bool = False
    #: keyframe requests (PLI) sent by the watchdog, over the worker's life
    keyframe_requests: int = 0
    #: frame arrival (decoded, out of aiortc) -> its cues published, in seconds
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    #: the analyzer's spotting statistics (gate shares and noise per region), read when reported
    spotting: Callable[[], dict[str, Any] | None] | None = None

    @property
    def latency_p50(self) -> float | None:
        return percentile(self.latencies, 50)

    @property
    def latency_p95(self) -> float | None:
        return percentile(self.latencies, 95)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "received": self.received,
            "analysed": self.analysed,
            "dropped": self.dropped,
            "refused": self.refused,
            "errors": self.errors,
            "resets": self.resets,
            "resolution_changes": self.resolution_changes,
            "cues": self.cues,
            "tracks": self.tracks,
            "waiting_for_keyframe": self.waiting_for_keyframe,
            "keyframe_requests": self.keyframe_requests,
            "latency_p50_s": self.latency_p50,
            "latency_p95_s": self.latency_p95,
        }
        spotting = self.spotting() if self.spotting is not None else None
        if spotting is not None:
            out["spotting"] = spotting
        return out


@dataclass(slots=True)
class _Slot:
    frame: av.VideoFrame
    arrived: float  # perf_counter() when the reader got it
    t: float  # media seconds since meeting start
    generation: int  # which attached track it came from


class _MediaClock:
    """Sender RTP timestamps -> seconds since meeting start, anchored at the first frame's arrival.

    RTP timestamps start at a random value and wrap at 2**32; the sender's clock is kept (it
    preserves real inter-frame spacing that arrival jitter blurs) but re-anchored when it jumps.
    """

    def __init__(self, meeting_t0: float) -> None:
        self.meeting_t0 = meeting_t0
        self._base_pts: int | None = None
        self._base_t = 0.0
        self._last_pts = 0
        self._unwrapped = 0

    def reset(self) -> None:
        self._base_pts = None

    def media_t(self, frame: av.VideoFrame, now: float) -> float:
        arrival_t = now - self.meeting_t0
        pts = frame.pts
        if pts is None or frame.time_base is None:
            return arrival_t
        if self._base_pts is None:
            self._base_pts, self._last_pts, self._unwrapped = pts, pts, pts
            self._base_t = arrival_t
            return arrival_t
        delta = (pts - self._last_pts) % RTP_WRAP
        if delta > RTP_WRAP // 2:  # a reordered/older frame: negative step
            delta -= RTP_WRAP
        self._last_pts = pts
        self._unwrapped += delta
        t = self._base_t + (self._unwrapped - self._base_pts) * float(frame.time_base)
        if abs(t - arrival_t) > MAX_TS_JUMP_S:
            self._base_pts, self._unwrapped, self._base_t = self._unwrapped, self._unwrapped, arrival_t
            return arrival_t
        return t


class ParticipantWorker:
    """Analyses one participant's video; attach a new track on rejoin, ``aclose()`` when done."""

    def _spotting_stats(self) -> dict[str, Any] | None:
        """The current analyzer's gate shares and noise per region (None for analyzers without a
        spotter, such as test fakes). Read from the event loop while the executor may be pushing a
        frame: the figures are counters and a one-frame skew does not matter."""
        spotter = getattr(self.analyzer, "spotter", None)
        return spotter.stats().to_dict() if spotter is not None else None

    def __init__(
        self,
        *,
        meeting_id: str,
        participant_id: str,
        analyzer_factory: Callable[[], Analyzer],
        bus: EventBus,
        fps: float = 15.0,
        consent: bool = True,
        executor: BlockingExecutor | None = None,
        meeting_t0: float | None = None,
        on_step: Callable[[AnalysisStep], None] | None = None,
        seq: Iterator[int] | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.meeting_id = meeting_id
        self.participant_id = participant_id
        self._analyzer_factory = analyzer_factory
        self.analyzer = analyzer_factory()
        # A stream that ended was announced as presence 0; the next stream starts from a fresh
        # analyzer so its presence/engagement streams announce the return instead of staying silent.
        self._fresh_analyzer = False
        self._stream_live = False
        self.bus = bus
        self.period = 1.0 / fps
        self.executor = executor or default_executor()
        self.stats = WorkerStats(spotting=self._spotting_stats)
        self.on_step = on_step
        self._consent = consent
        self._clock = _MediaClock(time.perf_counter() if meeting_t0 is None else meeting_t0)
        # shared with the participant's VoiceWorker so (participant, seq) stays unique
        self.seq = seq if seq is not None else itertools.count(1)
        self._slot: _Slot | None = None
        # what the participant's voice worker said since the last analysed frame (see hear_speech)
        self._speech: SpeechUpdate | None = None
        self._wake = asyncio.Event()
        self._track: MediaStreamTrack | None = None
        self._generation = 0
        self._analysed_generation = -1
        self._shape: tuple[int, int] | None = None
        self._last_t: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._keyframes: KeyframeRequest | None = None
        self._last_frame_at = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self._retired = Retired()
        self._closed = False
        self._last_error_log = -ERROR_LOG_EVERY_S
        self._log_extra = {"meeting": meeting_id, "participant": participant_id}

    # ---- lifecycle -------------------------------------------------------------------------

    def attach(self, track: MediaStreamTrack, request_keyframe: KeyframeRequest | None = None) -> None:
        """Start analysing ``track`` (first join, rejoin, or renegotiated track).

        The previous track, if any, is replaced; the analyzer is reset before the first frame of
        the new one because a new stream is not a continuation of the old face track.
        ``request_keyframe`` (see ``bridge.media.peers.keyframe_requester``) arms the watchdog.
        """
        if self._closed:
            raise RuntimeError("worker is closed")
        if track.kind != "video":
            raise ValueError(f"a ParticipantWorker analyses video, got a {track.kind} track")
        self._stop_reader()
        self._track = track
        self._generation += 1
        self._clock.reset()
        self.stats.tracks += 1
        self._last_frame_at = time.perf_counter()
        self.stats.waiting_for_keyframe = False
        self._keyframes = request_keyframe
        self._reader = asyncio.create_task(
            self._read(track, self._generation), name=f"worker-read-{self.participant_id}"
        )
        if request_keyframe is not None:
            self._watchdog = asyncio.create_task(
                self._watch(request_keyframe), name=f"worker-keyframe-{self.participant_id}"
            )
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample(), name=f"worker-sample-{self.participant_id}")
        log.info("analysing video track %s", track.id, extra=self._log_extra)

    async def detach(self, reason: str = "left the meeting") -> None:
        """The participant left: stop reading, forget the pending frame, announce presence 0.
        A later ``attach`` resumes (same participant, same cue sequence)."""
        self._stop_reader()
        self._track = None
        self._slot = None
        await self._stream_ended(reason)

    async def _stream_ended(self, reason: str) -> None:
        if not self._stream_live:
            return
        self._stream_live = False
        self._fresh_analyzer = True
        t = max(time.perf_counter() - self._clock.meeting_t0, self._last_t or 0.0)
        await self._publish(Cue(type="presence", t=round(t, 3), value=0.0, confidence=1.0, detail=reason))

    def hear_speech(self, update: SpeechUpdate) -> None:
        """On the event loop, from the participant's voice worker: when they talk. Travels to the
        analyzer with the next frame (into its process when it lives in one), so the analyzer
        sees voice and video in one order without a lock; what piles up meanwhile is merged."""
        self._speech = update if self._speech is None else self._speech.then(update)

    @property
    def consent(self) -> bool:
        return self._consent

    def set_consent(self, consent: bool) -> None:
        """Withdrawing consent takes effect for the next frame; the pending one is discarded too."""
        self._consent = consent
        if not consent:
            self._slot = None

    @property
    def attached(self) -> bool:
        return running(self._reader)

    async def aclose(self) -> None:
        """Cancel and await both tasks; an analysis already on a pool thread finishes there."""
        self._closed = True
        await cancel_and_wait(self._reader, self._watchdog, self._sampler, *self._retired.tasks())
        self._reader = self._sampler = self._watchdog = None
        self._track = None
        self._slot = None
        try:  # it may wait for the analyzer's process to finish a frame: not on the loop
            await self.executor.run_blocking(_close, self.analyzer)
        except RuntimeError:  # the executor is already shut down
            _close(self.analyzer)

    def _stop_reader(self) -> None:
        """Cancel the current reader; it stays owned (awaited in ``aclose``) until it has finished."""
        self.stats.waiting_for_keyframe = False
        self._retired.retire(self._watchdog)
        self._retired.retire(self._reader)
        self._watchdog = self._reader = None
        self._keyframes = None

    # ---- watchdog: no frame -> ask for a keyframe, with backoff -----------------------------

    async def _watch(self, request_keyframe: KeyframeRequest) -> None:
        """Ask for a keyframe while no frame arrives: at KEYFRAME_WAIT_S, then backing off."""
        wait = KEYFRAME_WAIT_S
        while True:
            silent = time.perf_counter() - self._last_frame_at
            if silent < KEYFRAME_WAIT_S:  # frames flow: check again when they could be late
                self.stats.waiting_for_keyframe = False
                wait = KEYFRAME_WAIT_S
                await asyncio.sleep(KEYFRAME_WAIT_S - silent)
                continue
            self.stats.waiting_for_keyframe = True
            try:
                sent = await request_keyframe()
            except Exception:  # a closed transport: the reader will see the track end
                log.debug("keyframe request failed", exc_info=True, extra=self._log_extra)
                sent = 0
            self.stats.keyframe_requests += sent
            if sent:
                log.info(
                    "no video for %.1f s: keyframe requested (%d so far)",
                    silent,
                    self.stats.keyframe_requests,
                    extra=self._log_extra,
                )
            await asyncio.sleep(wait)
            wait = min(wait * 2, KEYFRAME_MAX_WAIT_S)

    # ---- reader: drain everything, keep the newest ----------------------------------------

    async def _read(self, track: MediaStreamTrack, generation: int) -> None:
        paused = False
        while True:
            try:
                async with asyncio.timeout(VIDEO_GAP_S):
                    frame = await track.recv()
            except MediaStreamError:
                log.info("video track %s ended", track.id, extra=self._log_extra)
                if generation == self._generation:
                    self._slot = None
                    self._retired.retire(self._watchdog)  # nobody left to ask for a keyframe
                    self._watchdog, self._keyframes = None, None
                    await self._stream_ended("video ended")
                return
            except TimeoutError:  # muted or paused camera: nothing to analyse, say so once
                if self._undecodable_but_receiving():
                    continue
                if generation == self._generation and self._stream_live:
                    paused = True
                    await self._stream_ended("camera paused")
                continue
            if paused and generation == self._generation:
                # frames again: a new stream for the analyzer (fresh state, presence announced again)
                paused = False
                self._generation += 1
                generation = self._generation
                self._clock.reset()
            now = time.perf_counter()
            self._last_frame_at = now
            self.stats.waiting_for_keyframe = False
            self.stats.received += 1
            if not self._consent:
                self.stats.refused += 1  # dropped before any conversion or inference
                continue
            if not isinstance(frame, av.VideoFrame):
                continue
            if self._slot is not None:
                self.stats.dropped += 1
            self._slot = _Slot(frame, now, self._clock.media_t(frame, now), generation)
            self._wake.set()

    def _undecodable_but_receiving(self) -> bool:
        """A stall in decoding (packets arrive, no keyframe yet), not a camera that stopped."""
        receiving = getattr(self._keyframes, "receiving", None)
        stalled_for = time.perf_counter() - self._last_frame_at
        return receiving is not None and stalled_for < UNDECODABLE_GRACE_S and bool(receiving(VIDEO_GAP_S))

    # ---- sampler: newest frame at the target rate, one analysis at a time -----------------

    async def _sample(self) -> None:
        next_due = time.perf_counter()
        while True:
            await self._wake.wait()
            delay = next_due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # frames keep arriving; we take the newest after the wait
            self._wake.clear()
            slot, self._slot = self._slot, None
            if slot is None:
                continue
            started = time.perf_counter()
            # Never schedule in the past: after a long analysis the next one is a period away,
            # not a burst of catch-up analyses.
            next_due = max(next_due + self.period, started)
            await self._analyse(slot)

    async def _analyse(self, slot: _Slot) -> None:
        new_stream = slot.generation != self._analysed_generation
        self._analysed_generation = slot.generation
        speech, self._speech = self._speech, None
        try:
            step, reset = await self.executor.run_blocking(self._convert_and_push, slot, new_stream, speech)
        except Exception:
            if speech is not None:  # the next frame brings it again
                self._speech = speech if self._speech is None else speech.then(self._speech)
            self.stats.errors += 1
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_EVERY_S:
                self._last_error_log = now
                log.exception(
                    "analysis failed (%d so far); resetting this participant's analyzer",
                    self.stats.errors,
                    extra=self._log_extra,
                )
            self._analysed_generation = -1  # reset before the next frame
            return
        if reset:
            self.stats.resets += 1
        self.stats.analysed += 1
        if slot.generation != self._generation or self._track is None:
            return  # the stream ended while this frame was analysed: its cues would follow "left"
        self._stream_live = True
        for cue in step.cues:
            await self._publish(cue)
        self.stats.latencies.append(time.perf_counter() - slot.arrived)
        if self.on_step is not None:
            self.on_step(step)

    def _convert_and_push(
        self, slot: _Slot, new_stream: bool, speech: SpeechUpdate | None = None
    ) -> tuple[AnalysisStep, bool]:
        """Pool thread: everything CPU-heavy for one frame, in order, for this participant only.

        An analyzer in another process (``bridge.media.analysis_pool``) is sent the decoder's YUV
        planes, half the bytes of RGB, and converts them itself, off this process.
        """
        frame = slot.frame
        shape = (frame.height, frame.width)
        resized = self._shape is not None and shape != self._shape
        if resized and not new_stream:
            self.stats.resolution_changes += 1
        reset = new_stream or resized
        if reset and self._shape is not None:
            log.info("new stream or resolution %s -> %s: analyzer reset", self._shape, shape, extra=self._log_extra)
        if new_stream and self._fresh_analyzer:
            self._fresh_analyzer = False
            old, self.analyzer = self.analyzer, self._analyzer_factory()
            if old is not self.analyzer:  # a factory may hand back the same object
                _close(old)
        if reset:
            self.analyzer.reset()
        if speech is not None:
            hear = getattr(self.analyzer, "hear", None)
            if hear is not None:
                hear(speech)
        self._shape = shape
        # Re-anchored sender clocks may step back a little; the analyzer needs time order.
        t = slot.t if reset or self._last_t is None else max(slot.t, self._last_t)
        self._last_t = t
        push_frame = getattr(self.analyzer, "push_frame", None)
        if push_frame is not None and frame.format.name == "yuv420p":
            step = push_frame(frame.to_ndarray(), "yuv420p", t)
        else:
            step = self.analyzer.push(frame.to_ndarray(format="rgb24"), t)
        return step, reset and self.stats.analysed > 0

    async def _publish(self, cue: Cue) -> None:
        stamped = cue.stamped(meeting_id=self.meeting_id, participant_id=self.participant_id, seq=next(self.seq))
        try:
            await self.bus.publish(stamped)
        except Exception:
            log.exception("could not publish a %s cue", cue.type, extra=self._log_extra)
            return
        self.stats.cues += 1
