"""Spotter and motion variants measured against the shipped ones (issue 11, fourth pass).

None of them ships: each lost to the shipped code on the tune identities and the unlabeled clips
(figures in docs/benchmarks.md, "Fourth pass"). They are kept so those figures can be rerun:

    python -m bench.spotting.replay --split tune --videos-per-face 3 --unlabeled --variant NAME

The motion variants recompute the frame's optical flow after the shipped extractor has used it,
so their cost per frame is not what a shipped version would cost.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from inference import motion as m
from inference.regions import region_centres
from inference.spotting import (
    MIN_NOISE_PX,
    MIN_SAMPLES_FOR_NOISE,
    NOISE_REFRESH,
    RAYLEIGH_MAD,
    Spotter,
    _Channel,
)
from inference.types import FaceObservation


class LocalNoiseSpotter(Spotter):
    """Noise scale from the last ``LOCAL_S`` seconds instead of the last 20: a talker's pauses
    would get a small scale (more sensitive) and bursts a large one. ``LONG_SHARE`` keeps the
    scale at least that share of the 20-s one (1: only ever raised by a busy stretch)."""

    LOCAL_S = 3.0
    LONG_SHARE = 0.0

    def _noise(self, ch: _Channel) -> tuple[np.ndarray, np.ndarray]:
        if len(ch.fd_history) < MIN_SAMPLES_FOR_NOISE:
            return super()._noise(ch)
        if ch.noise is None or ch.noise_xy is None or len(self.samples) % NOISE_REFRESH == 0:
            everything = np.stack(ch.fd_history)
            recent = everything[-max(MIN_SAMPLES_FOR_NOISE, int(self.LOCAL_S * self.fps())):]
            length = np.maximum(np.median(np.hypot(recent[..., 0], recent[..., 1]), axis=0),
                                self.LONG_SHARE * np.median(np.hypot(everything[..., 0], everything[..., 1]), axis=0))
            per_axis = np.maximum(np.median(recent, axis=0), self.LONG_SHARE * np.median(everything, axis=0))
            ch.noise = np.maximum(length * 1.4826 + 1e-6, MIN_NOISE_PX)
            ch.noise_xy = np.maximum(per_axis * 1.4826 + 1e-6, MIN_NOISE_PX / RAYLEIGH_MAD)
        return ch.noise, ch.noise_xy


class LocalNoiseFloorSpotter(LocalNoiseSpotter):
    """The local scale, never below the 20-s one."""

    LONG_SHARE = 1.0


class NoTalkVetoSpotter(Spotter):
    """Talking no longer takes the mouth regions out of a window (their noise scale, large while
    talking, weighs them down anyway); mouth-only events during talk are still dropped."""

    def _mask(self, lo: int, mid: int, hi: int, talking: bool, record: bool) -> np.ndarray | None:
        return super()._mask(lo, mid, hi, False, record)


class _RecomputingMotion(m.MotionExtractor):
    """Runs the shipped extractor, then hands the same frame pair's flow to ``_revise``."""

    def __call__(self, grey: np.ndarray, face: FaceObservation, t: float) -> m.MotionSample:
        prev = self._prev
        sample = super().__call__(grey, face, t)
        if not sample.chained or prev is None or self._prev is None:
            return sample
        flow = self._dis.calc(prev[2], self._prev[2], None)  # type: ignore[call-overload]
        return self._revise(sample, flow, prev[3], self._prev[3], face)

    def _revise(self, sample: m.MotionSample, flow: np.ndarray, before: np.ndarray, after: np.ndarray,
                face: FaceObservation) -> m.MotionSample:
        raise NotImplementedError


class LandmarkOcclusionMotion(_RecomputingMotion):
    """The occlusion test reads what the flow did that the landmarks did not: a hand drags the
    flow but not FaceMesh's face, while the face's own motion (a jaw, a squint) moves both."""

    def _revise(self, sample: m.MotionSample, flow: np.ndarray, before: np.ndarray, after: np.ndarray,
                face: FaceObservation) -> m.MotionSample:
        c0, c1 = region_centres(before), region_centres(after)
        _, samples = m.disc_samples(flow, c0)
        unexplained = np.linalg.norm(samples - (c1 - c0)[m._DISC_OWNER], axis=1)
        motion = np.add.reduceat(unexplained, m._DISC_STARTS) / m._DISC_SIZES
        return dataclasses.replace(sample, region_motion=motion.astype(np.float32))


