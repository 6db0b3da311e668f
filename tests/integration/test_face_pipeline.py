"""The real face models on real faces: synthetic motion of a real photo (exact ground truth)
and the real clips in tests/data."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from bridge.demo.scene import Pose, add_noise, astronaut, render
from inference.alignment import five_points
from inference.analyzer import FaceModels, ParticipantAnalyzer
from inference.faces import FaceDetector
from inference.types import FrameFaces

pytestmark = pytest.mark.integration
FPS = 15.0


def _run(models: FaceModels, frames: list[np.ndarray]) -> list[FrameFaces]:
    analyzer = ParticipantAnalyzer(models)
    return [analyzer.push(f, i / FPS).faces for i, f in enumerate(frames)]


def _centre(frame: FrameFaces) -> np.ndarray:
    assert frame.primary is not None
    return five_points(frame.primary.landmarks).mean(0)


def test_detects_the_face_where_it_was_placed(face_models: FaceModels) -> None:
    frame = render(Pose(dx=-100, dy=30))
    dets = FaceDetector(face_models.detector)(frame)
    assert len(dets) == 1
    x0, y0, x1, y1 = dets[0].box
    # the pose puts the face centre at (320-100, 240+30)
    assert x0 < 220 < x1
    assert y0 < 270 < y1
    assert dets[0].score > 0.8


def test_landmarks_are_steady_on_a_still_face(face_models: FaceModels, report: Callable[[str], None]) -> None:
    rng = np.random.default_rng(7)
    still = render(Pose())
    frames = [add_noise(still, 3.0, rng) for _ in range(45)]  # 3 s of webcam-like sensor noise
    results = _run(face_models, frames)
    assert all(r.face_present for r in results)
    pts = np.stack([r.primary.landmarks[:, :2] for r in results[5:]])  # type: ignore[union-attr]
    jitter = np.sqrt(((pts - pts.mean(0)) ** 2).sum(-1)).mean()
    worst = np.sqrt(((pts - pts.mean(0)) ** 2).sum(-1)).max()
    face_width = float(np.ptp(pts[0, :, 0]))
    report(
        f"landmark jitter on a still face (noise sigma 3): mean {jitter:.2f} px, worst {worst:.2f} px, "
        f"face width {face_width:.0f} px"
    )
    assert jitter < 1.0
    assert len({r.primary.track_id for r in results}) == 1  # type: ignore[union-attr]


def test_tracks_through_translation_and_rotation(face_models: FaceModels, report: Callable[[str], None]) -> None:
    def pose(t: float) -> Pose:  # up to ~250 px/s sideways and 20 degrees of roll
        return Pose(dx=150 * math.sin(1.6 * t), dy=40 * math.sin(1.1 * t), angle=20 * math.sin(0.9 * t))

    poses = [pose(i / FPS) for i in range(90)]
    results = _run(face_models, [render(p) for p in poses])
    present = sum(r.face_present for r in results) / len(results)
    ids = {r.primary.track_id for r in results if r.primary is not None}
    # tracked centre moves as the pose moves it (relative to frame 0)
    errors = []
    c0 = _centre(results[0])
    for p, r in zip(poses, results, strict=True):
        if r.primary is None:
            continue
        m = cv2.getRotationMatrix2D((0.0, 0.0), p.angle, 1.0)
        # the tracked centre is a fixed point of the face: it turns with the pose about the pose centre
        offset = c0 - np.array([320 + poses[0].dx, 240 + poses[0].dy])
        expected = np.array([320 + p.dx, 240 + p.dy]) + m[:, :2] @ offset
        errors.append(float(np.linalg.norm(_centre(r) - expected)))
    report(
        f"tracking through motion: face in {100 * present:.1f} % of 90 frames, centre error "
        f"mean {np.mean(errors):.1f} px, max {np.max(errors):.1f} px, track ids {sorted(ids)}"
    )
    assert present >= 0.95
    assert len(ids) == 1
    assert np.mean(errors) < 4.0


@pytest.mark.parametrize("angle", [-30, -15, 15, 30])
def test_roll_follows_a_known_in_plane_rotation(face_models: FaceModels, angle: float) -> None:
    base = _run(face_models, [render(Pose())] * 3)[-1].primary
    rolled = _run(face_models, [render(Pose(angle=angle))] * 3)[-1].primary
    assert base is not None and rolled is not None
    # OpenCV angles are counter-clockwise; our roll is clockwise-positive
    assert rolled.pose.roll - base.pose.roll == pytest.approx(-angle, abs=4)


def _yaw_warp(img: np.ndarray, degrees: float, cx: float = 225.0, radius: float = 60.0) -> np.ndarray:
    """Turn the face about a vertical axis by mapping it onto a cylinder (no 3D data needed)."""
    h, w = img.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    phi = np.arcsin(np.clip((xs - cx) / radius, -1, 1)) - math.radians(degrees)
    src = np.where(np.abs(phi) < math.pi / 2, cx + radius * np.sin(phi), xs).astype(np.float32)
    return cv2.remap(img, src, ys, cv2.INTER_LINEAR)


def test_yaw_sign_and_order_on_turned_faces(face_models: FaceModels, report: Callable[[str], None]) -> None:
    yaws = []
    for deg in (-25, -10, 10, 25):
        src = _yaw_warp(astronaut(), deg)
        face = _run(face_models, [render(Pose(), source=src)] * 3)[-1].primary
        assert face is not None
        yaws.append(face.pose.yaw)
    report("yaw on cylinder-warped turns of -25/-10/10/25 deg: " + ", ".join(f"{y:.1f}" for y in yaws))
    assert yaws == sorted(yaws)
    assert yaws[0] < -5 and yaws[-1] > 5


def test_mirror_image_mirrors_roll(face_models: FaceModels) -> None:
    img = render(Pose(angle=12))
    a = _run(face_models, [img] * 3)[-1].primary
    b = _run(face_models, [np.ascontiguousarray(img[:, ::-1])] * 3)[-1].primary
    assert a is not None and b is not None
    assert a.pose.roll == pytest.approx(-b.pose.roll, abs=2)


def test_face_lost_when_it_leaves_and_found_when_it_returns(face_models: FaceModels) -> None:
    # 1 s in view, 1 s fully outside the frame, 1 s back
    poses = [Pose()] * 15 + [Pose(dx=600)] * 15 + [Pose(dx=-20)] * 15
    results = _run(face_models, [render(p) for p in poses])
    assert all(r.face_present for r in results[:15])
    assert not any(r.face_present for r in results[16:30])
    assert all(r.face_present for r in results[31:])
    first, back = results[0].primary, results[-1].primary
    assert first is not None and back is not None
    assert back.track_id != first.track_id  # a new appearance is a new track


def test_several_faces_get_stable_ids_and_the_largest_is_followed(face_models: FaceModels, test_data: Path) -> None:
    img = cv2.cvtColor(cv2.imread(str(test_data / "multi_face.jpg")), cv2.COLOR_BGR2RGB)
    results = _run(face_models, [img] * 5)
    ids = [tuple(sorted(f.track_id for f in r.faces)) for r in results]
    assert len(results[0].faces) >= 4
    assert len(set(ids)) == 1, ids
    primary = results[-1].primary
    assert primary is not None
    assert primary.area == max(f.area for f in results[-1].faces)


def _clip(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_real_clips(face_models: FaceModels, test_data: Path, report: Callable[[str], None]) -> None:
    single = _run(face_models, _clip(test_data / "single_face.mp4"))
    assert sum(r.face_present for r in single) == len(single)
    noface = _run(face_models, _clip(test_data / "no_face.mp4"))
    assert not any(r.face_present for r in noface)
    cut = _run(face_models, _clip(test_data / "face_noface.mov"))  # HEVC: face, then a cartoon
    present = [r.face_present for r in cut]
    last_face = max(i for i, p in enumerate(present) if p)
    report(f"face_noface.mov: face in frames 0..{last_face}, {sum(present)} of {len(present)} frames")
    assert all(present[:60])
    assert not any(present[last_face + 1 :]) and last_face < 100  # never re-found in the clouds
