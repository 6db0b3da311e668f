"""Fast re-analysis of the meetings bench for tuning the spotter: track once, replay the rest.

    python -m bench.spotting.replay --split tune [--seconds 20] [--videos-per-face 1] [--macro-share 0.2]

At ``--floors 4`` (the verifier's candidate floor) it replays the two-stage spotter as the analyzer
runs it (``spotter_for``); every other floor replays the template spotter alone.

The face tracker (FaceMesh, ~7 ms a frame) does not change when the spotter does, so this renders
the meetings bench's videos (the same seeds as ``bench.spotting.meetings``), tracks each once and
caches the faces; every later run only decodes the frames and reruns motion and spotting, several
times faster than the full bench. Scores are micro recall per amplitude bin and predicted micro
events (no emotion classification: intervals only). The full bench (``meetings``) stays the
figure that counts; this is the loop for choosing settings on the tune identities. The settings
to compare are built from the shipped ones (``dataclasses.replace(DEFAULT_PARAMS, ...)``, see
``spotter_variants``), each handed to its own Spotter, all fed the same motion.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench.spotting.meetings import (
    MACRO_SHARE,
    MACRO_TARGET_IOD,
    REPO,
    _curve,
    load_source,
    macro_row,
    make_meeting,
    render,
    truth,
)
from bench.spotting.score import Score, match, score_video
from bench.spotting.sources import CLIPS, DEFAULT_CACHE, Clip, calibration_half, clip_path, fetch
from bridge.config import Settings
from bridge.models.face import load_face_models
from inference.analyzer import FaceModels, ParticipantAnalyzer
from inference.motion import MotionExtractor
from inference.spotting import Spot, Spotter
from inference.spotting_params import DEFAULT_PARAMS, SpotterParams
from inference.types import FaceObservation
from inference.verifier import CANDIDATE_FLOOR_UNITS, VerifiedSpotter


def _track(models: FaceModels, video: Path, store: Path) -> list[tuple[float, FaceObservation | None]]:
    if store.exists():
        with store.open("rb") as f:
            cached: list[tuple[float, FaceObservation | None]] = pickle.load(f)  # our own cache, written below
            return cached
    analyzer = ParticipantAnalyzer(models, track_gaze=False, emotions_allowed=False)
    out: list[tuple[float, FaceObservation | None]] = []
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        for i, frame in enumerate(c.decode(stream)):
            t = float(frame.time) if frame.time is not None else i / float(stream.average_rate or 15)
            out.append((t, analyzer.tracker.update(frame.to_ndarray(format="rgb24"), t).primary))
    with store.open("wb") as f:
        pickle.dump(out, f)
    return out


def bench_video(
    models: FaceModels,
    cache: Path,
    work: Path,
    clip: Clip,
    *,
    v: int,
    still: bool,
    seconds: float,
    macro_share: float = MACRO_SHARE,
) -> tuple[str, Path, dict[str, Any], list[tuple[float, FaceObservation | None]]]:
    """Video ``v`` of ``clip`` as the meetings bench renders it (same seed): its name, file, truth
    and tracked faces, rendered and tracked once into ``work``."""
    seed = sum(map(ord, clip.name)) * 100 + v + 50 * still
    m = make_meeting(clip, seconds, seed, still, macro_share)
    ext = "webm" if m.condition.codec == "vp8" else "mp4"
    share = "" if macro_share == MACRO_SHARE else f"_macro{macro_share:g}"
    stem = f"{clip.role}_{clip.name}_{v}{'_still' if still else ''}_{seconds:g}s{share}"
    video = work / f"{stem}.{ext}"
    truth_file = work / f"{stem}.truth.json"
    if not truth_file.exists():
        src = load_source(models, clip_path(cache, clip), cache)
        truth_file.write_text(json.dumps(truth(m, render(m, src, video, seed))), encoding="utf-8")
    tru: dict[str, Any] = json.loads(truth_file.read_text(encoding="utf-8"))
    return stem, video, tru, _track(models, video, work / f"{stem}.faces.pkl")


def replay(
    video: Path,
    faces: list[tuple[float, FaceObservation | None]],
    params: Sequence[SpotterParams] = (DEFAULT_PARAMS,),
) -> tuple[list[list[dict[str, Any]]], float, dict[str, float], list[float]]:
    """Motion and spotting over a tracked video: per spotter (one per ``params``, all fed the same
    motion) its micro/macro intervals as frame indices; the CPU seconds motion and the first
    spotter took; the first spotter's worst share of time per gate (over the regions); and its face
    noise after each frame (canonical px, NaN where no face)."""
    motion = MotionExtractor()
    spotters = [spotter_for(prm) for prm in params]
    times = [t for t, _ in faces]
    found: list[list[Any]] = [[] for _ in spotters]
    cpu = 0.0
    noise: list[float] = []
    with av.open(str(video)) as c:
        for (t, face), frame in zip(faces, c.decode(video=0), strict=False):
            if face is None:
                motion.reset()
                noise.append(math.nan)
                continue
            grey = cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            t0 = time.thread_time()
            sample = motion(grey, face, t)
            found[0] += spotters[0].push(sample)
            cpu += time.thread_time() - t0
            for k in range(1, len(spotters)):
                found[k] += spotters[k].push(sample)
            noise.append(spotters[0].noise_px)

    gates = {g: max(r.values(), default=0.0) for g, r in spotters[0].stats().gated.items()}
    return [[spot_frames(s, times) for s in spots] for spots in found], cpu, gates, noise


# Face-noise bins for recall: the tertiles of the tune signals' face noise in calibrate.py's table
# (docs/benchmarks.md, third pass): a quiet face, a face talking gently, a face talking hard.
NOISE_BINS_PX = (0.24, 0.38)


def recall_by_noise(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Micro recall per bin of the face's noise just before each injected event (the scale the
    spotter judged it against): how much a talking face's own motion costs."""
    edges = (0.0, *NOISE_BINS_PX, math.inf)
    hits = [[0, 0] for _ in edges[1:]]
    for row in rows:
        matched = {id(t) for _, t in match(row["predictions"], row["truth"]["events"], "micro")[1]}
        for ev in row["truth"]["events"]:
            if ev["kind"] == "micro":
                level = row["noise"][min(max(ev["onset_frame"] - 1, 0), len(row["noise"]) - 1)]
                b = int(np.searchsorted(NOISE_BINS_PX, level, side="right"))  # NaN (no face) sorts last
                hits[b][0] += id(ev) in matched
                hits[b][1] += 1
    return {f"{lo:g}-{hi:g} px": f"{h}/{n}" for (lo, hi), (h, n) in zip(itertools.pairwise(edges), hits, strict=True)}


