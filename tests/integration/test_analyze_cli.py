"""`microcue analyze` as a user runs it: real files, real models, clear failures."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from bridge.demo.actions import EMOTION_AUS, Action, contempt_aus
from bridge.demo.puppet import face_landmarks, scripted_frames
from bridge.demo.scene import Pose, astronaut, frames_for, render, write_video
from inference.analyzer import FaceModels
from inference.voice import SAMPLE_RATE
from tests.support.speech import espeak, track, with_audio

REAL_FACE = Path(__file__).resolve().parents[1] / "data" / "WolfgangLanger_Pexels.mp4"

pytestmark = pytest.mark.integration


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", "analyze", *map(str, args), "--quiet"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "face_640x480.mp4"

    def sway(t: float) -> Pose:
        return Pose(dx=60 * math.sin(1.2 * t), dy=15 * math.sin(0.8 * t), angle=10 * math.sin(t))

    write_video(path, frames_for(sway, seconds=4.0, fps=15.0, noise=3.0), fps=15.0)
    return path


def test_writes_valid_json_with_the_face_found(
    face_models: FaceModels, face_clip: Path, tmp_path: Path, report: object
) -> None:
    out = tmp_path / "result.json"
    proc = _run(face_clip, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(out.read_text())
    assert data["frames"] == 60
    assert data["fps"] == pytest.approx(15.0)
    assert (data["width"], data["height"]) == (640, 480)
    participant = data["participants"][0]
    assert participant["face_present_ratio"] >= 0.95
    assert isinstance(participant["events"], list)
    assert [row["second"] for row in participant["per_second"]] == [0, 1, 2, 3]
    assert all(row["face_present"] == 1.0 for row in participant["per_second"])
    assert {c["type"] for c in participant["cues"]} >= {"presence", "engagement"}
    assert str(out) in proc.stdout
    # issue 11: why the spotter may be silent
    spotting = participant["spotting"]
    assert spotting["windows"] > 0
    assert set(spotting["gated"]) == {"blink", "talk", "head", "light", "occlusion"}
    assert all(0.0 <= v <= 1.0 for per_region in spotting["gated"].values() for v in per_region.values())
    assert "brow_inner_R" in spotting["noise"]
    # issue 22: a file without audio says that when the person talks is not known, not 0 %
    assert participant["speech"]["audio"] is False
    assert participant["speech"]["note"] == "no audio: talking not known"
    assert participant["speech"]["talk_share"] is None and participant["speech"]["not_assessed_s"] is None
    assert all(e["speaking"] is None for e in participant["events"])
    assert data["analysis"]["audio_cpu_ms_per_frame"] == 0.0
    assert "no audio: talking not known" in proc.stdout
    # issue 23: the first frame (one-time set-up) is timed apart from the steady per-frame figure
    a = data["analysis"]
    assert a["first_frame_ms"] > 0
    assert a["first_frame_ms"] + a["ms_per_frame"] * (data["frames"] - 1) == pytest.approx(1000 * a["seconds"], abs=5)


def test_context_is_stated_and_workplace_withholds_emotions(
    face_models: FaceModels, face_clip: Path, tmp_path: Path
) -> None:
    """``analyze`` defaults to ``research`` and says so; ``--context workplace`` withholds every
    emotion, sentiment and micro-expression output in the JSON, the report and the summary line."""
    out = tmp_path / "research.json"
    proc = _run(face_clip, "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["context"] == "research" and data["policy"]["emotions_allowed"] is True
    assert "context research: emotions inferred" in proc.stdout

    out = tmp_path / "workplace.json"
    html = tmp_path / "workplace.html"
    proc = _run(face_clip, "--json", out, "--report", html, "--context", "workplace")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["context"] == "workplace" and data["policy"]["emotions_allowed"] is False
    assert "context workplace: emotions withheld" in proc.stdout
    participant = data["participants"][0]
    kinds = {c["type"] for c in participant["cues"]}
    assert kinds >= {"presence", "engagement"}
    assert not kinds & {"sentiment", "micro_expression", "macro_expression"}, kinds
    assert participant["events"] == []
    assert all("emotion" not in c and "valence" not in c for c in participant["cues"])


def _faststart_clip(path: Path) -> None:
    """An MP4 with its index first, so a cut file still opens and decoding stops at the cut."""

    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 640, 480, "yuv420p"
        for i in range(90):
            frame = av.VideoFrame.from_ndarray(render(Pose(dx=i)), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _unknown_codec_clip(path: Path, source: Path) -> None:
    """Rename the H.264 sample entry so no decoder claims the stream."""
    data = bytearray(source.read_bytes())
    at = data.find(b"avc1", data.find(b"stsd"))  # the sample entry, not the brand list of 'ftyp'
    assert at > 0
    data[at : at + 4] = b"zzz1"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("case", "message", "code"),
    [
        ("empty", "empty (0 bytes)", 4),
        ("garbage", "cannot be read as a video", 4),
        ("missing", "no such file", 4),
        ("directory", "is a directory", 4),
        ("truncated", "truncated", 4),
        ("unknown_codec", "codec", 4),
        ("no_face", "no face found", 5),
    ],
)
def test_bad_input_fails_clearly(
    face_models: FaceModels, face_clip: Path, test_data: Path, tmp_path: Path, case: str, message: str, code: int
) -> None:
    video = tmp_path / f"{case}.mp4"
    if case == "empty":
        video.write_bytes(b"")
    elif case == "garbage":
        video.write_bytes(bytes(range(256)) * 40)
    elif case == "directory":
        video = tmp_path
    elif case == "truncated":
        whole = tmp_path / "whole.mp4"
        _faststart_clip(whole)
        video.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 5])  # past the first keyframe
    elif case == "unknown_codec":
        _unknown_codec_clip(video, face_clip)
    elif case == "no_face":
        video = test_data / "no_face.mp4"
    out = tmp_path / "out.json"
    proc = _run(video, "--json", out)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert message in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    if case in ("truncated", "no_face"):  # what could be analysed is kept
        data = json.loads(out.read_text())
        assert data["frames"] > 0
        assert data["complete"] is (case == "no_face")


def test_report_is_one_self_contained_page(face_models: FaceModels, face_clip: Path, tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    proc = _run(face_clip, "--json", out, "--report", page)
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert html.count("<svg") == 2  # engagement and sentiment timelines, inline
    assert "signal" in html and "not the truth" in html
    assert "no audio: talking not known" in html and "talking: micro-expressions not assessed" not in html
    assert re.search(r"""(src|href)=["']https?://""", html) is None  # nothing fetched when opened offline


