"""The listener bench (issue 22, item 1): real people's listening motion on other real people's
faces, small injected actions, WebRTC bitrates; held out by identity.

    nice -n 10 .venv/bin/python -m bench.spotting.listeners --split heldout [--videos-per-face 2]
        [--seconds 20] [--quiet-seconds 30]

For each base clip of the split (``sources.py`` roles "tune" / "heldout": the same identity split
as the meetings bench) it renders ``--videos-per-face`` listener videos with injected
micro-expressions and one event-free ("quiet") video:

- the face: one real frame of the person (``rig.py``), moved by a donor's real head trajectory
  (``donors.py``: yaw, pitch, roll, lean, offset from another real person's quietest stretch;
  tune faces get donors from the calibration half of the unlabeled people, held-out faces from
  the other half), plus one or two scripted nods per 20 s;
- blinks: FaceMesh's lid landmarks on the donor clips do not follow blinks (their eye aspect
  ratio never fell below 0.7 of its median in any of the 12 donor clips), so blinks are scripted:
  a rate per video of 10-25 a minute (spontaneous blink rate at rest ~17/min, Bentivoglio et al.
  1997) and 0.1-0.4 s each, one in four partial;
- exposure flicker (0-3 % per frame), a slow lighting drift, sensor noise;
- VP8 or H.264 at 400, 600 or 1,000 kbit/s, 15, 25 or 30 fps (one condition drawn per video);
- micro-expressions (the 7 EMFACS prototypes, contempt one-sided) of 0.012-0.05 IOD, log-uniform,
  0.1-0.5 s, one every 1.6-3.5 s (quiet videos: none).

Every video is tracked once (FaceMesh answers cached in ``--work``), so reruns only replay motion
and spotting. Two spotters are replayed on the same motion: the shipped template spotter and the
two-stage one (``inference/verifier.py``: the template stage at a low floor proposes candidates,
the verifier keeps some). The candidates and their features are written to
``--work/listeners-<split>.json``, which ``train_verifier.py`` trains from (tune split only).

Reports per spotter: micro precision / recall / F1, recall per amplitude bin and per condition,
false micro events per minute on the quiet videos counted raw and at the display floor
(``MICROCUE_MIN_CONFIDENCE``'s default), and the reliability of the confidence.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench.spotting.donors import Trajectory, donors, landmarks
from bench.spotting.meetings import REPO, reliability_table, webrtc_encoder
from bench.spotting.replay import _track, spot_frames
from bench.spotting.rig import light, nod_pose, pose_frame
from bench.spotting.score import match
from bench.spotting.sources import CLIPS, DEFAULT_CACHE, Clip, calibration_half, clip_path, fetch
from bridge.confidence import DEFAULT_MIN_CONFIDENCE
from bridge.config import Settings
from bridge.demo.actions import AU_MOVES, EMOTION_AUS, EMOTIONS, Action, contempt_aus
from bridge.models.face import load_face_models
from inference.analyzer import FaceModels
from inference.expressions import calibrated
from inference.motion import MotionExtractor
from inference.spotting import Spot, Spotter
from inference.verifier import (
    CANDIDATE_FLOOR_UNITS,
    CANDIDATE_PARAMS,
    FEATURES,
    VERIFIER_FILE,
    VerifiedSpotter,
    Verifier,
)

CODECS = ("vp8", "h264")
BITRATES_KBPS = (400, 600, 1000)
FPS = (15, 25, 30)
MICRO_IOD = (0.012, 0.05)
MICRO_S = (0.1, 0.5)
GAP_S = (1.6, 3.5)
IOD_PX = (45.0, 65.0)  # a webcam face 150-200 px tall in 640x480 (as the meetings bench)
BLINKS_PER_MIN = (10.0, 25.0)
BLINK_S = (0.1, 0.4)
# Amplitude bins (IOD): the points 0.02 and >= 0.03, and the ends of the range.
AMP_BINS = (("0.012-0.0175", 0.012, 0.0175), ("0.02 (0.0175-0.025)", 0.0175, 0.025), ("0.025-0.03", 0.025, 0.03))
CONF_BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


@dataclass
class Listener:
    clip: str
    identity: str
    split: str
    seconds: float
    codec: str
    kbps: int
    fps: int
    noise: float
    flicker: float
    drift: float
    target_iod: float
    donor: int
    quiet: bool
    actions: list[Action] = field(default_factory=list)
    nods: list[tuple[float, float, float]] = field(default_factory=list)
    blinks: list[tuple[float, float, float]] = field(default_factory=list)  # start, duration, closure

    @property
    def condition(self) -> str:
        return f"{self.codec} {self.kbps} kbit/s {self.fps} fps"


def make_listener(clip: Clip, seconds: float, seed: int, quiet: bool, n_donors: int) -> Listener:
    rng = np.random.default_rng(seed)
    lst = Listener(
        clip.name,
        clip.identity,
        clip.role,
        seconds,
        str(rng.choice(CODECS)),
        int(rng.choice(BITRATES_KBPS)),
        int(rng.choice(FPS)),
        float(rng.uniform(1.0, 3.0)),
        float(rng.uniform(0.0, 0.03)),
        float(rng.uniform(0.0, 0.1)),
        float(rng.uniform(*IOD_PX)),
        int(rng.integers(n_donors)),
        quiet,
    )
    t = 1.5
    while not quiet and t < seconds - 1.5:
        emotion = str(rng.choice(EMOTIONS))
        aus = EMOTION_AUS[emotion] if emotion != "contempt" else contempt_aus(str(rng.choice(["R", "L"])))
        duration = float(rng.uniform(*MICRO_S))
        amp = float(math.exp(rng.uniform(math.log(MICRO_IOD[0]), math.log(MICRO_IOD[1]))))
        apex_at = float(rng.uniform(0.35, 0.6))
        lst.actions.append(Action("micro", emotion, aus, t, t + apex_at * duration, t + duration, amp))
        t += duration + float(rng.uniform(*GAP_S))
    for _ in range(max(1, int(seconds / 12))):
        lst.nods.append(
            (float(rng.uniform(0.5, seconds - 1.5)), float(rng.uniform(0.6, 1.2)), float(rng.uniform(3, 8)))
        )
    rate = float(rng.uniform(*BLINKS_PER_MIN))
    t = float(rng.exponential(60 / rate))
    while t < seconds:
        closure = 1.0 if rng.random() > 0.25 else float(rng.uniform(0.4, 0.8))
        lst.blinks.append((t, float(rng.uniform(*BLINK_S)), closure))
        t += float(rng.exponential(60 / rate)) + 0.3
    return lst


def _blink(lst: Listener, t: float) -> float:
    for start, dur, closure in lst.blinks:
        if start <= t <= start + dur:
            return closure * math.sin(math.pi * (t - start) / dur)
    return 0.0


def _moves(lst: Listener, t: float) -> list[tuple[Any, float]]:
    out = []
    for a in lst.actions:
        w = a.intensity(t)
        if w > 0:
            out += [(mv, w * a.amplitude) for au in a.aus for mv in AU_MOVES[au]]
    return out


def render(lst: Listener, base: np.ndarray, lm: np.ndarray, traj: Trajectory, out: Path, *, seed: int) -> list[float]:
    """Encode the listener video; returns the media time of every frame."""
    rng = np.random.default_rng(seed + 7)
    kept = []
    with webrtc_encoder(out, lst.codec, lst.fps, lst.kbps) as encode:
        for i in range(int(lst.seconds * lst.fps)):
            t = i / lst.fps
            pose = nod_pose(traj.at(t), t, lst.nods)
            pose["closure"] = max(pose["closure"], _blink(lst, t))
            frame = light(
                pose_frame(base, lm, _moves(lst, t), pose, lst.target_iod),
                t,
                rng,
                flicker=lst.flicker,
                drift=lst.drift,
                noise=lst.noise,
            )
            encode(frame, i)
            kept.append(t)
    return kept


def truth(lst: Listener, kept: list[float], donor: str) -> dict[str, Any]:
    times = np.asarray(kept)

    def fi(t: float) -> int:
        return int(np.argmin(np.abs(times - t)))

    return {
        "clip": lst.clip,
        "identity": lst.identity,
        "split": lst.split,
        "condition": lst.condition,
        "codec": lst.codec,
        "kbps": lst.kbps,
        "fps": lst.fps,
        "donor": donor,
        "quiet": lst.quiet,
        "frames": len(kept),
        "seconds": lst.seconds,
        "blinks": len(lst.blinks),
        "nods": len(lst.nods),
        "distractor_only": [],
        "events": [
            {
                "kind": "micro",
                "emotion": a.emotion,
                "aus": list(a.aus),
                "onset_frame": fi(a.onset),
                "apex_frame": fi(a.apex),
                "offset_frame": fi(a.offset),
                "amplitude_iod": a.amplitude,
            }
            for a in lst.actions
        ],
    }


def base_face(models: FaceModels, cache: Path, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """The person's first tracked frame and its landmarks."""
    path = clip_path(cache, clip)
    _, lms = landmarks(models, path, cache)
    first = next(i for i, lm in enumerate(lms) if lm is not None)
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == first:
                rgb = f.to_ndarray(format="rgb24")
                break
    lm = lms[first]
    assert lm is not None
    return rgb, lm


