"""BlazeFace short-range face detection: letterbox, SSD anchor decoding, weighted NMS.

Runs only when the tracker has lost a face (or once per re-detection interval),
so its cost is paid rarely; the per-frame work is FaceMesh on a tracked crop.
"""

from __future__ import annotations

import cv2
import numpy as np

from inference.onnx_model import Session
from inference.runtime import Model, as_model, check_outputs
from inference.types import Detection

INPUT_SIZE = 128  # face_detection_short_range.tflite input, docs/sources.md "Models"
# SSD anchor layout of the short-range model (MediaPipe face_detection_short_range.pbtxt):
# stride 8 -> 16x16 grid with 2 anchors per cell, strides 16,16,16 -> 8x8 grid with 6 per cell.
ANCHOR_GRIDS: tuple[tuple[int, int], ...] = ((16, 2), (8, 6))
NUM_ANCHORS = 896
RAW_SCORE_LIMIT = 100.0  # clip logits before the sigmoid, as MediaPipe does, to avoid overflow
MIN_SCORE = 0.5  # MediaPipe min_score_thresh for this model
NMS_IOU = 0.3  # MediaPipe min_suppression_threshold (weighted NMS)
NUM_KEYPOINTS = 6


def _anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1]; anchor width and height are fixed at 1 (scale 128)."""
    centres = []
    for grid, per_cell in ANCHOR_GRIDS:
        ys, xs = np.mgrid[0:grid, 0:grid]
        cell = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(cell, per_cell, axis=0))
    out = np.concatenate(centres).astype(np.float32)
    assert out.shape == (NUM_ANCHORS, 2)
    return out


ANCHORS = _anchors()


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS: overlapping candidates are averaged by score, not discarded,
    which steadies the box from frame to frame."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.ones(len(scores), dtype=bool)
    out = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        overlap = remaining & (_iou(boxes[i], boxes) > iou)
        overlap[i] = True
        w = scores[overlap][:, None]
        box = (boxes[overlap] * w).sum(0) / w.sum()
        kps = (keypoints[overlap] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, kps, float(scores[i])))
        remaining &= ~overlap
    return out


class FaceDetector:
    """Callable: RGB uint8 image (H, W, 3) -> detections in image pixels, best first."""

    def __init__(self, model: Model | Session, min_score: float = MIN_SCORE) -> None:
        self._model = check_outputs(as_model("face_detector", model), ("regressors", "classificators"))
        self.min_score = min_score

    @staticmethod
    def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
        """Square tiles (x0, y0, side) covering the frame with overlap.

        The model sees a 128x128 letterbox; a wide 640x480 or 1000x667 frame squeezed into it
        leaves faces of a group photo at 10-15 px, below what the short-range model finds
        (tests/data/multi_face.jpg: 2 of 5 faces whole-frame, 5 of 5 with two square tiles).
        """
        side = min(width, height)
        n = max(1, -(-max(width, height) // side))  # ceil
        if n == 1:
            return [(0, 0, side)]
        span = max(width, height) - side
        starts = [round(i * span / (n - 1)) for i in range(n)]
        return [(s, 0, side) if width >= height else (0, s, side) for s in starts]

    def _candidates(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4), keypoints (N, 6, 2) in pixels of ``rgb`` and scores, before NMS."""
        h, w = rgb.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nw, nh = round(w * scale), round(h * scale)
        pad_x, pad_y = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), -1.0, dtype=np.float32)
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized * (2.0 / 255.0) - 1.0
        outs = self._model(canvas[None])
        raw = np.asarray(outs["regressors"], dtype=np.float32).reshape(NUM_ANCHORS, 16)
        logits = np.asarray(outs["classificators"], dtype=np.float64).reshape(NUM_ANCHORS)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores >= self.min_score
        raw, anchors, scores = raw[keep], ANCHORS[keep], scores[keep].astype(np.float32)
        # Offsets are in pixels of the 128 input, relative to the anchor centre (anchor size 1).
        cx = raw[:, 0] + anchors[:, 0] * INPUT_SIZE
        cy = raw[:, 1] + anchors[:, 1] * INPUT_SIZE
        bw, bh = raw[:, 2], raw[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        kps = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :] * INPUT_SIZE
        # undo the letterbox: 128-canvas pixels -> input pixels
        pad = np.array([pad_x, pad_y], dtype=np.float32)
        boxes = (boxes - np.tile(pad, 2)) / scale
        kps = (kps - pad) / scale
        return boxes, kps, scores

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        found = []
        for x0, y0, side in self.tiles(w, h):
            boxes, kps, scores = self._candidates(rgb[y0 : y0 + side, x0 : x0 + side])
            offset = np.array([x0, y0], dtype=np.float32)
            found.append((boxes + np.tile(offset, 2), kps + offset, scores))
        boxes = np.concatenate([f[0] for f in found])
        if len(boxes) == 0:
            return []
        kps = np.concatenate([f[1] for f in found])
        scores = np.concatenate([f[2] for f in found])
        return [
            Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), score, kp.astype(np.float32))
            for b, kp, score in weighted_nms(boxes, kps, scores)
        ]
