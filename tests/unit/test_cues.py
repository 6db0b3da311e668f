from __future__ import annotations

import json
import math

import pytest

from inference.cues import Cue, CueError

pytestmark = pytest.mark.unit


def test_expression_cue_round_trips_through_json() -> None:
    cue = Cue(
        type="micro_expression",
        t=12.5,
        onset_s=12.3,
        apex_s=12.4,
        offset_s=12.6,
        emotion="contempt",
        valence=-0.6,
        aus=("AU12R", "AU14R"),
        confidence=0.7,
    )
    stamped = cue.stamped(meeting_id="m1", participant_id="p1", seq=3)
    back = Cue.from_dict(json.loads(json.dumps(stamped.to_dict())))
    assert back == stamped
    assert back.to_dict()["aus"] == ["AU12R", "AU14R"]


def test_to_dict_leaves_out_fields_that_do_not_apply() -> None:
    d = Cue(type="engagement", t=1.0, value=0.8).to_dict()
    assert set(d) == {"type", "t", "meeting_id", "participant_id", "seq", "value", "detail"}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"type": "gossip", "t": 0.0}, "type must be one of"),
        ({"type": "sentiment", "t": math.nan}, "t must be a finite number"),
        ({"type": "micro_expression", "t": 1.0}, "needs onset_s"),
        ({"type": "sentiment", "t": 1.0, "emotion": "boredom"}, "emotion must be one of"),
        ({"type": "sentiment", "t": 1.0, "colour": "red"}, "unknown cue fields"),
        ({"t": 1.0}, "at least 'type' and 't'"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_payloads_are_refused_with_the_field_named(payload: object, needle: str) -> None:
    with pytest.raises(CueError, match=needle):
        Cue.from_dict(payload)  # type: ignore[arg-type]