def spot_frames(s: Spot, times: list[float]) -> dict[str, Any]:
    """A spot as the bench scores it: its interval as indices into the video's frame ``times``."""

    def frame_of(x: float) -> int:
        return int(np.searchsorted(times, x - 1e-6))

    return {
        "kind": s.kind,
        "onset_frame": frame_of(s.onset_t),
        "apex_frame": frame_of(s.apex_t),
        "offset_frame": frame_of(s.offset_t),
        "regions": list(s.regions),
        "strength": s.strength,
        "noise_px": s.noise_px,
    }


def spotter_for(params: SpotterParams) -> Spotter:
    """The template spotter at ``params``, or the two-stage one (as the analyzer runs it) when
    ``params`` is a first-stage setting (its floor is the verifier's candidate floor)."""
    if params.noise_floor_units == CANDIDATE_FLOOR_UNITS:
        return VerifiedSpotter(params=params)
    return Spotter(params)


def spotter_variants(args: argparse.Namespace) -> tuple[SpotterParams, ...]:
    """The settings a run compares: one per (noise floor, threshold p) of ``--floors`` x ``--ps``
    (the shipped ones where not given), each with ``--single``, ``--warmup`` and ``--occlusion-px``
    where given and the shipped value of everything else."""
    base = DEFAULT_PARAMS
    if args.single is not None:
        # --single is the units a region alone needs where the templates need the shipped floor
        base = replace(base, single_region_weight=DEFAULT_PARAMS.noise_floor_units / args.single)
    if args.warmup is not None:
        base = replace(base, noise_warmup_s=args.warmup)
    if args.occlusion_px is not None:
        base = replace(base, region_occlusion_px=args.occlusion_px)
    floors = [float(x) for x in args.floors.split(",") if x] or [base.noise_floor_units]
    ps = [float(x) for x in args.ps.split(",") if x] or [base.threshold_p]
    return tuple(replace(base, noise_floor_units=f, threshold_p=p) for f in floors for p in ps)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--split", default="tune", choices=("heldout", "tune"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--videos-per-face", type=int, default=1)
    ap.add_argument("--still", action="store_true", help="the still faces instead of the moving ones")
    ap.add_argument("--unlabeled", action="store_true", help="also count micro events on the unlabeled clips")
    ap.add_argument("--floors", default="", help="comma-separated noise floors to compare (noise_floor_units)")
    ap.add_argument("--ps", default="", help="comma-separated adaptive-threshold shares to compare (threshold_p)")
    ap.add_argument(
        "--single",
        type=float,
        default=None,
        help="units a region alone needs at the shipped floor for this run (14 shipped; single_region_weight)",
    )
    ap.add_argument("--warmup", type=float, default=None, help="noise_warmup_s for this run")
    ap.add_argument("--occlusion-px", type=float, default=None, help="region_occlusion_px for this run")
    ap.add_argument(
        "--macro-share",
        type=float,
        default=MACRO_SHARE,
        help=f"chance an event is a macro-expression ({MACRO_SHARE} keeps the figures comparable)",
    )
    ap.add_argument("--work", type=Path, default=REPO / "out" / "spotting-replay")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    variants = spotter_variants(args)
    models = load_face_models(Settings().model_dir, prefer_gpu=False, emotion=False)
    fetch(args.cache)
    args.work.mkdir(parents=True, exist_ok=True)
    n = len(variants)
    rows: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    totals = [Score() for _ in range(n)]
    cpu, frames = 0.0, 0
    worst: dict[str, float] = {}
    unlabeled_worst: dict[str, float] = {}
    for clip in [c for c in CLIPS if c.role == args.split]:
        for v in range(1 if args.still else args.videos_per_face):
            stem, video, tru, faces = bench_video(
                models,
                args.cache,
                args.work,
                clip,
                v=v,
                still=args.still,
                seconds=args.seconds,
                macro_share=args.macro_share,
            )
            per_spotter, c, gates, noise = replay(video, faces, variants)
            cpu, frames = cpu + c, frames + sum(f is not None for _, f in faces)
            worst = {g: max(worst.get(g, 0.0), share) for g, share in gates.items()}
            line = []
            for total, row, preds in zip(totals, rows, per_spotter, strict=True):
                s = score_video(preds, tru)
                total.add(s)
                row.append({"predictions": preds, "truth": tru, "noise": noise})
                line.append(
                    f"{s.micro.tp}/{s.micro.truth} pred {s.micro.predicted} "
                    f"macro {s.macro.tp}/{s.macro.truth} pred {s.macro.predicted}"
                )
            print(
                f"{stem:40} {tru['condition']:30} micro {' | '.join(line)} "
                f"gates {json.dumps({g: round(share, 2) for g, share in gates.items() if share})}",
                flush=True,
            )
    results = []
    for total, row in zip(totals, rows, strict=True):
        o = total.summary()
        results.append(
            {
                "micro": [o["micro_precision"], o["micro_recall"], o["micro_f1"]],
                "found": o["micro_tp"],
                "truth": o["micro_truth"],
                "predicted": o["micro_pred"],
                "curve": {k: v["found"] for k, v in _curve(row).items()},
                "found_by_face_noise": recall_by_noise(row),
                f"macro_at_{MACRO_TARGET_IOD:g}_iod": macro_row(row),
            }
        )
    if args.unlabeled:
        # per half of the unlabeled people (sources.calibration_half): the calibration half may steer
        # choices, the other half only checks them
        micro = {half: [0] * n for half in (True, False)}
        half_seconds = {True: 0.0, False: 0.0}
        for clip in [c for c in CLIPS if c.role == "unlabeled"]:
            path = clip_path(args.cache, clip)
            faces = _track(models, path, args.work / f"{clip.name}.faces.pkl")
            per_spotter, _, gates, _ = replay(path, faces, variants)
            unlabeled_worst = {g: max(unlabeled_worst.get(g, 0.0), share) for g, share in gates.items()}
            half = calibration_half(clip.identity)
            micro[half] = [
                m + sum(p["kind"] == "micro" for p in preds) for m, preds in zip(micro[half], per_spotter, strict=True)
            ]
            half_seconds[half] += faces[-1][0] - faces[0][0]
        seconds = sum(half_seconds.values())
        for k, res in enumerate(results):
            res["unlabeled_micro_per_min"] = round((micro[True][k] + micro[False][k]) / (seconds / 60), 2)
            res["unlabeled_micro"] = {
                "calibration half": f"{micro[True][k]} in {half_seconds[True] / 60:.2f} min",
                "check half": f"{micro[False][k]} in {half_seconds[False] / 60:.2f} min",
            }
    out = {
        "ms_per_frame_cpu": round(1000 * cpu / max(frames, 1), 3),
        "worst_gate_share": {g: round(v, 3) for g, v in worst.items()},
        "unlabeled_worst_gate_share": {g: round(v, 3) for g, v in unlabeled_worst.items()} or None,
        "unlabeled_minutes": round(seconds / 60, 2) if args.unlabeled else None,
        "by_floor_p": {
            f"{prm.noise_floor_units:g} {prm.threshold_p:g}": r for prm, r in zip(variants, results, strict=True)
        },
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
