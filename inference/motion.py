"""Per-frame motion features: aligned face crops, dense optical flow, mean flow per region.

Alignment removes head translation, in-plane rotation and scale; the nose-bridge region's flow
(what alignment left behind) is subtracted from every region; crops are normalised in brightness
and contrast before the flow so a lighting change is not read as motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.alignment import CANONICAL_5PT, CANONICAL_SIZE, apply, warp_face
from inference.facegeometry import mean_openness
from inference.regions import REGIONS, Region, region_centres
from inference.types import FaceObservation

# A jump in media time longer than this breaks the motion chain (dropped frames, a lost face):
# flow across it would not be a face moving but two unrelated moments.
MAX_FLOW_GAP_S = 0.35
# Grey-level statistics every crop is normalised to before the flow (lighting invariance).
NORM_MEAN, NORM_STD = 128.0, 48.0
# FER crop: the 64x64 grey input of mini-XCEPTION (docs/sources.md), with the face filling ~75 % of
# the width like the FER2013 training crops.
FER_SIZE = 64
FER_FACE_FILL = 0.75
# Residual head motion is fitted to the flow itself, not taken from landmarks: FaceMesh regresses
# all 468 points jointly, so a smile or a blink shifts the eye corners and temples too, and any
# landmark-based alignment turned a local action into a global shift (bench/spotting easy tier:
# a fear micro-expression read as the whole face zooming). A robust (Cauchy-weighted) similarity
# fit over the whole face treats the expression's few moving pixels as outliers.
RIGID_GRID_STEP = 6  # canonical pixels between flow samples of the fit (~270 samples)
DIS_PATCH, DIS_STRIDE = 8, 6
RIGID_CAUCHY_PX = 0.3  # residual scale of the robust weights
RIGID_ITERATIONS = 2
OUTLIER_PX = 1.0  # residual flow that counts a face sample as moving on its own
# Inner-lip gap over mouth width: the talking signal.
INNER_LIP_UPPER, INNER_LIP_LOWER = 13, 14
MOUTH_CORNERS = (61, 291)
NOSE_TIP = 1


def _disc(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
    keep = xs**2 + ys**2 <= radius**2
    return np.stack([xs[keep], ys[keep]], axis=1)


_DISCS = [_disc(r.radius) for r in REGIONS]


def _fer_template() -> np.ndarray:
    centre = CANONICAL_5PT.mean(0)
    width = np.ptp(CANONICAL_5PT[:, 0]) / 0.45  # eye-to-eye span is ~45 % of a face's width
    scale = FER_SIZE * FER_FACE_FILL / width
    return np.asarray((CANONICAL_5PT - centre) * scale + np.array([FER_SIZE / 2, FER_SIZE / 2 + 2.0]))


FER_TEMPLATE = _fer_template()


def _fer_from_canonical() -> np.ndarray:
    """2x3 affine taking canonical-crop pixels to FER-crop pixels. FER_TEMPLATE is CANONICAL_5PT
    scaled about its centre and moved, so the least-squares fit of a face's five points to it is
    this map after the face's canonical transform, exactly: the FER crop needs no fit of its own."""
    centre = CANONICAL_5PT.mean(0)
    scale = float(np.ptp(FER_TEMPLATE[:, 0]) / np.ptp(CANONICAL_5PT[:, 0]))
    offset = FER_TEMPLATE.mean(0) - scale * centre
    return np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])


FER_FROM_CANONICAL = _fer_from_canonical()


def fer_matrix(to_canonical: np.ndarray) -> np.ndarray:
    """Image -> FER crop, from the face's image -> canonical transform (see _fer_from_canonical)."""
    lin = FER_FROM_CANONICAL[:, :2]
    return np.hstack([lin @ to_canonical[:, :2], (lin @ to_canonical[:, 2] + FER_FROM_CANONICAL[:, 2])[:, None]])


@dataclass(frozen=True, slots=True)
class MotionSample:
    """One analysed frame of one face, in the rolling buffer."""

    t: float
    flow: np.ndarray = field(repr=False)  # (R, 2) mean flow per region since the previous sample
    chained: bool  # False: the first sample after a gap; its flow is zero by construction
    eye_openness: float
    mouth_open: float
    brightness: float
    outliers: float  # share of the face moving apart from the head (a hand, hair, an object)
    turn: float  # nose tip left/right of the eye-corner midpoint, in inter-ocular distances
    nod: float  # nose tip below the eye-corner midpoint, in inter-ocular distances
    fer_crop: np.ndarray = field(repr=False)  # (64, 64) uint8 grey, for the emotion CNN
    # (R,) mean residual flow magnitude inside each region this frame (canonical px): what moved
    # apart from the head there. A hand or hair crossing a region moves it by several pixels in a
    # frame; an action unit, spread over its rise, by a fraction of one. None: not measured.
    region_motion: np.ndarray | None = field(default=None, repr=False)


