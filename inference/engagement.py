"""Sentiment, engagement, attention and presence as 1 Hz streams that speak only on change.

Engagement (0..1), documented in docs/architecture.md:
    engagement = presence * (0.35 * frontal + 0.25 * gaze_on_screen + 0.20 * eyes_open
                             + 0.20 * expressivity)
    frontal        = clip(1 - (|yaw| / 35)^2 - (|pitch| / 25)^2, 0, 1)
    gaze_on_screen = clip(1 - |gaze offset - usual gaze| / 0.25, 0, 1)   (1 without an iris estimate)
    eyes_open      = clip((EAR - 0.12) / (0.22 - 0.12), 0, 1)
    expressivity   = clip(recent facial motion / 1.5 px, 0, 1)
When emotion inference is not allowed (workplace, education), expressivity is left out and the
other weights are scaled to sum to 1 ("engagement from attention").
Attention = presence * frontal * gaze_on_screen.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from inference.cues import Cue
from inference.emotion_cnn import FER_LABELS, FER_TO_EMOTION
from inference.expressions import VALENCE

# Head within ~35 deg yaw / 25 deg pitch still faces a laptop screen (a 15" screen at 60 cm
# spans about +-15 deg; the rest is margin for camera placement).
FRONTAL_YAW_DEG = 35.0
FRONTAL_PITCH_DEG = 25.0
GAZE_OFF_SCREEN = 0.25  # iris offset in eye widths where the eyes clearly look away
GAZE_BASELINE_TAU_S = 30.0  # a person's usual gaze adapts over about half a minute
EAR_CLOSED, EAR_OPEN = 0.12, 0.22  # Soukupova & Cech 2016 ranges
EXPRESSIVITY_PX = 1.5  # mean region motion per frame that counts as fully animated
WEIGHTS = {"frontal": 0.35, "gaze": 0.25, "eyes": 0.20, "expressivity": 0.20}
# Emit when the 1 Hz value moved this much since the last emitted one (a quiet meeting stays quiet).
CHANGE_ENGAGEMENT = 0.10
CHANGE_ATTENTION = 0.15
CHANGE_SENTIMENT = 0.15
# ... and at least this often, so a dashboard that joins late is not stale for long.
REFRESH_S = 30.0
STREAM_PERIOD_S = 1.0
# Sentiment smoothing: exponential with this time constant over CNN valence readings.
SENTIMENT_TAU_S = 2.0


@dataclass(frozen=True, slots=True)
class EngagementInputs:
    t: float
    present: bool
    yaw: float = 0.0
    pitch: float = 0.0
    gaze: tuple[float, float] | None = None
    eye_openness: float = 0.0
    motion_px: float = 0.0


class GazeBaseline:
    """A person's usual iris offset (slow exponential mean over their own face).

    The iris sits a little below the eye-corner line even when someone looks straight at the
    camera (tests/data/WolfgangLanger_Pexels.mp4: +0.10 eye widths), and the screen is rarely
    where the camera is; people look at their screen most of the time, so their own long-run
    gaze is the best estimate of "toward the screen".
    """

    def __init__(self, tau_s: float = GAZE_BASELINE_TAU_S) -> None:
        self.tau_s = tau_s
        self._mean: np.ndarray | None = None
        self._t: float | None = None

    def deviation(self, t: float, gaze: tuple[float, float] | None) -> tuple[float, float] | None:
        if gaze is None:
            return None
        g = np.asarray(gaze, dtype=np.float64)
        if self._mean is None or self._t is None:
            self._mean = g.copy()
        else:
            a = 1.0 - math.exp(-max(t - self._t, 0.0) / self.tau_s)
            self._mean += a * (g - self._mean)
        self._t = t
        d = g - self._mean
        return float(d[0]), float(d[1])


def components(x: EngagementInputs) -> dict[str, float]:
    frontal = 1.0 - (abs(x.yaw) / FRONTAL_YAW_DEG) ** 2 - (abs(x.pitch) / FRONTAL_PITCH_DEG) ** 2
    gaze = 1.0 if x.gaze is None else 1.0 - math.hypot(*x.gaze) / GAZE_OFF_SCREEN
    eyes = (x.eye_openness - EAR_CLOSED) / (EAR_OPEN - EAR_CLOSED)
    expressivity = x.motion_px / EXPRESSIVITY_PX
    return {
        k: float(np.clip(v, 0.0, 1.0))
        for k, v in {"frontal": frontal, "gaze": gaze, "eyes": eyes, "expressivity": expressivity}.items()
    }


def engagement(x: EngagementInputs, with_expressivity: bool = True) -> float:
    if not x.present:
        return 0.0
    c = components(x)
    weights = dict(WEIGHTS)
    if not with_expressivity:
        weights.pop("expressivity")
    return sum(c[k] * w for k, w in weights.items()) / sum(weights.values())


def attention(x: EngagementInputs) -> float:
    if not x.present:
        return 0.0
    c = components(x)
    return c["frontal"] * c["gaze"]


def cnn_valence(probs: np.ndarray) -> float:
    """Expected valence under the CNN's class probabilities (neutral counts as 0)."""
    return float(
        sum(p * VALENCE[FER_TO_EMOTION.get(label, "neutral")] for label, p in zip(FER_LABELS, probs, strict=True))
    )


