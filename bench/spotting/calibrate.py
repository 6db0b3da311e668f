"""Fit the confidence calibration (``inference/expressions.py`` CALIBRATION) on the tune identities.

    python -m bench.spotting.calibrate [--videos-per-face 3] [--seconds 20]

A micro signal shown at confidence c should be a true event about c of the time (issue 11). The
spotter's evidence for an event is its peak strength (the feature's peak over the threshold), so
confidence is P(true event | strength), fitted here as a logistic curve on log strength: two
parameters, because the tune identities give a few dozen signals and a finer map (isotonic bins)
would follow their noise. The signals come from ``bench.spotting.replay`` (the meetings bench's
videos, tracked once): the tune identities' talking and still faces, and the unlabeled clips of
the calibration half of the unlabeled identities (``sources.calibration_half``), where every
micro signal is false. The other half and the held-out identities are what
``bench.spotting.meetings`` checks the curve on (its reliability table).

Prints the signals per strength bin, the fitted curve and the knots to paste into CALIBRATION.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.spotting.meetings import REPO
from bench.spotting.replay import _track, bench_video, replay
from bench.spotting.score import match
from bench.spotting.sources import CLIPS, DEFAULT_CACHE, calibration_half, clip_path, fetch
from bridge.config import Settings
from bridge.models.face import load_face_models

# Strengths (peak over threshold) at which the curve is written out as CALIBRATION's knots; the
# curve is flat enough past 5 that linear interpolation between these stays within 0.01 of it.
KNOTS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 8.0)
STRENGTH_BINS = (1.0, 1.25, 1.5, 2.0, 3.0, math.inf)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, iterations: int = 50) -> tuple[float, float]:
    """(a, b) of P(y) = 1 / (1 + exp(-(a + b x))) by Newton's method; a small ridge keeps it finite
    when the classes separate."""
    design = np.stack([np.ones_like(x), x], axis=1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        grad = design.T @ (p - y) + ridge * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def curve(a: float, b: float, strength: float) -> float:
    return 1.0 / (1.0 + math.exp(-(a + b * math.log(strength))))


def collect(args: argparse.Namespace) -> list[tuple[float, bool, str]]:
    """(strength, true event?, source) of every micro signal the spotter gives on the tune data."""
    models = load_face_models(Settings().model_dir, prefer_gpu=False, emotion=False)
    fetch(args.cache)
    args.work.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[float, bool, str]] = []
    for clip in [c for c in CLIPS if c.role == "tune"]:
        for v, still in [(v, False) for v in range(args.videos_per_face)] + [(0, True)]:
            stem, video, tru, faces = bench_video(models, args.cache, args.work, clip,
                                                  v=v, still=still, seconds=args.seconds)
            preds = [p for p in replay(video, faces)[0][0] if p["kind"] == "micro"]
            matched = {id(p) for p, _ in match(preds, tru["events"], "micro")[1]}
            pairs += [(p["strength"], id(p) in matched, "still" if still else "talking") for p in preds]
            print(f"{stem:40} micro signals {len(preds)}, true {len(matched)}", flush=True)
    for clip in [c for c in CLIPS if c.role == "unlabeled" and calibration_half(c.identity)]:
        path = clip_path(args.cache, clip)
        faces = _track(models, path, args.work / f"{clip.name}.faces.pkl")
        preds = [p for p in replay(path, faces)[0][0] if p["kind"] == "micro"]
        pairs += [(p["strength"], False, "unlabeled") for p in preds]
        print(f"{clip.name:40} micro signals {len(preds)} (all false)", flush=True)
    return pairs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--videos-per-face", type=int, default=3)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "spotting-replay")
    args = ap.parse_args(argv)
    pairs = collect(args)
    if len({ok for _, ok, _ in pairs}) < 2:
        raise SystemExit(f"calibration needs both true and false signals; got {len(pairs)} signals")
    x = np.log(np.array([s for s, _, _ in pairs]))
    y = np.array([ok for _, ok, _ in pairs], dtype=float)
    a, b = fit_logistic(x, y)
    table = []
    for lo, hi in itertools.pairwise(STRENGTH_BINS):
        inside = [(s, ok) for s, ok, _ in pairs if lo <= s < hi]
        table.append({"strength": f"{lo:g}-{hi:g}", "signals": len(inside),
                      "true_share": round(sum(ok for _, ok in inside) / len(inside), 3) if inside else None,
                      "fitted_mean": round(float(np.mean([curve(a, b, s) for s, _ in inside])), 3) if inside else None})
    by_source = {src: [sum(1 for _, ok, s in pairs if s == src and ok), sum(1 for *_, s in pairs if s == src)]
                 for src in ("talking", "still", "unlabeled")}
    knots = tuple((k, round(curve(a, b, k), 3)) for k in KNOTS)
    out = {"signals": len(pairs), "true": int(y.sum()), "by_source_true_of_all": by_source,
           "logistic": {"a": round(a, 4), "b": round(b, 4)}, "table": table, "knots": knots}
    print(json.dumps(out, indent=1))
    print(f"CALIBRATION = {knots}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
