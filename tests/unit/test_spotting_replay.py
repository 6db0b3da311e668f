"""The spotter-tuning loop (bench/spotting/replay.py): how it splits recall."""

from __future__ import annotations

import math

import pytest

from bench.spotting.replay import recall_by_noise

pytestmark = pytest.mark.unit


def test_recall_by_noise_bins_each_event_by_the_noise_before_its_onset() -> None:
    quiet = {"kind": "micro", "onset_frame": 3, "offset_frame": 6}
    busy = {"kind": "micro", "onset_frame": 11, "offset_frame": 14}
    macro = {"kind": "macro", "onset_frame": 1, "offset_frame": 15}
    noise = [math.nan, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    row = {
        "truth": {"events": [quiet, busy, macro]},
        "noise": noise,
        "predictions": [{"kind": "micro", "onset_frame": 3, "offset_frame": 6}],
    }
    assert recall_by_noise([row]) == {"0-0.24 px": "1/1", "0.24-0.38 px": "0/0", "0.38-inf px": "0/1"}