def _fit_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = (CANONICAL_SIZE - 1) / 2.0
    ys, xs = np.mgrid[
        RIGID_GRID_STEP // 2 : CANONICAL_SIZE : RIGID_GRID_STEP, RIGID_GRID_STEP // 2 : CANONICAL_SIZE : RIGID_GRID_STEP
    ]
    # the face ellipse of the canonical crop; corners hold background and hair
    inside = ((xs - c) / (0.46 * CANONICAL_SIZE)) ** 2 + ((ys - c - 4) / (0.52 * CANONICAL_SIZE)) ** 2 <= 1.0
    xy = np.stack([xs[inside] - c, ys[inside] - c], axis=1).astype(np.float64)
    n = len(xy)
    # u = a x + b y + tx ; v = c x + d y + ty, x and y from the centre. Affine, not similarity:
    # a small head turn or nod foreshortens the face along one axis, which a similarity
    # cannot remove and which then read as expressions near the face's edges (bench hard tier).
    design = np.zeros((2 * n, 6))
    design[:n, 0], design[:n, 1], design[:n, 2] = xy[:, 0], xy[:, 1], 1.0
    design[n:, 3], design[n:, 4], design[n:, 5] = xy[:, 0], xy[:, 1], 1.0
    return ys[inside], xs[inside], design


_FIT_YS, _FIT_XS, _FIT_DESIGN = _fit_grid()
#: (n, 3) rows (x, y, 1) of the fit's samples: one block of the design (see rigid_motion)
_FIT_X3 = np.ascontiguousarray(_FIT_DESIGN[: len(_FIT_YS), :3])
_RIDGE3 = 1e-9 * np.eye(3)
_CENTRE = (CANONICAL_SIZE - 1) / 2.0


def rigid_motion(flow: np.ndarray) -> tuple[np.ndarray, float]:
    """Affine motion (a, b, tx, c, d, ty) that best explains ``flow`` over the face, fitted by
    iteratively reweighted least squares so the expression's moving pixels count as outliers;
    and the share of face samples the fit leaves more than OUTLIER_PX off (what moved on its own).

    u and v share the sample positions and the weights (a sample's weight is that of its whole
    residual vector), so the 6x6 normal equations are two copies of one 3x3 system: solved once
    with both right-hand sides, the same fit at a third of the cost (issue 23's profile).
    """
    uv = flow[_FIT_YS, _FIT_XS].astype(np.float64)  # (n, 2)
    w = np.ones(len(uv))
    params = np.zeros(6)
    for _ in range(RIGID_ITERATIONS):
        xw = _FIT_X3 * w[:, None]
        coef = np.linalg.solve(xw.T @ _FIT_X3 + _RIDGE3, xw.T @ uv)  # (3, 2): (a, b, tx) and (c, d, ty)
        res = _FIT_X3 @ coef - uv
        dist = np.hypot(res[:, 0], res[:, 1])
        w = 1.0 / (1.0 + (dist / RIGID_CAUCHY_PX) ** 2)
    params = coef.T.reshape(6)
    return params, float((dist > OUTLIER_PX).mean())