def replay_two(
    video: Path, faces: list[Any], candidate_floor: float = CANDIDATE_FLOOR_UNITS
) -> tuple[list[Spot], list[tuple[Spot, np.ndarray]], list[float], float]:
    """The shipped spotter's spots and the two-stage spotter's candidates (with their verifier
    features) over one tracked video, both fed the same motion; frame times; CPU seconds."""
    motion = MotionExtractor()
    shipped = Spotter()
    n = len(FEATURES)
    keep_all = Verifier(np.zeros(n), 0.0, np.zeros(n), np.ones(n), 0.0)
    stage = VerifiedSpotter(keep_all, replace(CANDIDATE_PARAMS, noise_floor_units=candidate_floor))
    stage.keep_candidates = True
    spots: list[Spot] = []
    cpu = 0.0
    with av.open(str(video)) as c:
        for (t, face), frame in zip(faces, c.decode(video=0), strict=False):
            if face is None:
                motion.reset()
                continue
            grey = cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            t0 = time.thread_time()
            sample = motion(grey, face, t)
            spots += shipped.push(sample)
            cpu += time.thread_time() - t0
            stage.push(sample)
    return spots, [(s, x) for s, x, _ in stage.candidates], [t for t, _ in faces], cpu


def _pred(s: Spot, times: list[float], confidence: float, **extra: Any) -> dict[str, Any]:
    return spot_frames(s, times) | {"confidence": round(confidence, 4)} | extra


