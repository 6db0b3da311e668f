"""Region displacements to action units and EMFACS emotions; engagement streams; policy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bridge.confidence import DEFAULT_MIN_CONFIDENCE
from inference.engagement import EngagementInputs, GazeBaseline, StreamCues, attention, engagement
from inference.expressions import EMOTION_AUS, action_units, classify, emotion_scores, supporting_aus
from inference.regions import REGION_INDEX, REGIONS
from inference.spotting import Spot

pytestmark = pytest.mark.unit


def _disp(**moves: tuple[float, float]) -> np.ndarray:
    d = np.zeros((len(REGIONS), 2))
    for name, v in moves.items():
        d[REGION_INDEX[name]] = v
    return d


def _spot(disp: np.ndarray) -> Spot:
    crop = np.zeros((64, 64), np.uint8)
    return Spot("micro", 1.0, 1.15, 1.3, 2.0, ("x",), disp, crop, crop)


@pytest.mark.parametrize(
    ("moves", "emotion"),
    [
        (
            {"mouth_corner_R": (-1.0, -1.5), "mouth_corner_L": (1.0, -1.5), "cheek_R": (0, -1.0), "cheek_L": (0, -1.0)},
            "happiness",
        ),
        ({"mouth_corner_R": (-1.0, -1.5)}, "contempt"),
        ({"mouth_corner_L": (1.0, -1.2)}, "contempt"),
        (
            {
                "brow_inner_R": (0, -1.5),
                "brow_inner_L": (0, -1.5),
                "brow_outer_R": (0, -1.5),
                "brow_outer_L": (0, -1.5),
                "lid_upper_R": (0, -0.8),
                "lid_upper_L": (0, -0.8),
                "chin": (0, 2.0),
                "lip_lower": (0, 2.0),
            },
            "surprise",
        ),
        (
            {
                "brow_inner_R": (0.3, -1.0),
                "brow_inner_L": (-0.3, -1.0),
                "mouth_corner_R": (0, 1.5),
                "mouth_corner_L": (0, 1.5),
            },
            "sadness",
        ),
        (
            {
                "nose_wing_R": (0, -1.5),
                "nose_wing_L": (0, -1.5),
                "lip_upper": (0, -1.5),
                "mouth_corner_R": (0, 0.6),
                "mouth_corner_L": (0, 0.6),
            },
            "disgust",
        ),
    ],
)
def test_emfacs_prototypes(moves: dict[str, tuple[float, float]], emotion: str) -> None:
    ex = classify(_spot(_disp(**moves)))
    assert ex.emotion == emotion, ex.scores
    assert 0.0 < ex.confidence <= 1.0


def test_unilateral_corner_names_the_side_and_bilateral_does_not() -> None:
    assert classify(_spot(_disp(mouth_corner_L=(1.0, -1.5)))).aus == ("AU12L", "AU14L")
    both = classify(_spot(_disp(mouth_corner_R=(-1.0, -1.5), mouth_corner_L=(1.0, -1.5))))
    assert "AU12" in both.aus and "AU14R" not in both.aus


def test_when_the_cnn_and_the_aus_disagree_the_signal_is_unclear() -> None:
    # Issue 11: a smile's AUs (AU6 + AU12) were shown under "Sadness signal" because the CNN's
    # change tipped the balance. Now the disagreement names no emotion.
    disp = _disp(mouth_corner_R=(-0.3, -0.5), mouth_corner_L=(0.3, -0.5), cheek_R=(0, -0.3), cheek_L=(0, -0.3))
    sad_jump = np.array([0, 0, 0, 0, 0.6, 0, 0], dtype=np.float32)
    ex = classify(_spot(disp), np.zeros(7, np.float32), sad_jump)
    assert ex.emotion == "unclear"
    happy_jump = np.array([0, 0, 0, 0.3, 0, 0, 0], dtype=np.float32)
    agreed = classify(_spot(disp), np.zeros(7, np.float32), happy_jump)
    assert agreed.emotion == "happiness" and set(agreed.aus) <= {"AU6", "AU12"} and agreed.aus
    assert emotion_scores(action_units(np.zeros((len(REGIONS), 2))))["contempt"] == 0.0


@pytest.mark.parametrize("emotion", ["happiness", "sadness", "surprise", "fear", "anger", "disgust"])
def test_the_aus_shown_belong_to_the_emotion_named(emotion: str) -> None:

    au = dict.fromkeys(
        [
            "AU1",
            "AU2",
            "AU4",
            "AU5",
            "AU6",
            "AU7",
            "AU9",
            "AU10",
            "AU12",
            "AU12R",
            "AU12L",
            "AU15",
            "AU20",
            "AU23",
            "AU24",
            "AU26",
        ],
        0.2,
    )
    for a in EMOTION_AUS[emotion]:
        au[a] = 1.0
    shown = supporting_aus(au, emotion)
    assert shown and set(shown) <= set(EMOTION_AUS[emotion])


def test_engagement_formula_bounds_and_policy() -> None:
    looking = EngagementInputs(t=0, present=True, yaw=0, pitch=0, gaze=(0, 0), eye_openness=0.3, motion_px=1.5)
    away = EngagementInputs(t=0, present=True, yaw=40, pitch=0, gaze=(0.3, 0), eye_openness=0.3, motion_px=0)
    gone = EngagementInputs(t=0, present=False)
    assert engagement(looking) == pytest.approx(1.0)
    assert engagement(gone) == 0.0 and attention(gone) == 0.0
    assert attention(away) == 0.0
    assert engagement(away) < 0.5
    # without emotion inference, expressivity is left out and the rest re-weighted
    still = EngagementInputs(t=0, present=True, yaw=0, pitch=0, gaze=(0, 0), eye_openness=0.3, motion_px=0)
    assert engagement(still, with_expressivity=False) == pytest.approx(1.0)
    assert engagement(still) == pytest.approx(0.8)


def test_streams_speak_only_on_change_and_hold_back_sentiment_when_not_allowed() -> None:
    quiet = StreamCues(emotions_allowed=True)
    quiet.add_valence(0.0, 0.3)
    cues = []
    for i in range(150):  # 10 s of the same face at 15 fps
        cues += quiet.push(EngagementInputs(t=i / 15, present=True, eye_openness=0.3, gaze=(0, 0)))
    kinds = [c.type for c in cues]
    assert kinds.count("engagement") == 1 and kinds.count("presence") == 1 and kinds.count("sentiment") == 1
    restricted = StreamCues(emotions_allowed=False)
    restricted.add_valence(0.0, -0.9)
    out = []
    for i in range(45):
        out += restricted.push(EngagementInputs(t=i / 15, present=i < 20, eye_openness=0.3))
    assert "sentiment" not in {c.type for c in out}
    assert [c.value for c in out if c.type == "presence"] == [1.0, 0.0]


def test_gaze_baseline_learns_the_usual_offset() -> None:
    base = GazeBaseline(tau_s=1.0)
    dev = None
    for i in range(100):
        dev = base.deviation(i * 0.1, (0.0, 0.1))
    assert dev is not None and abs(dev[1]) < 1e-6
    assert base.deviation(10.1, (0.2, 0.1))[0] == pytest.approx(0.2 * 0.9, abs=0.02)  # type: ignore[index]


def test_the_cnn_cannot_overrule_contempt_which_it_has_no_class_for() -> None:
    happy_jump = np.array([0, 0, 0, 0.3, 0, 0, 0], dtype=np.float32)
    ex = classify(_spot(_disp(mouth_corner_R=(-1.0, -1.5))), np.zeros(7, np.float32), happy_jump)
    assert ex.emotion == "contempt" and ex.aus == ("AU12R", "AU14R")


def test_confidence_is_lower_on_a_face_that_moves_a_lot_and_never_falls_with_strength() -> None:
    smile = _disp(mouth_corner_R=(-1.0, -1.5), mouth_corner_L=(1.0, -1.5))
    quiet = classify(replace(_spot(smile), noise_px=0.1)).confidence
    talking = classify(replace(_spot(smile), noise_px=0.6)).confidence
    assert quiet > DEFAULT_MIN_CONFIDENCE > talking
    for noise in (0.1, 0.3, 0.6):
        weak, strong = (classify(replace(_spot(smile), noise_px=noise, strength=s)).confidence for s in (1.0, 5.0))
        assert strong >= weak