# the head fit's flow samples (x, y), canonical px
_FIT_GRID = np.stack([m._FIT_XS, m._FIT_YS], axis=1).astype(np.float64)


def fit_with_depth(flow: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shipped robust head fit (inference.motion.rigid_motion) with two more unknowns, p and q
    in u += p z, v += q z: (a, b, tx, c, d, ty, p, q) and each fit sample's residual length.
    ``depth``: z at each of the fit's grid samples (canonical px, zero mean)."""
    n = len(depth)
    design = np.zeros((2 * n, 8))
    design[:, :6] = m._FIT_DESIGN
    design[:n, 6] = design[n:, 7] = depth
    uv = flow[m._FIT_YS, m._FIT_XS].astype(np.float64)
    b = np.concatenate([uv[:, 0], uv[:, 1]])
    weights = np.ones(2 * n)
    params = np.zeros(8)
    dist = np.zeros(n)
    for _ in range(m.RIGID_ITERATIONS):
        aw = design * weights[:, None]
        params = np.linalg.solve(aw.T @ design + 1e-9 * np.eye(8), aw.T @ b)
        res = (design @ params - b).reshape(2, n)
        dist = np.hypot(res[0], res[1])
        weights = np.tile(1.0 / (1.0 + (dist / m.RIGID_CAUCHY_PX) ** 2), 2)
    return params, dist


class DepthFitMotion(_RecomputingMotion):
    """Head motion fitted with parallax: the affine fit plus u += p z, v += q z, z being FaceMesh's
    depth (canonical px), so a turn or nod no longer leaves the brows, nose and chin (in front of
    or behind the eye plane) with residual motion. Issue 11 item 4 suggested 3D alignment."""

    def reset(self) -> None:
        super().reset()
        self._depth: np.ndarray | None = None

    def __call__(self, grey: np.ndarray, face: FaceObservation, t: float) -> m.MotionSample:
        sample = super().__call__(grey, face, t)
        scale = float(np.sqrt(abs(np.linalg.det(face.to_canonical[:, :2]))))
        z = face.landmarks[:, 2] * scale
        self._depth = z - z.mean()
        return sample

    def _revise(self, sample: m.MotionSample, flow: np.ndarray, before: np.ndarray, after: np.ndarray,
                face: FaceObservation) -> m.MotionSample:
        if self._depth is None:  # the previous frame's depth, set after its own _revise
            return sample
        z = self._depth
        nearest = np.argmin(((_FIT_GRID[:, None, :] - before[None, :, :2]) ** 2).sum(axis=2), axis=1)
        params, dist = fit_with_depth(flow, z[nearest])

        def head(points: np.ndarray, depth: np.ndarray) -> np.ndarray:
            return m.rigid_at(params[:6], points) + np.stack([params[6] * depth, params[7] * depth], axis=1)

        centres = region_centres(before)
        region_z = region_centres(np.column_stack([z, z]))[:, 0]  # each region's mean depth, as its centre
        pts, samples = m.disc_samples(flow, centres)
        residual = np.linalg.norm(samples - head(pts, region_z[m._DISC_OWNER]), axis=1)
        flows = np.add.reduceat(samples, m._DISC_STARTS, axis=0) / m._DISC_SIZES[:, None] - head(centres, region_z)
        moving = np.add.reduceat(residual, m._DISC_STARTS) / m._DISC_SIZES
        return dataclasses.replace(sample, flow=flows.astype(np.float32), outliers=float((dist > m.OUTLIER_PX).mean()),
                                   region_motion=moving.astype(np.float32))


VARIANTS: dict[str, tuple[type[Spotter], type[m.MotionExtractor]]] = {
    "shipped": (Spotter, m.MotionExtractor),
    "local-noise": (LocalNoiseSpotter, m.MotionExtractor),
    "local-noise-floor": (LocalNoiseFloorSpotter, m.MotionExtractor),
    "no-talk-veto": (NoTalkVetoSpotter, m.MotionExtractor),
    "landmark-occlusion": (NoTalkVetoSpotter, LandmarkOcclusionMotion),
    "depth-fit": (Spotter, DepthFitMotion),
}
