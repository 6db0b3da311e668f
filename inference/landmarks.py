"""FaceMesh (468 landmarks) and iris landmarks on rotated crops.

The crop comes from the previous frame's landmarks (tracking) or from a
detection; either way it is rotated to the eye line so the model sees an
upright face, which is what it was trained on.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inference.onnx_model import Session
from inference.runtime import Model, as_model, check_outputs
from inference.types import Detection, Roi

MESH_INPUT = 192  # face_landmark.tflite input, docs/sources.md "Models"
IRIS_INPUT = 64  # iris_landmark.tflite input
NUM_LANDMARKS = 468
# MediaPipe face_landmark_front: the ROI is the face box enlarged 1.5x (detection and landmark paths alike).
ROI_SCALE = 1.5
# MediaPipe iris_landmark_landmarks_to_roi: the eye crop is 2.3x the eye-corner distance.
IRIS_ROI_SCALE = 2.3

# FaceMesh indices (canonical_face_model_uv_visualization). "Right"/"left" are the subject's.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_INNER, LEFT_EYE_OUTER = 362, 263


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, x))))


def crop(rgb: np.ndarray, roi: Roi, size: int, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rotated square crop as float32 RGB in [0, 1], and its crop->image affine."""
    m = roi.crop_to_image(size)
    if flip:  # mirror the crop's x axis: u -> size - u
        m = m @ np.array([[-1.0, 0.0, size], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    patch = cv2.warpAffine(
        rgb, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )
    # one pass, the same float32 values as patch.astype(np.float32) * (1 / 255)
    return np.multiply(patch, np.float32(1.0 / 255.0), dtype=np.float32), m


def roi_from_detection(det: Detection) -> Roi:
    x0, y0, x1, y1 = det.box
    right_eye, left_eye = det.keypoints[0], det.keypoints[1]
    # Subject's right eye appears on the image left, so this vector points image-right when upright.
    angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * ROI_SCALE, angle)


def roi_from_landmarks(points: np.ndarray) -> Roi:
    """Next frame's crop: the landmarks' box in the eye-line frame, enlarged 1.5x."""
    v = points[LEFT_EYE_OUTER, :2] - points[RIGHT_EYE_OUTER, :2]
    angle = math.atan2(float(v[1]), float(v[0]))
    c, s = math.cos(angle), math.sin(angle)
    xy = points[:, :2]
    u = xy[:, 0] * c + xy[:, 1] * s  # coordinates along the eye line
    w = -xy[:, 0] * s + xy[:, 1] * c  # and across it
    mu, mw = (u.min() + u.max()) / 2, (w.min() + w.max()) / 2
    size = max(u.max() - u.min(), w.max() - w.min()) * ROI_SCALE
    return Roi(float(mu * c - mw * s), float(mu * s + mw * c), float(size), angle)


class FaceMesh:
    """Callable: (image, roi) -> ((468, 3) landmarks in image pixels, face-presence probability)."""

    #: the tflite graph's output names, kept by the ONNX conversion
    POINTS, PRESENCE = "conv2d_20", "conv2d_30"

    def __init__(self, model: Model | Session) -> None:
        self._model = check_outputs(as_model("face_landmarks", model), (self.POINTS, self.PRESENCE))
        self._points, self._presence = self.POINTS, self.PRESENCE

    def __call__(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        patch, m = crop(rgb, roi, MESH_INPUT)
        outs = self._model(patch[None])
        raw = np.asarray(outs[self._points], dtype=np.float64).reshape(NUM_LANDMARKS, 3)
        presence = sigmoid(float(np.asarray(outs[self._presence]).reshape(-1)[0]))
        pts = np.empty((NUM_LANDMARKS, 3), dtype=np.float32)
        pts[:, :2] = raw[:, :2] @ m[:, :2].T + m[:, 2]
        pts[:, 2] = raw[:, 2] * (roi.size / MESH_INPUT)  # z in the same pixel scale as x
        return pts, presence


class IrisModel:
    """Callable: (image, face landmarks) -> iris centres (2, 2) in image pixels, subject's right then left."""

    IRIS = "output_iris"  # the tflite graph's name, kept by the ONNX conversion

    def __init__(self, model: Model | Session) -> None:
        self._model = check_outputs(as_model("iris", model), (self.IRIS,))
        self._iris = self.IRIS

    def _eye(self, rgb: np.ndarray, a: np.ndarray, b: np.ndarray, flip: bool) -> np.ndarray:
        v = b - a
        roi = Roi(
            float((a[0] + b[0]) / 2),
            float((a[1] + b[1]) / 2),
            float(np.hypot(*v)) * IRIS_ROI_SCALE,
            math.atan2(float(v[1]), float(v[0])),
        )
        patch, m = crop(rgb, roi, IRIS_INPUT, flip=flip)
        iris = self._model(patch[None])[self._iris]
        centre = np.asarray(iris, dtype=np.float64).reshape(5, 3)[0, :2]
        return np.asarray(centre @ m[:, :2].T + m[:, 2])

    def __call__(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        # The model was trained on the image-left eye; the other one is mirrored (MediaPipe iris graph).
        right = self._eye(rgb, points[RIGHT_EYE_OUTER, :2], points[RIGHT_EYE_INNER, :2], flip=False)
        left = self._eye(rgb, points[LEFT_EYE_INNER, :2], points[LEFT_EYE_OUTER, :2], flip=True)
        return np.stack([right, left]).astype(np.float32)
