"""Spotting benchmark: render the tiers, analyse them with the live pipeline, score MEGC-style.

    python -m bench.spotting.run [--tiers easy,medium,hard] [--videos 3] [--seconds 60] [--out DIR]

Prints one table row per tier plus false positives per minute on the real clips of
tests/data, and writes everything to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.spotting.generate import CLIP_NEUTRAL_FRAMES, TIERS, make_scenario, render, truth, write_truth
from bench.spotting.score import Score, score_video
from bridge.config import Settings
from bridge.demo.puppet import face_landmarks
from bridge.demo.scene import astronaut
from bridge.media.fileanalysis import event_json
from bridge.models.face import load_face_models
from inference.analyzer import FaceModels, ParticipantAnalyzer, SpottedExpression

REPO = Path(__file__).resolve().parents[2]
TEST_DATA = REPO / "tests" / "data"
REAL_CLIPS = ("single_face.mp4", "face_noface.mov", "WolfgangLanger_Pexels.mp4")


def clip_frames(models: FaceModels) -> list[tuple[np.ndarray, np.ndarray]]:
    analyzer = ParticipantAnalyzer(models, track_gaze=False)
    out = []
    with av.open(str(TEST_DATA / "single_face.mp4")) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= CLIP_NEUTRAL_FRAMES:
                break
            rgb = frame.to_ndarray(format="rgb24")
            face = analyzer.push(rgb, float(frame.time or i / 30)).faces.primary
            if face is not None:
                out.append((rgb, face.landmarks[:, :2].astype(np.float64)))
    return out


def analyse_file(
    models: FaceModels, path: Path
) -> tuple[ParticipantAnalyzer, list[SpottedExpression], list[float], float]:
    """The live analyzer over a video file: the analyzer (for its spotter's statistics), what it
    spotted, each frame's media time, and the wall seconds it took."""
    analyzer = ParticipantAnalyzer(models)
    times: list[float] = []
    found: list[SpottedExpression] = []
    started = time.perf_counter()
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for i, frame in enumerate(c.decode(stream)):
            t = float(frame.time) if frame.time is not None else i / float(stream.average_rate or 15)
            times.append(t)
            found.extend(analyzer.push(frame.to_ndarray(format="rgb24"), t).expressions)
    return analyzer, found, times, time.perf_counter() - started


def analyse(models: FaceModels, path: Path) -> tuple[list[dict[str, Any]], int, float, float]:
    """Events with frame indices (as ``microcue analyze`` writes them), frame count, media
    seconds and wall seconds of analysis."""
    _, found, times, wall = analyse_file(models, path)
    out = [event_json(f, times) for f in found]
    return out, len(times), (times[-1] - times[0]) if times else 0.0, wall


def main(argv: list[str] | None = None, models: FaceModels | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiers", default="easy,medium,hard")
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "spotting")
    ap.add_argument("--no-real", action="store_true", help="skip the real clips of tests/data")
    args = ap.parse_args(argv)
    if models is None:
        models = load_face_models(Settings().model_dir, prefer_gpu=False, emotion=True)
    src_lm = face_landmarks(models, astronaut())
    clips = clip_frames(models) if TEST_DATA.exists() else None
    results: dict[str, Any] = {"tiers": {}, "real": {}}
    print(
        f"{'tier':8} {'videos':>6} {'micro P/R/F1':>18} {'macro P/R/F1':>18} {'emo7':>5} {'emo3':>5} "
        f"{'FP/min':>6} {'onset err':>9} {'ms/frame':>8}"
    )
    for name in args.tiers.split(","):
        tier = TIERS[name]
        total = Score()
        frames_total, wall_total = 0, 0.0
        per_video = []
        for seed in range(args.videos):
            sc = make_scenario(tier, args.seconds, args.fps, seed)
            video = args.out / f"{name}_{seed}.mp4"
            n = render(sc, video, src_lm, clips)
            tr = truth(sc, n)
            write_truth(video.with_suffix(".truth.json"), tr)
            preds, frames, _, wall = analyse(models, video)
            s = score_video(preds, tr)
            total.add(s)
            frames_total += frames
            wall_total += wall
            per_video.append({"video": video.name, "score": s.summary(), "predictions": preds})
        summary = total.summary()
        summary["ms_per_frame"] = round(1000 * wall_total / max(frames_total, 1), 2)
        results["tiers"][name] = {"summary": summary, "videos": per_video}
        print(
            f"{name:8} {args.videos:>6} "
            f"{summary['micro_precision']:>5.2f}/{summary['micro_recall']:.2f}/{summary['micro_f1']:.2f} "
            f"{summary['macro_precision']:>8.2f}/{summary['macro_recall']:.2f}/{summary['macro_f1']:.2f} "
            f"{summary['emotion_acc_7'] or 0:>5.2f} {summary['emotion_acc_3'] or 0:>5.2f} "
            f"{summary['fp_per_min_distractors'] or 0:>6.2f} {summary['mean_abs_onset_error_frames'] or 0:>9.2f} "
            f"{summary['ms_per_frame']:>8.2f}",
            flush=True,
        )
    if not args.no_real and TEST_DATA.exists():
        total_micro, total_min = 0, 0.0
        for clip in REAL_CLIPS:
            preds, frames, seconds, _ = analyse(models, TEST_DATA / clip)
            micro = [p for p in preds if p["kind"] == "micro"]
            total_micro += len(micro)
            total_min += seconds / 60
            results["real"][clip] = {
                "seconds": round(seconds, 2),
                "micro": len(micro),
                "macro": len(preds) - len(micro),
                "predictions": preds,
            }
            print(f"real clip {clip}: {seconds:.1f} s, {len(micro)} micro, {len(preds) - len(micro)} macro")
        results["real"]["micro_fp_per_min"] = round(total_micro / total_min, 2) if total_min else None
        print(
            f"real clips: {total_micro} micro events in {total_min:.2f} min = "
            f"{results['real']['micro_fp_per_min']} per minute (all counted as false positives)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
