"""Pure geometry of the face pipeline, checked against transforms we construct exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.alignment import CANONICAL_5PT, apply, similarity
from inference.analyzer import FrameMetrics
from inference.facegeometry import CHIN, FOREHEAD, LEFT_EYE, PITCH_OFFSET_DEG, RIGHT_EYE, eye_openness, head_pose
from inference.faces import ANCHORS, NUM_ANCHORS, FaceDetector, weighted_nms
from inference.landmarks import roi_from_landmarks
from inference.motion import FER_TEMPLATE, fer_matrix
from inference.streams import PerSecond
from inference.types import Roi

pytestmark = pytest.mark.unit


def test_anchor_layout_matches_the_short_range_model() -> None:
    assert ANCHORS.shape == (NUM_ANCHORS, 2)
    # first cell of the 16x16 grid holds 2 anchors, first cell of the 8x8 grid 6 anchors
    np.testing.assert_allclose(ANCHORS[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(ANCHORS[1], ANCHORS[0])
    np.testing.assert_allclose(ANCHORS[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(ANCHORS[512:518], np.repeat(ANCHORS[512:513], 6, axis=0))
    assert ANCHORS[-1] == pytest.approx([7.5 / 8, 7.5 / 8])


def test_weighted_nms_averages_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    kps = np.zeros((3, 6, 2), dtype=np.float32)
    kps[1] += 2.0
    scores = np.array([0.9, 0.6, 0.8], dtype=np.float32)
    out = weighted_nms(boxes, kps, scores)
    assert len(out) == 2
    box, kp, score = out[0]
    assert score == pytest.approx(0.9)
    np.testing.assert_allclose(box, (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5, rtol=1e-5)
    np.testing.assert_allclose(kp, np.full((6, 2), 2.0 * 0.6 / 1.5), rtol=1e-5)
    np.testing.assert_allclose(out[1][0], boxes[2])


@pytest.mark.parametrize(("w", "h", "n"), [(640, 480, 2), (480, 640, 2), (512, 512, 1), (1920, 1080, 2)])
def test_tiles_are_square_and_cover_the_frame(w: int, h: int, n: int) -> None:
    tiles = FaceDetector.tiles(w, h)
    assert len(tiles) == n
    covered = np.zeros((h, w), dtype=bool)
    for x0, y0, side in tiles:
        assert side == min(w, h)
        covered[y0 : y0 + side, x0 : x0 + side] = True
    assert covered.all()


def test_roi_crop_maps_corners_and_centre() -> None:
    roi = Roi(cx=100.0, cy=50.0, size=40.0, angle=math.radians(90))
    m = roi.crop_to_image(192)
    centre = m @ np.array([96.0, 96.0, 1.0])
    np.testing.assert_allclose(centre, [100.0, 50.0], atol=1e-9)
    # the crop's x axis points along +y in the image when the angle is 90 degrees
    step = m @ np.array([192.0, 96.0, 1.0]) - centre
    np.testing.assert_allclose(step, [0.0, 20.0], atol=1e-9)


def _face_points(angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    rng = np.random.default_rng(1)
    pts = np.zeros((468, 3))
    pts[:, :2] = rng.uniform(-50, 50, (468, 2))
    pts[RIGHT_EYE["outer"], :2] = (-40, -20)
    pts[LEFT_EYE["outer"], :2] = (40, -20)
    c, s = math.cos(angle), math.sin(angle)
    pts[:, :2] = pts[:, :2] @ np.array([[c, s], [-s, c]]) + shift
    return pts


def test_roi_from_landmarks_follows_the_eye_line() -> None:
    roi = roi_from_landmarks(_face_points(angle=math.radians(25), shift=(300, 200)))
    assert math.degrees(roi.angle) == pytest.approx(25, abs=1e-6)
    assert (roi.cx, roi.cy) == pytest.approx((300, 200), abs=8)


def test_similarity_recovers_a_known_transform() -> None:
    angle, scale, t = math.radians(17), 2.5, np.array([30.0, -12.0])
    r = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = CANONICAL_5PT
    dst = src @ r.T + t
    m = similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)
    np.testing.assert_allclose(apply(m, src), dst, atol=1e-9)


def _rotated_head(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Eye corners, forehead and chin of a frontal head, rotated; x right, y down, z away."""
    pts = np.zeros((468, 3))
    pts[RIGHT_EYE["outer"]] = (-45, 0, 0)
    pts[LEFT_EYE["outer"]] = (45, 0, 0)
    # on an upright face FaceMesh puts the forehead in front of the chin (PITCH_OFFSET_DEG)
    tilt = -math.radians(PITCH_OFFSET_DEG)
    pts[FOREHEAD] = (0, -60 * math.cos(tilt), -60 * math.sin(tilt))
    pts[CHIN] = (0, 90 * math.cos(tilt), 90 * math.sin(tilt))
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return pts @ (rz @ ry @ rx).T


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"), [(0, 0, 0), (30, 0, 0), (-20, 0, 0), (0, 15, 0), (0, -15, 0), (0, 0, 20), (25, 10, -10)]
)
def test_head_pose_signs_and_magnitudes(yaw: float, pitch: float, roll: float) -> None:
    pose = head_pose(_rotated_head(yaw, pitch, roll))
    assert pose.yaw == pytest.approx(yaw, abs=3)
    assert pose.pitch == pytest.approx(pitch, abs=3)
    assert pose.roll == pytest.approx(roll, abs=3)


