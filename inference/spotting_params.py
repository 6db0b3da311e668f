"""Every tunable value of the spotter (inference/spotting.py), in one frozen record.

A spotter reads its settings from the ``SpotterParams`` it was built with, never from module state,
so a bench can run several settings side by side on the same motion (``bench.spotting.replay``
builds them with ``dataclasses.replace(DEFAULT_PARAMS, ...)``) and nothing a test or a bench does
leaks into the next spotter. Each field says where its value comes from in one line: a paper, or
a run on the spotting benches' tune identities. How each value was chosen, with every figure, is
in docs/benchmarks.md, "Spotter parameters: how each value was chosen" ("the doc" below).
Definitions that are not choices (what counts as a micro-expression, the MAD-to-sigma factor) stay
module constants in inference/spotting.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SpotterParams:
    """The spotter's settings; times in media seconds, distances in canonical-face pixels (the
    112-px aligned face, ~35-px IOD), scores in matched-template noise units."""

    # --- windows ---
    # micro window k = (N-1)/2 frames for this N: CAS(ME)^2's micro mean is 0.4 s, the issue asked ~0.3 s; the doc
    micro_n_s: float = 0.3
    # macro windows' k: CAS(ME)^2 macro mean 35 frames at 30 fps -> 0.6 s; 1.2 s reaches ~2.4 s (docs/sources.md)
    macro_k_s: tuple[float, ...] = (0.6, 1.2)
    # longest expression followed (held expressions close here); set when written (f66917c), not swept
    max_event_s: float = 4.0

    # --- threshold ---
    # p of T = mean + p (max - mean); MEGC baselines tune 0.01-0.5; 0.1 chosen on the tune still faces, the doc
    threshold_p: float = 0.1
    # the recent history T and the noise scales are learnt over; set when written (f66917c), not swept
    threshold_window_s: float = 20.0
    # T's floor: lowest with <= 0.5 false micro a minute on tune talking faces; confidence fitted at it; the doc
    noise_floor_units: float = 10.0
    # weight of a region alone: it needs 14 units where templates need 10 (1.4x any floor); tune talkers, the doc
    single_region_weight: float = 10.0 / 14.0
    # noise scale floor: below it DIS flow noise and compression dominate (bench/spotting easy tier, still face)
    min_noise_px: float = 0.08

    # --- event shape ---
    # a region joins an event at this share of the largest region's score; set when written (f66917c)
    active_share: float = 0.5
    # onset/offset: within this share of the amplitude of the baseline; set when written (f66917c)
    boundary_share: float = 0.15
    # an offset may be a fall of this share of the rise that settles (a jaw drop left the chin ~1 px off), 1703057
    fall_min_share: float = 0.5
    # a peak's neighbours count as support above this share of T; set with the support rule (62e1726)
    support_share: float = 0.7
    # support span: 1/25 s (MICRO_MIN_S, Ekman & Friesen 1969) rounded up to whole samples at 60 fps
    min_support_s: float = 0.05
    # onset and offset walks end after this long without growth; set when written (1703057)
    settle_s: float = 0.2
    # a micro window's peak whose walked boundaries exceed MICRO_MAX_S gets them from its width at
    # half height (Spotter._half_width_bounds); on for the two-stage spotter's first stage only
    # (inference/verifier.py), whose verifier was trained with it; tune listeners, docs/benchmarks.md
    micro_half_width_bounds: bool = False

    # --- blinks ---
    # eye openness below this share of its median: EAR falls ~60 % in a blink (Soukupova & Cech 2016)
    blink_ear_ratio: float = 0.75
    # only windows centred within this many frames of a blink are gated (issue 11, the doc)
    blink_margin_frames: int = 1
    # the drop must also exceed this many robust sigmas of the person's open eye (narrow eyes, issue 11; the doc)
    blink_ear_sigmas: float = 4.0
    # or both upper lids down by this many noise units: no emotion prototype lowers both upper lids
    blink_noise_units: float = 3.0
    # ... and by this much: a blink lowers the lid ~0.1-0.15 IOD, 3.5-5 px (brow actions read as blinks; the doc)
    blink_min_px: float = 1.5

    # --- talking ---
    # jaw (lower lip + chin) excursion that may be talking; set with the jaw test (1703057), not swept
    talk_min_px: float = 0.8
    # jaw cycles that make talking; set with the jaw test (1703057), not swept
    talk_min_cycles: float = 2.0
    # jaw oscillation band: syllable rate 2-7 Hz (Ding et al. 2017)
    talk_band_hz: tuple[float, float] = (2.0, 7.0)
    # hysteresis of the cycle count, as a share of the jaw's range; set with the jaw test (1703057)
    talk_hysteresis_share: float = 0.25
    # window the jaw is read over; set when written (f66917c), not swept
    talk_window_s: float = 1.5
    # talking holds this long after the last cycle; set when written (f66917c), not swept
    talk_hold_s: float = 0.5
    # mouth-only events wait for the talk decision: two cycles at 2 Hz minus what the offset walk waited
    talk_decide_s: float = 0.7

    # --- head, light, occlusion ---
    # nose offset change (IOD) that vetoes a window: ~15 degrees of yaw; 0.06 hid every event on talkers; the doc
    head_turn_iod: float = 0.15
    # the same vertically, larger: lid and brow actions move the eye corners (0.16 IOD in a surprise); the doc
    head_nod_iod: float = 0.25
    # brightness jump between consecutive frames (share) that vetoes a window: a lamp, a blind; the doc
    light_jump: float = 0.15
    # residual motion per frame that leaves a region out: a hand ~10 px, an AU <= 2 px, talking <= 2.5; the doc
    region_occlusion_px: float = 3.0
    # outlier share of the head fit that leaves the whole face out (a hand over a mouth: 0.32-0.34); the doc
    occlusion_share: float = 0.5

    # --- warm-up ---
    # samples before the frame rate is measured rather than the hint; set when written (f66917c)
    min_samples_for_fps: int = 3
    # frame intervals the measured rate is the median of; set when written (f66917c)
    fps_window_samples: int = 30
    # samples before the jaw is read for talking; set when written (f66917c)
    min_samples_for_talk: int = 6
    # samples before a channel's noise scale is measured rather than the prior; set when written (f66917c)
    min_samples_for_noise: int = 10
    # noise scale before it is measured; set when written (f66917c), not swept
    prior_noise_px: float = 0.15
    # history a channel's noise must rest on before it speaks: 1.3 s chosen on the tune faces, the doc
    noise_warmup_s: float = 1.3
    # ... and at least this many of its own windows (the macro ones); set with the warm-up (62e1726)
    noise_warmup_windows: int = 6
    # samples between refreshes of the noise scales; set when written (1703057), not swept
    noise_refresh: int = 8

    @property
    def buffer_s(self) -> float:
        """The rolling buffer: the longest event plus the longest macro window on both sides."""
        return self.max_event_s + 2 * max(self.macro_k_s)

    @property
    def prior_scale_px(self) -> float:
        """The noise prior, never under the floor."""
        return max(self.min_noise_px, self.prior_noise_px)


DEFAULT_PARAMS = SpotterParams()
