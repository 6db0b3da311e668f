"""From a spotted interval to an expression: action units, emotion, valence, confidence.

Region displacements between onset and apex are read as action units (left and right apart),
matched to the EMFACS prototypes, and fused with the emotion CNN's change of class
probabilities between the onset and apex crops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inference.emotion_cnn import FER_LABELS, FER_TO_EMOTION
from inference.regions import EMOTION_AUS, REGION_INDEX
from inference.spotting import Spot
from inference.spotting_params import DEFAULT_PARAMS

# A signal whose AU prototype and CNN name different emotions (see CNN_MIN_CHANGE).
UNCLEAR = "unclear"
# Valence of each emotion on Russell's circumplex (Russell 1980; placements of Posner et al. 2005),
# rounded; surprise is near neutral valence.
VALENCE: dict[str, float] = {
    "happiness": 0.8,
    "surprise": 0.1,
    "sadness": -0.6,
    "fear": -0.7,
    "anger": -0.8,
    "disgust": -0.7,
    "contempt": -0.5,
    "neutral": 0.0,
    UNCLEAR: 0.0,
}
# An AU "moved" when its displacement reaches this many canonical pixels (112-px face; the
# face's inter-ocular distance is ~35 px there, so ~1.5 % of it).
AU_MIN_PX = 0.5
# Corner motion on one side at least this many times the other side's is unilateral (contempt).
UNILATERAL_RATIO = 2.0
# Weight of the CNN's probability change against the AU evidence; the CNN sees the whole face
# at 64x64, where a 2-px micro movement barely registers, so AUs lead.
FER_WEIGHT = 0.5
# The CNN "names" an emotion when that class's probability rose by at least this much from onset to
# apex; if the name differs from the AU prototype's winner, the signal is "unclear" (issue 11: a
# smile's AUs were shown under "Sadness signal").
CNN_MIN_CHANGE = 0.1
# An AU is shown with a signal when it belongs to the emotion's prototype and reached this share of
# the prototype's strongest AU: the AUs shown are the evidence for the emotion named.
SUPPORT_SHARE = 0.25
# Confidence is the chance that a signal is a true event: a logistic curve on log peak strength (the
# spotting feature's peak over the threshold) and log motion noise (Spot.noise_px), coefficients
# (intercept, strength, noise) fitted on the tune identities of the meeting-like bench (12 talking
# videos and one still video a person) and half of the unlabeled people: 80 micro signals, 51 true
# (`python -m bench.spotting.calibrate --videos-per-face 12`); checked on the held-out identities
# and the other half (reliability table in docs/benchmarks.md). What the fit found: the face's
# motion decides most (faces under 0.24 px of noise: 25 of 27 signals true; 0.24-0.38 px: 16 of 26;
# over 0.38 px: 10 of 27), strength a little (1-1.25: 0.44 true; over 3: 0.80). The share also
# depends on how many true events there are: the bench injects ~12 micro-expressions a minute, far
# more than a meeting holds, so in a meeting the share of true signals at a given confidence will
# be lower. Fitted on micro signals; macro signals use the same curve.
CALIBRATION: tuple[float, float, float] = (-2.445, 0.446, -2.324)
# How a micro signal's odds of being true change when its person talks during it (their voice
# activity overlaps it, inference/speech.py): while someone talks the face moves with the speech,
# and a micro-expression is then less often told apart from it, so the display floor
# (MICROCUE_MIN_CONFIDENCE) is what shows or hides such a signal; the one place to set it. Fitted
# by ``python -m bench.spotting.fit_speaking`` (three disjoint video ranges pooled, commands in
# docs/benchmarks.md) on the tune people's talking faces of the meetings bench with their own
# speech, the product's VAD deciding which signals were said while talking: 55 videos, 12 such
# micro signals, 2 true (0.17) at a mean verifier chance of 0.785, odds ratio 0.044 (a talking
# signal shows at the 0.5 floor only from a chance of 0.958). Few signals: a rough figure; no
# dependence on noise or strength was visible in thirds of 4. (0.566 before, fitted on 14 signals
# of soundless videos that counted every signal of a talking face as said while talking.) Macro
# signals are never adjusted for talk: 0.6-3 s expressions are large enough to assess while talking.
SPEAKING_ODDS_RATIO = 0.044


@dataclass(frozen=True, slots=True)
class Expression:
    emotion: str
    valence: float
    aus: tuple[str, ...]
    confidence: float
    scores: dict[str, float]


def _d(disp: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(disp[REGION_INDEX[name]])


def action_units(disp: np.ndarray) -> dict[str, float]:
    """AU activations in canonical pixels from region displacements (x right, y down).

    "Outward" is -x for the subject's right side (image left) and +x for the left side.
    """
    up: Callable[[str], float] = lambda name: max(0.0, -float(_d(disp, name)[1]))  # noqa: E731
    down: Callable[[str], float] = lambda name: max(0.0, float(_d(disp, name)[1]))  # noqa: E731
    inner_r, inner_l = _d(disp, "brow_inner_R"), _d(disp, "brow_inner_L")
    corner_r, corner_l = _d(disp, "mouth_corner_R"), _d(disp, "mouth_corner_L")
    out_r, out_l = -float(corner_r[0]), float(corner_l[0])
    au: dict[str, float] = {
        "AU1": (up("brow_inner_R") + up("brow_inner_L")) / 2,
        "AU2": (up("brow_outer_R") + up("brow_outer_L")) / 2,
        "AU4": (down("brow_inner_R") + down("brow_inner_L")) / 2
        + max(0.0, (float(inner_r[0]) - float(inner_l[0])) / 2) * 0.5,
        "AU5": (up("lid_upper_R") + up("lid_upper_L")) / 2,
        "AU6": (up("cheek_R") + up("cheek_L")) / 2,
        "AU7": (up("lid_lower_R") + up("lid_lower_L")) / 2,
        "AU9": (up("nose_wing_R") + up("nose_wing_L")) / 2,
        "AU10": up("lip_upper"),
        "AU12R": up("mouth_corner_R") + 0.5 * max(0.0, out_r),
        "AU12L": up("mouth_corner_L") + 0.5 * max(0.0, out_l),
        "AU15": (down("mouth_corner_R") + down("mouth_corner_L")) / 2,
        "AU20": max(0.0, (out_r + out_l) / 2 - 0.5 * (up("mouth_corner_R") + up("mouth_corner_L")) / 2),
        "AU23": max(0.0, -(out_r + out_l) / 2),
        "AU24": down("lip_upper") + up("lip_lower"),
        "AU26": (down("lip_lower") + down("chin")) / 2,
    }
    au["AU12"] = min(au["AU12R"], au["AU12L"])  # bilateral part
    return au


def emotion_scores(au: dict[str, float]) -> dict[str, float]:
    scores = {e: float(np.mean([au[a] for a in aus])) for e, aus in EMOTION_AUS.items()}
    right, left = au["AU12R"], au["AU12L"]
    strong, weak = max(right, left), min(right, left)
    scores["contempt"] = strong - weak if strong >= UNILATERAL_RATIO * weak else 0.0
    return scores


def moved_aus(au: dict[str, float], emotion: str) -> tuple[str, ...]:
    names = [a for a, v in au.items() if v >= AU_MIN_PX and a not in ("AU12R", "AU12L", "AU12")]
    right, left = au["AU12R"], au["AU12L"]
    if emotion == "contempt" or max(right, left) >= UNILATERAL_RATIO * min(right, left):
        side = "R" if right > left else "L"
        if max(right, left) >= AU_MIN_PX:
            names += [f"AU12{side}", f"AU14{side}"]
    elif au["AU12"] >= AU_MIN_PX:
        names.append("AU12")
    return tuple(sorted(set(names), key=lambda a: (int("".join(c for c in a if c.isdigit())), a)))


def supporting_aus(au: dict[str, float], emotion: str) -> tuple[str, ...]:
    """The AUs of ``emotion``'s prototype that moved (see SUPPORT_SHARE); contempt names its side."""
    if emotion == "contempt":
        side = "R" if au["AU12R"] >= au["AU12L"] else "L"
        return (f"AU12{side}", f"AU14{side}")
    proto = EMOTION_AUS.get(emotion, ())
    strongest = max((au[a] for a in proto), default=0.0)
    if strongest <= 0.0:
        return ()
    return tuple(a for a in proto if au[a] > 0.0 and au[a] >= SUPPORT_SHARE * strongest)


