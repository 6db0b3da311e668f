"""End to end: an injected facial action in an encoded video, spotted by the live analyzer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from bench.spotting.generate import TIERS, Scenario, render
from bridge.demo.actions import Action, contempt_aus
from bridge.demo.puppet import face_landmarks
from bridge.demo.scene import astronaut
from inference.analyzer import FaceModels, ParticipantAnalyzer

pytestmark = pytest.mark.integration
FPS = 15.0


@pytest.fixture(scope="module")
def astronaut_landmarks(face_models: FaceModels) -> np.ndarray:

    return face_landmarks(face_models, astronaut())


def _analyse(models: FaceModels, path: Path) -> tuple[list[object], list[float]]:
    analyzer = ParticipantAnalyzer(models, fps_hint=FPS)
    found, times = [], []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            times.append(float(frame.time))
            found += analyzer.push(frame.to_ndarray(format="rgb24"), float(frame.time)).expressions
    return found, times


@pytest.mark.parametrize("side", ["R", "L"])
def test_unilateral_lip_corner_of_300_ms_is_a_micro_contempt(
    face_models: FaceModels,
    astronaut_landmarks: np.ndarray,
    tmp_path: Path,
    side: str,
    report: Callable[[str], None],
) -> None:
    onset = 3.0
    action = Action("micro", "contempt", contempt_aus(side), onset, onset + 0.15, onset + 0.3, 0.07)
    scenario = Scenario(TIERS["easy"], seconds=6.0, fps=FPS, seed=11, actions=[action])
    video = tmp_path / f"contempt_{side}.mp4"
    render(scenario, video, astronaut_landmarks)
    found, times = _analyse(face_models, video)
    assert len(found) == 1, [(f.spot.kind, f.spot.onset_t, f.expression.emotion) for f in found]  # type: ignore[attr-defined]
    spot, expression = found[0].spot, found[0].expression  # type: ignore[attr-defined]
    onset_frame = int(np.abs(np.array(times) - spot.onset_t).argmin())
    report(
        f"injected 300 ms AU12{side}+AU14{side}: spotted {spot.kind} {expression.emotion} "
        f"onset frame {onset_frame} (truth {round(onset * FPS)}), aus {expression.aus}, "
        f"confidence {expression.confidence}"
    )
    assert spot.kind == "micro"
    assert abs(onset_frame - round(onset * FPS)) <= 2
    assert expression.emotion == "contempt"
    assert f"AU12{side}" in expression.aus