def predictions(row: dict[str, Any], spotter: str, verifier: Verifier | None) -> list[dict[str, Any]]:
    """A video's micro predictions for ``spotter``: "shipped", or "two-stage" (candidates the
    verifier keeps; the two-stage spotter's macro spots are not replayed here)."""
    if spotter == "shipped":
        return list(row["shipped"])
    assert verifier is not None
    out = []
    for c in row["candidates"]:
        p = verifier.keeps(np.asarray(c["features"]))
        if p is not None:
            out.append(c | {"confidence": round(p, 4)})
    return out


def summarise(rows: list[dict[str, Any]], spotter: str, verifier: Verifier | None, floor: float) -> dict[str, Any]:
    ev_rows = [r for r in rows if not r["truth"]["quiet"]]
    quiet = [r for r in rows if r["truth"]["quiet"]]
    tp = npred = ntruth = 0
    amp_hits: dict[str, list[int]] = {name: [0, 0] for name, _, _ in AMP_BINS} | {">=0.03": [0, 0]}
    cond_hits: dict[str, list[int]] = {}
    pairs: list[tuple[float, bool]] = []
    for r in ev_rows:
        preds = predictions(r, spotter, verifier)
        counts, matched = match(preds, r["truth"]["events"], "micro")
        tp, npred, ntruth = tp + counts.tp, npred + counts.predicted, ntruth + counts.truth
        hit = {id(t) for _, t in matched}
        hit_p = {id(p) for p, _ in matched}
        pairs += [(p["confidence"], id(p) in hit_p) for p in preds if p["kind"] == "micro"]
        tr = r["truth"]
        for ev in tr["events"]:
            a, found = ev["amplitude_iod"], id(ev) in hit
            keys = [name for name, lo, hi in AMP_BINS if lo <= a < hi] + ([">=0.03"] if a >= 0.03 else [])
            keys_c = [tr["codec"], f"{tr['kbps']} kbit/s", f"{tr['fps']} fps"]
            for k in keys:
                amp_hits[k][0] += found
                amp_hits[k][1] += 1
            for k in keys_c:
                cond_hits.setdefault(k, [0, 0])
                cond_hits[k][0] += found
                cond_hits[k][1] += 1
    quiet_min = sum(r["truth"]["seconds"] for r in quiet) / 60
    q_preds = [p for r in quiet for p in predictions(r, spotter, verifier) if p["kind"] == "micro"]
    pairs += [(p["confidence"], False) for p in q_preds]
    rel = reliability_table(pairs, CONF_BINS, only_filled=True)
    precision = tp / npred if npred else None
    recall = tp / ntruth if ntruth else None
    f1 = 2 * tp / (npred + ntruth) if npred + ntruth else None
    return {
        "micro_precision": None if precision is None else round(precision, 3),
        "micro_recall": None if recall is None else round(recall, 3),
        "micro_f1": None if f1 is None else round(f1, 3),
        "found": tp,
        "truth": ntruth,
        "predicted": npred,
        "recall_by_amplitude": {k: f"{h}/{n}" + (f" = {h / n:.2f}" if n else "") for k, (h, n) in amp_hits.items()},
        "recall_by_condition": {k: f"{h}/{n} = {h / n:.2f}" for k, (h, n) in sorted(cond_hits.items()) if n},
        "quiet_minutes": round(quiet_min, 2),
        "quiet_false_micro": len(q_preds),
        "quiet_false_per_min_raw": round(len(q_preds) / quiet_min, 3) if quiet_min else None,
        "quiet_false_per_min_at_floor": (
            round(sum(p["confidence"] >= floor for p in q_preds) / quiet_min, 3) if quiet_min else None
        ),
        "reliability": rel,
    }


