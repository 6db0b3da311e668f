"""``microcue analyze VIDEO --json OUT``: the live pipeline, run over a file.

Frames go one at a time, with their media timestamps, through the same
ParticipantAnalyzer a meeting worker uses.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bridge import policy
from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.media.videofile import TruncatedVideo, VideoError, VideoInfo, probe, read_frames
from bridge.models.face import load_face_models
from bridge.store.tables import MEETING_CONTEXTS
from inference.analyzer import ParticipantAnalyzer, SpottedExpression
from inference.cues import Cue
from inference.streams import PerSecond

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
    p.add_argument("--context", choices=list(MEETING_CONTEXTS), default=DEFAULT_CONTEXT,
                   help="what the recording is (purpose policy): workplace and education withhold emotion, "
                        f"sentiment and micro-expressions, EU AI Act Art. 5(1)(f) (default: {DEFAULT_CONTEXT})")
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


def event_json(found: SpottedExpression, times: list[float]) -> dict[str, Any]:
    """One spotted expression with frame indices counted from 0 in the decoded video."""
    spot, ex = found.spot, found.expression

    def frame_of(t: float) -> int:
        return bisect.bisect_left(times, t - 1e-6)

    return {
        "kind": spot.kind,
        "onset_frame": frame_of(spot.onset_t),
        "apex_frame": frame_of(spot.apex_t),
        "offset_frame": frame_of(spot.offset_t),
        "onset_s": round(spot.onset_t, 3),
        "apex_s": round(spot.apex_t, 3),
        "offset_s": round(spot.offset_t, 3),
        "emotion": ex.emotion,
        "valence": ex.valence,
        "aus": list(ex.aus),
        "confidence": ex.confidence,
        "regions": list(spot.regions),
    }


def analyze_file(info: VideoInfo, analyzer: ParticipantAnalyzer, *, progress: bool) -> dict[str, Any]:
    per_second = PerSecond()
    times: list[float] = []
    found: list[SpottedExpression] = []
    cues: list[Cue] = []
    frames = present = 0
    max_faces = 0
    error: str | None = None
    started, cpu_started = time.perf_counter(), time.process_time()
    bar = tqdm(total=info.frames, unit="frame", desc=info.path.name, disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for frame in read_frames(info):
            step = analyzer.push(frame.rgb, frame.t)
            times.append(frame.t)
            found.extend(step.expressions)
            cues.extend(step.cues)
            per_second.add(step.metrics)
            frames += 1
            present += step.metrics.face_present
            max_faces = max(max_faces, step.metrics.faces)
            bar.update(1)
    except TruncatedVideo as exc:
        error = str(exc)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    # CPU time of the whole process (decode thread included): on a machine shared with other
    # work it measures the pipeline's cost where wall time measures the contention too.
    cpu = time.process_time() - cpu_started
    return {
        "source": str(info.path),
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "fps": round(info.fps, 4),
        "frames": frames,
        "duration_s": round(frames / info.fps, 3) if info.fps else None,
        "complete": error is None,
        "error": error,
        "analysis": {"seconds": round(elapsed, 3), "ms_per_frame": round(1000 * elapsed / max(frames, 1), 2),
                     "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 2)},
        "participants": [
            {
                "id": "p1",
                "face_present_ratio": round(present / frames, 4) if frames else 0.0,
                "max_faces": max_faces,
                "events": [event_json(f, times) for f in found],
                "cues": [c.stamped(meeting_id=info.path.name, participant_id="p1", seq=i).to_dict()
                         for i, c in enumerate(cues)],
                "per_second": per_second.rows(),
                # why the spotter may be silent: per gate and region the share of time vetoed,
                # and the noise level per region (canonical px)
                "spotting": analyzer.spotter.stats().to_dict(),
            }
        ],
    }


def apply_policy(result: dict[str, Any], decision: policy.PolicyDecision) -> dict[str, Any]:
    """States the context and decision in the result and keeps only the cue kinds it allows
    (the analyzer already computed none of the others; this makes the file say so too)."""
    result["context"] = decision.context
    result["policy"] = decision.to_dict()
    for p in result["participants"]:
        p["cues"] = [c for c in p["cues"] if c["type"] in decision.allowed_cue_types]
        if not decision.emotions_allowed:
            p["events"] = []
    return result


def run(args: argparse.Namespace, settings: Settings) -> int:
    info = probe(args.video)
    # a file has no stored meeting policy: the context given here and today's setting decide
    decision = policy.for_meeting(args.context, None, settings)
    models = load_face_models(settings.model_dir, gaze=not args.no_gaze, runtime=settings.model_runtime,
                              batching=settings.batching)
    analyzer = ParticipantAnalyzer(models, track_gaze=not args.no_gaze, fps_hint=info.fps or 15.0,
                                   emotions_allowed=decision.emotions_allowed)
    result = apply_policy(analyze_file(info, analyzer, progress=not args.quiet), decision)
    write_json_atomic(args.json_out, result)
    if args.report is not None:
        from bridge.insights.reports.file_report import render_file_report

        write_text_atomic(args.report, render_file_report(result))
        print(f"wrote {args.report}")
    p = result["participants"][0]
    print(f"wrote {args.json_out} ({result['frames']} frames, face in {100 * p['face_present_ratio']:.1f} %, "
          f"{len(p['events'])} expression(s), {result['analysis']['ms_per_frame']} ms/frame; "
          f"context {decision.context}: emotions {'inferred' if decision.emotions_allowed else 'withheld'})")
    for warning in analyzer.spotter.stats().warnings():
        print(f"warning: {warning}", file=sys.stderr)
    if result["error"]:
        raise VideoError(f"{result['error']}; the frames before it were analysed and written to {args.json_out}")
    if p["face_present_ratio"] == 0.0:
        raise NoFaceFound(f"{info.path}: no face found in any of {result['frames']} frames "
                          f"(results written to {args.json_out})")
    return 0