# ---- issue 22: the file's audio track says when the person talks ------------------------------

#: How far a found talk boundary may sit from where the speech was put: the VAD's hysteresis
#: (0.25 s to confirm speech, 0.5 s of silence to end it) plus espeak's own quiet edges
#: (tests/integration/test_voice.py uses the same).
BOUNDARY_TOLERANCE_S = 0.6
SENTENCE = "Good morning everyone, thank you for joining the meeting today. Let us look at the numbers."


@pytest.fixture(scope="module")
def spoken() -> np.ndarray:
    return espeak(SENTENCE)


def test_a_real_face_with_speech_gets_its_talk_from_the_audio_track(
    face_models: FaceModels, spoken: np.ndarray, tmp_path: Path, report: Callable[[str], None]
) -> None:
    """The Pexels actress (a real face, 19.7 s) with two spoken stretches muxed in: the JSON's talk
    segments are where the speech was, its share of the time in view matches, every event says
    whether it came while talking, and the report says how much time was not assessed."""
    said = len(spoken) / SAMPLE_RATE
    truth = [(4.0, 4.0 + said), (13.0, 17.0)]
    audio = track(19.7, [(4.0, spoken), (13.0, spoken[: 4 * SAMPLE_RATE])])
    clip = with_audio(REAL_FACE, audio, tmp_path / "actress_talking.mp4")
    out, page = tmp_path / "talk.json", tmp_path / "talk.html"
    proc = _run(clip, "--json", out, "--report", page)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    p = data["participants"][0]
    speech = p["speech"]
    assert speech["audio"] is True and speech["note"] == "talking: micro-expressions not assessed"
    assert len(speech["segments"]) == 2, speech["segments"]
    for (s, e), (ts, te) in zip(speech["segments"], truth, strict=True):
        assert abs(s - ts) < BOUNDARY_TOLERANCE_S and abs(e - te) < BOUNDARY_TOLERANCE_S, (speech["segments"], truth)
    in_view_s = p["face_present_ratio"] * data["frames"] / data["fps"]
    talk_s = sum(e - s for s, e in truth)
    assert speech["talk_share"] == pytest.approx(talk_s / in_view_s, abs=0.06)
    assert speech["not_assessed_s"] == pytest.approx(talk_s, abs=2 * BOUNDARY_TOLERANCE_S)
    for e in p["events"]:
        inside = any(s < e["offset_s"] and e["onset_s"] < t for s, t in speech["segments"])
        assert e["speaking"] is inside, e
    html = page.read_text()
    assert "talking: micro-expressions not assessed" in html and f"{100 * speech['talk_share']:.0f} %" in html
    assert "talking: micro-expressions not assessed" in proc.stdout
    a = data["analysis"]
    report(
        f"analyze with an audio track: talk {speech['segments']} (truth {[(s, round(e, 2)) for s, e in truth]}), "
        f"share {speech['talk_share']}; audio decode + VAD {a['audio_cpu_ms_per_frame']} ms CPU per frame "
        f"of {a['cpu_ms_per_frame']} ms"
    )
    # decoding the audio and running the VAD stays a small part of the cost of a frame
    assert a["audio_cpu_ms_per_frame"] < 0.1 * a["cpu_ms_per_frame"], a


