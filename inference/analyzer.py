"""ParticipantAnalyzer: one camera's streaming analysis, fed one frame at a time.

The live bridge and ``microcue analyze`` both push frames here with their media
timestamps, so a file is analysed by exactly the code that runs in a meeting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from inference.cues import Cue
from inference.emotion_cnn import EmotionCNN
from inference.engagement import EngagementInputs, GazeBaseline, StreamCues, attention, cnn_valence, engagement
from inference.expressions import UNCLEAR, Expression, classify
from inference.facegeometry import mean_openness
from inference.faces import FaceDetector
from inference.landmarks import FaceMesh, IrisModel
from inference.motion import MotionExtractor
from inference.onnx_model import Session
from inference.runtime import Model
from inference.speech import KEEP_S, SpeechTimeline, SpeechUpdate
from inference.spotting import Spot, Spotter
from inference.tracking import FaceTracker
from inference.types import FrameFaces
from inference.verifier import VerifiedSpotter

RGB_NDIM = 3  # (H, W, C) with C = 3 channels
# The emotion CNN reads the face for sentiment at ~3 Hz: sentiment is smoothed over seconds
# (SENTIMENT_TAU_S), so more often buys nothing and costs a CNN pass per frame.
SENTIMENT_EVERY_S = 0.33
#: A spotted expression waits at most this long (media time after its offset) for the voice
#: activity to settle over it, instead of being decided blind: the VAD confirms the end of speech
#: only after 0.5 s of quiet (inference/voice.py min_silence_s), the voice worker analyses audio
#: in 96 ms batches (bridge/media/voice.py), and the news reaches the analyzer with the next video
#: frame (67 ms at 15 fps) after an executor hop; 1.5 s covers that with room for audio that
#: arrives later than the video. Past it the expression goes out with what is known by then.
#: Counted in media time and, so that a stalled camera whose frames resume later in media time
#: does not count as waiting, in frames too (this long at ``fps_hint``).
SPEECH_WAIT_S = 1.5


@dataclass(frozen=True, slots=True)
class FaceModels:
    """The models one analyzer needs; built once per process and shared by participants
    (every ``inference.runtime`` model is safe to call from several threads). An onnxruntime
    session is accepted too and wrapped."""

    detector: Model | Session
    landmarks: Model | Session
    iris: Model | Session | None = None
    emotion: Model | Session | None = None


@dataclass(frozen=True, slots=True)
class FrameMetrics:
    """Per-frame face metrics, the raw material of the per-second streams."""

    t: float
    face_present: bool
    faces: int
    confidence: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    eye_openness: float | None = None
    gaze_x: float | None = None
    gaze_y: float | None = None
    engagement: float | None = None
    attention: float | None = None
    sentiment: float | None = None


@dataclass(frozen=True, slots=True)
class SpottedExpression:
    spot: Spot
    expression: Expression
    #: whether the person talked during onset..offset (their voice activity); None: not known
    #: (no audio, or audio not decided that far)
    speaking: bool | None = None


@dataclass(frozen=True, slots=True)
class AnalysisStep:
    faces: FrameFaces
    metrics: FrameMetrics
    cues: tuple[Cue, ...] = ()
    expressions: tuple[SpottedExpression, ...] = ()


def frame_metrics(frame: FrameFaces) -> FrameMetrics:
    face = frame.primary
    if face is None:
        return FrameMetrics(t=frame.t, face_present=False, faces=len(frame.faces))
    gx, gy = face.gaze if face.gaze is not None else (None, None)
    return FrameMetrics(
        t=frame.t,
        face_present=True,
        faces=len(frame.faces),
        confidence=face.confidence,
        yaw=face.pose.yaw,
        pitch=face.pose.pitch,
        roll=face.pose.roll,
        eye_openness=mean_openness(face.eye_openness),
        gaze_x=gx,
        gaze_y=gy,
    )


#: Added to a cue's detail when the person talked during the expression (docs/api.md).
WHILE_TALKING = "while talking"


def expression_cue(spot: Spot, expression: Expression, speaking: bool | None = None) -> Cue:
    """The cue of a spotted expression; an "unclear" one names no emotion and no valence."""
    unclear = expression.emotion == UNCLEAR
    talking = f" {WHILE_TALKING}" if speaking else ""
    return Cue(
        type="micro_expression" if spot.kind == "micro" else "macro_expression",
        t=round(spot.offset_t, 3),
        onset_s=round(spot.onset_t, 3),
        apex_s=round(spot.apex_t, 3),
        offset_s=round(spot.offset_t, 3),
        emotion=None if unclear else expression.emotion,  # type: ignore[arg-type]
        valence=None if unclear else expression.valence,
        aus=expression.aus,
        confidence=expression.confidence,
        detail=f"{spot.kind} {expression.emotion} signal over {1000 * spot.duration:.0f} ms{talking}",
    )


class ParticipantAnalyzer:
    """Per-participant state. Not thread-safe: one worker feeds one analyzer, in time order.

    ``emotions_allowed`` is the purpose policy (docs/policy.md): when False no emotion, sentiment or
    expression is inferred at all (the CNN and the spotter do not run), only presence,
    attention and engagement from attention.

    ``hear`` tells it when the person talks (their voice activity, :mod:`inference.speech`); a
    spotted expression then waits until that is known over it (at most ``SPEECH_WAIT_S``) and
    carries the answer. Without any ``hear`` nothing waits and ``speaking`` is None.
    """

    def __init__(
        self, models: FaceModels, *, track_gaze: bool = True, emotions_allowed: bool = True, fps_hint: float = 15.0
    ) -> None:
        self.tracker = FaceTracker(
            FaceDetector(models.detector),
            FaceMesh(models.landmarks),
            IrisModel(models.iris) if (track_gaze and models.iris is not None) else None,
        )
        self.emotions_allowed = emotions_allowed
        self.cnn = EmotionCNN(models.emotion) if (models.emotion is not None and emotions_allowed) else None
        self.motion = MotionExtractor()
        # two stages (issue 22): the template spotter at a low floor proposes, a small verifier
        # trained on the listener bench's tune people keeps actions and drops blinks, nods and flicker
        self.spotter: Spotter = VerifiedSpotter(fps_hint=fps_hint)
        self.streams = StreamCues(emotions_allowed=emotions_allowed)
        self.gaze_baseline = GazeBaseline()
        self.speech = SpeechTimeline()
        # spotted, waiting for the voice activity to settle over them, with the frame count then
        self._waiting: list[tuple[Spot, int]] = []
        self._frames = 0
        self._wait_frames = math.ceil(SPEECH_WAIT_S * fps_hint)
        self._last_t: float | None = None
        self._last_cnn_t = -1e9

    def reset(self) -> None:
        """A new stream for the same participant (rejoin, resolution change). The person's talk
        is theirs, not the stream's: it is kept, and so are spots still waiting for it."""
        self.tracker.reset()
        self.motion.reset()
        self.spotter.reset()
        self._last_t = None

    def hear(self, update: SpeechUpdate) -> None:
        """What the person's voice activity learned (plain data; may come from another process)."""
        self.speech.add(update)

    def _ready(self, t: float) -> list[tuple[Spot, bool | None]]:
        """The waiting spots, oldest first, that can be decided now: talk settled over them,
        nothing more to wait for, or waited ``SPEECH_WAIT_S``. Kept in order, so cues stay in time order."""
        out: list[tuple[Spot, bool | None]] = []
        while self._waiting:
            spot, since = self._waiting[0]
            waited = t - spot.offset_t >= SPEECH_WAIT_S and self._frames - since >= self._wait_frames
            if not waited and not self.speech.decided(spot.onset_t, spot.offset_t):
                break
            self._waiting.pop(0)
            out.append((spot, self.speech.speaking(spot.onset_t, spot.offset_t)))
        return out

    def _expressions(self, spots: Sequence[tuple[Spot, bool | None]]) -> list[SpottedExpression]:
        out = []
        for spot, speaking in spots:
            probs = self.cnn(np.stack([spot.onset_crop, spot.apex_crop])) if self.cnn is not None else None
            expression = classify(spot, *(probs if probs is not None else (None, None)), speaking=speaking)
            out.append(SpottedExpression(spot, expression, speaking))
        return out

    def push(self, rgb: np.ndarray, t: float) -> AnalysisStep:
        if rgb.ndim != RGB_NDIM or rgb.shape[2] != RGB_NDIM or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"media time went backwards: {t:.3f} s after {self._last_t:.3f} s")
        self._last_t = t
        self._frames += 1
        self.speech.forget_before(t - KEEP_S)
        faces = self.tracker.update(rgb, t)
        metrics = frame_metrics(faces)
        face = faces.primary
        found: list[SpottedExpression] = []
        motion_px = 0.0
        if face is not None:
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            sample = self.motion(grey, face, t)
            motion_px = float(np.linalg.norm(sample.flow, axis=1).mean())
            if self.emotions_allowed:
                self._waiting += [(spot, self._frames) for spot in self.spotter.push(sample)]
                if self.cnn is not None and t - self._last_cnn_t >= SENTIMENT_EVERY_S:
                    self._last_cnn_t = t
                    self.streams.add_valence(t, cnn_valence(self.cnn(sample.fer_crop)[0]))
        else:
            self.motion.reset()
        if self._waiting:
            found = self._expressions(self._ready(t))
        inputs = EngagementInputs(
            t=t,
            present=face is not None,
            yaw=face.pose.yaw if face else 0.0,
            pitch=face.pose.pitch if face else 0.0,
            gaze=self.gaze_baseline.deviation(t, face.gaze) if face else None,
            eye_openness=mean_openness(face.eye_openness) if face else 0.0,
            motion_px=motion_px,
        )
        cues = [expression_cue(f.spot, f.expression, f.speaking) for f in found]
        cues += self.streams.push(inputs)
        metrics = replace(
            metrics,
            engagement=round(engagement(inputs, self.emotions_allowed), 4),
            attention=round(attention(inputs), 4),
            sentiment=self.streams.sentiment if (self.emotions_allowed and face is not None) else None,
        )
        return AnalysisStep(faces=faces, metrics=metrics, cues=tuple(cues), expressions=tuple(found))
