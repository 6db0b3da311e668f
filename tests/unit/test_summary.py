"""Meeting summary on hand-built cue lists whose every figure is worked out by hand below."""

from __future__ import annotations

from typing import Any

import pytest

from bridge import policy
from bridge.config import Settings
from bridge.insights.summary import ParticipantInfo, summarize
from bridge.insights.timeline import (
    bucket_means,
    held,
    masked,
    meeting_duration,
    presence_intervals,
    speaking_intervals,
)
from inference.cues import Cue

pytestmark = pytest.mark.unit


def cue(kind: str, pid: str, t: float, value: float | None = None, **kw: Any) -> Cue:
    return Cue(type=kind, t=t, value=value, meeting_id="m", participant_id=pid, **kw)  # type: ignore[arg-type]


def expr(kind: str, pid: str, apex: float, emotion: str) -> Cue:
    return cue(
        kind, pid, apex + 0.3, onset_s=apex - 0.1, apex_s=apex, offset_s=apex + 0.3, emotion=emotion, confidence=0.7
    )


def meeting_cues() -> list[Cue]:
    """Two people over exactly 60 s.

    p1: in view 0-30 s; engagement 0.8 from 0 s, 0.4 from 20 s; talks 5-15 s and 25 s-end (no stop cue).
    p2: in view 10-60 s; engagement 0.6 from 10 s, 0.2 from 50 s; sentiment 0.5 from 10 s, -0.5 from 30 s;
        micro anger @32, disgust @40, fear @58 (one cluster of 3 within 30 s of 32), macro happiness @12.
    """
    return [
        cue("presence", "p1", 0.0, 1.0),
        cue("engagement", "p1", 0.0, 0.8),
        cue("speaking", "p1", 5.0, 1.0),
        cue("speaking", "p1", 15.0, 0.0),
        cue("engagement", "p1", 20.0, 0.4),
        cue("speaking", "p1", 25.0, 1.0),
        cue("presence", "p1", 30.0, 0.0),
        cue("presence", "p2", 10.0, 1.0),
        cue("engagement", "p2", 10.0, 0.6),
        cue("sentiment", "p2", 10.0, 0.5),
        expr("macro_expression", "p2", 12.0, "happiness"),
        cue("sentiment", "p2", 30.0, -0.5),
        expr("micro_expression", "p2", 32.0, "anger"),
        expr("micro_expression", "p2", 40.0, "disgust"),
        cue("engagement", "p2", 50.0, 0.2),
        expr("micro_expression", "p2", 58.0, "fear"),
        cue("presence", "p2", 60.0, 0.0),
    ]


def decision(context: str = "customer", mode: str = "default") -> policy.PolicyDecision:
    return policy.decide(context, Settings(policy=mode))  # type: ignore[arg-type]


PEOPLE = [ParticipantInfo(id="p1", display_name="Ana", role="presenter"), ParticipantInfo(id="p2", display_name="Bo")]


def test_interval_helpers() -> None:
    assert held([(0.0, 1.0), (5.0, 0.0), (5.0, 2.0)], 10.0) == [(0.0, 5.0, 1.0), (5.0, 10.0, 2.0)]
    assert masked([(0.0, 10.0, 1.0), (10.0, 20.0, 3.0)], [(5.0, 15.0)]) == [(5.0, 10.0, 1.0), (10.0, 15.0, 3.0)]
    # 1.0 over 0-15 s and 3.0 over 15-20 s: bucket 2 is (5 * 1 + 5 * 3) / 10.
    assert bucket_means([(0.0, 15.0, 1.0), (15.0, 20.0, 3.0)], 10.0, 3) == [1.0, 2.0, None]
    cues = meeting_cues()
    assert meeting_duration(cues) == 60.0
    p1 = [c for c in cues if c.participant_id == "p1"]
    assert presence_intervals(p1, 60.0) == [(0.0, 30.0)]
    assert speaking_intervals(p1, 60.0) == [(5.0, 15.0), (25.0, 60.0)]
    # No presence cue at all: present from the first cue to the end.
    assert presence_intervals([cue("engagement", "x", 7.0, 0.5)], 60.0) == [(7.0, 60.0)]
    # A stop without a start is ignored, not guessed.
    assert speaking_intervals([cue("speaking", "x", 3.0, 0.0)], 60.0) == []


