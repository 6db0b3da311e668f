"""Issue 22's talking-face macro row in the meetings bench (bench/spotting/meetings.py): which
events it counts, and that drawing more macro-expressions leaves the default draws alone."""

from __future__ import annotations

from typing import Any

import pytest

from bench.spotting.meetings import MACRO_SHARE, MACRO_TARGET_IOD, macro_row, make_meeting
from bench.spotting.sources import CLIPS

pytestmark = pytest.mark.unit


def _event(kind: str, on: int, off: int, amp: float = 0.0) -> dict[str, Any]:
    return {"kind": kind, "onset_frame": on, "apex_frame": (on + off) // 2, "offset_frame": off, "amplitude_iod": amp}


def test_macro_row_counts_recall_over_large_macros_and_precision_over_all_macro_predictions() -> None:
    small, missed, large = (
        _event("macro", 10, 40, 0.04),
        _event("macro", 100, 130, 0.06),
        _event("macro", 200, 240, 0.08),
    )
    row = {
        "truth": {"events": [small, missed, large, _event("micro", 300, 305, 0.03)]},
        "predictions": [
            _event("macro", 12, 40),  # the small one: a true macro prediction, outside the recall count
            _event("macro", 205, 240),  # the large one
            _event("macro", 400, 440),  # nothing there
            _event("micro", 300, 305),  # micro predictions are not the row's
        ],
    }
    assert macro_row([row]) == {
        "recall": 0.5,
        "found": 1,
        "events": 2,
        "precision": round(2 / 3, 3),
        "true": 2,
        "predicted": 3,
    }
    assert small["amplitude_iod"] < MACRO_TARGET_IOD <= missed["amplitude_iod"]


def test_macro_share_draws_more_macros_and_the_default_is_unchanged() -> None:
    clip = next(c for c in CLIPS if c.role == "tune")
    default = make_meeting(clip, 60.0, 1234)
    assert make_meeting(clip, 60.0, 1234, macro_share=MACRO_SHARE).actions == default.actions
    assert {a.kind for a in default.actions} == {"micro", "macro"}
    every = make_meeting(clip, 60.0, 1234, macro_share=1.0)
    assert every.actions and {a.kind for a in every.actions} == {"macro"}
    assert all(0.6 <= a.offset - a.onset <= 3.0 for a in every.actions)
    # the encoding and the first event's start come from the same draws
    assert every.condition == default.condition and every.actions[0].onset == default.actions[0].onset
    assert {a.kind for a in make_meeting(clip, 60.0, 1234, macro_share=0.0).actions} == {"micro"}
