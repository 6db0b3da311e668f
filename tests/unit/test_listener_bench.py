"""The listener bench's own parts (bench/spotting/listeners.py, donors.py, rig.py): the donor's
trajectory, the events drawn and the rig's pose must be what the bench claims."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.spotting.donors import STRETCH_S, donor_clips, trajectory
from bench.spotting.listeners import MICRO_IOD, MICRO_S, _seed_index, make_listener, summarise
from bench.spotting.rig import FRAME, pose_frame
from bench.spotting.sources import CLIPS, calibration_half

pytestmark = pytest.mark.unit


def _face(shift: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """468 landmarks: a grid plus the eye corners and nose tip where the rig reads them."""
    rng = np.random.default_rng(0)
    lm = rng.uniform(200, 300, size=(468, 2))
    for i, p in {33: (220, 240), 133: (240, 240), 362: (260, 240), 263: (280, 240), 1: (250, 270)}.items():
        lm[i] = p
    for a, b in ((160, 144), (158, 153), (385, 380), (387, 373)):  # open eyes, ~0.3 EAR
        x = lm[33 if a < 300 else 362][0] + 8
        lm[a], lm[b] = (x, 234), (x, 246)
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    centre = lm.mean(0)
    return (lm - centre) @ np.array([[c, s], [-s, c]]) + centre + np.array([shift, 0.0])


def test_a_donor_trajectory_reads_offset_and_roll_relative_to_its_median() -> None:
    times = np.arange(0, 12, 0.04)
    lms: list[np.ndarray | None] = [_face(shift=10 * math.sin(t), roll_deg=3 * math.sin(t)) for t in times]
    tr = trajectory("x", times, lms)
    assert tr is not None
    assert tr.t[-1] == pytest.approx(STRETCH_S, abs=0.1)
    iod = 40.0  # the synthetic face's eye-midpoint distance
    assert np.ptp(tr.dx) == pytest.approx(20 / iod, rel=0.15)
    assert np.ptp(tr.roll) == pytest.approx(6.0, rel=0.15)
    assert abs(float(np.median(tr.dx))) < 0.02
    # played forward then backward: no jump where the stretch ends
    end = float(tr.t[-1])
    assert tr.at(end - 0.01)["dx"] == pytest.approx(tr.at(end + 0.01)["dx"], abs=0.01)


def test_too_little_face_gives_no_donor() -> None:
    assert trajectory("x", np.arange(10) * 0.04, [None] * 10) is None


def test_donors_are_split_like_the_people_they_move() -> None:
    tune, held = donor_clips("tune"), donor_clips("heldout")
    assert tune and held
    assert all(calibration_half(c.identity) for c in tune)
    assert not any(calibration_half(c.identity) for c in held)
    assert not any(c.name.startswith("lp_") for c in tune + held)


def test_events_are_micro_in_range_and_quiet_videos_have_none() -> None:
    clip = next(c for c in CLIPS if c.role == "tune")
    lst = make_listener(clip, 60.0, seed=3, quiet=False, n_donors=4)
    assert len(lst.actions) > 10
    for a in lst.actions:
        assert a.kind == "micro"
        assert MICRO_IOD[0] <= a.amplitude <= MICRO_IOD[1]
        assert MICRO_S[0] <= a.offset - a.onset <= MICRO_S[1]
    assert lst.blinks and lst.nods
    assert make_listener(clip, 60.0, seed=3, quiet=True, n_donors=4).actions == []


def test_seeds_do_not_depend_on_how_many_videos_a_run_asks_for() -> None:
    assert [_seed_index(v, 2) for v in range(3)] == [0, 1, 2]
    four = [_seed_index(v, 4) for v in range(6)]
    assert four[:2] == [0, 1] and four[4] == 2  # the same first two event videos and first quiet one
    assert len(set(four)) == len(four)


def test_the_rig_puts_the_face_where_the_pose_says() -> None:
    base = np.zeros((480, 480, 3), np.uint8)
    lm = _face()
    eyes = (lm[[33, 133]].mean(0) + lm[[362, 263]].mean(0)) / 2
    base[int(eyes[1]) - 2 : int(eyes[1]) + 3, int(eyes[0]) - 2 : int(eyes[0]) + 3] = 255
    pose = {"dx": 0.5, "dy": 0.0, "roll": 0.0, "scale": 1.0, "yaw": 0.0, "pitch": 0.0, "closure": 0.0}
    frame = pose_frame(base, lm, [], pose, target_iod=50.0)
    assert frame.shape == (FRAME[1], FRAME[0], 3)
    _, xs = np.nonzero(frame[..., 0] > 60)
    assert float(xs.mean()) == pytest.approx(FRAME[0] / 2 + 0.5 * 50.0, abs=2.0)


def test_summary_counts_recall_by_amplitude_and_quiet_false_events() -> None:
    ev = {"kind": "micro", "onset_frame": 10, "apex_frame": 12, "offset_frame": 14, "amplitude_iod": 0.035}
    small = ev | {"onset_frame": 40, "apex_frame": 42, "offset_frame": 44, "amplitude_iod": 0.02}
    truth = {"events": [ev, small], "quiet": False, "codec": "vp8", "kbps": 400, "fps": 25, "seconds": 20.0}
    quiet = {"events": [], "quiet": True, "codec": "vp8", "kbps": 400, "fps": 25, "seconds": 60.0}
    hit = {"kind": "micro", "onset_frame": 10, "apex_frame": 12, "offset_frame": 14, "confidence": 0.9}
    false = hit | {"onset_frame": 100, "offset_frame": 104, "confidence": 0.3}
    rows = [{"truth": truth, "shipped": [hit]}, {"truth": quiet, "shipped": [false]}]
    s = summarise(rows, "shipped", None, floor=0.5)
    assert s["micro_recall"] == 0.5 and s["micro_precision"] == 1.0
    assert s["recall_by_amplitude"][">=0.03"].startswith("1/1")
    assert s["recall_by_amplitude"]["0.02 (0.0175-0.025)"].startswith("0/1")
    assert s["quiet_false_per_min_raw"] == 1.0 and s["quiet_false_per_min_at_floor"] == 0.0
