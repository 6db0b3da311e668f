"""Head pose, eye openness and gaze from FaceMesh landmarks (no extra model calls)."""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np

from inference.types import HeadPose


class EyeIndices(TypedDict):
    outer: int
    inner: int
    upper: tuple[int, int]
    lower: tuple[int, int]


# FaceMesh indices. Subject's right eye: outer 33, inner 133, upper lid 160/158, lower lid 144/153.
RIGHT_EYE: EyeIndices = {"outer": 33, "inner": 133, "upper": (160, 158), "lower": (144, 153)}
LEFT_EYE: EyeIndices = {"outer": 263, "inner": 362, "upper": (387, 385), "lower": (373, 380)}
FOREHEAD, CHIN = 10, 152
# FaceMesh's forehead point (10) sits in front of the chin (152) in depth on an upright face, so
# the raw forehead-chin axis reads a few degrees of downward pitch. Measured on two frontal faces
# looking at the camera: skimage astronaut -9.6, tests/data/single_face.mp4 (first second) -5.6.
PITCH_OFFSET_DEG = -7.5


def head_pose(landmarks: np.ndarray) -> HeadPose:
    """Rotation of the face frame built from the eye corners and forehead-chin axis.

    The landmarks' z has the same pixel scale as x and y (MediaPipe), so the 3D axes are
    meaningful without a camera model; weak perspective is enough for webcam distances.
    """
    # the four points it reads, in float64 (not a float64 copy of all 468: it runs every frame)
    left, right, chin, forehead = landmarks[[LEFT_EYE["outer"], RIGHT_EYE["outer"], CHIN, FOREHEAD]].astype(np.float64)
    ex = left - right
    ex /= np.linalg.norm(ex) + 1e-12
    ey = chin - forehead
    ey -= ex * (ey @ ex)
    ey /= np.linalg.norm(ey) + 1e-12
    ez = np.cross(ex, ey)  # x right, y down -> z points away from the camera, into the head
    roll = math.atan2(ex[1], ex[0])
    # Facing direction (toward the camera, -z, when frontal), taken out of the roll so that a
    # tilted head does not leak into yaw and pitch.
    f = -ez
    c, s = math.cos(roll), math.sin(roll)
    fx, fy, fz = c * f[0] + s * f[1], -s * f[0] + c * f[1], f[2]
    yaw = math.degrees(math.atan2(fx, -fz))
    pitch = math.degrees(math.atan2(-fy, math.hypot(fx, fz))) - PITCH_OFFSET_DEG
    return HeadPose(yaw=yaw, pitch=pitch, roll=math.degrees(roll))


def _ear_rows(eye: EyeIndices) -> list[int]:
    """outer, inner, then each upper lid point followed by the lower one facing it"""
    pairs = zip(eye["upper"], eye["lower"], strict=True)
    return [eye["outer"], eye["inner"], *(i for pair in pairs for i in pair)]


#: the 12 landmark rows eye_openness reads (6 per eye), gathered once per frame
_EAR_ROWS = np.array(_ear_rows(RIGHT_EYE) + _ear_rows(LEFT_EYE))


def _dist(a: list[float], b: list[float]) -> float:
    dx, dy = a[0] - b[0], a[1] - b[1]
    return math.sqrt(dx * dx + dy * dy)


def _ear(p: list[list[float]]) -> float:
    """``p``: outer, inner, upper 1, lower 1, upper 2, lower 2 (x, y) of one eye."""
    width = _dist(p[0], p[1])
    height = _dist(p[2], p[3]) + _dist(p[4], p[5])
    return height / (2.0 * width + 1e-9)


def eye_openness(landmarks: np.ndarray) -> tuple[float, float]:
    """Eye aspect ratio (Soukupova & Cech 2016) per eye: ~0.25-0.35 open, < 0.12 closed."""
    # plain floats: a dozen 2-D distances cost less in Python than as numpy calls (every frame)
    p = landmarks[_EAR_ROWS, :2].astype(np.float64).tolist()
    return _ear(p[:6]), _ear(p[6:])


def mean_openness(openness: tuple[float, float]) -> float:
    """Both eyes' aspect ratio, averaged (what ``np.mean`` of the pair gives, without its call)."""
    return (openness[0] + openness[1]) / 2.0


def gaze_offset(landmarks: np.ndarray, iris_centres: np.ndarray) -> tuple[float, float]:
    """Iris offset from the eye-corner midpoint, in eye widths along and across the eye line.

    0, 0 is looking straight along the head direction; x > 0 toward image right, y > 0 down.
    """
    p = landmarks[:, :2].astype(np.float64)
    # (image-left corner, image-right corner) of each eye on an upright face
    corners = ((RIGHT_EYE["outer"], RIGHT_EYE["inner"]), (LEFT_EYE["inner"], LEFT_EYE["outer"]))
    offsets = []
    for (i_left, i_right), centre in zip(corners, iris_centres, strict=True):
        a, b = p[i_left], p[i_right]
        width = float(np.linalg.norm(b - a)) + 1e-9
        ux = (b - a) / width
        uy = np.array([-ux[1], ux[0]])  # perpendicular, pointing down the face
        d = centre - (a + b) / 2
        offsets.append((float(d @ ux / width), float(d @ uy / width)))
    return (offsets[0][0] + offsets[1][0]) / 2, (offsets[0][1] + offsets[1][1]) / 2
