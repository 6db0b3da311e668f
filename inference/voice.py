"""Voice activity: Silero VAD (ONNX) over a 16 kHz mono stream, turned into speaking segments.

Pure compute like the rest of ``inference``: numpy samples in, frozen events out.
One :class:`SileroVad` (the ONNX session) is shared by every participant; each
participant owns a :class:`VoiceActivityStream` with its own recurrent state, so
streams never bleed into each other (livekit's silero plugin has the same split).

The model (``silero-vad`` 6.x ``silero_vad.onnx``, inputs inspected with
onnxruntime): ``input`` float32 [1, 64 + 512] = the last 64 samples of the
previous window (context) followed by 512 new samples at 16 kHz, ``state``
float32 [2, 1, 128] carried between calls, ``sr`` int64 scalar; outputs the speech
probability [1, 1] and the next state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inference.onnx_model import Session

SAMPLE_RATE = 16_000
#: Samples per model call at 16 kHz (32 ms); the only window size the model accepts at this rate.
WINDOW = 512
#: Samples of the previous window the model sees first (silero's OnnxWrapper: 64 at 16 kHz).
CONTEXT = 64
STATE_SHAPE = (2, 1, 128)
_INT16_SCALE = 32768.0
#: A recording (``microcue analyze``) is cut into rows run side by side as one batch of
#: independent streams: onnxruntime on one CPU thread took 0.13 ms for a call on one window and
#: 0.98 ms for 16 (0.06 ms a window; 64 rows saved little more), measured with process_time on
#: this project's 2-core development machine.
BATCH_ROWS = 16
#: Windows per row (4 s of audio)...
ROW_WINDOWS = 125
#: ...each row after the recording's first preceded by this many windows (1 s) of the audio before
#: it, whose probabilities are dropped: they bring the recurrent state to where a stream would have
#: it. Not exact (the state remembers longer), but on espeak speech the segments matched the
#: streaming VAD's to within one window (tests/integration/test_voice.py checks two).
WARMUP_WINDOWS = 32


@dataclass(frozen=True, slots=True)
class VadOptions:
    """Hysteresis, with silero's own ``get_speech_timestamps`` defaults as the reference."""

    #: speech starts when the probability reaches this
    threshold: float = 0.5
    #: ...and may end only once it falls below this (silero: threshold - 0.15)
    neg_threshold: float = 0.35
    #: a start is confirmed only after this much speech: coughs and clicks are not talk time
    min_speech_s: float = 0.25
    #: an end is confirmed only after this much silence: pauses between words stay inside a segment
    min_silence_s: float = 0.5


@dataclass(frozen=True, slots=True)
class VadEvent:
    """A speaking segment started (``end`` is None) or ended; times in the stream's seconds."""

    kind: Literal["start", "end"]
    start: float
    end: float | None
    #: mean speech probability over the segment so far
    confidence: float

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


class SileroVad:
    """The shared model: ``prob, state = vad(window_with_context, state)``. Thread-safe (onnxruntime)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        names = {i.name for i in session.get_inputs()}
        if not {"input", "state", "sr"} <= names:
            raise ValueError(f"not a Silero VAD v5+ model: inputs {sorted(names)}, expected input, state, sr")
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def __call__(self, x: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        if x.shape != (1, CONTEXT + WINDOW):
            raise ValueError(f"expected a (1, {CONTEXT + WINDOW}) float32 window, got {x.shape}")
        prob, new_state = self.session.run(None, {"input": x, "state": state, "sr": self._sr})
        return float(prob.reshape(-1)[0]), new_state

    def batch(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window each of ``B`` independent streams: x (B, 576), state (2, B, 128)."""
        if x.ndim != 2 or x.shape[1] != CONTEXT + WINDOW:  # noqa: PLR2004
            raise ValueError(f"expected (B, {CONTEXT + WINDOW}) float32 windows, got {x.shape}")
        prob, new_state = self.session.run(None, {"input": x, "state": state, "sr": self._sr})
        return np.asarray(prob).reshape(-1), new_state


