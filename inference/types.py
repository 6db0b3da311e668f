"""Frozen results of the face pipeline: numpy in, these out (no I/O, no asyncio)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Roi:
    """A rotated square in image pixels: the crop a landmark model sees.

    ``angle`` (radians) is the direction of the crop's x axis in the image, so a
    face whose eye line has that direction appears upright in the crop.
    """

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    def crop_to_image(self, out_size: int) -> np.ndarray:
        """2x3 affine taking crop pixels (0..out_size) to image pixels."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        k = self.size / out_size
        half = self.size / 2.0
        # image = centre + R @ (u * k - half)
        return np.array(
            [
                [c * k, -s * k, self.cx - c * half + s * half],
                [s * k, c * k, self.cy - s * half - c * half],
            ],
            dtype=np.float64,
        )


@dataclass(frozen=True, slots=True)
class Detection:
    """One BlazeFace detection in image pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion (subject's sides)
    keypoints: np.ndarray = field(repr=False)  # (6, 2)

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True, slots=True)
class HeadPose:
    """Degrees. yaw > 0: face turned toward image right; pitch > 0: looking up;
    roll > 0: eye line rotated clockwise in the image."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """Everything the per-frame pipeline knows about one tracked face."""

    track_id: int
    box: tuple[float, float, float, float]
    landmarks: np.ndarray = field(repr=False)  # (468, 3) image pixels; z in the same scale
    to_canonical: np.ndarray = field(repr=False)  # (2, 3) similarity, image -> canonical face
    pose: HeadPose
    eye_openness: tuple[float, float]  # (subject's right, subject's left) eye aspect ratio
    gaze: tuple[float, float] | None  # iris offset from eye centre / eye width (x right, y down)
    confidence: float  # FaceMesh face-presence probability
    detected: bool  # True when this frame's crop came from the detector, not from tracking

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True, slots=True)
class FrameFaces:
    """The face pipeline's answer for one frame."""

    t: float
    faces: tuple[FaceObservation, ...]
    primary: FaceObservation | None  # the face a participant's analysis follows

    @property
    def face_present(self) -> bool:
        return self.primary is not None
