"""Regions of interest on the aligned face, each tied to the facial action units that move it.

Regions are small discs centred on FaceMesh landmarks, so they follow the face; motion is
measured in the canonical face frame (x right in the image, y down), where "up" is -y.
Left and right are the subject's, so unilateral actions (AU12/AU14 of contempt) stay visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    landmarks: tuple[int, ...]  # FaceMesh indices whose mean is the centre
    radius: float  # pixels of the 112-pixel canonical face
    mouth: bool = False  # moves when talking
    eyelid: bool = False  # moves when blinking


# FaceMesh indices: canonical_face_model_uv_visualization.png of MediaPipe. The subject's right side
# appears on the image left.
REGIONS: tuple[Region, ...] = (
    Region("brow_inner_R", (55, 107, 65), 5.0),
    Region("brow_outer_R", (46, 70, 53), 5.0),
    Region("brow_inner_L", (285, 336, 295), 5.0),
    Region("brow_outer_L", (276, 300, 283), 5.0),
    Region("glabella", (9, 8), 4.0),
    Region("lid_upper_R", (159, 158, 160), 3.0, eyelid=True),
    Region("lid_lower_R", (145, 144, 153), 3.0, eyelid=True),
    Region("lid_upper_L", (386, 385, 387), 3.0, eyelid=True),
    Region("lid_lower_L", (374, 373, 380), 3.0, eyelid=True),
    Region("nose_wing_R", (129, 98, 64), 4.0),
    Region("nose_wing_L", (358, 327, 294), 4.0),
    Region("cheek_R", (50, 205, 187), 6.0),
    Region("cheek_L", (280, 425, 411), 6.0),
    Region("mouth_corner_R", (61, 146, 185), 4.0, mouth=True),
    Region("mouth_corner_L", (291, 375, 409), 4.0, mouth=True),
    Region("lip_upper", (0, 37, 267), 4.0, mouth=True),
    Region("lip_lower", (17, 84, 314), 4.0, mouth=True),
    Region("chin", (199, 175, 200), 6.0, mouth=True),
)
REGION_INDEX: dict[str, int] = {r.name: i for i, r in enumerate(REGIONS)}
MOUTH_MASK = np.array([r.mouth for r in REGIONS])
EYELID_MASK = np.array([r.eyelid for r in REGIONS])
BROW_MASK = np.array([r.name.startswith("brow_") for r in REGIONS])


# EMFACS prototypes (Ekman, Friesen & Hager 2002), as issue 11 lists them; contempt is the unilateral
# AU12+AU14 (here its AU12 part, the only one the regions read). Used by the spotter's templates and
# the expression reader (inference/expressions.py).
EMOTION_AUS: dict[str, tuple[str, ...]] = {
    "happiness": ("AU6", "AU12"),
    "sadness": ("AU1", "AU4", "AU15"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU20"),
    "anger": ("AU4", "AU5", "AU7", "AU23", "AU24"),
    "disgust": ("AU9", "AU10", "AU15"),
}
# Each AU's direction of motion per region in the canonical frame (x right in the image, y down;
# "outward" is -x on the subject's right side), from the FACS descriptions, the same reading as
# inference/expressions.py's action_units. Relative weights, not sizes.
AU_DIRECTIONS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "AU1": (("brow_inner_R", 0.0, -1.0), ("brow_inner_L", 0.0, -1.0)),
    "AU2": (("brow_outer_R", 0.0, -1.0), ("brow_outer_L", 0.0, -1.0)),
    "AU4": (("brow_inner_R", 0.5, 1.0), ("brow_inner_L", -0.5, 1.0)),
    "AU5": (("lid_upper_R", 0.0, -1.0), ("lid_upper_L", 0.0, -1.0)),
    "AU6": (("cheek_R", 0.0, -1.0), ("cheek_L", 0.0, -1.0), ("lid_lower_R", 0.0, -0.3), ("lid_lower_L", 0.0, -0.3)),
    "AU7": (("lid_lower_R", 0.0, -1.0), ("lid_lower_L", 0.0, -1.0)),
    "AU9": (("nose_wing_R", 0.0, -1.0), ("nose_wing_L", 0.0, -1.0)),
    "AU10": (("lip_upper", 0.0, -1.0),),
    "AU12R": (("mouth_corner_R", -0.5, -1.0),),
    "AU12L": (("mouth_corner_L", 0.5, -1.0),),
    "AU15": (("mouth_corner_R", 0.0, 1.0), ("mouth_corner_L", 0.0, 1.0)),
    "AU20": (("mouth_corner_R", -1.0, 0.0), ("mouth_corner_L", 1.0, 0.0)),
    "AU23": (("mouth_corner_R", 1.0, 0.0), ("mouth_corner_L", -1.0, 0.0)),
    "AU24": (("lip_upper", 0.0, 0.5), ("lip_lower", 0.0, -0.5)),
    "AU26": (("lip_lower", 0.0, 1.0), ("chin", 0.0, 1.0)),
}
AU_DIRECTIONS["AU12"] = AU_DIRECTIONS["AU12R"] + AU_DIRECTIONS["AU12L"]


def _template(aus: tuple[str, ...]) -> np.ndarray:
    d = np.zeros((len(REGIONS), 2))
    for au in aus:
        for name, dx, dy in AU_DIRECTIONS[au]:
            d[REGION_INDEX[name]] += (dx, dy)
    return d


# The spotter's matched templates (J, R, 2): every single AU (so actions outside the prototypes are
# still seen) and every prototype as a whole (its regions moving together add up).
TEMPLATE_NAMES: tuple[str, ...] = (*AU_DIRECTIONS, *EMOTION_AUS)
TEMPLATES = np.stack([_template((n,)) if n in AU_DIRECTIONS else _template(EMOTION_AUS[n]) for n in TEMPLATE_NAMES])


_INDEX = np.concatenate([r.landmarks for r in REGIONS])
_STARTS = np.concatenate([[0], np.cumsum([len(r.landmarks) for r in REGIONS])[:-1]])
_COUNTS = np.array([len(r.landmarks) for r in REGIONS], dtype=np.float64)


def region_centres(canonical_landmarks: np.ndarray, regions: tuple[Region, ...] = REGIONS) -> np.ndarray:
    """(R, 2) centres in canonical pixels."""
    if regions is REGIONS:
        pts = canonical_landmarks[_INDEX, :2].astype(np.float64)
        return np.add.reduceat(pts, _STARTS, axis=0) / _COUNTS[:, None]
    return np.stack([canonical_landmarks[list(r.landmarks), :2].mean(0) for r in regions])