class VoiceActivityStream:
    """One participant's audio: ``push(samples)`` any length, get the segment events they complete.

    Time is counted in samples from the first push (plus ``t0``), so it is exact media time
    as long as the caller pushes the audio it received, gaps filled with silence.
    """

    def __init__(self, vad: SileroVad, options: VadOptions | None = None, t0: float = 0.0) -> None:
        self.vad = vad
        self.options = options or VadOptions()
        self.t0 = t0
        self.reset()

    def reset(self, t0: float | None = None) -> None:
        """A new stream (rejoin): clear the model state and the hysteresis, restart the clock."""
        if t0 is not None:
            self.t0 = t0
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._buf = np.zeros(CONTEXT + WINDOW, dtype=np.float32)
        self._filled = 0  # new samples in _buf[CONTEXT:]
        self._samples = 0  # samples consumed by the model so far
        self._speaking = False
        self._candidate: float | None = None  # time speech was first heard, not yet confirmed
        self._silence_since: float | None = None
        self._seg_start = 0.0
        self._prob_sum = 0.0
        self._prob_n = 0
        self.last_probability = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def now(self) -> float:
        return self.t0 + self._samples / SAMPLE_RATE

    @property
    def open_since(self) -> float | None:
        """Start of the speaking segment still open, or None while silent."""
        return self._seg_start if self._speaking else None

    @property
    def settled_until(self) -> float:
        """Up to here, speech and silence are decided for good. The hysteresis decides late: a
        start is dated back to the first loud window once ``min_speech_s`` confirms it, an end to
        the first quiet window once ``min_silence_s`` confirms it, so until then the time since
        that window could still turn out either way."""
        pending = self._silence_since if self._speaking else self._candidate
        return self.now if pending is None else min(pending, self.now)

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        """16 kHz mono samples, float in [-1, 1] or int16."""
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
        x = x.astype(np.float32) / _INT16_SCALE if x.dtype == np.int16 else x.astype(np.float32, copy=False)
        events: list[VadEvent] = []
        i = 0
        while i < len(x):
            take = min(WINDOW - self._filled, len(x) - i)
            self._buf[CONTEXT + self._filled : CONTEXT + self._filled + take] = x[i : i + take]
            self._filled += take
            i += take
            if self._filled == WINDOW:
                prob, self._state = self.vad(self._buf[np.newaxis, :], self._state)
                self._buf[:CONTEXT] = self._buf[-CONTEXT:]
                self._filled = 0
                event = self.step(prob)
                if event is not None:
                    events.append(event)
        return events

    def step(self, prob: float) -> VadEvent | None:
        """One more window whose speech probability is already known (a whole recording's,
        computed in batches by :func:`speech_segments`): the same hysteresis as ``push``."""
        self._samples += WINDOW
        return self._step(prob)

    def flush(self) -> list[VadEvent]:
        """End of stream: close an open segment at the current time."""
        if not self._speaking:
            return []
        self._speaking = False
        return [VadEvent("end", self._seg_start, self.now, self._mean_prob())]

    def _mean_prob(self) -> float:
        return round(self._prob_sum / self._prob_n, 3) if self._prob_n else 0.0

    def _step(self, prob: float) -> VadEvent | None:
        """Hysteresis on one window's probability; the window ended at ``self.now``."""
        self.last_probability = prob
        opts = self.options
        window_start = self.now - WINDOW / SAMPLE_RATE
        if not self._speaking:
            if prob >= opts.threshold:
                if self._candidate is None:
                    self._candidate = window_start
                    self._prob_sum, self._prob_n = 0.0, 0
                self._prob_sum += prob
                self._prob_n += 1
                if self.now - self._candidate >= opts.min_speech_s:
                    self._speaking = True
                    self._seg_start = self._candidate
                    self._silence_since = None
                    self._candidate = None
                    return VadEvent("start", self._seg_start, None, self._mean_prob())
            elif prob < opts.neg_threshold:
                self._candidate = None
            return None
        if prob >= opts.neg_threshold:
            self._silence_since = None
            self._prob_sum += prob
            self._prob_n += 1
            return None
        if self._silence_since is None:
            self._silence_since = window_start
        if self.now - self._silence_since >= opts.min_silence_s:
            self._speaking = False
            return VadEvent("end", self._seg_start, self._silence_since, self._mean_prob())
        return None


