"""Real head-pose, lean and blink trajectories for the listener bench, taken from real clips.

A listener's face moves the way a real person's does: small nods and turns, leaning in and out,
blinks. This reads those motions from the FaceMesh landmarks of real clips (the unlabeled people
of ``bench/spotting/sources.py``, tracked once by ``meetings.load_source`` and cached next to the
clips) and hands them to ``rig.py``, which applies them to another person's face. Each donor's
stretch is its quietest one by mouth motion (the least talking the clip holds), so the head moves
as a person's head moves while they listen, or as close to it as the clip gets.

Donors are split like the people they are applied to: tune faces get donors from the calibration
half of the unlabeled people (``sources.calibration_half``), held-out faces from the other half.
LivePortrait's driving clips are left out: they are people pulling faces, not listening.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from scipy.ndimage import gaussian_filter1d

from bench.spotting.sources import CLIPS, Clip, calibration_half, clip_path
from inference.analyzer import FaceModels, ParticipantAnalyzer

DONORS_PER_HALF = 6
STRETCH_S = 8.0
SMOOTH_S = 0.06  # the quietest stretch this long is kept, played back and forth
# Eye aspect ratio landmarks (FaceMesh): outer/inner corners and two lid pairs per eye.
_EYES = ((33, 133, (160, 144), (158, 153)), (362, 263, (385, 380), (387, 373)))
NOSE_TIP = 1
NOSE_DEPTH_IOD = 0.6  # the nose tip stands ~0.6 IOD in front of the eye plane (spotting_params)


@dataclass(frozen=True, slots=True)
class Trajectory:
    """Per sample (media seconds ``t`` from 0): head offset (IOD), roll (degrees), scale (lean),
    yaw and pitch (degrees) relative to the stretch's median pose, and eye closure (0 open, 1 shut)."""

    donor: str
    t: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    roll: np.ndarray
    scale: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    closure: np.ndarray

    def at(self, t: float) -> dict[str, float]:
        """The pose at ``t``, the stretch played forward then backward (no jump at the ends)."""
        span = float(self.t[-1])
        x = t % (2 * span) if span > 0 else 0.0
        x = x if x <= span else 2 * span - x
        return {
            name: float(np.interp(x, self.t, getattr(self, name)))
            for name in ("dx", "dy", "roll", "scale", "yaw", "pitch", "closure")
        }


def _ear(lm: np.ndarray) -> float:
    out = []
    for a, b, (p1, q1), (p2, q2) in _EYES:
        width = np.linalg.norm(lm[a] - lm[b])
        out.append((np.linalg.norm(lm[p1] - lm[q1]) + np.linalg.norm(lm[p2] - lm[q2])) / (2 * width))
    return float(np.mean(out))


def trajectory(name: str, times: np.ndarray, landmarks: list[np.ndarray | None]) -> Trajectory | None:
    """The quietest ``STRETCH_S`` of a tracked clip as a Trajectory (None: too little face)."""
    ok = [i for i, lm in enumerate(landmarks) if lm is not None]
    if len(ok) < 20:
        return None
    t = times[ok]
    rows = []
    for i in ok:
        lm = landmarks[i]
        assert lm is not None
        r_eye, l_eye = lm[[33, 133]].mean(0), lm[[362, 263]].mean(0)
        ex = l_eye - r_eye
        iod = float(np.linalg.norm(ex))
        ux = ex / iod
        uy = np.array([-ux[1], ux[0]])
        mid = (r_eye + l_eye) / 2
        nose = (lm[NOSE_TIP] - mid) / iod
        mouth = float(np.linalg.norm(lm[13] - lm[14])) / iod
        rows.append((*(lm.mean(0)), iod, math.degrees(math.atan2(ex[1], ex[0])), nose @ ux, nose @ uy, mouth, _ear(lm)))
    a = np.asarray(rows)
    n = int(np.searchsorted(t, t[0] + STRETCH_S))
    if n >= len(t):
        lo, hi = 0, len(t)
    else:
        # the window with the least mouth motion: the nearest the clip comes to listening
        stds = [float(np.std(a[s : s + n, 6])) for s in range(0, len(t) - n, 5)]
        lo = 5 * int(np.argmin(stds))
        hi = lo + n
    a, t = a[lo:hi], t[lo:hi] - t[lo]
    # FaceMesh's landmarks jitter from frame to frame by ~1 % of the IOD; that is the tracker, not
    # the head, and passed on it would shake the target face faster than any head moves. Head
    # pose is kept below ~3 Hz (a Gaussian of SMOOTH_S); the eye columns are not smoothed.
    sigma = SMOOTH_S / max(float(np.median(np.diff(t))), 1e-3)
    a[:, :6] = gaussian_filter1d(a[:, :6], sigma, axis=0, mode="nearest")
    med = np.median(a, axis=0)
    iod0 = med[2]
    ear_open = float(np.percentile(a[:, 7], 80))
    return Trajectory(
        donor=name,
        t=t,
        dx=(a[:, 0] - med[0]) / iod0,
        dy=(a[:, 1] - med[1]) / iod0,
        roll=a[:, 3] - med[3],
        scale=a[:, 2] / iod0,
        yaw=np.degrees(np.arcsin(np.clip((a[:, 4] - med[4]) / NOSE_DEPTH_IOD, -1, 1))),
        pitch=np.degrees(np.arcsin(np.clip((a[:, 5] - med[5]) / NOSE_DEPTH_IOD, -1, 1))),
        closure=np.clip(1.0 - a[:, 7] / ear_open, 0.0, 1.0),
    )


def donor_clips(split: str) -> list[Clip]:
    """The donors for faces of ``split``: tune faces, the calibration half; held-out, the other."""
    want = split != "heldout"
    pool = [c for c in CLIPS if c.role == "unlabeled" and not c.name.startswith("lp_")]
    return [c for c in pool if calibration_half(c.identity) == want][:DONORS_PER_HALF]


def landmarks(models: FaceModels, path: Path, cache: Path) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Media times and FaceMesh landmarks of a clip, streamed (a long clip's frames need not fit
    in memory) and cached in ``meetings.load_source``'s file, which that function reads too."""
    lm_file = cache / f"{path.stem}.landmarks.npz"
    times: list[float] = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = float(stream.average_rate or 25)
        if lm_file.exists():
            for i, f in enumerate(c.decode(stream)):
                times.append(float(f.time) if f.time is not None else i / rate)
            data = np.load(lm_file)
            lms: list[np.ndarray | None] = [x if ok else None for x, ok in zip(data["lm"], data["ok"], strict=True)]
            return np.asarray(times) - times[0], lms
        analyzer = ParticipantAnalyzer(models, track_gaze=False, emotions_allowed=False)
        lms = []
        for i, f in enumerate(c.decode(stream)):
            t = float(f.time) if f.time is not None else i / rate
            times.append(t)
            face = analyzer.tracker.update(f.to_ndarray(format="rgb24"), t).primary
            lms.append(None if face is None else face.landmarks[:, :2].astype(np.float64))
    ok = np.array([x is not None for x in lms])
    np.savez_compressed(lm_file, lm=np.stack([x if x is not None else np.zeros((468, 2)) for x in lms]), ok=ok)
    return np.asarray(times) - times[0], lms


def donors(models: FaceModels, cache: Path, split: str) -> list[Trajectory]:
    out = []
    for clip in donor_clips(split):
        times, lms = landmarks(models, clip_path(cache, clip), cache)
        tr = trajectory(clip.name, times, lms)
        if tr is not None:
            out.append(tr)
    return out
