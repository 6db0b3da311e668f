"""Fit the confidence calibration (``inference/expressions.py`` CALIBRATION) on the tune identities.

    python -m bench.spotting.calibrate [--videos-per-face 12] [--seconds 20]

A micro signal shown at confidence c should be a true event about c of the time (issue 11).
Confidence is P(true event | how strongly the spotter saw it, how much the face was moving),
fitted here as a logistic curve on log peak strength (the feature's peak over the threshold) and
log motion noise (``Spot.noise_px``): three coefficients, because the tune identities give under a
hundred signals and a finer map would follow their noise. The noise term is there because a
signal on a face that moves a lot (talking) is much less often a true event than one on a quiet
face, whatever its strength. The signals come from ``bench.spotting.replay`` (the meetings
bench's videos, tracked once): the tune identities' talking and still faces, and the unlabeled
clips of the calibration half of the unlabeled identities (``sources.calibration_half``), where
every micro signal is false. The other half and the held-out identities are what
``bench.spotting.meetings`` checks the curve on (its reliability table).

The first run renders and tracks the 72 talking and 6 still videos (12 and 1 per tune person) into
``--work``, about half an hour on two cores; later runs replay them in about two minutes.

Prints the signals per strength and noise bin with the fitted share, the log loss of the curve
against strength alone and a constant, and the coefficients to paste into CALIBRATION.
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
from inference.expressions import calibration_inputs

STRENGTH_BINS = (1.0, 1.25, 1.5, 2.0, 3.0, math.inf)


def probability(w: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """P(y) = 1 / (1 + exp(-(w0 + feats @ w[1:]))): the curve, coefficients intercept first."""
    return np.asarray(1.0 / (1.0 + np.exp(-(w[0] + feats @ w[1:]))))


def fit_logistic(features: np.ndarray, y: np.ndarray, ridge: float = 1e-3, iterations: int = 50) -> np.ndarray:
    """Coefficients w (intercept first) of ``probability`` by Newton's method; a small ridge keeps
    them finite when the classes separate."""
    design = np.column_stack([np.ones(len(features)), features])
    w = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = probability(w, features)
        grad = design.T @ (p - y) + ridge * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def features(strength: np.ndarray, noise_px: np.ndarray) -> np.ndarray:
    """(N, 2) what the curve reads, as ``inference.expressions.calibration_inputs`` computes it."""
    return np.array([calibration_inputs(float(a), float(b)) for a, b in zip(strength, noise_px, strict=True)])


def log_loss(w: np.ndarray, feats: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(probability(w, feats), 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


Signal = tuple[float, float, bool, str]  # strength, noise_px, true event?, source


def collect(args: argparse.Namespace) -> list[Signal]:
    """(strength, noise, true event?, source) of every micro signal the spotter gives on the tune data."""
    models = load_face_models(Settings().model_dir, prefer_gpu=False, emotion=False)
    fetch(args.cache)
    args.work.mkdir(parents=True, exist_ok=True)
    pairs: list[Signal] = []
    for clip in [c for c in CLIPS if c.role == "tune"]:
        for v, still in [(v, False) for v in range(args.videos_per_face)] + [(0, True)]:
            stem, video, tru, faces = bench_video(
                models, args.cache, args.work, clip, v=v, still=still, seconds=args.seconds
            )
            preds = [p for p in replay(video, faces)[0][0] if p["kind"] == "micro"]
            matched = {id(p) for p, _ in match(preds, tru["events"], "micro")[1]}
            pairs += [(p["strength"], p["noise_px"], id(p) in matched, "still" if still else "talking") for p in preds]
            print(f"{stem:40} micro signals {len(preds)}, true {len(matched)}", flush=True)
    for clip in [c for c in CLIPS if c.role == "unlabeled" and calibration_half(c.identity)]:
        path = clip_path(args.cache, clip)
        faces = _track(models, path, args.work / f"{clip.name}.faces.pkl")
        preds = [p for p in replay(path, faces)[0][0] if p["kind"] == "micro"]
        pairs += [(p["strength"], p["noise_px"], False, "unlabeled") for p in preds]
        print(f"{clip.name:40} micro signals {len(preds)} (all false)", flush=True)
    return pairs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--videos-per-face", type=int, default=12)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "spotting-replay")
    args = ap.parse_args(argv)
    pairs = collect(args)
    if len({ok for _, _, ok, _ in pairs}) < 2:
        raise SystemExit(f"calibration needs both true and false signals; got {len(pairs)} signals")
    strength = np.array([p[0] for p in pairs])
    noise = np.array([p[1] for p in pairs])
    y = np.array([p[2] for p in pairs], dtype=float)
    feats = features(strength, noise)
    w = fit_logistic(feats, y)
    w_strength = fit_logistic(feats[:, :1], y)
    strength_dropped = bool(w[1] < 0)
    if strength_dropped:
        # A stronger peak is never less likely true; a negative slope is these few signals' noise
        # (two confident false ones on one unlabeled clip), so the curve keeps strength out.
        w_noise = fit_logistic(feats[:, 1:], y)
        w = np.array([w_noise[0], 0.0, w_noise[1]])
    fitted = probability(w, feats)
    table = []
    for name, values, bins in (
        ("strength", strength, STRENGTH_BINS),
        ("noise_px", noise, (0.0, *np.quantile(noise, [1 / 3, 2 / 3]).round(3), math.inf)),
    ):
        for lo, hi in itertools.pairwise(bins):
            inside = (values >= lo) & (values < hi)
            if inside.any():
                table.append(
                    {
                        name: f"{lo:g}-{hi:g}",
                        "signals": int(inside.sum()),
                        "true_share": round(float(y[inside].mean()), 3),
                        "fitted_mean": round(float(fitted[inside].mean()), 3),
                    }
                )
    by_source = {
        src: [sum(1 for p in pairs if p[3] == src and p[2]), sum(1 for p in pairs if p[3] == src)]
        for src in ("talking", "still", "unlabeled")
    }
    coefficients = tuple(round(float(v), 3) for v in w)
    out = {
        "signals": len(pairs),
        "true": int(y.sum()),
        "by_source_true_of_all": by_source,
        "coefficients": coefficients,
        "strength_dropped_for_a_negative_slope": strength_dropped,
        "log_loss": {
            "curve": round(log_loss(w, feats, y), 3),
            "strength only": round(log_loss(w_strength, feats[:, :1], y), 3),
            "constant": round(log_loss(np.array([math.log(y.mean() / (1 - y.mean()))]), feats[:, :0], y), 3),
        },
        "table": table,
    }
    print(json.dumps(out, indent=1))
    print(f"CALIBRATION = {coefficients}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