class _Stream:
    def __init__(self, kind: str, change: float) -> None:
        self.kind, self.change = kind, change
        self.last_value: float | None = None
        self.last_t = -math.inf

    def offer(self, t: float, value: float) -> Cue | None:
        if self.last_value is None or abs(value - self.last_value) >= self.change or t - self.last_t >= REFRESH_S:
            self.last_value, self.last_t = value, t
            return Cue(type=self.kind, t=round(t, 3), value=round(value, 3))  # type: ignore[arg-type]
        return None


class StreamCues:
    """Collects per-frame inputs; once per second emits the cues whose value changed meaningfully."""

    def __init__(self, emotions_allowed: bool = True) -> None:
        self.emotions_allowed = emotions_allowed
        self._frames: deque[EngagementInputs] = deque()
        self._sentiment: float | None = None
        self._sentiment_t: float | None = None
        self._period_start: float | None = None
        self._presence: bool | None = None
        self._streams = {
            "engagement": _Stream("engagement", CHANGE_ENGAGEMENT),
            "attention": _Stream("attention", CHANGE_ATTENTION),
            "sentiment": _Stream("sentiment", CHANGE_SENTIMENT),
        }

    def add_valence(self, t: float, valence: float) -> None:
        if self._sentiment is None or self._sentiment_t is None:
            self._sentiment = valence
        else:
            a = 1.0 - math.exp(-max(t - self._sentiment_t, 0.0) / SENTIMENT_TAU_S)
            self._sentiment += a * (valence - self._sentiment)
        self._sentiment_t = t

    @property
    def sentiment(self) -> float | None:
        return self._sentiment

    def push(self, x: EngagementInputs) -> list[Cue]:
        self._frames.append(x)
        if self._period_start is None:
            self._period_start = x.t
        if x.t - self._period_start < STREAM_PERIOD_S:
            return []
        frames = list(self._frames)
        self._frames.clear()
        self._period_start = x.t
        out: list[Cue] = []
        present_share = sum(f.present for f in frames) / len(frames)
        present = present_share >= 0.5  # noqa: PLR2004 - majority of the second
        if present != self._presence:
            self._presence = present
            out.append(
                Cue(
                    type="presence",
                    t=round(x.t, 3),
                    value=1.0 if present else 0.0,
                    detail="face in view" if present else "no face in view",
                )
            )
        eng = float(np.mean([engagement(f, self.emotions_allowed) for f in frames]))
        att = float(np.mean([attention(f) for f in frames]))
        for kind, value in (("engagement", eng), ("attention", att)):
            cue = self._streams[kind].offer(x.t, value)
            if cue is not None:
                out.append(cue)
        if self.emotions_allowed and self._sentiment is not None and present:
            cue = self._streams["sentiment"].offer(x.t, self._sentiment)
            if cue is not None:
                out.append(cue)
        return out
