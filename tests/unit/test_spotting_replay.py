"""The spotter-tuning loop (bench/spotting/replay.py): the settings it compares, how it splits recall."""

from __future__ import annotations

import math

import pytest

from bench.spotting.replay import parser, recall_by_noise, spotter_for, spotter_variants
from inference.spotting import Spotter
from inference.spotting_params import DEFAULT_PARAMS
from inference.verifier import CANDIDATE_FLOOR_UNITS, VerifiedSpotter

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


def test_variants_are_built_from_the_shipped_params() -> None:
    args = parser().parse_args(
        ["--floors", "9,11", "--ps", "0.1,0.2", "--single", "12", "--warmup", "2", "--occlusion-px", "5"]
    )
    variants = spotter_variants(args)
    assert [(v.noise_floor_units, v.threshold_p) for v in variants] == [
        (9.0, 0.1),
        (9.0, 0.2),
        (11.0, 0.1),
        (11.0, 0.2),
    ]
    for v in variants:
        # --single keeps its meaning: units a region alone needs where templates need the shipped floor
        assert v.single_region_weight == DEFAULT_PARAMS.noise_floor_units / 12.0
        assert (v.noise_warmup_s, v.region_occlusion_px) == (2.0, 5.0)
        assert v.min_noise_px == DEFAULT_PARAMS.min_noise_px
    (shipped,) = spotter_variants(parser().parse_args([]))
    assert shipped == DEFAULT_PARAMS


def test_the_candidate_floor_replays_the_two_stage_spotter() -> None:
    # --floors 4 is the analyzer's first stage: its macro and verified micro spots, not the raw candidates
    (two_stage,) = spotter_variants(parser().parse_args(["--floors", str(CANDIDATE_FLOOR_UNITS)]))
    assert isinstance(spotter_for(two_stage), VerifiedSpotter)
    shipped = spotter_for(DEFAULT_PARAMS)
    assert type(shipped) is Spotter and shipped.params == DEFAULT_PARAMS
