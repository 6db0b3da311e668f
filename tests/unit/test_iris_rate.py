"""The iris model runs about 5 times per second of media time, whatever the frame rate (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.tracking import IRIS_EVERY_S, FaceTracker
from inference.types import Detection, Roi

pytestmark = pytest.mark.unit

RNG = np.random.default_rng(7)
POINTS = np.concatenate([RNG.uniform(200, 300, (468, 2)), RNG.uniform(-5, 5, (468, 1))], axis=1).astype(np.float32)


class FakeDetector:
    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        kps = np.array([[230, 240], [270, 240], [250, 260], [250, 280], [210, 250], [290, 250]], np.float32)
        return [Detection((200.0, 200.0, 300.0, 300.0), 0.9, kps)]


class FakeMesh:
    def __call__(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        return POINTS.copy(), 0.99


class CountingIris:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.array([[240.0, 240.0], [260.0, 240.0]], np.float32)


@pytest.mark.parametrize("fps", [15.0, 30.0, 60.0])
def test_iris_runs_five_times_a_second_of_media_time(fps: float) -> None:
    iris = CountingIris()
    tracker = FaceTracker(FakeDetector(), FakeMesh(), iris)  # type: ignore[arg-type]
    rgb = np.zeros((480, 640, 3), np.uint8)
    seconds = 4.0
    gazes = []
    for i in range(int(seconds * fps)):
        face = tracker.update(rgb, i / fps).primary
        assert face is not None
        gazes.append(face.gaze)
    assert iris.calls == pytest.approx(seconds / IRIS_EVERY_S, abs=1)
    # between runs the last gaze is kept: every frame has one
    assert all(g is not None for g in gazes)