class RecordingVad:
    """The speaking segments of a whole recording, with the stream's hysteresis but the model run
    in batches (:data:`BATCH_ROWS` rows of :data:`ROW_WINDOWS` windows per call instead of one
    window), so ``microcue analyze`` pays about half the model time per second of audio.

    ``push`` 16 kHz mono samples of any length in order, then ``finish``. Memory stays bounded:
    only one block of rows and the warm-up before it are kept.
    """

    def __init__(
        self,
        vad: SileroVad,
        options: VadOptions | None = None,
        t0: float = 0.0,
        *,
        rows: int = BATCH_ROWS,
        row_windows: int = ROW_WINDOWS,
        warmup_windows: int = WARMUP_WINDOWS,
    ) -> None:
        self.vad = vad
        self.hysteresis = VoiceActivityStream(vad, options, t0)  # fed probabilities only
        self.rows, self.row_windows, self.warmup = rows, row_windows, warmup_windows
        # _audio[:CONTEXT] precedes window _base (zeros before the first sample)
        self._audio = np.zeros(CONTEXT, np.float32)
        self._base = 0  # index of the first window whose samples _audio holds
        self._next = 0  # first window without a probability yet
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self.events: list[VadEvent] = []
        self.windows = 0

    def push(self, samples: np.ndarray) -> None:
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
        x = x.astype(np.float32) / _INT16_SCALE if x.dtype == np.int16 else x.astype(np.float32, copy=False)
        self._pending.append(x)
        self._pending_n += len(x)
        block = self.rows * self.row_windows
        if self._available() - self._next >= block:
            self._gather()
            while self._available() - self._next >= block:
                self._run(block)

    def finish(self) -> list[tuple[float, float]]:
        """Every speaking segment (start, end), in seconds from ``t0``; a last partial window is
        not analysed (the stream does the same)."""
        self._gather()
        remaining = self._available() - self._next
        if remaining > 0:
            self._run(remaining)
        self.events += self.hysteresis.flush()
        return [(e.start, e.end) for e in self.events if e.kind == "end" and e.end is not None]

    def _available(self) -> int:
        """Windows whose samples have all arrived (gathered or pending)."""
        return self._base + (len(self._audio) - CONTEXT + self._pending_n) // WINDOW

    def _gather(self) -> None:
        if self._pending:
            self._audio = np.concatenate([self._audio, *self._pending])
            self._pending, self._pending_n = [], 0

    def _run(self, count: int) -> None:
        """Probabilities of windows ``_next`` .. ``_next + count - 1``, then the hysteresis over them."""
        first, end = self._next, self._next + count
        frames = np.lib.stride_tricks.sliding_window_view(self._audio, CONTEXT + WINDOW)[::WINDOW]
        kept: list[tuple[int, int, int]] = []  # (row start, first kept, end kept), window indices
        for start in range(first, end, self.row_windows):
            kept.append((max(self._base, start - self.warmup), start, min(start + self.row_windows, end)))
        length = max(stop - begin for begin, _, stop in kept)
        # (rows, steps) window indices into frames; steps past a row's end repeat its last window
        idx = np.array([[min(begin + k, stop - 1) - self._base for k in range(length)] for begin, _, stop in kept])
        state = np.zeros((STATE_SHAPE[0], len(kept), STATE_SHAPE[2]), dtype=np.float32)
        probs = np.empty(idx.shape, dtype=np.float32)
        for k in range(length):
            probs[:, k], state = self.vad.batch(np.ascontiguousarray(frames[idx[:, k]]), state)
        self.windows += idx.size
        for row, (begin, start, stop) in enumerate(kept):
            for p in probs[row, start - begin : stop - begin]:
                event = self.hysteresis.step(float(p))
                if event is not None:
                    self.events.append(event)
        self._next = end
        # keep the warm-up of the next block and the context before it
        keep_from = max(self._base, end - self.warmup)
        self._audio = self._audio[(keep_from - self._base) * WINDOW :]
        self._base = keep_from


def speech_segments(
    vad: SileroVad, chunks: Iterable[np.ndarray], options: VadOptions | None = None, t0: float = 0.0
) -> list[tuple[float, float]]:
    """A recording's speaking segments from its 16 kHz mono chunks (see :class:`RecordingVad`)."""
    rec = RecordingVad(vad, options, t0)
    for chunk in chunks:
        rec.push(chunk)
    return rec.finish()
