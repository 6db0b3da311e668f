"""``microcue analyze VIDEO --json OUT``: the live pipeline, run over a file.

The pipeline itself is ``bridge/media/fileanalysis.py``; this command parses the arguments,
shows progress, and writes the result (never half a file) and the optional report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bridge import policy
from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.media.fileanalysis import analyze_file, apply_policy
from bridge.media.videofile import VideoError, probe
from bridge.models.face import load_face_models
from bridge.store.tables import MEETING_CONTEXTS
from inference.analyzer import ParticipantAnalyzer
from inference.models import ModelError, ModelSet
from inference.voice import SileroVad

NO_FACE_EXIT = 5


class NoFaceFound(MicroCueError):
    exit_code = NO_FACE_EXIT


#: A recording analysed on its own is most often research material; the context is stated in
#: the output so nobody mistakes it for a workplace analysis (which withholds emotions).
DEFAULT_CONTEXT = "research"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="analyse a video file with the streaming pipeline")
    p.add_argument("video", type=Path, help="any file PyAV/FFmpeg can read")
    p.add_argument("--json", dest="json_out", type=Path, required=True, help="where to write the JSON result")
    p.add_argument("--report", type=Path, default=None, help="also write a one-page HTML report")
    p.add_argument("--no-gaze", action="store_true", help="skip the iris model (faster, no gaze)")
    p.add_argument(
        "--no-voice",
        action="store_true",
        help="skip the audio track (when the person talks is then not known, and said so)",
    )
    p.add_argument(
        "--context",
        choices=list(MEETING_CONTEXTS),
        default=DEFAULT_CONTEXT,
        help="what the recording is (purpose policy): workplace and education withhold emotion, "
        f"sentiment and micro-expressions, EU AI Act Art. 5(1)(f) (default: {DEFAULT_CONTEXT})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def write_text_atomic(path: Path, text: str) -> None:
    """Never leave a half-written result behind, even when interrupted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def run(args: argparse.Namespace, settings: Settings) -> int:
    info = probe(args.video)
    # a file has no stored meeting policy: the context given here and today's setting decide
    decision = policy.for_meeting(args.context, None, settings)
    models = load_face_models(
        settings.model_dir, gaze=not args.no_gaze, runtime=settings.model_runtime, batching=settings.batching
    )
    analyzer = ParticipantAnalyzer(
        models, track_gaze=not args.no_gaze, fps_hint=info.fps or 15.0, emotions_allowed=decision.emotions_allowed
    )
    vad = None
    if not args.no_voice:
        try:  # the VAD is tiny: CPU always
            vad = SileroVad(ModelSet(settings.model_dir, prefer_gpu=False).session("vad"))
        except ModelError as exc:
            raise MicroCueError(f"{exc} (or run with --no-voice)") from exc
    with tqdm(
        total=info.frames, unit="frame", desc=info.path.name, disable=args.quiet, file=sys.stderr, dynamic_ncols=True
    ) as bar:
        result = apply_policy(analyze_file(info, analyzer, on_frame=bar.update, vad=vad), decision)
    write_json_atomic(args.json_out, result)
    if args.report is not None:
        from bridge.insights.reports.file_report import render_file_report

        write_text_atomic(args.report, render_file_report(result))
        print(f"wrote {args.report}")
    p = result["participants"][0]
    speech = p["speech"]
    talk = (
        f"{speech['note']} {100 * speech['talk_share']:.0f} % of the time in view"
        if speech["talk_share"] is not None
        else speech["note"]
        if not speech["audio"]
        else "talking: no face in view"
    )
    print(
        f"wrote {args.json_out} ({result['frames']} frames, face in {100 * p['face_present_ratio']:.1f} %, "
        f"{len(p['events'])} expression(s), {talk}, {result['analysis']['ms_per_frame']} ms/frame; "
        f"context {decision.context}: emotions {'inferred' if decision.emotions_allowed else 'withheld'})"
    )
    for warning in analyzer.spotter.stats().warnings():
        print(f"warning: {warning}", file=sys.stderr)
    if result["error"]:
        raise VideoError(f"{result['error']}; the frames before it were analysed and written to {args.json_out}")
    if p["face_present_ratio"] == 0.0:
        raise NoFaceFound(
            f"{info.path}: no face found in any of {result['frames']} frames (results written to {args.json_out})"
        )
    return 0
