"""Per-frame motion features: aligned face crops, dense optical flow, mean flow per region.

Alignment removes head translation, in-plane rotation and scale; the nose-bridge region's flow
(what alignment left behind) is subtracted from every region; crops are normalised in brightness
and contrast before the flow so a lighting change is not read as motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.alignment import CANONICAL_5PT, CANONICAL_SIZE, apply, five_points, similarity, warp_face
from inference.regions import REFERENCE, REGIONS, Region, region_centres
from inference.types import FaceObservation

# A jump in media time longer than this breaks the motion chain (dropped frames, a lost face):
# flow across it would not be a face moving but two unrelated moments.
MAX_FLOW_GAP_S = 0.35
# Grey-level statistics every crop is normalised to before the flow (lighting invariance).
NORM_MEAN, NORM_STD = 128.0, 48.0
# FER crop: the 64x64 grey input of mini-XCEPTION (REFERENCES.md), with the face filling ~75 % of
# the width like the FER2013 training crops.
FER_SIZE = 64
FER_FACE_FILL = 0.75
# Landmarks that expressions barely move: eye corners, nose bridge and tip, temples. Aligning
# on these (not on the 5-point template, whose eye centres move in a blink and whose mouth
# corners move in a smile) keeps a blink or a smile from shifting the whole aligned face.
RIGID_LANDMARKS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 127, 356, 234, 454)
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
_REF_DISC = _disc(REFERENCE.radius)


def _fer_template() -> np.ndarray:
    centre = CANONICAL_5PT.mean(0)
    width = np.ptp(CANONICAL_5PT[:, 0]) / 0.45  # eye-to-eye span is ~45 % of a face's width
    scale = FER_SIZE * FER_FACE_FILL / width
    return (CANONICAL_5PT - centre) * scale + np.array([FER_SIZE / 2, FER_SIZE / 2 + 2.0])


FER_TEMPLATE = _fer_template()


@dataclass(frozen=True, slots=True)
class MotionSample:
    """One analysed frame of one face, in the rolling buffer."""

    t: float
    flow: np.ndarray = field(repr=False)  # (R, 2) mean flow per region since the previous sample
    chained: bool  # False: the first sample after a gap; its flow is zero by construction
    eye_openness: float
    mouth_open: float
    brightness: float
    turn: float  # nose tip left/right of the eye-corner midpoint, in inter-ocular distances
    nod: float  # nose tip below the eye-corner midpoint, in inter-ocular distances
    fer_crop: np.ndarray = field(repr=False)  # (64, 64) uint8 grey, for the emotion CNN


def mean_flow(flow: np.ndarray, centre: np.ndarray, disc: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    pts = np.rint(centre).astype(int) + disc
    pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
    return flow[pts[:, 1], pts[:, 0]].mean(0)


def region_flows(flow: np.ndarray, canonical_landmarks: np.ndarray,
                 regions: tuple[Region, ...] = REGIONS) -> np.ndarray:
    """(R, 2) mean flow per region minus the nose-bridge flow."""
    centres = region_centres(canonical_landmarks, regions)
    ref = mean_flow(flow, canonical_landmarks[list(REFERENCE.landmarks), :2].mean(0), _REF_DISC)
    return np.stack([mean_flow(flow, c, d) for c, d in zip(centres, _DISCS, strict=True)]) - ref


class MotionExtractor:
    """Per-participant state: the previous aligned crop and its landmarks."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self.reset()

    def reset(self) -> None:
        self._prev: tuple[float, int, np.ndarray, np.ndarray] | None = None
        self._rigid_ref: np.ndarray | None = None

    def __call__(self, grey: np.ndarray, face: FaceObservation, t: float) -> MotionSample:
        prev = self._prev
        chained = prev is not None and prev[1] == face.track_id and 0 < t - prev[0] <= MAX_FLOW_GAP_S
        rigid = face.landmarks[list(RIGID_LANDMARKS), :2].astype(np.float64)
        if not chained or self._rigid_ref is None:
            # a new chain: the 5-point template fixes the canonical pose once, rigid points hold it
            self._rigid_ref = apply(face.to_canonical, rigid)
        matrix = similarity(rigid, self._rigid_ref)
        crop = warp_face(grey, matrix, CANONICAL_SIZE).astype(np.float32)
        brightness = float(crop.mean())
        crop = np.clip((crop - brightness) * (NORM_STD / (crop.std() + 1e-6)) + NORM_MEAN, 0, 255).astype(np.uint8)
        canon = apply(matrix, face.landmarks)
        if chained:
            assert prev is not None
            flow = self._dis.calc(prev[2], crop, None)
            flows = region_flows(flow, prev[3])
        else:
            flows = np.zeros((len(REGIONS), 2), dtype=np.float32)
        self._prev = (t, face.track_id, crop, canon)
        fer = cv2.warpAffine(grey, similarity(five_points(face.landmarks), FER_TEMPLATE), (FER_SIZE, FER_SIZE),
                             flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
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
            eye_openness=float(np.mean(face.eye_openness)),
            mouth_open=gap / width,
            brightness=brightness,
            turn=turn,
            nod=nod,
            fer_crop=fer,
        )