def test_eye_openness_reads_open_and_closed() -> None:
    pts = np.zeros((468, 3))
    for eye, x in ((RIGHT_EYE, -40.0), (LEFT_EYE, 40.0)):
        pts[eye["outer"], :2] = (x - 15, 0)
        pts[eye["inner"], :2] = (x + 15, 0)
        for up, low in zip(eye["upper"], eye["lower"], strict=True):
            pts[up, :2] = (x, -4.5)
            pts[low, :2] = (x, 4.5)
    assert eye_openness(pts) == pytest.approx((0.3, 0.3))
    pts[:, 1] *= 0.1
    assert max(eye_openness(pts)) < 0.05


def test_per_second_rows_average_within_each_second() -> None:
    agg = PerSecond()
    agg.add(FrameMetrics(t=0.1, face_present=True, faces=1, yaw=10.0))
    agg.add(FrameMetrics(t=0.6, face_present=False, faces=0))
    agg.add(FrameMetrics(t=2.2, face_present=True, faces=1, yaw=-4.0))
    rows = agg.rows()
    assert [r["second"] for r in rows] == [0, 2]
    assert rows[0]["face_present"] == 0.5
    assert rows[0]["yaw"] == 10.0
    assert rows[1]["yaw"] == -4.0
    assert rows[0]["gaze_x"] is None


def _umeyama_svd(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama (1991) as published: SVD of the covariance with the reflection sign fix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    scale = float(np.trace(np.diag(sig) @ sign) / ((s**2).sum() / len(src)))
    r = u @ sign @ vt
    return np.hstack([scale * r, (mu_d - scale * r @ mu_s)[:, None]])


def test_closed_form_similarity_is_umeyamas_fit_on_noisy_and_mirrored_points() -> None:
    """Issue 23: the closed form replaced the SVD; it must be the same least-squares fit, also
    where the best fit would be a reflection (which both exclude)."""
    rng = np.random.default_rng(3)
    for k in range(200):
        src = rng.uniform(0, 640, (5, 2))
        dst = rng.uniform(0, 112, (5, 2)) if k % 2 else src[:, ::-1] * 0.2 + rng.normal(0, 1, (5, 2))
        np.testing.assert_allclose(similarity(src, dst), _umeyama_svd(src, dst), atol=1e-9)


def test_fer_crop_transform_equals_its_own_fit() -> None:
    """The FER crop's matrix, derived from the canonical transform, is the fit to FER_TEMPLATE."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        src = CANONICAL_5PT * rng.uniform(1, 4) + rng.uniform(0, 300, 2) + rng.normal(0, 3, (5, 2))
        np.testing.assert_allclose(fer_matrix(similarity(src, CANONICAL_5PT)), similarity(src, FER_TEMPLATE), atol=1e-9)