def test_summary_figures() -> None:
    body = summarize(meeting_cues(), PEOPLE, decision=decision())
    assert body["duration_s"] == 60.0 and body["bucket_s"] == 10.0 and body["cue_count"] == 17
    p1, p2 = body["participants"]
    assert (p1["participant_id"], p1["display_name"], p1["role"]) == ("p1", "Ana", "presenter")
    assert p1["time_present_s"] == 30.0
    assert p1["talk_time_s"] == 45.0 and p1["talk_turns"] == 2
    # (0.8 * 20 + 0.4 * 10) / 30 s present
    assert p1["engagement_mean"] == pytest.approx(0.667, abs=1e-3)
    assert p1["engagement_timeline"] == [0.8, 0.8, 0.4, None, None, None]
    assert p2["time_present_s"] == 50.0 and p2["talk_time_s"] == 0.0
    # (0.6 * 40 + 0.2 * 10) / 50
    assert p2["engagement_mean"] == pytest.approx(0.52)
    assert p2["engagement_timeline"] == [None, 0.6, 0.6, 0.6, 0.6, 0.2]
    # (0.5 * 20 - 0.5 * 30) / 50
    assert p2["sentiment_mean"] == pytest.approx(-0.1)
    assert p2["sentiment_timeline"] == [None, 0.5, 0.5, -0.5, -0.5, -0.5]
    assert {k: v for k, v in p2["expressions"]["micro"].items() if v} == {"anger": 1, "disgust": 1, "fear": 1}
    assert {k: v for k, v in p2["expressions"]["macro"].items() if v} == {"happiness": 1}
    assert [e["t"] for e in p2["expression_events"]] == [12.0, 32.0, 40.0, 58.0]

    assert [(m["kind"], m["t"], m["delta"]) for m in p1["key_moments"]] == [("engagement_drop", 20.0, -0.4)]
    drop, cluster = sorted(p2["key_moments"], key=lambda m: m["kind"])
    assert (drop["kind"], drop["t"], drop["end"], drop["delta"]) == ("engagement_drop", 50.0, 60.0, -0.4)
    assert (cluster["kind"], cluster["t"], cluster["end"], cluster["count"]) == ("negative_cluster", 32.0, 58.0, 3)
    assert cluster["emotions"] == {"anger": 1, "disgust": 1, "fear": 1}

    meeting = body["meeting"]
    assert meeting["engagement_curve"] == [0.8, 0.7, 0.5, 0.6, 0.6, 0.2]
    (minute,) = meeting["minutes"]
    # mean of p1's 0.6667 and p2's 0.52 over the one minute
    assert minute["engagement"] == pytest.approx(0.593, abs=1e-3) and minute["participants"] == 2
    assert meeting["most_engaging_minute"]["minute"] == 1
    assert meeting["least_engaging_minute"] is None  # one minute: nothing to compare
    assert [m["t"] for m in meeting["key_moments"]] == [20.0, 32.0, 50.0]
    assert body["policy"]["emotions_withheld"] is False
    assert "not the truth" in body["notice"]
    assert "coaching" not in body


def test_rises_and_minutes() -> None:
    cues = [
        cue("presence", "a", 0.0, 1.0),
        cue("engagement", "a", 0.0, 0.2),
        cue("engagement", "a", 60.0, 0.9),
        cue("engagement", "a", 120.0, 0.5),
        cue("presence", "a", 150.0, 0.0),
    ]
    body = summarize(cues, [], decision=decision())
    (a,) = body["participants"]
    assert a["display_name"] == "a" and a["role"] == "participant"  # seen only in cues
    peaks = [m for m in a["key_moments"] if m["kind"] == "engagement_peak"]
    drops = [m for m in a["key_moments"] if m["kind"] == "engagement_drop"]
    assert [(m["t"], m["delta"]) for m in peaks] == [(60.0, 0.7)]
    assert [(m["t"], m["delta"]) for m in drops] == [(120.0, -0.4)]
    minutes = body["meeting"]["minutes"]
    assert [m["engagement"] for m in minutes] == [0.2, 0.9, 0.5]
    assert minutes[2]["end_s"] == 150.0
    assert body["meeting"]["most_engaging_minute"]["minute"] == 2
    assert body["meeting"]["least_engaging_minute"]["minute"] == 1


def test_cluster_needs_two_within_30_s() -> None:
    cues = [expr("micro_expression", "a", t, "sadness") for t in (10.0, 45.0, 80.0)]
    cues.append(expr("micro_expression", "a", 100.0, "happiness"))  # not negative
    body = summarize(cues, [], decision=decision())
    assert [m for m in body["participants"][0]["key_moments"] if m["kind"] == "negative_cluster"] == []
    cues.append(expr("micro_expression", "a", 105.0, "contempt"))
    (cluster,) = [
        m
        for m in summarize(cues, [], decision=decision())["participants"][0]["key_moments"]
        if m["kind"] == "negative_cluster"
    ]
    assert (cluster["t"], cluster["end"], cluster["count"]) == (80.0, 105.0, 2)


def test_workplace_withholds_every_emotion_figure() -> None:
    body = summarize(meeting_cues(), PEOPLE, decision=decision("workplace"))
    assert body["policy"]["emotions_withheld"] is True and body["policy"]["overridden"] is False
    assert "Art. 5(1)(f)" in body["policy"]["statement"] and "No emotion figures" in body["policy"]["statement"]
    assert set(body["cue_counts"]) == {"engagement", "presence", "speaking"}
    for p in body["participants"]:
        assert p["sentiment_timeline"] is None and p["expressions"] is None and p["expression_events"] is None
        assert p["sentiment_mean"] is None
        assert all(m["kind"] != "negative_cluster" for m in p["key_moments"])
    # Engagement and talk time stay: they are not emotion inference.
    assert body["participants"][0]["talk_time_s"] == 45.0
    assert body["meeting"]["engagement_curve"] == [0.8, 0.7, 0.5, 0.6, 0.6, 0.2]


def test_unrestricted_override_is_stated() -> None:
    body = summarize(meeting_cues(), PEOPLE, decision=decision("education", "unrestricted"))
    assert body["policy"]["overridden"] is True and body["policy"]["emotions_withheld"] is False
    assert "MICROCUE_POLICY=unrestricted" in body["policy"]["statement"]
    assert body["participants"][1]["sentiment_timeline"] is not None


def test_empty_meeting() -> None:
    body = summarize([], [ParticipantInfo(id="p1")], decision=decision())
    assert body["duration_s"] == 0.0 and body["meeting"]["engagement_curve"] == []
    assert body["participants"][0]["engagement_mean"] is None
    assert body["meeting"]["most_engaging_minute"] is None
