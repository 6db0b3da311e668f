"""Render spotting test videos: a real face, injected actions of known timing, distractors.

Each video comes with a truth file: the injected expressions (onset, apex, offset, emotion) and
the distractor-only stretches used for false positives per minute.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from bridge.demo.actions import BLINK, EMOTION_AUS, EMOTIONS, TALK, Action, Move, contempt_aus
from bridge.demo.puppet import action_moves, displacement_controls, face_axes, warp
from bridge.demo.scene import BACKGROUND, FRAME_SIZE, Pose, astronaut, pose_matrix

CLIP_NEUTRAL_FRAMES = 36  # tests/data/single_face.mp4: the first 1.2 s are neutral (a smile follows)
CLIP_FPS = 30.0


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    amplitude: tuple[float, float]  # micro apex displacement, IOD
    sway_px: float
    roll_deg: float
    yaw_turns: bool
    blinks_per_min: float
    talk_share: float  # share of the time spent talking
    light_drift: float
    flicker: float
    noise: float
    bitrate_kbps: int | None  # None: crf 18 (visually lossless)
    real_clip: bool


TIERS: dict[str, Tier] = {
    "easy": Tier("easy", (0.07, 0.10), 8, 2, False, 6, 0.0, 0.03, 0.0, 1.5, None, False),
    "medium": Tier("medium", (0.05, 0.08), 25, 6, False, 15, 0.2, 0.10, 0.01, 3.0, 1200, False),
    "hard": Tier("hard", (0.04, 0.07), 40, 10, True, 18, 0.3, 0.15, 0.03, 4.0, 500, True),
}


@dataclass
class Scenario:
    tier: Tier
    seconds: float
    fps: float
    seed: int
    actions: list[Action] = field(default_factory=list)
    blinks: list[tuple[float, float]] = field(default_factory=list)  # start, duration
    talks: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, Hz
    turns: list[tuple[float, float, float]] = field(default_factory=list)  # start, duration, degrees
    distractor_only: list[tuple[float, float]] = field(default_factory=list)
    use_clip: bool = False


def make_scenario(tier: Tier, seconds: float = 60.0, fps: float = 15.0, seed: int = 0) -> Scenario:
    """Expressions in the first 75 % of the video, distractors everywhere, the last 25 % only
    distractors (the false-positive stretch)."""
    rng = np.random.default_rng(seed)
    sc = Scenario(tier, seconds, fps, seed, use_clip=tier.real_clip and seed % 2 == 1)
    events_end = seconds * 0.75
    t = 2.0
    while t < events_end - 4.0:
        macro = rng.random() < 0.2
        emotion = str(rng.choice(EMOTIONS))
        aus = EMOTION_AUS[emotion]
        if emotion == "contempt":
            aus = contempt_aus(str(rng.choice(["R", "L"])))
        duration = rng.uniform(1.0, 2.5) if macro else rng.uniform(0.25, 0.45)
        apex_at = rng.uniform(0.4, 0.6) if not macro else rng.uniform(0.3, 0.5)
        amp = rng.uniform(*tier.amplitude) * (1.6 if macro else 1.0)
        sc.actions.append(
            Action("macro" if macro else "micro", emotion, aus, t, t + apex_at * duration, t + duration, amp)
        )
        t += duration + rng.uniform(2.0, 4.0)
    sc.distractor_only.append((events_end, seconds))
    n_blinks = int(tier.blinks_per_min * seconds / 60)
    for bt in np.sort(rng.uniform(0.5, seconds - 0.5, n_blinks)):
        if not any(a.onset - 0.4 < bt < a.offset + 0.4 for a in sc.actions):
            sc.blinks.append((float(bt), float(rng.uniform(0.15, 0.3))))
    talk_left = tier.talk_share * seconds
    attempts = 0
    while talk_left > 1.0 and attempts < 200:
        attempts += 1
        start, length = float(rng.uniform(0, seconds - 3)), float(rng.uniform(2.0, 6.0))
        end = min(seconds, start + length)
        clash = any(a.onset - 0.5 < end and start < a.offset + 0.5 and set(a.aus) & _MOUTH_AUS for a in sc.actions)
        if clash or any(s < end and start < e for s, e, _ in sc.talks):
            continue
        sc.talks.append((start, end, float(rng.uniform(3.0, 6.0))))
        talk_left -= end - start
    if tier.yaw_turns:
        for tt in np.arange(5.0, seconds - 2, 12.0):
            sc.turns.append(
                (
                    float(tt + rng.uniform(0, 3)),
                    float(rng.uniform(0.8, 1.5)),
                    float(rng.choice([-1, 1]) * rng.uniform(10, 20)),
                )
            )
    return sc


_MOUTH_AUS = {"AU10", "AU12", "AU12R", "AU12L", "AU14R", "AU14L", "AU15", "AU20", "AU23", "AU24", "AU26"}


def yaw_warp(image: np.ndarray, lm: np.ndarray, degrees: float) -> np.ndarray:
    """A head turn about the vertical axis: the face mapped onto a cylinder and rotated."""
    if degrees == 0:
        return image
    _, _, iod = face_axes(lm)
    cx = float(lm[[33, 133, 362, 263], 0].mean())
    radius = 1.6 * iod
    h, w = image.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    phi = np.arcsin(np.clip((xs - cx) / radius, -1, 1)) - math.radians(degrees)
    src = np.where(np.abs(phi) < math.pi / 2, cx + radius * np.sin(phi), xs).astype(np.float32)
    return cv2.remap(image, src, ys, cv2.INTER_LINEAR)


def _moves_at(sc: Scenario, t: float) -> list[tuple[Move, float]]:
    moves = action_moves(sc.actions, t)
    for start, dur in sc.blinks:
        if start <= t <= start + dur:
            w = math.sin(math.pi * (t - start) / dur)
            moves += [(m, w) for m in BLINK]
    for start, end, hz in sc.talks:
        if start <= t <= end:
            w = 0.09 * (0.5 - 0.5 * math.cos(2 * math.pi * hz * (t - start)))
            moves += [(m, w) for m in TALK]
    return moves


def _turn_at(sc: Scenario, t: float) -> float:
    for start, dur, deg in sc.turns:
        if start <= t <= start + 2 * dur + 1.0:  # turn, hold 1 s, turn back
            if t < start + dur:
                return deg * (0.5 - 0.5 * math.cos(math.pi * (t - start) / dur))
            if t < start + dur + 1.0:
                return deg
            return deg * (0.5 + 0.5 * math.cos(math.pi * (t - start - dur - 1.0) / dur))
    return 0.0


def _pose_at(sc: Scenario, t: float, rng_phase: np.ndarray) -> Pose:
    tier = sc.tier
    return Pose(
        dx=tier.sway_px * math.sin(0.5 * t + rng_phase[0]),
        dy=0.4 * tier.sway_px * math.sin(0.37 * t + rng_phase[1]),
        angle=tier.roll_deg * math.sin(0.29 * t + rng_phase[2]),
    )


def source_frames(
    sc: Scenario, clip_frames: list[tuple[np.ndarray, np.ndarray]] | None, astronaut_landmarks: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """(source image, its landmarks, its face centre) per output frame."""
    n = math.ceil(sc.seconds * sc.fps)
    if sc.use_clip and clip_frames:
        # Sweep back and forth through the neutral stretch along a cosine, so the clip's own slow
        # motion eases to a stop at each end. A plain ping-pong reversed it abruptly every pass,
        # which put a sharp V (an "apex") into every trajectory: expression-like events nobody
        # injected, not a property of real video.
        last = len(clip_frames) - 1
        period_s = 4.0 * len(clip_frames) / CLIP_FPS  # half speed each way
        for i in range(n):
            phase = 2 * math.pi * (i / sc.fps) / period_s
            img, lm = clip_frames[round(last * (1 - math.cos(phase)) / 2)]
            yield img, lm, (float(lm[:, 0].mean()), float(lm[:, 1].mean()))
    else:
        img = astronaut()
        centre = (float(astronaut_landmarks[:, 0].mean()), float(astronaut_landmarks[:, 1].mean()))
        for _ in range(n):
            yield img, astronaut_landmarks, centre


def render(
    sc: Scenario,
    out: Path,
    astronaut_landmarks: np.ndarray,
    clip_frames: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> int:
    rng = np.random.default_rng(sc.seed + 1000)
    phase = rng.uniform(0, 2 * math.pi, 3)
    tier = sc.tier
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(sc.fps).limit_denominator(1001))
        stream.width, stream.height = FRAME_SIZE
        stream.pix_fmt = "yuv420p"
        if tier.bitrate_kbps:
            stream.bit_rate = tier.bitrate_kbps * 1000
            stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        else:
            stream.options = {"crf": "18", "preset": "veryfast"}
        for i, (img, lm, centre) in enumerate(source_frames(sc, clip_frames, astronaut_landmarks)):
            t = i / sc.fps
            face = warp(img, displacement_controls(lm, _moves_at(sc, t)))
            face = yaw_warp(face, lm, _turn_at(sc, t))
            scale = 1.3 if not sc.use_clip else 1.0
            m = pose_matrix(Pose(**{**asdict(_pose_at(sc, t, phase)), "scale": scale}), FRAME_SIZE, centre)
            frame = cv2.warpAffine(
                face, m, FRAME_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND
            ).astype(np.float32)
            gain = 1.0 + tier.light_drift * math.sin(2 * math.pi * t / 23.0) + tier.flicker * rng.standard_normal()
            frame = frame * gain + rng.normal(0, tier.noise, frame.shape)
            rgb = np.clip(frame, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def truth(sc: Scenario, frames: int) -> dict[str, object]:
    def fi(t: float) -> int:
        return min(frames - 1, round(t * sc.fps))

    return {
        "tier": sc.tier.name,
        "fps": sc.fps,
        "frames": frames,
        "seed": sc.seed,
        "base": "tests/data/single_face.mp4" if sc.use_clip else "astronaut photograph",
        "events": [
            {
                "kind": a.kind,
                "emotion": a.emotion,
                "aus": list(a.aus),
                "onset_frame": fi(a.onset),
                "apex_frame": fi(a.apex),
                "offset_frame": fi(a.offset),
                "onset_s": a.onset,
                "apex_s": a.apex,
                "offset_s": a.offset,
                "amplitude_iod": a.amplitude,
            }
            for a in sc.actions
        ],
        "distractor_only": [{"start_s": s, "end_s": e} for s, e in sc.distractor_only],
        "blinks": len(sc.blinks),
        "talk_s": round(sum(e - s for s, e, _ in sc.talks), 2),
        "head_turns": len(sc.turns),
    }


def write_truth(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