def rigid_at(params: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The fitted rigid flow at canonical ``points`` (N, 2)."""
    a, b, tx, c, d, ty = params
    x, y = points[:, 0] - _CENTRE, points[:, 1] - _CENTRE
    return np.stack([a * x + b * y + tx, c * x + d * y + ty], axis=1)


_DISC_OFFSETS = np.concatenate(_DISCS)
_DISC_OWNER = np.repeat(np.arange(len(REGIONS)), [len(d) for d in _DISCS])
_DISC_STARTS = np.concatenate([[0], np.cumsum([len(d) for d in _DISCS])[:-1]])
_DISC_SIZES = np.array([len(d) for d in _DISCS], dtype=np.float64)


def disc_samples(flow: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every region disc's pixel positions (N, 2), clipped to the crop, and the flow there (N, 2);
    ``centres`` (R, 2) are the regions' centres in canonical pixels."""
    h, w = flow.shape[:2]
    pts = np.rint(centres).astype(np.int64)[_DISC_OWNER] + _DISC_OFFSETS
    np.clip(pts[:, 0], 0, w - 1, out=pts[:, 0])
    np.clip(pts[:, 1], 0, h - 1, out=pts[:, 1])
    return pts.astype(np.float64), flow[pts[:, 1], pts[:, 0]].astype(np.float64)


def region_flows(
    flow: np.ndarray, canonical_landmarks: np.ndarray, regions: tuple[Region, ...] = REGIONS
) -> tuple[np.ndarray, float, np.ndarray]:
    """(R, 2) mean flow per region, minus the head's rigid motion at each region's centre
    (the mean of a linear field over a disc is its value at the centre), the outlier share, and
    (R,) the mean magnitude of the residual flow inside each region (see MotionSample)."""
    centres = region_centres(canonical_landmarks, regions)
    pts, samples = disc_samples(flow, centres)
    sums = np.add.reduceat(samples, _DISC_STARTS, axis=0)
    params, outliers = rigid_motion(flow)
    residual = np.linalg.norm(samples - rigid_at(params, pts), axis=1)
    motion = np.add.reduceat(residual, _DISC_STARTS) / _DISC_SIZES
    return sums / _DISC_SIZES[:, None] - rigid_at(params, centres), outliers, motion


class MotionExtractor:
    """Per-participant state: the previous aligned crop and its landmarks."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        # The presets stop at a coarser scale than the 112-px crop and smooth away a 2-px mouth-corner
        # movement (measured: 0.06 px found of ~2.5 px); full resolution finds it. Patch stride 6
        # instead of 4 halves the cost (1.38 -> 0.72 ms on one core) at the same signal-to-noise
        # ratio on a 2-px AU12+AU14 warp (26.7 vs 28.2).
        self._dis.setFinestScale(0)
        self._dis.setVariationalRefinementIterations(0)
        self._dis.setPatchSize(DIS_PATCH)
        self._dis.setPatchStride(DIS_STRIDE)
        self.reset()

    def reset(self) -> None:
        self._prev: tuple[float, int, np.ndarray, np.ndarray] | None = None
        self._rigid_ref: np.ndarray | None = None

    def __call__(self, grey: np.ndarray, face: FaceObservation, t: float) -> MotionSample:
        prev = self._prev
        chained = prev is not None and prev[1] == face.track_id and 0 < t - prev[0] <= MAX_FLOW_GAP_S
        matrix = face.to_canonical
        crop = warp_face(grey, matrix, CANONICAL_SIZE).astype(np.float32)
        brightness = float(crop.mean())
        crop = np.clip((crop - brightness) * (NORM_STD / (crop.std() + 1e-6)) + NORM_MEAN, 0, 255).astype(np.uint8)
        canon = apply(matrix, face.landmarks)
        if chained:
            assert prev is not None
            # cv2's stubs reject None for the output flow, which OpenCV then allocates.
            flow = self._dis.calc(prev[2], crop, None)  # type: ignore[call-overload]
            flows, outliers, motion = region_flows(flow, prev[3])
        else:
            flows, outliers = np.zeros((len(REGIONS), 2), dtype=np.float32), 0.0
            motion = np.zeros(len(REGIONS))
        self._prev = (t, face.track_id, crop, canon)
        fer = cv2.warpAffine(
            grey,
            fer_matrix(matrix),
            (FER_SIZE, FER_SIZE),
            flags=cv2.INTER_AREA,
            borderMode=cv2.BORDER_REPLICATE,
        )
        eyes = canon[[33, 133, 362, 263]].mean(0)
        iod = float(np.linalg.norm(canon[[362, 263]].mean(0) - canon[[33, 133]].mean(0))) + 1e-6
        turn, nod = ((canon[NOSE_TIP] - eyes) / iod).tolist()
        pts = face.landmarks
        width = float(np.linalg.norm(pts[MOUTH_CORNERS[0], :2] - pts[MOUTH_CORNERS[1], :2])) + 1e-6
        gap = float(np.linalg.norm(pts[INNER_LIP_UPPER, :2] - pts[INNER_LIP_LOWER, :2]))
        return MotionSample(
            t=t,
            flow=flows.astype(np.float32),
            chained=chained,
            eye_openness=mean_openness(face.eye_openness),
            mouth_open=gap / width,
            brightness=brightness,
            outliers=outliers,
            turn=turn,
            nod=nod,
            fer_crop=fer,
            region_motion=motion.astype(np.float32),
        )
