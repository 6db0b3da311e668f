"""The live pipeline run over a video file: what ``microcue analyze`` and the benchmarks share.

Frames go one at a time, with their media timestamps, through the same ParticipantAnalyzer a
meeting worker uses, and the result is one JSON-ready dict (docs/contracts.md). The command
around it (``bridge/commands/analyze.py``) parses arguments, shows progress and writes files;
the benchmarks (``bench/spotting``) import this module without importing a command.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import Any

from bridge import policy
from bridge.media.videofile import TruncatedVideo, VideoInfo, read_frames
from inference.analyzer import ParticipantAnalyzer, SpottedExpression
from inference.cues import Cue
from inference.streams import PerSecond


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


def analyze_file(
    info: VideoInfo, analyzer: ParticipantAnalyzer, *, on_frame: Callable[[], object] | None = None
) -> dict[str, Any]:
    """Every frame of the file through ``analyzer``; ``on_frame`` is called after each (progress).

    A file cut short is analysed up to the cut: the result says so (``complete``, ``error``)
    instead of losing the frames before it.
    """
    per_second = PerSecond()
    times: list[float] = []
    found: list[SpottedExpression] = []
    cues: list[Cue] = []
    frames = present = 0
    max_faces = 0
    error: str | None = None
    started, cpu_started = time.perf_counter(), time.process_time()
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
            if on_frame is not None:
                on_frame()
    except TruncatedVideo as exc:
        error = str(exc)
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
        "analysis": {
            "seconds": round(elapsed, 3),
            "ms_per_frame": round(1000 * elapsed / max(frames, 1), 2),
            "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 2),
        },
        "participants": [
            {
                "id": "p1",
                "face_present_ratio": round(present / frames, 4) if frames else 0.0,
                "max_faces": max_faces,
                "events": [event_json(f, times) for f in found],
                "cues": [
                    c.stamped(meeting_id=info.path.name, participant_id="p1", seq=i).to_dict()
                    for i, c in enumerate(cues)
                ],
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
