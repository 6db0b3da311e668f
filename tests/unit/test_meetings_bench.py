"""The meeting-like spotting bench: sources, identity split, injected actions, truth with drops."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.spotting import calibrate, meetings, sources
from bench.spotting.sources import CLIPS, Clip, blob_id
from bridge.media.videofile import audio_chunks

pytestmark = pytest.mark.unit


def test_identity_split_is_disjoint_and_sources_are_pinned() -> None:
    people = {role: {c.identity for c in CLIPS if c.role == role} for role in ("tune", "heldout", "unlabeled")}
    assert len(people["tune"]) >= 4 and len(people["heldout"]) >= 4
    assert len(people["tune"] | people["heldout"]) >= 8  # at least 8 different people as base faces
    assert not people["tune"] & people["heldout"]
    assert not people["unlabeled"] & (people["tune"] | people["heldout"])
    for c in CLIPS:
        assert len(c.commit) == 40 and len(c.blob) == 40
    assert len({c.name for c in CLIPS}) == len(CLIPS)
    assert blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob


def test_injected_actions_cover_the_issue_ranges() -> None:
    actions = [a for seed in range(40) for a in meetings.make_meeting(CLIPS[0], 30.0, seed).actions]
    micro = [a for a in actions if a.kind == "micro"]
    macro = [a for a in actions if a.kind == "macro"]
    amps = np.array([a.amplitude for a in micro])
    assert amps.min() >= 0.012 and amps.max() <= 0.05
    # log-uniform: about as many below the geometric midpoint as above it
    assert 0.35 < np.mean(amps < np.sqrt(0.012 * 0.05)) < 0.65
    assert all(0.1 <= a.offset - a.onset <= 0.5 for a in micro)
    assert all(0.6 <= a.offset - a.onset <= 3.0 and a.amplitude <= 0.1 for a in macro)
    assert {a.emotion for a in micro} == {"happiness", "sadness", "surprise", "fear", "anger", "disgust", "contempt"}
    contempt = [a.aus for a in micro if a.emotion == "contempt"]
    assert all(len({au[-1] for au in aus}) == 1 for aus in contempt)  # one side only
    conds = {meetings.make_meeting(CLIPS[0], 30.0, s).condition for s in range(40)}
    assert {c.codec for c in conds} == {"vp8", "h264"} and {c.fps for c in conds} == {15, 25, 30}
    assert {c.kbps for c in conds} <= set(meetings.BITRATES_KBPS) and any(c.drops for c in conds)


def test_truth_frames_index_the_frames_that_survived_the_drops() -> None:
    m = meetings.make_meeting(CLIPS[0], 10.0, 3)
    kept = [i / 15 for i in range(150) if i % 10 != 5]  # every tenth frame dropped
    tr = meetings.truth(m, kept)
    for ev, a in zip(tr["events"], m.actions, strict=True):
        assert abs(kept[ev["onset_frame"]] - a.onset) <= 2 / 15
        assert ev["onset_frame"] <= ev["apex_frame"] <= ev["offset_frame"] < len(kept)


@pytest.mark.parametrize("layout", ["repo", "repo/.git"])
def test_mirror_reads_bare_snapshots_and_clones(tmp_path: Path, layout: str) -> None:
    """fetch brings some repositories as a bare git directory and some as a clone (repo/.git)."""
    data = b"stand-in for a clip"
    git_dir = tmp_path / "owner+name" / layout
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "hash-object", "-w", "--stdin"], input=data, capture_output=True, check=True
    )
    blob = out.stdout.decode().strip()
    assert blob == blob_id(data)
    clip = Clip("x", "owner/name", "0" * 40, "x.mp4", blob, "x", "unlabeled")
    assert sources._from_mirror(tmp_path, clip) == data
    assert sources._from_mirror(tmp_path / "elsewhere", clip) is None


def test_unlabeled_split_refuses_to_run_nothing() -> None:
    with pytest.raises(SystemExit):
        meetings.main(["--split", "unlabeled", "--no-unlabeled"])


def test_calibration_half_splits_the_unlabeled_identities_and_nothing_else() -> None:
    unlabeled = {c.identity for c in CLIPS if c.role == "unlabeled"}
    fit = {i for i in unlabeled if sources.calibration_half(i)}
    assert 0 < len(fit) < len(unlabeled)
    assert abs(len(fit) - len(unlabeled - fit)) <= 1
    assert not any(sources.calibration_half(c.identity) for c in CLIPS if c.role != "unlabeled")


def test_logistic_fit_recovers_a_known_curve() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 2.0, (6000, 2))
    y = (rng.uniform(size=len(x)) < 1.0 / (1.0 + np.exp(-(-1.5 + 2.0 * x[:, 0] - 1.0 * x[:, 1])))).astype(float)
    w = calibrate.fit_logistic(x, y)
    assert w == pytest.approx([-1.5, 2.0, -1.0], abs=0.3)
    assert calibrate.log_loss(w, x, y) < calibrate.log_loss(np.array([0.0, 0.0, 0.0]), x, y)


def _ramp_source(span: float = 4.0, fps: float = 25.0) -> meetings.Source:
    """A synthetic base clip whose sound says where in the clip it is: sample value = time / span / 2."""
    times = np.arange(0.0, span + 1e-9, 1 / fps)
    audio = (np.arange(round(span * meetings.AUDIO_RATE) + 1) / meetings.AUDIO_RATE / span / 2).astype(np.float32)
    blank = np.zeros((8, 8, 3), np.uint8)
    return meetings.Source([blank] * len(times), times, [np.zeros((468, 2))] * len(times), audio)


def test_rendered_sound_follows_the_frames_time_map() -> None:
    """Frames and sound of a meeting come from the same place in the base clip (lips and voice
    together), including where the sweep turns and plays the clip backwards."""
    src = _ramp_source()
    m = meetings.make_meeting(CLIPS[0], 12.0, 5)
    sound = meetings.render_audio(m, src)
    assert sound is not None and len(sound) == round(12.0 * meetings.AUDIO_RATE)
    frame_s = 1 / 25.0
    for t in np.arange(0.0, 12.0, 0.37):
        heard = 2 * 4.0 * float(sound[round(t * meetings.AUDIO_RATE)])  # the clip time the sound plays
        seen = float(src.times[meetings._source_index(src, float(t), still=False)])
        assert abs(heard - seen) <= frame_s + 1e-6, t
    # it does sweep back: the clip's end is reached and left again within the 12 s
    clip_t = 2 * 4.0 * sound
    assert clip_t.max() > 3.9 and clip_t[-1] < clip_t.max() - 1.0


def test_still_faces_are_silent_and_clips_without_sound_stay_without() -> None:
    src = _ramp_source()
    still = meetings.make_meeting(CLIPS[0], 6.0, 5, still=True)
    sound = meetings.render_audio(still, src)
    assert sound is not None and not sound.any()
    src.audio = None
    assert meetings.render_audio(meetings.make_meeting(CLIPS[0], 6.0, 5), src) is None


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_the_sound_is_muxed_where_the_product_reads_it(tmp_path: Path, codec: str) -> None:
    """A tone at 0.5-1.0 s comes back at 0.5-1.0 s through the audio reader ``microcue analyze``
    uses (Opus in WebM, AAC in MP4)."""
    t = np.arange(2 * meetings.AUDIO_RATE) / meetings.AUDIO_RATE
    tone = np.where((t >= 0.5) & (t < 1.0), 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    out = tmp_path / f"tone.{'webm' if codec == 'vp8' else 'mp4'}"
    with meetings.webrtc_encoder(out, codec, 15, 300, tone) as encode:
        for i in range(30):
            encode(np.zeros((meetings.FRAME[1], meetings.FRAME[0], 3), np.uint8), i)
    chunks = list(audio_chunks(out, 16_000))
    samples = np.concatenate([c.samples for c in chunks]).astype(np.float64) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.1) / 16_000 + chunks[0].t
    assert loud[0] == pytest.approx(0.5, abs=0.01) and loud[-1] == pytest.approx(1.0, abs=0.01)


def test_talk_summary_counts_shown_signals_by_the_products_talk_decision() -> None:
    """The issue-22 row: shown = confidence >= floor; talking = the product's ``speaking``; recall
    while talking counts the true events inside the talk segments."""

    def event(onset: float) -> dict[str, object]:
        return {
            "kind": "micro",
            "onset_frame": round(onset * 10),
            "offset_frame": round(onset * 10) + 3,
            "onset_s": onset,
            "offset_s": onset + 0.3,
        }

    def pred(onset: float, confidence: float, verified: float, speaking: bool | None) -> dict[str, object]:
        return event(onset) | {"confidence": confidence, "verified": verified, "speaking": speaking}

    row = {
        "truth": {"events": [event(1.0), event(5.0), event(9.0)]},
        "speech": {"audio": True, "not_assessed_s": 4.0},
        "in_view_s": 10.0,
        "predictions": [
            pred(1.0, 0.9, 0.9, False),  # true, silent: shown
            pred(5.0, 0.3, 0.9, True),  # true, talking: hidden by the talk odds
            pred(7.0, 0.2, 0.85, True),  # false, talking: hidden
        ],
    }
    row["speech"]["segments"] = [[4.0, 8.0]]
    t = meetings.talk_summary([row], floor=0.5)
    assert t["all"] == {"signals": 3, "shown": 1, "shown_true": 1, "precision": 1.0, "events": 3, "recall": 0.333}
    assert t["talking"]["signals"] == 2 and t["talking"]["shown"] == 0 and t["talking"]["events"] == 1
    assert t["not_talking"]["recall"] == 0.5  # the event at 1 s found, the one at 9 s not
    assert t["all_without_talk"]["shown"] == 3 and t["all_without_talk"]["shown_true"] == 2
    assert t["not_assessed_share"] == 0.4
