"""Motion features: the head's own motion is removed, a local movement is kept."""

from __future__ import annotations

import numpy as np
import pytest

from inference.alignment import CANONICAL_SIZE
from inference.motion import region_flows, rigid_at, rigid_motion
from inference.regions import REGION_INDEX, REGIONS, region_centres

pytestmark = pytest.mark.unit


def _affine_field(a: float, b: float, tx: float, c: float, d: float, ty: float) -> np.ndarray:
    ys, xs = np.mgrid[0:CANONICAL_SIZE, 0:CANONICAL_SIZE].astype(np.float64) - (CANONICAL_SIZE - 1) / 2
    return np.stack([a * xs + b * ys + tx, c * xs + d * ys + ty], axis=-1).astype(np.float32)


def _landmarks() -> np.ndarray:
    """Canonical landmarks putting each region on its own grid point, 20 px from its neighbours."""
    lm = np.full((468, 3), 55.5)
    for r, region in enumerate(REGIONS):
        lm[list(region.landmarks), :2] = (15 + 20 * (r % 5), 15 + 20 * (r // 5))
    return lm


def test_rigid_fit_recovers_an_affine_head_motion() -> None:
    field = _affine_field(0.02, -0.01, 0.7, 0.015, -0.02, -0.4)
    params, outliers = rigid_motion(field)
    np.testing.assert_allclose(params, [0.02, -0.01, 0.7, 0.015, -0.02, -0.4], atol=1e-6)
    assert outliers == 0.0


def test_region_flows_keep_a_local_movement_and_drop_the_head_motion() -> None:
    lm = _landmarks()
    field = _affine_field(0.01, 0.0, 1.0, 0.0, 0.01, 0.5)  # the head drifts and grows a little
    centre = region_centres(lm)[REGION_INDEX["mouth_corner_R"]]
    ys, xs = np.mgrid[0:CANONICAL_SIZE, 0:CANONICAL_SIZE]
    near = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= 5**2
    field[near] += np.array([-1.5, -2.0], dtype=np.float32)  # the corner goes up and out
    flows, outliers, _ = region_flows(field, lm)
    assert flows.shape == (len(REGIONS), 2)
    np.testing.assert_allclose(flows[REGION_INDEX["mouth_corner_R"]], [-1.5, -2.0], atol=0.05)
    others = np.delete(flows, REGION_INDEX["mouth_corner_R"], axis=0)
    assert np.abs(others).max() < 0.05  # the other regions see neither the corner nor the head
    assert 0.0 < outliers < 0.1
    np.testing.assert_allclose(
        rigid_at(rigid_motion(field)[0], centre[None]),
        [[1.0 + 0.01 * (centre[0] - 55.5), 0.5 + 0.01 * (centre[1] - 55.5)]],
        atol=0.02,
    )
