"""ParticipantAnalyzer: one camera's streaming analysis, fed one frame at a time.

The live bridge and ``microcue analyze`` both push frames here with their media
timestamps, so a file is analysed by exactly the code that runs in a meeting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from inference.cues import Cue
from inference.emotion_cnn import EmotionCNN
from inference.engagement import EngagementInputs, GazeBaseline, StreamCues, attention, cnn_valence, engagement
from inference.expressions import UNCLEAR, Expression, classify
from inference.faces import FaceDetector
from inference.landmarks import FaceMesh, IrisModel
from inference.motion import MotionExtractor
from inference.onnx_model import Session
from inference.runtime import Model
from inference.spotting import Spot, Spotter
from inference.tracking import FaceTracker
from inference.types import FrameFaces

RGB_NDIM = 3  # (H, W, C) with C = 3 channels
# The emotion CNN reads the face for sentiment at ~3 Hz: sentiment is smoothed over seconds
# (SENTIMENT_TAU_S), so more often buys nothing and costs a CNN pass per frame.
SENTIMENT_EVERY_S = 0.33


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
        eye_openness=float(np.mean(face.eye_openness)),
        gaze_x=gx,
        gaze_y=gy,
    )


def expression_cue(spot: Spot, expression: Expression) -> Cue:
    """The cue of a spotted expression; an "unclear" one names no emotion and no valence."""
    unclear = expression.emotion == UNCLEAR
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
        detail=f"{spot.kind} {expression.emotion} signal over {1000 * spot.duration:.0f} ms",
    )


class ParticipantAnalyzer:
    """Per-participant state. Not thread-safe: one worker feeds one analyzer, in time order.

    ``emotions_allowed`` is the purpose policy (docs/policy.md): when False no emotion, sentiment or
    expression is inferred at all (the CNN and the spotter do not run), only presence,
    attention and engagement from attention.
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
        self.spotter = Spotter(fps_hint=fps_hint)
        self.streams = StreamCues(emotions_allowed=emotions_allowed)
        self.gaze_baseline = GazeBaseline()
        self._last_t: float | None = None
        self._last_cnn_t = -1e9

    def reset(self) -> None:
        """A new stream for the same participant (rejoin, resolution change)."""
        self.tracker.reset()
        self.motion.reset()
        self.spotter.reset()
        self._last_t = None

    def _expressions(self, spots: list[Spot]) -> list[SpottedExpression]:
        out = []
        for spot in spots:
            probs = self.cnn(np.stack([spot.onset_crop, spot.apex_crop])) if self.cnn is not None else None
            expression = classify(spot, *(probs if probs is not None else (None, None)))
            out.append(SpottedExpression(spot, expression))
        return out

    def push(self, rgb: np.ndarray, t: float) -> AnalysisStep:
        if rgb.ndim != RGB_NDIM or rgb.shape[2] != RGB_NDIM or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"media time went backwards: {t:.3f} s after {self._last_t:.3f} s")
        self._last_t = t
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
                found = self._expressions(self.spotter.push(sample))
                if self.cnn is not None and t - self._last_cnn_t >= SENTIMENT_EVERY_S:
                    self._last_cnn_t = t
                    self.streams.add_valence(t, cnn_valence(self.cnn(sample.fer_crop)[0]))
        else:
            self.motion.reset()
        inputs = EngagementInputs(
            t=t,
            present=face is not None,
            yaw=face.pose.yaw if face else 0.0,
            pitch=face.pose.pitch if face else 0.0,
            gaze=self.gaze_baseline.deviation(t, face.gaze) if face else None,
            eye_openness=float(np.mean(face.eye_openness)) if face else 0.0,
            motion_px=motion_px,
        )
        cues = [expression_cue(f.spot, f.expression) for f in found]
        cues += self.streams.push(inputs)
        metrics = replace(
            metrics,
            engagement=round(engagement(inputs, self.emotions_allowed), 4),
            attention=round(attention(inputs), 4),
            sentiment=self.streams.sentiment if (self.emotions_allowed and face is not None) else None,
        )
        return AnalysisStep(faces=faces, metrics=metrics, cues=tuple(cues), expressions=tuple(found))
