"""Put a real person's listening motion on another real person's face (the listener bench's rig).

The base is one real frame of the target person (their clip's first tracked frame, mouth at rest
as the clip gives it). Per output frame, in this order:

1. the injected facial actions and the donor's blink (both upper lids lowered by the donor's eye
   closure) as landmark displacements, warped with ``bridge.demo.puppet.warp``;
2. the donor's yaw as a cylindrical head turn (``generate.yaw_warp``) and pitch as the vertical
   foreshortening and drop of a nod;
3. the donor's roll, lean (scale) and head offset as an affine map into the 640x480 frame;
4. exposure flicker, a slow lighting drift and sensor noise; then the encoder.

What this cannot show: the 3-D parallax of a real turn beyond the cylinder, and the skin and
hair motion of a live face (the texture is one frame). The second is why every frame also gets
sensor noise and the codec's own noise.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from bench.spotting.donors import Trajectory
from bench.spotting.generate import yaw_warp
from bench.spotting.meetings import FRAME
from bridge.demo.actions import AU_MOVES, Move
from bridge.demo.puppet import displacement_controls, warp

_R_UPPER_LID, _L_UPPER_LID = AU_MOVES["AU5"][0][0], AU_MOVES["AU5"][1][0]
# A blink lowers the upper lid by most of the eye's opening, ~0.1-0.15 IOD (spotting_params, blink_min_px).
BLINK_IOD = 0.12
BLINK_MOVES: tuple[Move, ...] = ((_R_UPPER_LID, 0.0, 1.0, 0.06), (_L_UPPER_LID, 0.0, 1.0, 0.06))


def iod(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[[362, 263]].mean(0) - lm[[33, 133]].mean(0)))


def pose_frame(
    base: np.ndarray,
    lm: np.ndarray,
    moves: list[tuple[Any, float]],
    pose: dict[str, float],
    target_iod: float,
) -> np.ndarray:
    """One rigged frame (RGB, FRAME size) before lighting and noise."""
    moves = list(moves)
    if pose["closure"] > 0.05:
        moves += [(mv, BLINK_IOD * pose["closure"]) for mv in BLINK_MOVES]
    img = warp(base, displacement_controls(lm, moves)) if moves else base
    if abs(pose["yaw"]) > 0.05:
        img = yaw_warp(img, lm, pose["yaw"])
    face_iod = iod(lm)
    eyes = (lm[[33, 133]].mean(0) + lm[[362, 263]].mean(0)) / 2
    scale = target_iod / face_iod * pose["scale"]
    # pitch: the face below the eyes foreshortens and drops (a nod), about the eye line
    pitch = math.radians(pose["pitch"])
    sy = math.cos(pitch)
    roll = math.radians(pose["roll"])
    c, s = math.cos(roll), math.sin(roll)
    rot = np.array([[c, -s], [s, c]]) @ np.diag([1.0, sy]) * scale
    centre = np.array([FRAME[0] / 2, FRAME[1] / 2.2]) + np.array([pose["dx"], pose["dy"]]) * target_iod
    m = np.column_stack([rot, centre - rot @ eyes])
    if scale < 1.0:
        # a camera's optics low-pass the face before the sensor samples it; resampling a sharp
        # image to a coarser grid without that aliases, and the alias pattern shifts with every
        # sub-pixel head movement: on a still face moved only by a donor's translation, the
        # spotter's noise rose from 0.08 to 0.14 px that way (bench/spotting/listeners.py, tune face)
        sigma = 0.5 * math.sqrt(1.0 / scale**2 - 1.0)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return cv2.warpAffine(img, m, FRAME, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def light(
    frame: np.ndarray, t: float, rng: np.random.Generator, *, flicker: float, drift: float, noise: float
) -> np.ndarray:
    gain = 1.0 + drift * math.sin(2 * math.pi * t / 17.0) + flicker * rng.standard_normal()
    grain = rng.normal(0, noise, size=tuple(frame.shape)).astype(np.float32)
    return np.clip(frame.astype(np.float32) * gain + grain, 0, 255).astype(np.uint8)


def nod_pose(pose: dict[str, float], t: float, nods: list[tuple[float, float, float]]) -> dict[str, float]:
    """Add scripted nods (start, duration, degrees: two down-up cycles) to a donor pose."""
    out = dict(pose)
    for start, dur, deg in nods:
        if start <= t <= start + dur:
            out["pitch"] += deg * math.sin(2 * math.pi * 2 * (t - start) / dur) ** 2
    return out


__all__ = ["FRAME", "Trajectory", "light", "nod_pose", "pose_frame"]
