"""VoiceWorker: one participant's microphone -> ``speaking`` cues (talk time, coaching).

aiortc hands us decoded Opus frames (48 kHz, often stereo, 20 ms). The reader
drains the track continuously (aiortc's receive queue is unbounded), resamples
with ``av.AudioResampler`` to s16 mono 16 kHz, and every :data:`BATCH_S` runs the
participant's :class:`inference.voice.VoiceActivityStream` on a pool thread
through :mod:`bridge.executor`. A segment start publishes a ``speaking`` cue with
value 1, its end one with value 0 and the duration in ``detail``. After every batch the
participant's video worker is told what is known of their talk (``on_speech``, a
:class:`inference.speech.SpeechUpdate`), so an expression spotted on their face says whether they
were talking.

The model is tiny (~0.15 ms per 32 ms window), so batching only saves executor
round trips; 96 ms keeps the start of speech within a tenth of a second.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterator

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bridge.bus import EventBus
from bridge.executor import BlockingExecutor, default_executor
from bridge.tasks import Retired, cancel_and_wait, running
from inference.cues import Cue
from inference.speech import SpeechUpdate
from inference.voice import SAMPLE_RATE, WINDOW, SileroVad, VadEvent, VadOptions, VoiceActivityStream

log = logging.getLogger("microcue.voice")

#: Audio handed to the VAD per executor call: three model windows (96 ms).
BATCH_SAMPLES = 3 * WINDOW
BATCH_S = BATCH_SAMPLES / SAMPLE_RATE
#: No audio frame for this long means silence (DTX, muted or stopped microphone): WebRTC audio
#: arrives every 20 ms while someone talks, so a 250 ms hole is never jitter.
AUDIO_GAP_S = 0.25
#: Most audio held while the pool is busy (2 s); beyond it the oldest is dropped and counted,
#: so a stalled executor cannot grow memory. Dropped audio shifts no timestamps: time is
#: taken from the samples actually analysed plus the gap, see ``_pending_t``.
MAX_PENDING_SAMPLES = 2 * SAMPLE_RATE
#: RTP timestamps are 32-bit and wrap (RFC 3550).
RTP_WRAP = 1 << 32
#: A jump in the sender's timestamps larger than this is a new stream of theirs, not lost packets:
#: the clock is re-anchored instead of filling it with silence (the video worker's MAX_TS_JUMP_S).
MAX_LOST_S = 5.0


class _SenderClock:
    """Keeps the VAD's clock on the sender's: where their RTP timestamps say the next frame starts.

    Counting samples alone drifts: under load aiortc's audio jitter buffer drops late packets (seen
    in the chromium room test: 10 s of looped speech counted as 8 s), and the silence put in when
    packets stop can overlap audio that was only late. Each frame is therefore placed where its
    timestamp says: a gap (lost packets) is filled with silence, audio the stream already covered
    with silence is cut. The video worker keeps its clock on the sender's timestamps too, so an
    expression and the talk around it are compared on the same clock.
    """

    def __init__(self) -> None:
        self._next: int | None = None  # sender timestamp the stream's audio reaches

    def place(self, frame: av.AudioFrame) -> float:
        """Seconds of silence to add before ``frame`` (> 0), or of its start to cut (< 0)."""
        tb, pts = frame.time_base, frame.pts
        if tb is None or pts is None or not frame.sample_rate:
            return 0.0
        length = round(frame.samples / (frame.sample_rate * tb))
        if self._next is None:
            self._next = (pts + length) % RTP_WRAP
            return 0.0
        delta = (pts - self._next) % RTP_WRAP
        if delta > RTP_WRAP // 2:
            delta -= RTP_WRAP
        offset = float(delta * tb)
        if abs(offset) > MAX_LOST_S:  # the sender restarted its clock: start from this frame
            offset = 0.0
        elif offset < 0:  # late audio the stream already has (as silence): keep only what is new
            self._next = (self._next + max(0, delta + length)) % RTP_WRAP
            return offset
        self._next = (pts + length) % RTP_WRAP
        return offset

    def advance(self, seconds: float, frame: av.AudioFrame | None) -> None:
        """Silence was put in for ``seconds`` without a frame (no packets)."""
        if self._next is not None and frame is not None and frame.time_base is not None:
            self._next = (self._next + round(seconds / frame.time_base)) % RTP_WRAP


class VoiceWorker:
    """Speaking segments of one participant; ``attach`` a track (again on rejoin), ``aclose()`` at the end."""

    def __init__(
        self,
        *,
        meeting_id: str,
        participant_id: str,
        vad: SileroVad,
        bus: EventBus,
        consent: bool = True,
        executor: BlockingExecutor | None = None,
        meeting_t0: float | None = None,
        options: VadOptions | None = None,
        seq: Iterator[int] | None = None,
        on_speech: Callable[[SpeechUpdate], None] | None = None,
    ) -> None:
        self.meeting_id = meeting_id
        self.participant_id = participant_id
        self.bus = bus
        self.executor = executor or default_executor()
        self.meeting_t0 = time.perf_counter() if meeting_t0 is None else meeting_t0
        self.stream = VoiceActivityStream(vad, options)
        self.consent = consent
        self.frames = 0
        self.refused = 0
        self.dropped_samples = 0
        #: silence put in for audio the sender sent that never arrived (lost or dropped packets)
        self.lost_samples = 0
        self.cues = 0
        # pass the participant's video worker's counter so (participant, seq) stays unique
        self.seq = seq if seq is not None else itertools.count(1)
        #: called on the event loop with what is known of the talk after each batch
        self.on_speech = on_speech
        self._reader: asyncio.Task[None] | None = None
        self._retired = Retired()
        self._closed = False
        self._extra = {"meeting": meeting_id, "participant": participant_id}

    def attach(self, track: MediaStreamTrack) -> None:
        if self._closed:
            raise RuntimeError("voice worker is closed")
        if track.kind != "audio":
            raise ValueError(f"a VoiceWorker listens to audio, got a {track.kind} track")
        self._stop_reader()
        self._reader = asyncio.create_task(self._read(track), name=f"voice-read-{self.participant_id}")

    async def detach(self) -> None:
        """The participant left: stop listening; an open speaking segment is closed (end cue)."""
        reader, self._reader = self._reader, None
        await cancel_and_wait(reader)

    def _stop_reader(self) -> None:
        """Cancel the current reader; it stays owned (awaited in ``aclose``) until it has finished."""
        self._retired.retire(self._reader)
        self._reader = None

    @property
    def attached(self) -> bool:
        return running(self._reader)

    async def aclose(self) -> None:
        self._closed = True
        await cancel_and_wait(self._reader, *self._retired.tasks())
        self._reader = None

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        n_pending = 0
        started = False
        clock = _SenderClock()
        last: av.AudioFrame | None = None  # for its time base
        try:
            while True:
                try:
                    async with asyncio.timeout(AUDIO_GAP_S):
                        frame = await track.recv()
                except MediaStreamError:
                    break
                except TimeoutError:
                    # No packets (Opus DTX, a muted or stopped microphone): that is silence. Feed the
                    # VAD the gap so an open segment ends on time instead of at the next word, and
                    # so the stream's clock keeps up with the video's (a spotted expression waits
                    # until the voice is settled over it).
                    if started and self.consent:
                        gap = np.concatenate([*pending, np.zeros(round(AUDIO_GAP_S * SAMPLE_RATE), np.int16)])
                        pending, n_pending = [], 0
                        clock.advance(AUDIO_GAP_S, last)
                        events = await self.executor.run_blocking(self.stream.push, gap)
                        for event in events:
                            await self._publish(event)
                        self._tell(events)
                    continue
                if not isinstance(frame, av.AudioFrame):  # a broken sender: this participant's audio stops
                    raise TypeError(f"the audio track delivered a {type(frame).__name__}, not audio")
                self.frames += 1
                if not self.consent:
                    self.refused += 1  # never analysed, never kept
                    continue
                if not started:
                    started = True
                    # a new stream: fresh model state, clock anchored on this frame's arrival
                    self.stream.reset(t0=time.perf_counter() - self.meeting_t0)
                offset = clock.place(frame)
                last = frame
                if offset > 0:  # packets lost on the way: their time passes as silence
                    lost = np.zeros(round(offset * SAMPLE_RATE), np.int16)
                    self.lost_samples += len(lost)
                    pending.append(lost)
                    n_pending += len(lost)
                cut = round(-offset * SAMPLE_RATE) if offset < 0 else 0
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    if cut:
                        chunk, cut = chunk[cut:], max(0, cut - len(chunk))
                    pending.append(chunk)
                    n_pending += len(chunk)
                if n_pending > MAX_PENDING_SAMPLES:
                    merged = np.concatenate(pending)
                    self.dropped_samples += len(merged) - MAX_PENDING_SAMPLES
                    pending, n_pending = [merged[-MAX_PENDING_SAMPLES:]], MAX_PENDING_SAMPLES
                if n_pending >= BATCH_SAMPLES:
                    batch = np.concatenate(pending)
                    pending, n_pending = [], 0
                    events = await self.executor.run_blocking(self.stream.push, batch)
                    for event in events:
                        await self._publish(event)
                    self._tell(events)
        except Exception:
            # One participant's audio (a bad frame, a resampler or model error) must not take the
            # bot down with it: detach()/aclose() await this task, and an exception escaping here
            # used to end the whole Janus session.
            log.exception("audio analysis of this participant stopped", extra=self._extra)
        finally:
            if started:
                events = self.stream.flush()
                for event in events:
                    await self._publish(event)
                self._tell(events, live=False)
            log.info("audio track %s ended", track.id, extra=self._extra)

    def _tell(self, events: list[VadEvent], *, live: bool = True) -> None:
        """What is known of the talk now, to the video worker (``live=False``: the audio ended)."""
        if self.on_speech is None:
            return
        segments = tuple((e.start, e.end) for e in events if e.kind == "end" and e.end is not None)
        update = SpeechUpdate(segments, self.stream.open_since, self.stream.settled_until, live)
        try:
            self.on_speech(update)
        except Exception:
            log.exception("could not pass on when this participant talks", extra=self._extra)

    async def _publish(self, event: VadEvent) -> None:
        if event.kind == "start":
            cue = Cue(
                type="speaking",
                t=round(event.start, 3),
                value=1.0,
                confidence=event.confidence,
                detail="started speaking",
            )
        else:
            assert event.end is not None
            cue = Cue(
                type="speaking",
                t=round(event.end, 3),
                value=0.0,
                confidence=event.confidence,
                detail=f"stopped speaking after {event.end - event.start:.1f} s",
            )
        stamped = cue.stamped(meeting_id=self.meeting_id, participant_id=self.participant_id, seq=next(self.seq))
        try:
            await self.bus.publish(stamped)
        except Exception:
            log.exception("could not publish a speaking cue", extra=self._extra)
            return
        self.cues += 1
