"""Train the second-stage verifier (``inference/verifier.py``) from the listener bench's tune identities.

    nice -n 10 .venv/bin/python -m bench.spotting.listeners --split tune      # candidates, once
    .venv/bin/python -m bench.spotting.train_verifier [--out inference/verifier.npz]

Reads ``out/spotting-listeners/listeners-tune.json`` (refuses any other split: the held-out people
are only for measuring). Every candidate the low-floor template stage proposed is a row: positive
when it matches an injected action (IoU >= 0.5, MEGC), negative otherwise (blinks, nods, leans,
flicker, codec noise; every candidate on the quiet videos). The model is a logistic regression on
the standardised features, fitted by Newton's method with a small ridge (``calibrate.fit_logistic``),
so it is deterministic: the same bench output gives the same weights. Weights named in
``verifier.WEIGHT_SIGNS`` are held to their sign (a weight that comes out the wrong way is fixed at
0 and the rest refitted), and candidates the verifier's blink rule rejects before the model
(``verifier.blinked``) are not rows: the model never sees them in use. The unlabeled real clips of
the calibration half of the unlabeled people (``sources.calibration_half``; the bench's
``--unlabeled``) add negatives: real talking faces, which the listener videos do not hold. The
other half of those people is only checked on.

The threshold: the lowest probability at which the tune set's quiet videos give at most
``MAX_QUIET_PER_MIN`` false micro events a minute and the tune precision is at least
``MIN_PRECISION`` (the issue's targets are 0.5 a minute and 0.9; the margin is for the held-out
people, who are not looked at here).

Prints the weights, the tune log loss against a constant, and the tune figures at the threshold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.spotting.calibrate import fit_logistic, probability
from bench.spotting.meetings import REPO
from bench.spotting.score import iou
from inference.verifier import (
    CANDIDATE_FLOOR_UNITS,
    FEATURES,
    VERIFIER_FILE,
    WEIGHT_SIGNS,
    Verifier,
    blinked,
)

MAX_QUIET_PER_MIN = 0.25
MAX_REAL_PER_MIN = 0.2  # on the calibration half of the unlabeled real clips (issue target 0.3, shown)
MIN_PRECISION = 0.95
RIDGE = 1.0  # on standardised features: ~1 pseudo-observation, keeps weights readable with few positives


def label(cand: dict[str, Any], events: list[dict[str, Any]]) -> bool:
    """Whether a candidate overlaps an injected action by IoU >= 0.5 (the scorer's rule)."""
    span = (cand["onset_frame"], cand["offset_frame"])
    return any(iou(span, (e["onset_frame"], e["offset_frame"])) >= 0.5 for e in events)


def dataset(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and whether each row comes from a quiet video."""
    x, y, quiet = [], [], []
    for r in rows:
        for c in r["candidates"]:
            x.append(c["features"])
            y.append(label(c, r["truth"]["events"]))
            quiet.append(r["truth"]["quiet"])
    return np.asarray(x, float), np.asarray(y, float), np.asarray(quiet, bool)


def fit_signed(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``fit_logistic`` with the weights of ``WEIGHT_SIGNS`` held to their sign: each that comes out
    the wrong way is fixed at 0 and the others refitted, until none does (intercept first)."""
    free = list(range(z.shape[1]))
    while True:
        w = np.zeros(z.shape[1] + 1)
        w[[0, *(i + 1 for i in free)]] = fit_logistic(z[:, free], y, ridge=RIDGE, iterations=100)
        wrong = [FEATURES.index(n) for n, sign in WEIGHT_SIGNS.items() if w[FEATURES.index(n) + 1] * sign < 0]
        if not wrong:
            return w
        free = [i for i in free if i not in wrong]


def choose_threshold(
    p: np.ndarray, y: np.ndarray, quiet: np.ndarray, real: np.ndarray, *, quiet_min: float, real_min: float
) -> float:
    """The lowest threshold meeting every tune-side limit (see the module's docstring)."""
    for thr in np.round(np.arange(0.05, 0.96, 0.01), 2):
        keep = p >= thr
        fp_quiet = int((keep & quiet).sum())
        fp_real = int((keep & real).sum())
        kept = keep & ~quiet & ~real
        precision = float(y[kept].mean()) if kept.any() else 1.0
        if (
            fp_quiet / quiet_min <= MAX_QUIET_PER_MIN
            and precision >= MIN_PRECISION
            and (real_min == 0 or fp_real / real_min <= MAX_REAL_PER_MIN)
        ):
            return float(thr)
    return 0.95


def main(argv: list[str] | None = None) -> Verifier:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=REPO / "out" / "spotting-listeners" / "listeners-tune.json")
    ap.add_argument("--out", type=Path, default=VERIFIER_FILE)
    ap.add_argument(
        "--unlabeled",
        type=Path,
        default=None,
        help="a listeners JSON whose unlabeled clips to use (their calibration half only); default: the bench's own",
    )
    args = ap.parse_args(argv)
    data = json.loads(args.bench.read_text(encoding="utf-8"))
    if data.get("split", data.get("summary", {}).get("split")) != "tune":
        raise SystemExit("the verifier trains on the tune identities only")
    if data.get("candidate_floor", CANDIDATE_FLOOR_UNITS) != CANDIDATE_FLOOR_UNITS:
        raise SystemExit(
            f"candidates were replayed at floor {data['candidate_floor']}, "
            f"the verifier ships at {CANDIDATE_FLOOR_UNITS}"
        )
    rows = data["rows"]
    x, y, quiet = dataset(rows)
    # real talking video of the calibration half of the unlabeled people (sources.calibration_half,
    # as calibrate.py uses them): every candidate there is a negative; the other half is for checking
    extra = (
        json.loads(args.unlabeled.read_text(encoding="utf-8"))["unlabeled"]
        if args.unlabeled
        else data.get("unlabeled", [])
    )
    real_rows = [r for r in extra if r["calibration_half"]]
    xr = np.asarray([c["features"] for r in real_rows for c in r["candidates"]], float).reshape(-1, x.shape[1])
    real = np.r_[np.zeros(len(y), bool), np.ones(len(xr), bool)]
    x, y, quiet = np.vstack([x, xr]), np.r_[y, np.zeros(len(xr))], np.r_[quiet, np.zeros(len(xr), bool)]
    real_min = sum(r["seconds"] for r in real_rows) / 60
    if x.shape[1] != len(FEATURES):
        raise SystemExit(f"bench output has {x.shape[1]} features, the verifier {len(FEATURES)}: rerun the bench")
    blink = blinked(x)
    print(f"{int(blink.sum())} candidates rejected as blinks before the model ({int(y[blink].sum())} true)")
    x, y, quiet, real = x[~blink], y[~blink], quiet[~blink], real[~blink]
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    w = fit_signed(z, y)
    p = probability(w, z)
    quiet_min = sum(r["truth"]["seconds"] for r in rows if r["truth"]["quiet"]) / 60
    thr = choose_threshold(p, y, quiet, real, quiet_min=quiet_min, real_min=real_min)
    verifier = Verifier(weights=w[1:], bias=float(w[0]), mean=mean, scale=scale, threshold=thr)
    verifier.save(args.out)

    base = float(y.mean())
    loss = -float(np.mean(y * np.log(np.clip(p, 1e-9, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-9, 1))))
    loss0 = -(base * math.log(base) + (1 - base) * math.log(1 - base)) if 0 < base < 1 else 0.0
    keep = p >= thr
    print(
        f"{len(y)} candidates, {int(y.sum())} true; quiet videos {quiet_min:.2f} min; "
        f"unlabeled calibration half {real_min:.2f} min, {int(real.sum())} candidates"
    )
    print(f"log loss {loss:.3f} (constant {loss0:.3f}); threshold {thr}")
    print(
        f"kept {int(keep.sum())}: true {int((keep & (y > 0)).sum())} of {int(y.sum())}, "
        f"quiet false {int((keep & quiet).sum())}, unlabeled calibration half {int((keep & real).sum())}"
    )
    for name, wi in zip(FEATURES, w[1:], strict=True):
        print(f"  {name:18} {wi:+.3f}")
    print(f"  {'bias':18} {w[0]:+.3f}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return verifier


if __name__ == "__main__":
    main(sys.argv[1:])
