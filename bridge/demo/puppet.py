"""Scripted facial actions on a still face: the demo participant's expressions.

A still photograph is animated by moving the skin around FaceMesh landmarks: each action unit
is a set of landmark displacements (:mod:`bridge.demo.actions`, written from the FACS
descriptions), applied as a smooth local warp. The same warp renders the spotting benchmark's
injected expressions (``bench/spotting``); the analyzer measures motion with its own, separately
written region table, so neither grades itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from bridge.demo.actions import AU_MOVES, Action, Move
from inference.analyzer import FaceModels, ParticipantAnalyzer

#: (landmark position, displacement, Gaussian reach) of one dragged point, image pixels.
Control = tuple[np.ndarray, np.ndarray, float]


def face_axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit x (eye line), unit y (down the face) and IOD from FaceMesh landmarks."""
    r_eye = lm[[33, 133]].mean(0)
    l_eye = lm[[362, 263]].mean(0)
    ex = l_eye - r_eye
    iod = float(np.linalg.norm(ex))
    ex = ex / iod
    return ex, np.array([-ex[1], ex[0]]), iod


def displacement_controls(lm: np.ndarray, moves: list[tuple[Move, float]]) -> list[list[Control]]:
    """Per move, its (point, displacement, sigma) controls in image pixels."""
    ex, ey, iod = face_axes(lm)
    out = []
    for (idx, dx, dy, sigma), weight in moves:
        if weight == 0.0:
            continue
        d = (dx * ex + dy * ey) * iod * weight
        out.append([(lm[i, :2], d, sigma * iod) for i in idx])
    return out


def warp(image: np.ndarray, groups: list[list[Control]]) -> np.ndarray:
    """Smooth local warp: each move drags a Gaussian neighbourhood of its landmarks.

    Within one move the weights are normalised (a cluster of points moving by d moves the skin
    by d, not by d times the number of points); different moves add up (AU12 and AU14 on the
    same mouth corner combine).
    """
    controls = [c for g in groups for c in g]
    if not controls:
        return image
    pts = np.array([c[0] for c in controls])
    reach = max(c[2] for c in controls) * 3
    x0, y0 = np.floor(pts.min(0) - reach).astype(int)
    x1, y1 = np.ceil(pts.max(0) + reach).astype(int)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return image
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    dx = np.zeros_like(xs)
    dy = np.zeros_like(ys)
    for group in groups:
        gx = np.zeros_like(xs)
        gy = np.zeros_like(ys)
        total = np.zeros_like(xs)
        for p, d, sigma in group:
            g = np.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * sigma * sigma))
            gx += d[0] * g
            gy += d[1] * g
            total += g
        norm = np.maximum(total, 1.0)
        dx += gx / norm
        dy += gy / norm
    out = image.copy()
    out[y0:y1, x0:x1] = cv2.remap(image, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def action_moves(actions: Sequence[Action], t: float) -> list[tuple[Move, float]]:
    """The moves active at media time ``t`` with their weights (intensity x amplitude)."""
    moves: list[tuple[Move, float]] = []
    for a in actions:
        w = a.intensity(t)
        if w > 0:
            moves += [(m, w * a.amplitude) for au in a.aus for m in AU_MOVES[au]]
    return moves


def scripted_frames(
    face: np.ndarray, landmarks: np.ndarray, actions: Sequence[Action], seconds: float, fps: float
) -> list[np.ndarray]:
    """``seconds`` of ``face`` (RGB) with ``actions`` played at their times, one RGB image per frame."""
    return [
        warp(face, displacement_controls(landmarks, action_moves(actions, i / fps)))
        for i in range(math.ceil(seconds * fps))
    ]


def face_landmarks(models: FaceModels, rgb: np.ndarray, repeats: int = 3) -> np.ndarray:
    """FaceMesh landmarks (x, y in pixels) of the one face in a still image.

    The image is pushed a few times so the tracker settles on its own ROI, as it does on video.
    """
    analyzer = ParticipantAnalyzer(models, track_gaze=False)
    face = None
    for i in range(repeats):
        face = analyzer.push(rgb, i * 0.1).faces.primary
    if face is None:
        raise ValueError("no face found in the still image the puppet animates")
    return face.landmarks[:, :2].astype(np.float64)
