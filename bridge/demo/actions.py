"""Facial actions as landmark displacements, written from the FACS descriptions of each AU.

This table belongs to the generator only. The analyzer measures region motion with its own
table (inference/regions.py, inference/expressions.py); the two are written separately so the
benchmark is not the detector grading itself.

Directions are in the face frame: x from the subject's right eye toward the left eye, y down
the face; magnitudes are in inter-ocular distances (IOD) at amplitude 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (landmarks, dx, dy, sigma in IOD)
Move = tuple[tuple[int, ...], float, float, float]

_R_INNER_BROW, _L_INNER_BROW = (55, 65, 107, 66), (285, 295, 336, 296)
_R_OUTER_BROW, _L_OUTER_BROW = (46, 53, 70, 63), (276, 283, 300, 293)
_R_UPPER_LID, _L_UPPER_LID = (159, 158, 160, 157, 161), (386, 385, 387, 384, 388)
_R_LOWER_LID, _L_LOWER_LID = (145, 144, 153, 154), (374, 373, 380, 381)
_R_CHEEK, _L_CHEEK = (50, 101, 118, 117), (280, 330, 347, 346)
_R_NOSE_WING, _L_NOSE_WING = (129, 98, 64, 48), (358, 327, 294, 278)
_UPPER_LIP = (0, 37, 267, 39, 269)
_LOWER_LIP = (17, 84, 314, 14)
_CHIN = (152, 175, 199, 200)
_R_CORNER, _L_CORNER = (61, 146), (291, 375)

# AU -> moves (both sides unless the AU name ends with R or L).
AU_MOVES: dict[str, tuple[Move, ...]] = {
    "AU1": ((_R_INNER_BROW, 0.0, -1.0, 0.12), (_L_INNER_BROW, 0.0, -1.0, 0.12)),
    "AU2": ((_R_OUTER_BROW, 0.0, -1.0, 0.12), (_L_OUTER_BROW, 0.0, -1.0, 0.12)),
    "AU4": ((_R_INNER_BROW, 0.5, 0.9, 0.12), (_L_INNER_BROW, -0.5, 0.9, 0.12)),
    "AU5": ((_R_UPPER_LID, 0.0, -0.6, 0.06), (_L_UPPER_LID, 0.0, -0.6, 0.06)),
    "AU6": (
        (_R_CHEEK, 0.0, -1.0, 0.14),
        (_L_CHEEK, 0.0, -1.0, 0.14),
        (_R_LOWER_LID, 0.0, -0.3, 0.06),
        (_L_LOWER_LID, 0.0, -0.3, 0.06),
    ),
    "AU7": ((_R_LOWER_LID, 0.0, -0.6, 0.06), (_L_LOWER_LID, 0.0, -0.6, 0.06)),
    "AU9": ((_R_NOSE_WING, 0.0, -1.0, 0.1), (_L_NOSE_WING, 0.0, -1.0, 0.1)),
    "AU10": ((_UPPER_LIP, 0.0, -1.0, 0.1),),
    "AU12R": ((_R_CORNER, -0.6, -1.0, 0.1),),
    "AU12L": ((_L_CORNER, 0.6, -1.0, 0.1),),
    "AU14R": ((_R_CORNER, -0.4, -0.2, 0.08),),
    "AU14L": ((_L_CORNER, 0.4, -0.2, 0.08),),
    "AU15": ((_R_CORNER, 0.0, 1.0, 0.1), (_L_CORNER, 0.0, 1.0, 0.1)),
    "AU20": ((_R_CORNER, -1.0, 0.2, 0.1), (_L_CORNER, 1.0, 0.2, 0.1)),
    "AU23": ((_R_CORNER, 0.6, 0.0, 0.08), (_L_CORNER, -0.6, 0.0, 0.08)),
    "AU24": ((_UPPER_LIP, 0.0, 0.5, 0.08), (_LOWER_LIP, 0.0, -0.5, 0.08)),
    "AU26": ((_LOWER_LIP, 0.0, 1.0, 0.12), (_CHIN, 0.0, 1.0, 0.16)),
}
AU_MOVES["AU12"] = AU_MOVES["AU12R"] + AU_MOVES["AU12L"]

# EMFACS prototypes named in the issue (Ekman, Friesen & Hager 2002).
EMOTION_AUS: dict[str, tuple[str, ...]] = {
    "happiness": ("AU6", "AU12"),
    "sadness": ("AU1", "AU4", "AU15"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU20"),
    "anger": ("AU4", "AU5", "AU7", "AU23", "AU24"),
    "disgust": ("AU9", "AU10", "AU15"),
    "contempt": ("AU12R", "AU14R"),  # unilateral; the generator picks the side
}
EMOTIONS = tuple(EMOTION_AUS)

BLINK: tuple[Move, ...] = (
    (_R_UPPER_LID, 0.0, 0.16, 0.07),
    (_L_UPPER_LID, 0.0, 0.16, 0.07),
    (_R_LOWER_LID, 0.0, -0.03, 0.05),
    (_L_LOWER_LID, 0.0, -0.03, 0.05),
)
TALK: tuple[Move, ...] = (
    (_LOWER_LIP, 0.0, 1.0, 0.12),
    (_CHIN, 0.0, 0.8, 0.18),
    (_R_CORNER, 0.15, 0.2, 0.08),
    (_L_CORNER, -0.15, 0.2, 0.08),
)


def contempt_aus(side: str) -> tuple[str, ...]:
    return (f"AU12{side}", f"AU14{side}")


@dataclass(frozen=True, slots=True)
class Action:
    """An injected expression with its ground truth (media seconds)."""

    kind: str  # micro | macro
    emotion: str
    aus: tuple[str, ...]
    onset: float
    apex: float
    offset: float
    amplitude: float  # IOD at the apex for a move of magnitude 1

    def intensity(self, t: float) -> float:
        """Raised-cosine rise to the apex and fall back to the offset."""

        if t <= self.onset or t >= self.offset:
            return 0.0
        if t <= self.apex:
            x = (t - self.onset) / max(self.apex - self.onset, 1e-6)
        else:
            x = (self.offset - t) / max(self.offset - self.apex, 1e-6)
        return 0.5 - 0.5 * math.cos(math.pi * x)