def calibration_inputs(strength: float, noise_px: float) -> tuple[float, float]:
    """What the CALIBRATION curve reads: log peak strength and log motion noise (floored where the
    shipped spotter floors them: the curve was fitted on its signals)."""
    return math.log(max(strength, 1.0)), math.log(max(noise_px, DEFAULT_PARAMS.min_noise_px))


def calibrated(strength: float, noise_px: float, speaking: bool | None = None, verified: float | None = None) -> float:
    """The chance that a spot of this strength, on a face moving this much, is a true event;
    ``speaking``: whether the person talked during a micro signal (None: not known, or a macro
    signal), see SPEAKING_ODDS_RATIO. ``verified``: the two-stage spotter's own chance
    (``Spot.verified``, inference/verifier.py), which replaces the strength-and-noise curve: the
    verifier was fitted to give the share of true events on the listener bench's tune people."""
    if verified is not None:
        p = min(max(verified, 1e-6), 1 - 1e-6)
        z = math.log(p / (1 - p))
    else:
        x_strength, x_noise = calibration_inputs(strength, noise_px)
        z = CALIBRATION[0] + CALIBRATION[1] * x_strength + CALIBRATION[2] * x_noise
    if speaking:
        z += math.log(SPEAKING_ODDS_RATIO)
    return 1.0 / (1.0 + math.exp(-z))


