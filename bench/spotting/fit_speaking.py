"""Fit ``SPEAKING_ODDS_RATIO`` (inference/expressions.py) on the tune identities' talking faces.

    nice -n 10 .venv/bin/python -m bench.spotting.fit_speaking [--videos-per-face 5] [--first-video 0]
                                                               [--out DIR] [--from-json] [--pool DIR ...]

A micro signal's confidence is the two-stage spotter's probability (inference/verifier.py), which
was fitted on listeners and real talking faces without actions. While a person talks, their face
moves with the speech and a signal is less often a true action than that probability says. This
runs the meetings bench (``bench.spotting.meetings``: the tune people only, talking faces, each
video with its base clip's own speech) through ``microcue analyze``'s path, so the product's voice
activity decides which signals were said while talking (``speaking``); each such micro signal is
labelled true when it matches an injected action (IoU >= 0.5), and one number is fitted: the odds
ratio r that maximises the likelihood of the labels under P = sigmoid(logit(p) + log r), p the
verifier's own chance. The held-out people are never rendered or read.

Prints the signals, the true share against the mean chance, r, and the true share against the
adjusted confidence per third of face noise and of strength (whether one constant is enough).
``--from-json`` refits from the last run's OUT/meetings.json without rendering again; ``--pool``
adds other runs' meetings.json (video numbers from ``--first-video`` on: the same seeds as the
meetings bench, so runs over disjoint ranges, side by side, make one larger tune set).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.spotting import meetings
from bench.spotting.meetings import REPO
from bench.spotting.score import match
from bench.spotting.sources import CLIPS, DEFAULT_CACHE, clip_path


def has_audio(path: Path) -> bool:
    with av.open(str(path)) as c:
        return bool(c.streams.audio)


def fit_odds_ratio(p: np.ndarray, y: np.ndarray) -> float:
    """The r maximising sum log P(y) with P = sigmoid(logit(p) + log r), on a grid of log r."""
    lp = np.log(p / (1 - p))

    def loglik(b: float) -> float:
        z = lp + b
        return float(np.sum(-y * np.log1p(np.exp(-z)) - (1 - y) * np.log1p(np.exp(z))))

    return math.exp(max(np.linspace(-5.0, 3.0, 801), key=loglik))


def adjusted(p: np.ndarray, r: float) -> np.ndarray:
    """sigmoid(logit(p) + log r)."""
    odds = r * p / (1 - p)
    return np.asarray(odds / (1 + odds))


def talking_signals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The micro signals the product said were made while talking, each with its label."""
    out = []
    for row in rows:
        preds = [p for p in row["predictions"] if p["kind"] == "micro" and p["speaking"] is True]
        hit = {id(p) for p, _ in match(preds, row["truth"]["events"], "micro")[1]}
        out += [
            {
                "video": row["video"],
                "p": min(max(float(p["verified"]), 1e-6), 1 - 1e-6),
                "noise_px": p["noise_px"],
                "strength": p["strength"],
                "true": id(p) in hit,
            }
            for p in preds
        ]
    return out


def main(argv: list[str] | None = None) -> float | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos-per-face", type=int, default=5)
    ap.add_argument("--first-video", type=int, default=0)
    ap.add_argument("--pool", type=Path, nargs="*", default=[], help="more runs' OUT folders to fit on too")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "fit-speaking")
    ap.add_argument("--from-json", action="store_true", help="refit from OUT/meetings.json")
    args = ap.parse_args(argv)
    if not args.from_json:
        # the tune faces whose clip has sound: only there does the voice say when they talk
        with_sound = [c.name for c in CLIPS if c.role == "tune" and has_audio(clip_path(DEFAULT_CACHE, c))]
        meetings.main(
            [
                "--clips",
                ",".join(with_sound),
                "--split",
                "tune",
                "--no-still",
                "--no-unlabeled",
                "--seconds",
                str(args.seconds),
                "--videos-per-face",
                str(args.videos_per_face),
                "--first-video",
                str(args.first_video),
                "--out",
                str(args.out),
            ]
        )
    rows: dict[str, dict[str, Any]] = {}
    for folder in [args.out, *args.pool]:
        results = json.loads((folder / "meetings.json").read_text(encoding="utf-8"))
        if set(results["splits"]) != {"tune"}:
            raise SystemExit(f"{folder}/meetings.json holds {sorted(results['splits'])}, not the tune split alone")
        rows |= {r["video"]: r for r in results["splits"]["tune"]["rows"]}  # a video counts once
    print(f"{len(rows)} tune talking-face videos")
    signals = talking_signals(list(rows.values()))
    (args.out / "talk-signals-tune.json").write_text(json.dumps(signals, indent=1), encoding="utf-8")
    p = np.array([s["p"] for s in signals])
    y = np.array([s["true"] for s in signals], float)
    print(f"{len(signals)} micro signals while talking on tune faces, {int(y.sum())} true; mean chance {p.mean():.3f}")
    if not 0 < y.sum() < len(y):
        print("all signals true or all false: no ratio to fit")
        return None
    r = fit_odds_ratio(p, y)
    q = adjusted(p, r)
    print(f"SPEAKING_ODDS_RATIO = {r:.3f}; adjusted mean {q.mean():.3f}")
    for name in ("noise_px", "strength", "p"):
        x = np.array([s[name] for s in signals])
        edges = np.quantile(x, [1 / 3, 2 / 3])
        third = np.searchsorted(edges, x, side="right")
        for k in range(3):
            inside = third == k
            if inside.any():
                print(
                    f"  {name} third {k + 1} ({x[inside].min():.3g}-{x[inside].max():.3g}): {int(inside.sum())} "
                    f"signals, {y[inside].mean():.2f} true, adjusted confidence {q[inside].mean():.2f}"
                )
    floor = meetings.SHOWN_FLOOR
    shown = q >= floor
    if shown.any():
        raw = int((p >= floor).sum())
        print(f"  shown at {floor}: {int(shown.sum())}, {y[shown].mean():.2f} true (by the raw chance: {raw})")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
