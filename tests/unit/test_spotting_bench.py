"""The spotting benchmark's own parts: the scorer and the generator must be right first."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from bench.spotting.generate import TIERS, Scenario, displacement_controls, make_scenario, render, truth, warp
from bench.spotting.score import iou, score_video, three_class
from bridge.demo.actions import AU_MOVES, EMOTION_AUS, Action

pytestmark = pytest.mark.unit


def _truth() -> dict[str, object]:
    return {
        "fps": 15.0,
        "events": [
            {"kind": "micro", "emotion": "contempt", "onset_frame": 10, "apex_frame": 12, "offset_frame": 14},
            {"kind": "micro", "emotion": "happiness", "onset_frame": 40, "apex_frame": 42, "offset_frame": 45},
            {"kind": "macro", "emotion": "surprise", "onset_frame": 80, "apex_frame": 90, "offset_frame": 110},
        ],
        "distractor_only": [{"start_s": 10.0, "end_s": 16.0}],
    }


def test_perfect_prediction_scores_one_and_empty_scores_zero() -> None:
    t = _truth()
    perfect = score_video(t["events"], t).summary()  # type: ignore[arg-type]
    assert perfect["micro_f1"] == 1.0 and perfect["macro_f1"] == 1.0
    assert perfect["emotion_acc_7"] == 1.0 and perfect["fp_per_min_distractors"] == 0.0
    empty = score_video([], t).summary()
    assert empty["micro_f1"] == 0.0 and empty["macro_f1"] == 0.0 and empty["emotion_acc_7"] is None


def test_kind_iou_and_false_positive_rules() -> None:
    t = _truth()
    preds = [
        {"kind": "macro", "emotion": "contempt", "onset_frame": 10, "apex_frame": 12, "offset_frame": 14},  # wrong kind
        {"kind": "micro", "emotion": "sadness", "onset_frame": 41, "apex_frame": 42, "offset_frame": 45},  # IoU 0.8
        {"kind": "micro", "emotion": "fear", "onset_frame": 160, "apex_frame": 170, "offset_frame": 172},  # FP
    ]
    s = score_video(preds, t).summary()  # type: ignore[arg-type]
    assert (s["micro_tp"], s["micro_pred"], s["micro_truth"]) == (1, 2, 2)
    # the match pairs truth happiness (positive) with predicted sadness (negative)
    assert s["macro_tp"] == 0 and s["emotion_acc_7"] == 0.0 and s["emotion_acc_3"] == 0.0
    assert s["fp_per_min_distractors"] == pytest.approx(10.0)  # 1 FP in a 0.1 min stretch
    assert iou((0, 4), (5, 9)) == 0.0 and iou((0, 9), (0, 4)) == 0.5
    assert three_class("surprise") == "surprise" and three_class("happiness") == "positive"


def test_scenarios_are_seeded_and_well_formed() -> None:
    a, b = make_scenario(TIERS["hard"], 60, 15, 3), make_scenario(TIERS["hard"], 60, 15, 3)
    assert a.actions == b.actions and a.actions
    for act in a.actions:
        assert act.onset < act.apex < act.offset <= 45.0  # expressions stay out of the FP stretch
        assert (act.offset - act.onset <= 0.5) == (act.kind == "micro")
        assert set(act.aus) <= set(AU_MOVES)
    assert set(EMOTION_AUS) == {"happiness", "sadness", "surprise", "fear", "anger", "disgust", "contempt"}


def test_warp_moves_skin_near_the_landmark_only() -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((200, 200, 3)) * 255).astype(np.uint8)
    lm = np.zeros((468, 2))
    lm[:, :] = 100.0
    lm[[33, 133]] = (70, 80)
    lm[[362, 263]] = (130, 80)
    lm[[61, 146]] = (150, 150)
    out = warp(img, displacement_controls(lm, [(AU_MOVES["AU12R"][0], 0.1)]))
    diff = np.abs(out.astype(int) - img.astype(int)).sum(-1)
    assert diff[140:160, 140:160].mean() > 20  # the corner moved
    assert diff[:60, :60].sum() == 0  # far away nothing changed


def test_render_writes_the_frames_the_truth_describes(tmp_path: Path) -> None:
    lm = np.full((468, 2), 256.0)
    lm[[33, 133]] = (200, 110)
    lm[[362, 263]] = (250, 110)
    sc = Scenario(
        TIERS["medium"],
        seconds=1.0,
        fps=15.0,
        seed=1,
        actions=[Action("micro", "contempt", ("AU12R", "AU14R"), 0.2, 0.35, 0.5, 0.07)],
    )
    n = render(sc, tmp_path / "v.mp4", lm)
    tr = truth(sc, n)
    assert n == 15
    with av.open(str(tmp_path / "v.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 15
    assert tr["events"][0]["onset_frame"] == 3 and tr["events"][0]["offset_frame"] == 8  # type: ignore[index]