def _cnn_emotion(fer_onset: np.ndarray, fer_apex: np.ndarray) -> str | None:
    delta = fer_apex - fer_onset
    best, change = None, CNN_MIN_CHANGE
    for label, d in zip(FER_LABELS, delta, strict=True):
        emotion = FER_TO_EMOTION.get(label)
        if emotion is not None and float(d) >= change:
            best, change = emotion, float(d)
    return best


def classify(
    spot: Spot,
    fer_onset: np.ndarray | None = None,
    fer_apex: np.ndarray | None = None,
    *,
    speaking: bool | None = None,
) -> Expression:
    """Emotion of a spotted interval; the CNN probabilities are optional (policy may forbid them).
    ``speaking``: whether the person talked during it (their voice activity), an input of a micro
    signal's confidence.

    The AU prototypes lead. When the CNN clearly names another emotion than the prototypes do, the
    signal is "unclear" and shows the AUs that moved without naming an emotion; otherwise the
    AUs shown are the named emotion's own (``supporting_aus``)."""
    au = action_units(spot.displacement)
    scores = emotion_scores(au)
    au_emotion = max(scores, key=lambda e: scores[e])
    cnn_emotion = None
    if fer_onset is not None and fer_apex is not None:
        cnn_emotion = _cnn_emotion(fer_onset, fer_apex)
        delta = fer_apex - fer_onset
        for label, change in zip(FER_LABELS, delta, strict=True):
            emotion = FER_TO_EMOTION.get(label)
            if emotion is not None:
                scores[emotion] += FER_WEIGHT * max(0.0, float(change)) * 10.0  # 0.1 probability ~ 1 px
    emotion = max(scores, key=lambda e: scores[e])
    # The CNN has no contempt class, so it cannot disagree with a contempt prototype.
    if cnn_emotion is not None and au_emotion not in (cnn_emotion, "contempt"):
        emotion, aus = UNCLEAR, moved_aus(au, au_emotion)
    else:
        aus = supporting_aus(au, emotion)
    return Expression(
        emotion=emotion,
        valence=VALENCE[emotion],
        aus=aus,
        confidence=round(
            calibrated(spot.strength, spot.noise_px, speaking if spot.kind == "micro" else None, spot.verified), 3
        ),
        scores={k: round(v, 3) for k, v in scores.items()},
    )
