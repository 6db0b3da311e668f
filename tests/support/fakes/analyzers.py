"""A ``bridge.media.worker.Analyzer`` that loads no model, for tests where only frames, timing
and calls matter (workers, adapters, bots), standing in for ``ParticipantAnalyzer``."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from inference.analyzer import AnalysisStep, FrameMetrics
from inference.cues import Cue
from inference.types import FrameFaces

if TYPE_CHECKING:
    from bridge.media.worker import Analyzer


class FakeAnalyzer:
    """Sees no face in any frame and, with ``cues``, emits one ``presence`` cue per frame.

    Counts ``calls`` and ``resets`` and keeps each frame's ``shapes`` and ``times``.
    ``delay``: seconds each frame takes, as a slow participant's analysis does.
    ``fail_at``: the call (counted from 1) that raises, as a bug in the analysis would.
    ``refuse_frames``: no frame should reach it in this test; one that does fails with this message.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        cues: bool = True,
        fail_at: int | None = None,
        refuse_frames: str | None = None,
    ) -> None:
        self.delay = delay
        self.cues = cues
        self.fail_at = fail_at
        self.refuse_frames = refuse_frames
        self.calls = 0
        self.resets = 0
        self.shapes: list[tuple[int, ...]] = []
        self.times: list[float] = []
        self._lock = threading.Lock()

    def push(self, rgb: np.ndarray, t: float) -> AnalysisStep:
        if self.refuse_frames is not None:
            raise AssertionError(self.refuse_frames)
        with self._lock:
            if self.fail_at is not None and self.calls + 1 == self.fail_at:
                self.calls += 1
                raise RuntimeError(f"analysis failed on purpose at call {self.fail_at}")
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.calls += 1
            self.shapes.append(rgb.shape)
            self.times.append(t)
        return AnalysisStep(
            faces=FrameFaces(t=t, faces=(), primary=None),
            metrics=FrameMetrics(t=t, face_present=False, faces=0),
            cues=(Cue(type="presence", t=t, value=0.0),) if self.cues else (),
        )

    def reset(self) -> None:
        self.resets += 1


if TYPE_CHECKING:
    _analyzer: Analyzer = FakeAnalyzer()
