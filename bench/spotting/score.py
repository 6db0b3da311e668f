"""MEGC-style spotting scores (docs/sources.md): a prediction is a true positive when its IoU
with a truth interval of the same kind is >= 0.5; counts are pooled over all videos of a set
before precision, recall and F1 are computed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

IOU_MATCH = 0.5  # MEGC 2019-2023 protocol
POSITIVE = {"happiness"}
SURPRISE = {"surprise"}


def three_class(emotion: str) -> str:
    """MEGC 2019 composite classes: positive, negative, surprise."""
    if emotion in POSITIVE:
        return "positive"
    if emotion in SURPRISE:
        return "surprise"
    return "negative"


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Frame intervals, both ends included."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union


@dataclass
class Counts:
    tp: int = 0
    predicted: int = 0
    truth: int = 0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.predicted += other.predicted
        self.truth += other.truth

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.truth if self.truth else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Score:
    micro: Counts = field(default_factory=Counts)
    macro: Counts = field(default_factory=Counts)
    emotion_total: int = 0
    emotion_7: int = 0
    emotion_3: int = 0
    fp_minutes: float = 0.0
    fp_micro: int = 0
    onset_errors: list[int] = field(default_factory=list)

    def add(self, other: Score) -> None:
        self.micro.add(other.micro)
        self.macro.add(other.macro)
        self.emotion_total += other.emotion_total
        self.emotion_7 += other.emotion_7
        self.emotion_3 += other.emotion_3
        self.fp_minutes += other.fp_minutes
        self.fp_micro += other.fp_micro
        self.onset_errors += other.onset_errors

    def summary(self) -> dict[str, float | int | None]:
        overall = Counts()
        overall.add(self.micro)
        overall.add(self.macro)
        return {
            "micro_precision": round(self.micro.precision, 3),
            "micro_recall": round(self.micro.recall, 3),
            "micro_f1": round(self.micro.f1, 3),
            "micro_tp": self.micro.tp,
            "micro_pred": self.micro.predicted,
            "micro_truth": self.micro.truth,
            "macro_precision": round(self.macro.precision, 3),
            "macro_recall": round(self.macro.recall, 3),
            "macro_f1": round(self.macro.f1, 3),
            "macro_tp": self.macro.tp,
            "macro_pred": self.macro.predicted,
            "macro_truth": self.macro.truth,
            "overall_f1": round(overall.f1, 3),
            "emotion_acc_7": round(self.emotion_7 / self.emotion_total, 3) if self.emotion_total else None,
            "emotion_acc_3": round(self.emotion_3 / self.emotion_total, 3) if self.emotion_total else None,
            "matched_micro": self.emotion_total,
            "fp_per_min_distractors": round(self.fp_micro / self.fp_minutes, 2) if self.fp_minutes else None,
            "mean_abs_onset_error_frames": (
                round(sum(abs(e) for e in self.onset_errors) / len(self.onset_errors), 2) if self.onset_errors else None
            ),
        }


def match(
    preds: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]], kind: str
) -> tuple[Counts, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Greedy one-to-one matching by IoU, best pairs first."""
    p = [x for x in preds if x["kind"] == kind]
    t = [x for x in truths if x["kind"] == kind]
    pairs = sorted(
        (
            (iou((a["onset_frame"], a["offset_frame"]), (b["onset_frame"], b["offset_frame"])), i, j)
            for i, a in enumerate(p)
            for j, b in enumerate(t)
        ),
        reverse=True,
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    matched = []
    for value, i, j in pairs:
        if value < IOU_MATCH:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        matched.append((p[i], t[j]))
    return Counts(len(matched), len(p), len(t)), matched


def score_video(preds: Iterable[dict[str, Any]], truth: dict[str, Any]) -> Score:
    preds = list(preds)
    truths = truth["events"]
    fps = float(truth["fps"])
    s = Score()
    s.micro, matched = match(preds, truths, "micro")
    s.macro, _ = match(preds, truths, "macro")
    for pred, tru in matched:
        s.emotion_total += 1
        s.emotion_7 += pred.get("emotion") == tru["emotion"]
        s.emotion_3 += three_class(str(pred.get("emotion"))) == three_class(tru["emotion"])
        s.onset_errors.append(int(pred["onset_frame"]) - int(tru["onset_frame"]))
    for stretch in truth.get("distractor_only", []):
        lo, hi = stretch["start_s"] * fps, stretch["end_s"] * fps
        s.fp_minutes += (stretch["end_s"] - stretch["start_s"]) / 60.0
        s.fp_micro += sum(1 for p in preds if p["kind"] == "micro" and lo <= p["apex_frame"] < hi)
    return s