def _seed_index(v: int, vpf: int) -> int:
    """Video ``v``'s seed offset, independent of how many videos a run asks for: event videos 0-1
    are 0-1 and the first quiet one 2 (the first runs' layout), later ones 100 + v and 1000 + q."""
    if v < vpf:
        return v if v < 2 else 100 + v
    q = v - vpf
    return 2 if q == 0 else 1000 + q


def run_split(
    models: FaceModels,
    cache: Path,
    work: Path,
    split: str,
    *,
    vpf: int,
    seconds: float,
    quiet_s: float,
    quiet_n: int = 1,
    floor: float,
) -> list[dict[str, Any]]:
    trajs = donors(models, cache, split)
    rows = []
    for clip in [c for c in CLIPS if c.role == split]:
        base, lm = base_face(models, cache, clip)
        for v in range(vpf + quiet_n):
            quiet = v >= vpf
            secs = quiet_s if quiet else seconds
            seed = sum(map(ord, clip.name)) * 100 + 7000 + _seed_index(v, vpf)
            lst = make_listener(clip, secs, seed, quiet, len(trajs))
            traj = trajs[lst.donor]
            ext = "webm" if lst.codec == "vp8" else "mp4"
            name = ("quiet" if v == vpf else f"quiet{v - vpf}") if quiet else str(v)
            stem = f"{split}_{clip.name}_{name}_{secs:g}s"
            video = work / f"{stem}.{ext}"
            tfile = work / f"{stem}.truth.json"
            if not tfile.exists():
                kept = render(lst, base, lm, traj, video, seed=seed)
                tfile.write_text(json.dumps(truth(lst, kept, traj.donor)), encoding="utf-8")
            tru = json.loads(tfile.read_text(encoding="utf-8"))
            video = work / f"{stem}.{'webm' if tru['codec'] == 'vp8' else 'mp4'}"
            faces = _track(models, video, work / f"{stem}.faces.pkl")
            spots, cands, times, cpu = replay_two(video, faces, floor)
            rows.append(
                {
                    "video": stem,
                    "truth": tru,
                    "cpu_s": cpu,
                    "shipped": [_pred(s, times, calibrated(s.strength, s.noise_px, False)) for s in spots],
                    "candidates": [_pred(s, times, 0.0, features=[round(float(v), 5) for v in x]) for s, x in cands],
                }
            )
            counts, _ = match(rows[-1]["shipped"], tru["events"], "micro")
            print(
                f"{stem:34} {tru['condition']:26} donor {tru['donor']:12} shipped {counts.tp}/{counts.truth} "
                f"pred {counts.predicted} candidates {len(cands)}",
                flush=True,
            )
    return rows


def run_unlabeled(models: FaceModels, cache: Path, work: Path, floor: float) -> list[dict[str, Any]]:
    """Both spotters over every unlabeled real clip as it is (every micro event there is false)."""
    out = []
    for clip in [c for c in CLIPS if c.role == "unlabeled"]:
        path = clip_path(cache, clip)
        faces = _track(models, path, work / f"unlabeled_{clip.name}.faces.pkl")
        spots, cands, times, _ = replay_two(path, faces, floor)
        row: dict[str, Any] = {
            "clip": clip.name,
            "identity": clip.identity,
            "calibration_half": calibration_half(clip.identity),
            "seconds": times[-1] - times[0] if len(times) > 1 else 0.0,
            "shipped": [_pred(s, times, calibrated(s.strength, s.noise_px, None)) for s in spots],
            "candidates": [_pred(s, times, 0.0, features=[round(float(v), 5) for v in x]) for s, x in cands],
        }
        out.append(row)
        print(
            f"unlabeled {clip.name:24} shipped {sum(p['kind'] == 'micro' for p in row['shipped'])} "
            f"candidates {len(cands)}",
            flush=True,
        )
    return out