def test_a_micro_expression_while_talking_is_flagged_and_one_while_listening_is_not(
    face_models: FaceModels, spoken: np.ndarray, tmp_path: Path
) -> None:
    """A real face (the astronaut photograph) with two injected micro-expressions of the demo's
    amplitude, the second inside a spoken sentence: the JSON and the report flag that one only."""
    face = astronaut()
    landmarks = face_landmarks(face_models, face)
    listening = Action("micro", "contempt", contempt_aus("R"), 2.5, 2.65, 2.8, 0.07)
    talking = Action("micro", "surprise", EMOTION_AUS["surprise"], 7.5, 7.65, 7.85, 0.08)
    fps = 15.0
    frames = scripted_frames(face, landmarks, [listening, talking], 10.0, fps)
    video = tmp_path / "puppet.mp4"
    write_video(video, frames, fps=fps)
    speech_at = talking.onset - 2.0  # the sentence runs over the second action, well inside it
    assert speech_at + len(spoken) / SAMPLE_RATE > talking.offset + 1.0
    clip = with_audio(video, track(10.0, [(speech_at, spoken)]), tmp_path / "puppet_talking.mp4")
    out, page = tmp_path / "flags.json", tmp_path / "flags.html"
    proc = _run(clip, "--json", out, "--report", page)
    assert proc.returncode == 0, proc.stderr
    events = json.loads(out.read_text())["participants"][0]["events"]

    def found(action: Action) -> dict[str, object]:
        near = [e for e in events if e["kind"] == "micro" and abs(e["apex_s"] - action.apex) < 0.3]
        assert len(near) == 1, (action, events)
        return near[0]

    assert found(listening)["speaking"] is False
    assert found(talking)["speaking"] is True
    html = page.read_text()
    assert html.count("while talking") >= 2  # the note and the flagged row
    assert "listening" in html
