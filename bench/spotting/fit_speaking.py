"""Fit ``SPEAKING_ODDS_RATIO`` (inference/expressions.py) on the tune identities' talking faces.

    nice -n 10 .venv/bin/python -m bench.spotting.fit_speaking [--videos-per-face 6]

A micro signal's confidence is the two-stage spotter's probability (inference/verifier.py), which
was fitted on listeners and real talking faces without actions. While a person talks, their face
moves with the speech and a signal is less often a true action than that probability says. This
renders (once, cached like ``replay``) the meetings bench's talking-face videos of the tune people,
runs the analyzer's two-stage spotter over them, labels each micro signal true when it matches an
injected action (IoU >= 0.5), and fits one number: the odds ratio r that maximises the likelihood
of the labels under P = sigmoid(logit(p) + log r). The held-out people are never read.

Prints each video's signals, the count, the true share against the mean confidence, and r.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import av
import cv2
import numpy as np

from bench.spotting.meetings import REPO
from bench.spotting.replay import bench_video, spot_frames
from bench.spotting.score import match
from bench.spotting.sources import CLIPS, DEFAULT_CACHE, fetch
from bridge.config import Settings
from bridge.models.face import load_face_models
from inference.motion import MotionExtractor
from inference.spotting import Spot
from inference.verifier import VerifiedSpotter


def fit_odds_ratio(p: np.ndarray, y: np.ndarray) -> float:
    """The r maximising sum log P(y) with P = sigmoid(logit(p) + log r), on a grid of log r."""
    lp = np.log(p / (1 - p))

    def loglik(b: float) -> float:
        z = lp + b
        return float(np.sum(-y * np.log1p(np.exp(-z)) - (1 - y) * np.log1p(np.exp(z))))

    return math.exp(max(np.linspace(-5.0, 3.0, 801), key=loglik))


def main(argv: list[str] | None = None) -> float | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--videos-per-face", type=int, default=6)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "spotting-replay")
    args = ap.parse_args(argv)
    models = load_face_models(Settings().model_dir, prefer_gpu=False, emotion=False)
    fetch(args.cache)
    args.work.mkdir(parents=True, exist_ok=True)
    signals: list[tuple[float, bool]] = []
    for clip in [c for c in CLIPS if c.role == "tune"]:
        for v in range(args.videos_per_face):
            stem, video, tru, faces = bench_video(models, args.cache, args.work, clip, v=v, still=False, seconds=20.0)
            motion, spotter = MotionExtractor(), VerifiedSpotter()
            spots: list[Spot] = []
            with av.open(str(video)) as c:
                for (t, face), frame in zip(faces, c.decode(video=0), strict=False):
                    if face is None:
                        motion.reset()
                        continue
                    grey = cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
                    spots += spotter.push(motion(grey, face, t))
            times = [t for t, _ in faces]
            preds = [spot_frames(s, times) | {"p": s.verified} for s in spots if s.kind == "micro"]
            hit = {id(p) for p, _ in match(preds, tru["events"], "micro")[1]}
            signals += [(float(p["p"]), id(p) in hit) for p in preds]
            print(stem, "signals", [(round(p["p"], 2), id(p) in hit) for p in preds], flush=True)
    (args.work / "talk-signals-tune.json").write_text(json.dumps(signals), encoding="utf-8")
    p = np.array([x for x, _ in signals])
    y = np.array([t for _, t in signals], float)
    print(f"{len(signals)} micro signals on tune talking faces, {int(y.sum())} true; mean confidence {p.mean():.3f}")
    if not 0 < y.sum() < len(y):
        print("all signals true or all false: no ratio to fit")
        return None
    r = fit_odds_ratio(p, y)
    print(f"SPEAKING_ODDS_RATIO = {r:.3f}")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
