"""`microcue analyze` as a user runs it: real files, real models, clear failures."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from bridge.demo.scene import Pose, frames_for, render, write_video
from inference.analyzer import FaceModels

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
    assert re.search(r"""(src|href)=["']https?://""", html) is None  # nothing fetched when opened offline
