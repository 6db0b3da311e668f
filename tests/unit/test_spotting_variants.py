"""The bench's rejected spotter variants still compute what they claim, and replay's recall split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.spotting.replay import recall_by_noise
from bench.spotting.variants import VARIANTS, fit_with_depth
from inference import motion
from inference.spotting import Spotter

pytestmark = pytest.mark.unit


def test_depth_fit_removes_the_parallax_an_affine_fit_leaves() -> None:
    """A head turning a little: the flow is affine plus p*z, z a nose-like bump in front of the face."""
    xs = motion._FIT_XS.astype(np.float64) - motion._CENTRE
    ys = motion._FIT_YS.astype(np.float64) - motion._CENTRE
    depth = 20.0 * np.exp(-(xs**2 + (ys + 5) ** 2) / (2 * 12.0**2))
    depth -= depth.mean()
    size = motion.CANONICAL_SIZE
    field = np.zeros((size, size, 2), np.float32)
    u = 0.01 * xs + 0.5 + 0.04 * depth  # 0.04 px of sideways motion per px of depth: ~2 degrees of yaw
    v = -0.01 * ys - 0.2 - 0.02 * depth
    field[motion._FIT_YS, motion._FIT_XS] = np.stack([u, v], axis=1)
    params, dist = fit_with_depth(field, depth)
    np.testing.assert_allclose(params, [0.01, 0.0, 0.5, 0.0, -0.01, -0.2, 0.04, -0.02], atol=1e-6)
    assert dist.max() < 1e-6
    affine, _ = motion.rigid_motion(field)
    left = np.hypot(*(field[motion._FIT_YS, motion._FIT_XS] - motion.rigid_at(affine, np.stack(
        [motion._FIT_XS, motion._FIT_YS], axis=1).astype(np.float64))).T)
    assert left.max() > 0.3  # what the shipped affine fit leaves at the nose


def test_every_variant_builds_a_spotter_and_a_motion_extractor() -> None:
    assert VARIANTS["shipped"] == (Spotter, motion.MotionExtractor)
    for spotter_cls, motion_cls in VARIANTS.values():
        assert isinstance(spotter_cls(), Spotter)  # constructing runs each variant's reset()
        assert isinstance(motion_cls(), motion.MotionExtractor)


def test_recall_by_noise_bins_each_event_by_the_noise_before_its_onset() -> None:
    quiet = {"kind": "micro", "onset_frame": 3, "offset_frame": 6}
    busy = {"kind": "micro", "onset_frame": 11, "offset_frame": 14}
    macro = {"kind": "macro", "onset_frame": 1, "offset_frame": 15}
    noise = [math.nan, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    row = {"truth": {"events": [quiet, busy, macro]}, "noise": noise,
           "predictions": [{"kind": "micro", "onset_frame": 3, "offset_frame": 6}]}
    assert recall_by_noise([row]) == {"0-0.24 px": "1/1", "0.24-0.38 px": "0/0", "0.38-inf px": "0/1"}
