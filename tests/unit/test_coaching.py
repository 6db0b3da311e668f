"""Sales-call coaching on hand-built calls whose figures are worked out by hand below."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.insights.coaching import BENCHMARK_TALK_SHARE, MAX_TIPS, MIN_TIPS, coach, rep_stretches, speaker_switches
from inference.cues import Cue

pytestmark = pytest.mark.unit

ROLES = {"R": "rep", "B": "buyer"}


def cue(kind: str, pid: str, t: float, value: float | None = None, **kw: Any) -> Cue:
    return Cue(type=kind, t=t, value=value, meeting_id="m", participant_id=pid, **kw)  # type: ignore[arg-type]


def expr(kind: str, pid: str, apex: float, emotion: str) -> Cue:
    return cue(
        kind, pid, apex + 0.3, onset_s=apex - 0.1, apex_s=apex, offset_s=apex + 0.3, emotion=emotion, confidence=0.6
    )


def talk(pid: str, *spans: tuple[float, float]) -> list[Cue]:
    return [c for s, e in spans for c in (cue("speaking", pid, s, 1.0), cue("speaking", pid, e, 0.0))]


def rep_heavy_call() -> list[Cue]:
    """120 s. Rep talks 0-30, 30.5-70 (one 70 s monologue: the 0.5 s pause is under the ~1 s patience),
    90-100; buyer talks 70-90 and 100-120. Buyer engagement 0.3 until 70 s, then 0.8; sentiment 0.6,
    then -0.4 from 80 s. Buyer micro contempt @20 (rep speaking), sadness @80 (rep listening),
    happiness @85 (not negative), macro anger @50 (not a micro-expression)."""
    return [
        *talk("R", (0.0, 30.0), (30.5, 70.0), (90.0, 100.0)),
        *talk("B", (70.0, 90.0), (100.0, 120.0)),
        cue("presence", "B", 0.0, 1.0),
        cue("engagement", "B", 0.0, 0.3),
        cue("engagement", "B", 70.0, 0.8),
        cue("sentiment", "B", 0.0, 0.6),
        cue("sentiment", "B", 80.0, -0.4),
        expr("micro_expression", "B", 20.0, "contempt"),
        expr("macro_expression", "B", 50.0, "anger"),
        expr("micro_expression", "B", 80.0, "sadness"),
        expr("micro_expression", "B", 85.0, "happiness"),
    ]


def test_helpers() -> None:
    # The buyer spoke in the 1 s gap: that is a hand-over, not a pause.
    assert rep_stretches([(0.0, 10.0), (11.0, 20.0)], [(10.2, 10.8)]) == [(0.0, 10.0), (11.0, 20.0)]
    assert rep_stretches([(0.0, 10.0), (11.0, 20.0)], []) == [(0.0, 20.0)]
    assert rep_stretches([(0.0, 10.0), (11.5, 20.0)], []) == [(0.0, 10.0), (11.5, 20.0)]
    assert speaker_switches({"R": [(0.0, 1.0), (2.0, 3.0)], "B": [(1.0, 2.0)]}) == 2
    assert speaker_switches({"R": [(0.0, 1.0), (1.5, 3.0)]}) == 0


def test_rep_heavy_call_figures() -> None:
    c = coach(rep_heavy_call(), ROLES, duration_s=120.0, emotions_allowed=True)
    assert c["available"] is True and c["emotions_withheld"] is False
    assert c["rep_talk_s"] == 79.5 and c["others_talk_s"] == 40.0
    assert c["rep_talk_share"] == pytest.approx(79.5 / 119.5, abs=1e-3)
    assert c["talk_to_listen"] == "67:33"
    longest = c["longest_monologue"]
    assert (longest["t"], longest["end"], longest["duration_s"], longest["at"]) == (0.0, 70.0, 70.0, "0:00-1:10")
    assert [(m["t"], m["end"], m["buyer_engagement"]) for m in c["monologues"]] == [(0.0, 70.0, 0.3)]
    # Turns by start: R R B R B -> 3 switches in 2 minutes.
    assert c["speaker_switches"] == 3 and c["switches_per_minute"] == 1.5
    assert c["buyer_engagement_during_rep_monologues"] == 0.3
    # (0.3 * 69.5 + 0.8 * 10) / 79.5
    assert c["buyer_engagement_during_rep_speech"] == pytest.approx(0.363, abs=1e-3)
    assert c["buyer_engagement_during_buyer_speech"] == 0.8
    assert [(h["t"], h["emotion"], h["rep_activity"]) for h in c["hesitation_moments"]] == [
        (20.0, "contempt", "speaking"),
        (80.0, "sadness", "listening"),
    ]
    assert c["buyer_sentiment_by_third"] == [0.6, 0.6, -0.4] and c["sentiment_trend"] == "falling"
    bench = c["benchmarks"][0]
    assert bench["value"] == "43:57" and bench["rep_share"] == BENCHMARK_TALK_SHARE and "Gong" in bench["source"]


def test_rep_heavy_call_tips_cite_their_moments() -> None:
    tips = coach(rep_heavy_call(), ROLES, duration_s=120.0, emotions_allowed=True)["tips"]
    assert MIN_TIPS <= len(tips) <= MAX_TIPS
    assert [t["topic"] for t in tips] == ["talk_ratio", "monologue", "interactivity", "engagement", "hesitation"]
    assert all(t["severity"] == "improve" for t in tips)
    by_topic = {t["topic"]: t for t in tips}
    assert "67%" in by_topic["talk_ratio"]["text"] and "43:57" in by_topic["talk_ratio"]["text"]
    assert "Gong" in by_topic["talk_ratio"]["text"]
    assert by_topic["monologue"]["moments"][0]["at"] == "0:00-1:10" and "70 s" in by_topic["monologue"]["text"]
    assert "1.5 speaker switches" in by_topic["interactivity"]["text"]
    assert "0.30" in by_topic["engagement"]["text"] and "0.80" in by_topic["engagement"]["text"]
    assert [m["t"] for m in by_topic["hesitation"]["moments"]] == [20.0]
    assert "0:20 contempt" in by_topic["hesitation"]["text"] and "not proof" in by_topic["hesitation"]["text"]


def test_balanced_call_gets_keep_tips() -> None:
    """60 s: R 0-10, B 10-25, R 25-35, B 35-50, R 50-53, B 53-60: rep 23 s of 60 (38:62), 5 switches/min."""
    cues = talk("R", (0.0, 10.0), (25.0, 35.0), (50.0, 53.0)) + talk("B", (10.0, 25.0), (35.0, 50.0), (53.0, 60.0))
    c = coach(cues, ROLES, duration_s=60.0, emotions_allowed=True)
    assert c["talk_to_listen"] == "38:62" and c["switches_per_minute"] == 5.0
    assert c["longest_monologue"]["duration_s"] == 10.0 and c["monologues"] == []
    assert c["buyer_engagement_during_rep_monologues"] is None
    assert c["hesitation_moments"] == [] and c["sentiment_trend"] is None
    assert [(t["topic"], t["severity"]) for t in c["tips"]] == [
        ("talk_ratio", "keep"),
        ("monologue", "keep"),
        ("interactivity", "keep"),
    ]


def test_policy_withholds_hesitations_and_sentiment() -> None:
    c = coach(rep_heavy_call(), ROLES, duration_s=120.0, emotions_allowed=False)
    assert c["emotions_withheld"] is True
    assert c["hesitation_moments"] is None and c["buyer_sentiment_by_third"] is None and c["sentiment_trend"] is None
    assert not any(t["topic"].startswith(("hesitation", "sentiment")) for t in c["tips"])
    # Talk figures and engagement are not emotion inference and stay.
    assert c["talk_to_listen"] == "67:33" and c["buyer_engagement_during_buyer_speech"] == 0.8


def test_needs_rep_and_buyer() -> None:
    c = coach(rep_heavy_call(), {"R": "rep", "B": "participant"}, duration_s=120.0, emotions_allowed=True)
    assert c["available"] is False and "buyer" in c["reason"]
    c = coach([], ROLES, duration_s=0.0, emotions_allowed=True)
    assert c["available"] is True and c["talk_to_listen"] is None
    assert [t["topic"] for t in c["tips"]] == ["no_speech"]
