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
from dataclasses import dataclass
from typing import Any

from bridge import policy
from bridge.confidence import NO_AUDIO, TALK_NOT_ASSESSED
from bridge.media.videofile import TruncatedVideo, VideoError, VideoInfo, audio_chunks, read_frames
from inference.analyzer import ParticipantAnalyzer, SpottedExpression
from inference.cues import Cue
from inference.speech import Interval, SpeechUpdate, covered, merge
from inference.streams import PerSecond
from inference.voice import SAMPLE_RATE, RecordingVad, SileroVad


@dataclass(frozen=True, slots=True)
class FileSpeech:
    """When the person in a file talks, from its audio track (the same Silero VAD and hysteresis
    as a meeting's voice worker, run in batches: ``inference.voice.RecordingVad``)."""

    #: media seconds of the audio track, first sample to last
    start_s: float
    end_s: float
    segments: list[Interval]
    #: CPU seconds decoding the audio and running the VAD took (process_time)
    cpu_s: float


def file_speech(info: VideoInfo, vad: SileroVad) -> tuple[FileSpeech | None, str | None]:
    """(the file's talk, None) from its first audio track; (None, why) when it has none or it
    cannot be decoded: then when the person talks is not known, which is said, not taken as silence."""
    cpu = time.process_time()
    rec: RecordingVad | None = None
    end = 0.0
    try:
        for chunk in audio_chunks(info.path, SAMPLE_RATE):
            if rec is None:
                rec = RecordingVad(vad, t0=chunk.t)
            rec.push(chunk.samples)
            end = chunk.t + len(chunk.samples) / SAMPLE_RATE
    except VideoError as exc:
        return None, str(exc)
    if rec is None:
        return None, "the file has no audio track"
    segments = rec.finish()
    return FileSpeech(rec.hysteresis.t0, end, segments, time.process_time() - cpu), None


def _present_intervals(times: list[float], present: list[bool], frame_s: float) -> list[Interval]:
    """Where a face was in view: each frame with a face stands until the next frame."""
    ends = [*times[1:], times[-1] + frame_s] if times else []
    return merge((t, e) for t, e, p in zip(times, ends, present, strict=True) if p)


def speech_json(speech: FileSpeech | None, why: str | None, in_view: list[Interval]) -> dict[str, Any]:
    """The ``speech`` block of a participant: talk segments, the share of the time the face was in
    view that they talked, and that time, when micro-expressions are not assessed."""
    if speech is None:
        return {
            "audio": False,
            "note": NO_AUDIO,
            "reason": why,
            "segments": None,
            "talk_s": None,
            "talk_share": None,
            "not_assessed_s": None,
        }
    in_view_s = sum(e - s for s, e in in_view)
    talking_in_view = sum(covered(speech.segments, s, e) for s, e in in_view)
    return {
        "audio": True,
        "note": TALK_NOT_ASSESSED,
        "audio_start_s": round(speech.start_s, 3),
        "audio_end_s": round(speech.end_s, 3),
        "segments": [[round(s, 3), round(e, 3)] for s, e in speech.segments],
        "talk_s": round(sum(e - s for s, e in speech.segments), 3),
        "talk_share": round(talking_in_view / in_view_s, 4) if in_view_s > 0 else None,
        "not_assessed_s": round(talking_in_view, 3),
    }


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
        "speaking": found.speaking,
    }


def analyze_file(
    info: VideoInfo,
    analyzer: ParticipantAnalyzer,
    *,
    on_frame: Callable[[], object] | None = None,
    vad: SileroVad | None = None,
) -> dict[str, Any]:
    """Every frame of the file through ``analyzer``; ``on_frame`` is called after each (progress).
    With ``vad``, the audio track says first when the person talks (``speech`` in the result, and
    ``speaking`` on each event); without one, that is not known.

    A file cut short is analysed up to the cut: the result says so (``complete``, ``error``)
    instead of losing the frames before it.
    """
    started, cpu_started = time.perf_counter(), time.process_time()  # the audio's cost counts too
    speech, why = file_speech(info, vad) if vad is not None else (None, "voice activity was not analysed")
    if speech is not None:
        # all of it at once: the file's audio is known to its end, so no expression waits for it
        analyzer.hear(SpeechUpdate(tuple(speech.segments), None, speech.end_s, live=False))
    per_second = PerSecond()
    times: list[float] = []
    in_view: list[bool] = []
    found: list[SpottedExpression] = []
    cues: list[Cue] = []
    frames = present = 0
    max_faces = 0
    error: str | None = None
    # The first frame pays one-time costs (opening the decoder, the model engines' first-call
    # set-up): timed apart, so ms_per_frame is the steady cost and the same on every run.
    first_wall = first_cpu = 0.0
    loop_started = (time.perf_counter(), time.process_time())
    try:
        for frame in read_frames(info):
            step = analyzer.push(frame.rgb, frame.t)
            if frames == 0:
                first_wall = time.perf_counter() - loop_started[0]
                first_cpu = time.process_time() - loop_started[1]
            times.append(frame.t)
            found.extend(step.expressions)
            cues.extend(step.cues)
            per_second.add(step.metrics)
            frames += 1
            present += step.metrics.face_present
            in_view.append(step.metrics.face_present)
            max_faces = max(max_faces, step.metrics.faces)
            if on_frame is not None:
                on_frame()
    except TruncatedVideo as exc:
        error = str(exc)
    elapsed = time.perf_counter() - started
    # CPU time of the whole process (decode thread included): on a machine shared with other
    # work it measures the pipeline's cost where wall time measures the contention too.
    cpu = time.process_time() - cpu_started
    # steady state: everything but the first frame's own analysis, over the other frames
    steady_frames = frames - 1 if frames > 1 else max(frames, 1)
    steady_wall, steady_cpu = (elapsed - first_wall, cpu - first_cpu) if frames > 1 else (elapsed, cpu)
    in_view_intervals = _present_intervals(times, in_view, 1 / info.fps if info.fps else 0.0)
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
            # per frame after the first (decode and audio included); the first frame apart
            "ms_per_frame": round(1000 * steady_wall / steady_frames, 2),
            "cpu_ms_per_frame": round(1000 * steady_cpu / steady_frames, 2),
            "first_frame_ms": round(1000 * first_wall, 2),
            # of which reading the audio track and finding the talk in it (0 without audio)
            "audio_cpu_ms_per_frame": round(1000 * (speech.cpu_s if speech else 0.0) / max(frames, 1), 3),
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
                "speech": speech_json(speech, why, in_view_intervals),
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
