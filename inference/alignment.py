"""Similarity transform to a canonical frontal face, and aligned crops.

Aligning every frame to the same canonical face removes head translation,
in-plane rotation and scale, so what still moves between aligned crops is
(mostly) the face itself: the basis of the motion features.
"""

from __future__ import annotations

import cv2
import numpy as np

# Five-point canonical face in a 112x112 crop: eye centres, nose tip, mouth corners, in image order
# (subject's right eye first). The de-facto standard template of face alignment (ArcFace,
# insightface `arcface_torch/utils` "arcface_dst"); numbers are published constants.
CANONICAL_SIZE = 112
CANONICAL_5PT = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# FaceMesh indices whose mean gives each template point (eye rings, nose tip, mouth corners).
RIGHT_EYE_RING = (33, 160, 158, 133, 153, 144)
LEFT_EYE_RING = (263, 387, 385, 362, 380, 373)
NOSE_TIP = 1
MOUTH_RIGHT, MOUTH_LEFT = 61, 291


#: the rows five_points reads: both eye rings (6 points each), then nose tip and mouth corners
_FIVE_ROWS = np.array([*RIGHT_EYE_RING, *LEFT_EYE_RING, NOSE_TIP, MOUTH_RIGHT, MOUTH_LEFT])
_RING = len(RIGHT_EYE_RING)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres (mean of each ring), nose tip, mouth corners: (5, 2) float64. Only the 15
    rows used are gathered (one fancy index per frame, not one per point set)."""
    pts = landmarks[_FIVE_ROWS, :2].astype(np.float64)
    eyes = pts[: 2 * _RING].reshape(2, _RING, 2).mean(axis=1)
    return np.concatenate([eyes, pts[2 * _RING :]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping src -> dst; 2x3 matrix.

    In the plane Umeyama's SVD has a closed form: with centred points as complex numbers, the
    rotation-and-scale is ``sum(conj(s) * d) / sum(|s|^2)``, the same fit (reflections excluded,
    as Umeyama's sign correction excludes them) in a few multiplications instead of an SVD and
    two determinants; it runs once per tracked face per frame.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    norm = max(float((s**2).sum()), 1e-12)
    a = float((s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum()) / norm  # scale * cos
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm  # scale * sin
    lin = np.array([[a, -b], [b, a]])
    t = mu_d - lin @ mu_s
    return np.hstack([lin, t[:, None]])


def to_canonical(landmarks: np.ndarray, size: int = CANONICAL_SIZE) -> np.ndarray:
    """Image -> canonical face of ``size`` pixels."""
    return similarity(five_points(landmarks), CANONICAL_5PT * (size / CANONICAL_SIZE))


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The face in canonical position; grey or colour in, same out."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points[:, :2] @ matrix[:, :2].T + matrix[:, 2])
