"""Synthetic region motion for spotter tests: samples whose face regions follow a scripted
trajectory plus flow noise, as the motion stage would hand them over."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from inference.motion import MotionSample
from inference.regions import REGIONS

#: Eye openness of an open eye (FaceMesh's eye aspect ratio on a frontal face).
OPEN_EYES = 0.28


def region_stream(
    fps: float,
    seconds: float,
    displacement: Callable[[float], np.ndarray],
    seed: int = 0,
    drop: float = 0.0,
    eyes: Callable[[float], float] = lambda _t: OPEN_EYES,
) -> list[MotionSample]:
    """Samples whose region positions follow ``displacement(t) -> (R, 2)`` plus flow noise;
    ``drop``: the share of frames lost (as a congested link loses them); ``eyes(t)``: openness."""
    rng = np.random.default_rng(seed)
    out: list[MotionSample] = []
    prev = np.zeros((len(REGIONS), 2))
    crop = np.zeros((64, 64), np.uint8)
    for i in range(int(seconds * fps)):
        if drop and rng.random() < drop:
            continue
        t = i / fps
        pos = displacement(t)
        flow = pos - prev + rng.normal(0, 0.03, (len(REGIONS), 2))
        prev = pos
        out.append(
            MotionSample(
                t=t,
                flow=flow.astype(np.float32),
                chained=bool(out),
                eye_openness=eyes(t),
                mouth_open=0.1,
                brightness=120.0,
                outliers=0.0,
                turn=0.0,
                nod=0.5,
                fer_crop=crop,
            )
        )
    return out
