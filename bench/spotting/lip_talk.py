"""Can the mouth stand in for the voice? Lip motion against the product's own voice activity.

    nice -n 10 .venv/bin/python -m bench.spotting.lip_talk [--cache DIR] [--mirror DIR]

Where a face comes without sound (a participant with no microphone, a file with no audio track,
the two held-out MEAD faces of the meetings bench) the analyzer does not know when the person
talks, so their micro signals are not adjusted for talk (docs/benchmarks.md, "Talking faces with
their own speech"). This bench asks whether the lips could tell it instead. For every bench clip
with an audio track, each frame gets the voice activity's answer (Silero VAD over the clip's sound,
``bridge.media.fileanalysis.file_speech``, as ``microcue analyze`` runs it) and three lip-motion
features over the second around it, from the FaceMesh landmarks the meetings bench caches: the
spread of the inner-lip gap, how fast it changes, and the spread of the outer-lip opening, all in
inter-ocular distances. Tune: the tune base faces and the calibration half of the unlabeled people;
held out: the other base faces and the other half (``sources.calibration_half``).

Prints, per split, the frames, their share of talk and each feature's AUC (the chance that a talking
frame scores above a silent one), then, for the gap's speed, the talk and silence frames above
each threshold. Writes OUT/lip_talk.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np

from bench.spotting import rig
from bench.spotting.meetings import REPO, load_source
from bench.spotting.sources import CLIPS, DEFAULT_CACHE, Clip, calibration_half, clip_path, fetch
from bridge.config import Settings
from bridge.media.fileanalysis import file_speech
from bridge.media.videofile import probe
from bridge.models.face import load_face_models
from inference.models import ModelSet
from inference.speech import merge, overlaps
from inference.voice import SileroVad

#: the window the lip features are read over, centred on the frame: a few syllables (2-7 Hz,
#: inference/spotting_params.py's jaw band), short enough to follow a turn of speech
WINDOW_S = 1.0
FEATURES = ("gap_spread", "gap_speed", "outer_spread")
# FaceMesh indices: inner lips (upper, lower), outer lips (upper, lower)
_INNER = (13, 14)
_OUTER = (0, 17)
SPEED_STEPS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def lip_features(lm: np.ndarray, ok: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(frames, 3) features, NaN where the window is cut short or a face is missing in it."""
    iod = np.array([rig.iod(x) if good else np.nan for x, good in zip(lm, ok, strict=True)])
    gap = np.linalg.norm(lm[:, _INNER[0]] - lm[:, _INNER[1]], axis=1) / iod
    outer = np.linalg.norm(lm[:, _OUTER[0]] - lm[:, _OUTER[1]], axis=1) / iod
    fps = (len(t) - 1) / (t[-1] - t[0])
    half = max(1, round(WINDOW_S * fps / 2))
    out = np.full((len(t), len(FEATURES)), np.nan)
    for i in range(half, len(t) - half):
        g, o = gap[i - half : i + half + 1], outer[i - half : i + half + 1]
        if not np.isnan(g).any():
            out[i] = (g.std(), np.abs(np.diff(g)).mean() * fps, o.std())
    return out


def talk_labels(vad: SileroVad, path: Path, times: np.ndarray) -> np.ndarray | None:
    """Per frame: whether the voice activity says the person talks then (the file's talk as
    ``microcue analyze`` finds it); None without sound."""
    speech, _ = file_speech(probe(path), vad)
    if speech is None:
        return None
    with av.open(str(path)) as c:
        t0 = next(iter(c.decode(video=0))).time or 0.0  # Source.times start at the first frame
    talk = merge(speech.segments)
    return np.array([overlaps(talk, t0 + x, t0 + x) for x in times])


def auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """Mann-Whitney: the chance that a positive scores above a negative (ties count half)."""
    if not len(pos) or not len(neg):
        return None
    ranks = np.concatenate([pos, neg]).argsort(kind="stable").argsort() + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _shares_above(values: np.ndarray, talk: np.ndarray, q: float) -> dict[str, float]:
    above = values >= q
    return {"talk": round(float(above[talk].mean()), 3), "silence": round(float(above[~talk].mean()), 3)}


def split_of(clip: Clip) -> str | None:
    if clip.role in ("tune", "heldout"):
        return clip.role
    return "tune" if calibration_half(clip.identity) else "heldout"


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--mirror", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "lip-talk")
    args = ap.parse_args(argv)
    fetch(args.cache, args.mirror)
    models = load_face_models(Settings().model_dir, prefer_gpu=False, emotion=False)
    vad = SileroVad(ModelSet(Settings().model_dir, prefer_gpu=False).session("vad"))
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"tune": ([], []), "heldout": ([], [])}
    clips: dict[str, dict[str, object]] = {}
    for clip in CLIPS:
        path = clip_path(args.cache, clip)
        src = load_source(models, path, args.cache)
        labels = talk_labels(vad, path, src.times)
        split = split_of(clip)
        if labels is None or split is None:
            continue
        ok = np.array([x is not None for x in src.landmarks])
        lm = np.stack([x if x is not None else np.zeros((468, 2)) for x in src.landmarks])
        feats = lip_features(lm, ok, src.times)
        keep = ~np.isnan(feats).any(axis=1)
        if not keep.any():
            continue
        pooled[split][0].append(feats[keep])
        pooled[split][1].append(labels[keep])
        clips[clip.name] = {
            "split": split,
            "frames": int(keep.sum()),
            "talk_share": round(float(labels[keep].mean()), 3),
            "median": {f: round(float(np.median(feats[keep, j])), 4) for j, f in enumerate(FEATURES)},
        }
        print(f"{clip.name:28s} {split:8s} {clips[clip.name]}", file=sys.stderr, flush=True)
    result: dict[str, object] = {"window_s": WINDOW_S, "clips": clips, "splits": {}}
    for split, (xs, ys) in pooled.items():
        x, y = np.concatenate(xs), np.concatenate(ys)
        speed = x[:, FEATURES.index("gap_speed")]
        row = {
            "frames": len(y),
            "talk_share": round(float(y.mean()), 3),
            "auc": {f: auc(x[y, j], x[~y, j]) for j, f in enumerate(FEATURES)},
            "gap_speed_above": {f"{q:g}": _shares_above(speed, y, q) for q in SPEED_STEPS},
        }
        result["splits"][split] = row  # type: ignore[index]
        print(f"{split}: {json.dumps(row)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lip_talk.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