def unlabeled_summary(unl: list[dict[str, Any]], verifier: Verifier | None, floor: float) -> dict[str, Any]:
    """False micro events a minute on the unlabeled clips, raw and at the floor, per spotter and half."""
    res: dict[str, Any] = {}
    for half, rows in (("all", unl), ("check half", [r for r in unl if not r["calibration_half"]])):
        minutes = sum(r["seconds"] for r in rows) / 60
        part: dict[str, Any] = {"minutes": round(minutes, 2), "clips": len(rows)}
        for name in ("shipped", "two-stage"):
            if name == "two-stage" and verifier is None:
                continue
            preds = [p for r in rows for p in predictions(r, name, verifier) if p["kind"] == "micro"]
            part[name] = {
                "micro": len(preds),
                "per_min_raw": round(len(preds) / minutes, 3),
                "per_min_at_floor": round(sum(p["confidence"] >= floor for p in preds) / minutes, 3),
            }
        res[half] = part
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--split", default="heldout", choices=("heldout", "tune"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--quiet-seconds", type=float, default=30.0)
    ap.add_argument("--videos-per-face", type=int, default=2)
    ap.add_argument("--quiet-videos", type=int, default=1, help="event-free videos per face")
    ap.add_argument("--floor", type=float, default=DEFAULT_MIN_CONFIDENCE, help="display floor for the shown counts")
    ap.add_argument("--verifier", type=Path, default=VERIFIER_FILE)
    ap.add_argument(
        "--candidate-floor",
        type=float,
        default=CANDIDATE_FLOOR_UNITS,
        help="the two-stage spotter's first-stage floor (noise units) to replay; the verifier must be trained at it",
    )
    ap.add_argument("--unlabeled", action="store_true", help="also replay the unlabeled real clips (false events)")
    ap.add_argument(
        "--from-json", action="store_true", help="only re-score the last run's output (e.g. with a new verifier)"
    )
    ap.add_argument("--work", type=Path, default=REPO / "out" / "spotting-listeners")
    args = ap.parse_args(argv)
    tag = "" if args.candidate_floor == CANDIDATE_FLOOR_UNITS else f"-floor{args.candidate_floor:g}"
    store = args.work / f"listeners-{args.split}{tag}.json"
    models = None
    if not args.from_json or args.unlabeled:
        models = load_face_models(Settings().model_dir, prefer_gpu=False, emotion=False)
        fetch(args.cache)
        args.work.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        saved = json.loads(store.read_text(encoding="utf-8"))
        rows, unl = saved["rows"], saved.get("unlabeled", [])
    else:
        assert models is not None
        rows = run_split(
            models,
            args.cache,
            args.work,
            args.split,
            vpf=args.videos_per_face,
            seconds=args.seconds,
            quiet_s=args.quiet_seconds,
            quiet_n=args.quiet_videos,
            floor=args.candidate_floor,
        )
        unl = []
    if args.unlabeled:
        assert models is not None
        unl = run_unlabeled(models, args.cache, args.work, args.candidate_floor)
    if models is not None:
        store.write_text(
            json.dumps({"split": args.split, "candidate_floor": args.candidate_floor, "rows": rows, "unlabeled": unl})
            + "\n",
            encoding="utf-8",
        )
    verifier = Verifier.load(args.verifier) if args.verifier.exists() else None
    frames = sum(r["truth"]["frames"] for r in rows)
    out: dict[str, Any] = {
        "split": args.split,
        "videos": len(rows),
        "ms_per_frame_cpu_shipped": round(1000 * sum(r["cpu_s"] for r in rows) / max(frames, 1), 3),
        "spotters": {"shipped": summarise(rows, "shipped", None, args.floor)},
    }
    if verifier is not None:
        out["spotters"]["two-stage"] = summarise(rows, "two-stage", verifier, args.floor)
    if unl:
        out["unlabeled"] = unlabeled_summary(unl, verifier, args.floor)
    (args.work / f"summary-{args.split}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
