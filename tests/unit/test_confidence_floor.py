"""The confidence floor (MICROCUE_MIN_CONFIDENCE): hidden everywhere a presenter looks, and counted."""

from __future__ import annotations

import pytest

from bridge import policy
from bridge.confidence import DEFAULT_MIN_CONFIDENCE, below_floor, split_shown
from bridge.config import Settings
from bridge.insights.reports.meeting_report import activity_chart
from bridge.insights.summary import ParticipantInfo, summarize
from inference.cues import Cue

pytestmark = pytest.mark.unit


def _expr(t: float, confidence: float | None, emotion: str = "anger") -> Cue:
    return Cue(
        type="micro_expression",
        t=t,
        meeting_id="m",
        participant_id="p1",
        onset_s=t - 0.3,
        apex_s=t - 0.1,
        offset_s=t,
        emotion=emotion,
        confidence=confidence,
    )  # type: ignore[arg-type]


def test_only_expression_signals_under_the_floor_are_hidden() -> None:
    assert below_floor("micro_expression", 0.2, 0.3)
    assert not below_floor("micro_expression", 0.3, 0.3)
    assert below_floor("macro_expression", None, 0.3)  # an unknown confidence is not shown under a floor
    assert not below_floor("engagement", 0.0, 0.3)
    assert not below_floor("micro_expression", 0.01, 0.0)  # floor 0: everything shown
    shown, hidden = split_shown([_expr(1, 0.1), _expr(2, 0.9)], 0.3)
    assert [c.t for c in shown] == [2] and hidden == 1


def test_the_setting_defaults_to_the_documented_floor_and_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().min_confidence == DEFAULT_MIN_CONFIDENCE
    monkeypatch.setenv("MICROCUE_MIN_CONFIDENCE", "0.55")
    assert Settings().min_confidence == 0.55
    monkeypatch.setenv("MICROCUE_MIN_CONFIDENCE", "1.5")
    with pytest.raises(ValueError, match="min_confidence"):
        Settings()


def test_reports_leave_low_confidence_signals_out_and_say_how_many() -> None:
    cues = [
        Cue(type="presence", t=0.0, value=1.0, meeting_id="m", participant_id="p1"),
        _expr(5.0, 0.07),
        _expr(9.0, 0.18, "sadness"),
        _expr(12.0, 0.8, "happiness"),
        Cue(type="presence", t=20.0, value=0.0, meeting_id="m", participant_id="p1"),
    ]
    decision = policy.decide("customer", Settings())
    body = summarize(cues, [ParticipantInfo(id="p1", display_name="A")], decision=decision, min_confidence=0.3)
    events = body["participants"][0]["expression_events"]
    assert [e["emotion"] for e in events] == ["happiness"]
    assert body["hidden_low_confidence"] == 2 and body["min_confidence"] == 0.3
    assert body["participants"][0]["expressions"]["micro"]["anger"] == 0


def test_an_unclear_signal_names_no_emotion_and_the_report_still_draws() -> None:

    cues = [
        Cue(type="presence", t=0.0, value=1.0, meeting_id="m", participant_id="p1"),
        _expr(5.0, 0.6, emotion=None),  # type: ignore[arg-type]
        Cue(type="presence", t=20.0, value=0.0, meeting_id="m", participant_id="p1"),
    ]
    body = summarize(
        cues,
        [ParticipantInfo(id="p1", display_name="A")],
        decision=policy.decide("customer", Settings()),
        min_confidence=0.3,
    )
    events = body["participants"][0]["expression_events"]
    assert [e["emotion"] for e in events] == [None]
    assert activity_chart(body["participants"], body["duration_s"], True)
