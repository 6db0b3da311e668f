"""Hand-built cue streams whose figures are worked out by hand, shared by the report and coaching tests."""

from __future__ import annotations

from itertools import count
from typing import Any

from inference.cues import Cue


def sales_call(meeting_id: str) -> list[Cue]:
    """180 s. Rep talks 2-50, 50.6-95 (one 93 s monologue), 110-125, 140-150; buyer 95.5-110,
    125-140, 150-178. Rep 117.4 s, buyer 57.5 s: 67:33. Turns R R B R B R B: 5 switches in 3 min.
    Buyer engagement 0.35 before 95 s, then 0.8 while speaking and 0.6 otherwise; sentiment falls
    0.4 -> 0.1 (60 s) -> -0.3 (130 s); negative micro-expressions at 40 and 55 s (rep speaking) and 130 s."""
    seqs = {"rep": count(), "buyer": count()}
    cues: list[Cue] = []

    def add(kind: str, pid: str, t: float, value: float | None = None, **kw: Any) -> None:
        cues.append(
            Cue(
                type=kind,
                t=t,
                value=value,
                meeting_id=meeting_id,
                participant_id=pid,  # type: ignore[arg-type]
                seq=next(seqs[pid]),
                **kw,
            )
        )

    def expression(kind: str, pid: str, apex: float, emotion: str) -> None:
        add(
            kind,
            pid,
            apex + 0.3,
            onset_s=apex - 0.1,
            apex_s=apex,
            offset_s=apex + 0.3,
            emotion=emotion,
            confidence=0.62,
            valence=-0.5,
        )

    rep_talk = [(2.0, 50.0), (50.6, 95.0), (110.0, 125.0), (140.0, 150.0)]
    buyer_talk = [(95.5, 110.0), (125.0, 140.0), (150.0, 178.0)]
    for pid in ("rep", "buyer"):
        add("presence", pid, 0.0, 1.0)
    for t in range(0, 180, 10):
        add("engagement", "rep", float(t), 0.7 if t % 20 else 0.75)
        buyer_speaking = any(s <= t < e for s, e in buyer_talk)
        add("engagement", "buyer", float(t), 0.35 if t < 95 else 0.8 if buyer_speaking else 0.6)
    for t, v in ((0.0, 0.4), (60.0, 0.1), (130.0, -0.3)):
        add("sentiment", "buyer", t, v)
    add("sentiment", "rep", 0.0, 0.5)
    for pid, spans in (("rep", rep_talk), ("buyer", buyer_talk)):
        for s, e in spans:
            add("speaking", pid, s, 1.0)
            add("speaking", pid, e, 0.0)
    expression("micro_expression", "buyer", 40.0, "contempt")
    expression("micro_expression", "buyer", 55.0, "disgust")
    expression("micro_expression", "buyer", 130.0, "sadness")
    expression("macro_expression", "buyer", 100.0, "happiness")
    expression("macro_expression", "rep", 20.0, "happiness")
    for pid in ("rep", "buyer"):
        add("presence", pid, 180.0, 0.0)
    return sorted(cues, key=lambda c: c.t)
