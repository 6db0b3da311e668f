"""Per-second summaries of per-frame metrics (the ``per_second`` list of ``analyze`` output)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from inference.analyzer import FrameMetrics

_NUMERIC = (
    "confidence",
    "yaw",
    "pitch",
    "roll",
    "eye_openness",
    "gaze_x",
    "gaze_y",
    "engagement",
    "attention",
    "sentiment",
)


@dataclass
class PerSecond:
    """Buckets frames by whole media second; a second with no frame is simply absent."""

    seconds: dict[int, list[FrameMetrics]] = field(default_factory=dict)

    def add(self, m: FrameMetrics) -> None:
        self.seconds.setdefault(math.floor(m.t), []).append(m)

    def rows(self) -> list[dict[str, float | int | None]]:
        out: list[dict[str, float | int | None]] = []
        for second in sorted(self.seconds):
            frames = self.seconds[second]
            row: dict[str, float | int | None] = {
                "second": second,
                "frames": len(frames),
                "face_present": round(sum(f.face_present for f in frames) / len(frames), 3),
            }
            for name in _NUMERIC:
                values = [v for f in frames if (v := getattr(f, name)) is not None]
                row[name] = round(float(np.mean(values)), 4) if values else None
            out.append(row)
        return out
