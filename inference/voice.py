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
                self._samples += WINDOW
                self._buf[:CONTEXT] = self._buf[-CONTEXT:]
                self._filled = 0
                event = self._step(prob)
                if event is not None:
                    events.append(event)
        return events

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
