"""The lip-motion bench's own measures (bench/spotting/lip_talk.py): the AUC and the lip features
must be what its table says, or its "the lips cannot stand in for the voice" would rest on a bug."""

from __future__ import annotations

import numpy as np
import pytest

from bench.spotting.lip_talk import FEATURES, WINDOW_S, auc, lip_features

pytestmark = pytest.mark.unit

IOD_PX = 40.0


def _mouths(gaps_px: np.ndarray) -> np.ndarray:
    """(frames, 468, 2) faces whose eye corners stand IOD_PX apart and whose inner and outer lips
    part by ``gaps_px``."""
    lm = np.zeros((len(gaps_px), 468, 2))
    lm[:, [33, 133]] = (200.0, 240.0)
    lm[:, [362, 263]] = (200.0 + IOD_PX, 240.0)
    lm[:, 13] = lm[:, 0] = (220.0, 280.0)
    lm[:, 14, 0] = lm[:, 17, 0] = 220.0
    lm[:, 14, 1] = lm[:, 17, 1] = 280.0 + gaps_px
    return lm


def test_auc_is_the_chance_a_positive_outscores_a_negative() -> None:
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert auc(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx(0.25)
    assert auc(np.array([]), np.array([1.0])) is None


def test_a_mouth_opening_at_syllable_rate_moves_fast_and_a_still_one_does_not() -> None:
    fps = 25.0
    t = np.arange(0, 4, 1 / fps)
    talking = _mouths(4.0 + 4.0 * np.sin(2 * np.pi * 4.0 * t))  # 0-8 px at 4 Hz: 0-0.2 IOD
    still = _mouths(np.full(len(t), 2.0))
    ok = np.ones(len(t), bool)
    f_talk, f_still = lip_features(talking, ok, t), lip_features(still, ok, t)
    half = round(WINDOW_S * fps / 2)
    assert np.isnan(f_talk[:half]).all() and not np.isnan(f_talk[half:-half]).any()  # whole windows only
    speed = f_talk[half:-half, FEATURES.index("gap_speed")]
    # |d/dt| of 0.1 sin(8 pi t) IOD averages 0.1 * 8 pi * 2 / pi = 1.6 IOD/s; sampled at 25 fps a little less
    assert np.median(speed) == pytest.approx(1.6, rel=0.15)
    assert np.median(f_talk[half:-half, FEATURES.index("gap_spread")]) == pytest.approx(0.1 / np.sqrt(2), rel=0.1)
    assert np.nanmax(f_still) == pytest.approx(0.0, abs=1e-9)


def test_a_frame_without_a_face_leaves_no_feature_for_the_windows_around_it() -> None:
    t = np.arange(0, 3, 0.04)
    ok = np.ones(len(t), bool)
    ok[37] = False
    feats = lip_features(_mouths(np.full(len(t), 2.0)), ok, t)
    half = round(WINDOW_S * 25 / 2)
    assert np.isnan(feats[37 - half : 37 + half + 1]).all()
    assert not np.isnan(feats[37 + half + 1 : -half]).any()
