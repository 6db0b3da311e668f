"""ParticipantAnalyzer: one camera's streaming analysis, fed one frame at a time.

The live bridge and ``microcue analyze`` both push frames here with their media
timestamps, so a file is analysed by exactly the code that runs in a meeting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.cues import Cue
from inference.faces import FaceDetector
from inference.landmarks import FaceMesh, IrisModel
from inference.onnx_model import Session
from inference.tracking import FaceTracker
from inference.types import FrameFaces

RGB_NDIM = 3  # (H, W, C) with C = 3 channels


@dataclass(frozen=True, slots=True)
class FaceModels:
    """The ONNX sessions one analyzer needs; built once per process and shared by participants
    (onnxruntime sessions are safe to call from several threads)."""

    detector: Session
    landmarks: Session
    iris: Session | None = None


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


@dataclass(frozen=True, slots=True)
class AnalysisStep:
    faces: FrameFaces
    metrics: FrameMetrics
    cues: tuple[Cue, ...] = ()


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


class ParticipantAnalyzer:
    """Per-participant state. Not thread-safe: one worker feeds one analyzer, in time order."""

    def __init__(self, models: FaceModels, *, track_gaze: bool = True) -> None:
        self.tracker = FaceTracker(
            FaceDetector(models.detector),
            FaceMesh(models.landmarks),
            IrisModel(models.iris) if (track_gaze and models.iris is not None) else None,
        )
        self._last_t: float | None = None

    def reset(self) -> None:
        """A new stream for the same participant (rejoin, resolution change)."""
        self.tracker.reset()
        self._last_t = None

    def push(self, rgb: np.ndarray, t: float) -> AnalysisStep:
        if rgb.ndim != RGB_NDIM or rgb.shape[2] != RGB_NDIM or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"media time went backwards: {t:.3f} s after {self._last_t:.3f} s")
        self._last_t = t
        faces = self.tracker.update(rgb, t)
        return AnalysisStep(faces=faces, metrics=frame_metrics(faces))
