"""Micro- and macro-expression spotting over a rolling buffer (training-free, MEGC-style).

The feature-difference method of the MEGC spotting baselines, on region trajectories:
each region's position P(t) is the running sum of its residual optical flow; the apex vector at
frame i is how far P(i) stands out from both P(i-k) and P(i+k) (an expression's apex), near zero
for steady drift. The feature is that vector read through matched templates, one per action unit
and one per EMFACS prototype, in units of each region's own noise per axis (learnt from this
face's recent motion), so regions moving together add up and the axes a talking face moves most
count for less. Peaks above an adaptive threshold T = mean + p (max - mean) become apexes; onset
and offset are where the trajectory leaves and returns to its baseline. Everything is indexed by
media time, so frame rates from 10 to 60 fps and dropped frames change nothing.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.motion import MotionSample
from inference.regions import BROW_MASK, EYELID_MASK, MOUTH_MASK, REGION_INDEX, REGIONS, TEMPLATES
from inference.spotting_params import DEFAULT_PARAMS, SpotterParams

_JAW = [REGION_INDEX["lip_lower"], REGION_INDEX["chin"]]
_UPPER_LIDS = [REGION_INDEX["lid_upper_R"], REGION_INDEX["lid_upper_L"]]

# Definitions, not tuning choices (the tunable values are inference/spotting_params.py):
# micro-expressions last 1/25 s to 1/2 s (Ekman & Friesen 1969; Yan et al. 2013, CASME); longer
# ones are macro-expressions. The spotting field (MEGC) uses the same 0.5 s cut. The one place
# that defines what a micro-expression is, for the spotter, its benches and its tests.
MICRO_MIN_S = 1.0 / 25.0
MICRO_MAX_S = 0.5
# 1.4826 x the median absolute deviation estimates a Gaussian's sigma (the MAD-consistent scale).
MAD_SIGMA = 1.4826
# The noise scale is MAD_SIGMA x the median of a 2-D displacement's length, which for isotropic
# Gaussian noise of sigma per axis is MAD_SIGMA x 1.1774 sigma (the Rayleigh median); the per-axis
# scales (sigma itself) get the noise floor divided by this factor.
RAYLEIGH_MAD = MAD_SIGMA * math.sqrt(2.0 * math.log(2.0))


def apex_vector(from_head: np.ndarray, from_tail: np.ndarray) -> np.ndarray:
    """(R, 2) the apex feature per axis: how far frame i stands out from BOTH the head and the tail
    frame k away. The plain feature difference P(i) - (P(h) + P(t)) / 2 also answers k frames
    before and after every expression (half height: the head or tail frame is the apex), which the
    larger macro window turned into false events beside true micro ones. So: where the head and
    tail differences have the same sign, the smaller of the two (frame i stands out from both by
    at least that much), zero where they differ. The smaller, not their mean: a window with the
    expression only in its tail frame would otherwise answer half its height."""
    same_way = from_head * from_tail > 0
    return np.where(same_way, np.sign(from_head) * np.minimum(np.abs(from_head), np.abs(from_tail)), 0.0)


def matched_scores(apex: np.ndarray, noise_xy: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matched-filter score of every template (inference/regions.py TEMPLATES) on the apex vector,
    in noise units, and each template's per-region share of it (J, R).

    With each region's noise taken per axis (sigma, learnt from this face) the score of direction
    d is sum(d x / sigma^2) / sqrt(sum(d^2 / sigma^2)): for Gaussian noise it is a unit normal
    where nothing happens, and an action moving several regions the way its AUs move them adds
    up over those regions, while motion along the axes this face moves most when talking counts
    for less. On the tune identities' talking faces (bench/spotting/meetings.py) this took the
    99th percentile of the feature away from events from 6.8 to 4.0 noise units while the
    injected micro-expressions' peaks rose from 2.4 to 3.3 (median, 0.03 IOD); the per-region
    maximum it replaces had one detection in ten at that false-alarm rate.
    Gated regions (``mask`` 0) drop out of every template.
    """
    inv = mask[None, :, None] / (noise_xy[None] ** 2)  # (1, R, 2)
    weighted = TEMPLATES * inv  # (J, R, 2)
    per_region = (weighted * apex[None]).sum(axis=2)  # (J, R)
    norm = np.sqrt((weighted * TEMPLATES).sum(axis=(1, 2)))  # (J,)
    ok = norm > 0
    scale = np.where(ok, 1.0 / np.where(ok, norm, 1.0), 0.0)
    per_region = per_region * scale[:, None]
    return per_region.sum(axis=1), per_region


def linear_trend(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares line through (x, y), evaluated at x: ``np.polyval(np.polyfit(x, y, 1), x)``
    in closed form (a mean and two dot products instead of an SVD; it runs every frame)."""
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    var = float(dx @ dx)
    slope = float(dx @ (y - ym)) / var if var > 0 else 0.0
    return np.asarray(ym + slope * dx)


def oscillation_hz(t: np.ndarray, x: np.ndarray, band: float, min_cycles: float) -> float:
    """Full cycles per second of ``x`` around zero, with a hysteresis ``band`` against noise;
    0 when there are fewer than ``min_cycles`` cycles."""
    state = 0
    crossings = 0
    for v in x:
        s = 1 if v > band else (-1 if v < -band else 0)
        if s and s != state:
            crossings += state != 0
            state = s
    cycles = crossings / 2.0
    if cycles < min_cycles:
        return 0.0
    return cycles / max(float(t[-1] - t[0]), 1e-3)


def _near_centre(lo: int, mid: int, hi: int, margin: int) -> tuple[int, int]:
    """First and last sample index within ``margin`` frames of a window's centre, inside it: the
    frames a blink must touch to matter to that window (both blink tests read this span). Only the
    centre matters: the apex feature is the smaller of the centre's distances to the head and the
    tail frame (apex_vector), so a blink that covers the head or the tail but not the centre adds
    nothing."""
    return max(lo, mid - margin), min(hi, mid + margin)


def micro_k_s(fps: float, n_s: float) -> float:
    """k = (N - 1) / 2 frames at the current rate for an expression ``n_s`` long (N frames), at
    least one frame, as seconds."""
    n = n_s * fps
    return max(1.0, round((n - 1.0) / 2.0)) / fps


@dataclass(frozen=True, slots=True)
class Spot:
    """A spotted expression interval; times are media seconds."""

    kind: str  # "micro" | "macro"
    onset_t: float
    apex_t: float
    offset_t: float
    strength: float  # peak feature over threshold (>= 1)
    regions: tuple[str, ...]
    displacement: np.ndarray = field(repr=False)  # (R, 2) apex minus onset position, canonical px
    onset_crop: np.ndarray = field(repr=False)
    apex_crop: np.ndarray = field(repr=False)
    # The face's motion noise when the event closed (mean over regions of the micro window's noise
    # scale, canonical px): signals on a face that moves a lot (talking) are less often true events,
    # which the confidence calibration (inference/expressions.py) takes into account.
    noise_px: float = 0.0
    # The second stage's chance that this is a true action (inference/verifier.py), None when no
    # verifier judged it; the confidence then comes from strength and noise (inference/expressions.py).
    verified: float | None = None
    # The peak feature in matched-template noise units (strength is this over the threshold).
    peak_units: float = 0.0

    @property
    def duration(self) -> float:
        return self.offset_t - self.onset_t


GATES = ("blink", "talk", "head", "light", "occlusion")
# A gate on for more than this share of the time is worth a warning: the spotter is then blind
# to the regions it covers for most of the video (issue 11; `microcue analyze` prints it).
GATE_WARN_SHARE = 0.30


@dataclass(frozen=True, slots=True)
class SpotterStats:
    """Why a spotter is silent: per gate and region the share of analysed time the gate took the
    region out, and each region's noise level (canonical px over the micro window)."""

    windows: int
    gated: dict[str, dict[str, float]]
    noise: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        """The ``spotting`` block of ``analyze`` JSON and of the live worker stats."""
        return {"windows": self.windows, "gated": self.gated, "noise": self.noise}

    def warnings(self, limit: float = GATE_WARN_SHARE) -> list[str]:
        """One sentence per gate that was on for more than ``limit`` of the time in some region."""
        out = []
        for gate, per_region in self.gated.items():
            worst = sorted(((v, r) for r, v in per_region.items() if v > limit), reverse=True)
            if worst:
                names = ", ".join(r for _, r in worst[:4]) + (" ..." if len(worst) > 4 else "")  # noqa: PLR2004
                out.append(
                    f"the {gate} gate hid {100 * worst[0][0]:.0f} % of the time from {names}: "
                    f"expressions there could not be spotted"
                )
        return out

    def worst_gate(self) -> tuple[str, float]:
        """The gate with the largest share on any region, and that share."""
        best = ("", 0.0)
        for gate, per_region in self.gated.items():
            share = max(per_region.values(), default=0.0)
            if share > best[1]:
                best = (gate, share)
        return best


@dataclass
class _Channel:
    k_s: float
    max_rise_s: float
    history: deque[tuple[float, float, np.ndarray]] = field(default_factory=deque)  # t, S, z
    fd_history: deque[np.ndarray] = field(default_factory=deque)  # (R, 2) |displacement| per axis
    noise: np.ndarray | None = None  # (R,) scale of the displacement's length (stats, blink test)
    noise_xy: np.ndarray | None = None  # (R, 2) scale per axis (the matched feature)


@dataclass
class _Pending:
    apex_idx_t: float
    onset_t: float
    strength: float
    active: np.ndarray
    amplitude: float
    apex_pos: np.ndarray
    peak_units: float = 0.0
    micro_window: bool = False  # found by the micro window (channel 0)


class Spotter:
    """Streaming spotter for one face. ``push`` returns the events whose offset it just saw.
    ``params``: every tunable value (inference/spotting_params.py); ``fps_hint``: the rate to assume
    until the stream's own is measured."""

    def __init__(self, params: SpotterParams = DEFAULT_PARAMS, *, fps_hint: float = 15.0) -> None:
        self.params = params
        self.fps_hint = fps_hint
        self.reset()

    def reset(self) -> None:
        self.samples: list[MotionSample] = []
        self.positions: list[np.ndarray] = []
        # the jaw's vertical position (lower lip + chin) of each position, for the talk detector
        self._jaw: list[float] = []
        self.segments: list[int] = []
        self._times: list[float] = []
        self._ear_median = 0.0
        self._ear_blink = 0.0
        self._fps = self.fps_hint
        self._segment = 0
        self._channels = [_Channel(micro_k_s(self.fps_hint, self.params.micro_n_s), MICRO_MAX_S)] + [
            _Channel(k, self.params.max_event_s / 2) for k in self.params.macro_k_s
        ]
        self._pending: list[_Pending] = []
        self._emitted: deque[tuple[float, float]] = deque(maxlen=32)
        self._talk_until = -math.inf
        self.talk_intervals: deque[list[float]] = deque(maxlen=64)
        self.blink_intervals: deque[tuple[float, float]] = deque(maxlen=64)
        self.suppressed = {"blink": 0, "talk": 0, "head": 0, "light": 0, "occlusion": 0}
        # Per gate, per region: analysed windows in which the gate took that region out (micro
        # channel only, so each analysed frame counts once); see ``stats``.
        self._gated = {gate: np.zeros(len(REGIONS)) for gate in GATES}
        self._windows = 0

    # --- buffer --------------------------------------------------------------------------
    def _append(self, s: MotionSample) -> None:
        if not s.chained or not self.positions:
            self._segment += 1
            pos = self.positions[-1] if self.positions else np.zeros((len(REGIONS), 2), np.float32)
        else:
            pos = self.positions[-1] + s.flow
        self.samples.append(s)
        self.positions.append(pos)
        self._jaw.append(float(pos[_JAW[0], 1] + pos[_JAW[1], 1]))
        self.segments.append(self._segment)
        self._times.append(s.t)
        cut = bisect.bisect_left(self._times, s.t - self.params.buffer_s)
        if cut:
            del self.samples[:cut], self.positions[:cut], self._jaw[:cut], self.segments[:cut], self._times[:cut]
        ears = np.fromiter((x.eye_openness for x in self.samples), float, len(self.samples))
        self._ear_median = float(np.median(ears))
        spread = MAD_SIGMA * float(np.median(np.abs(ears - self._ear_median)))
        self._ear_blink = self._ear_median - max(
            (1.0 - self.params.blink_ear_ratio) * self._ear_median, self.params.blink_ear_sigmas * spread
        )
        self._measure_fps()

    def _index_at(self, t: float) -> int:
        """Index of the sample nearest to media time ``t``."""
        times = self._times
        i = bisect.bisect_left(times, t)
        if i >= len(times):
            return len(times) - 1
        if i > 0 and abs(times[i - 1] - t) <= abs(times[i] - t):
            return i - 1
        return i

    def fps(self) -> float:
        """Measured analysis rate (median frame interval of the last ``fps_window_samples``)."""
        if len(self.samples) < self.params.min_samples_for_fps:
            return self.fps_hint
        return self._fps

    def _measure_fps(self) -> None:
        if len(self._times) >= self.params.min_samples_for_fps:
            self._fps = float(1.0 / max(np.median(np.diff(self._times[-self.params.fps_window_samples :])), 1e-3))

    # --- distractors ---------------------------------------------------------------------
    def _talking(self, now: float) -> bool:
        """Rhythmic jaw motion: the lower lip and chin go down and up at syllable rate.

        Read from the same region trajectories the spotter uses (the inner-lip landmarks alone
        missed most of the bench's talking), detrended over the window; two full cycles at
        2-7 Hz with enough amplitude make it talking, held for ``talk_hold_s`` after.
        """
        prm = self.params
        lo = bisect.bisect_left(self._times, now - prm.talk_window_s)
        if len(self._times) - lo < prm.min_samples_for_talk or self.segments[lo] != self.segments[-1]:
            return now <= self._talk_until
        t = np.asarray(self._times[lo:])
        jaw = np.asarray(self._jaw[lo:])
        jaw = jaw - linear_trend(t - t[0], jaw)
        if np.ptp(jaw) >= prm.talk_min_px:
            rate = oscillation_hz(t, jaw, prm.talk_hysteresis_share * np.ptp(jaw), prm.talk_min_cycles)
            if prm.talk_band_hz[0] <= rate <= prm.talk_band_hz[1]:
                if now > self._talk_until:
                    self.talk_intervals.append([t[0], now + prm.talk_hold_s])
                else:
                    self.talk_intervals[-1][1] = now + prm.talk_hold_s
                self._talk_until = now + prm.talk_hold_s
        return now <= self._talk_until

    def _blink_overlaps(self, start: float, end: float) -> bool:
        return any(a <= end and start <= b for a, b in self.blink_intervals)

    def _talk_overlaps(self, start: float, end: float) -> bool:
        return any(a <= end and start <= b for a, b in self.talk_intervals)

    def _gate(self, name: str, regions: np.ndarray, mask: np.ndarray, record: bool) -> None:
        """Take ``regions`` (bool, R) out of this window for gate ``name`` and count it."""
        fresh = regions & (mask > 0)
        if not fresh.any():
            return
        mask[fresh] = 0.0
        self.suppressed[name] += 1
        if record:
            self._gated[name][fresh] += 1.0

    def _mask(self, lo: int, mid: int, hi: int, talking: bool, record: bool) -> np.ndarray | None:
        """Region weights for the window [lo, hi] centred on ``mid``; None when no region is usable.
        ``record``: count what each gate took out (once per analysed frame).

        Head: the nose tip sits ~0.6 IOD in front of the eye plane, so its offset from the
        eye-corner midpoint tracks yaw and pitch; the affine head fit removes the foreshortening of
        small turns, so only a larger change makes the window unusable. Light: crops are normalised
        in mean and contrast before the flow, so only an abrupt change between consecutive frames
        (a lamp, a blind) matters. Occlusion: a region moving faster than any action unit or talk
        (a hand, hair) is left out, and only that region, so a hand over the mouth does not blind
        the brows; the whole face only when most of it moves on its own.
        """
        prm = self.params
        win = self.samples[lo : hi + 1]
        mask = np.ones(len(REGIONS))
        everything = np.ones(len(REGIONS), bool)
        turn = [s.turn for s in win]
        nod = [s.nod for s in win]
        if max(turn) - min(turn) > prm.head_turn_iod or max(nod) - min(nod) > prm.head_nod_iod:
            self._gate("head", everything, mask, record)
        if max(s.outliers for s in win) > prm.occlusion_share:
            self._gate("occlusion", everything, mask, record)
        else:
            moving = [s.region_motion for s in win[1:] if s.region_motion is not None]
            if moving:
                self._gate("occlusion", np.max(moving, axis=0) > prm.region_occlusion_px, mask, record)
        light = np.array([s.brightness for s in win])
        if len(light) > 1 and (np.abs(np.diff(light)) > prm.light_jump * np.maximum(light[:-1], 1.0)).any():
            self._gate("light", everything, mask, record)
        first, last = _near_centre(lo, mid, hi, prm.blink_margin_frames)
        if min(s.eye_openness for s in self.samples[first : last + 1]) < self._ear_blink:
            self._gate("blink", EYELID_MASK, mask, record)
        if talking:
            self._gate("talk", MOUTH_MASK, mask, record)
        return mask if mask.any() else None

    # --- feature and threshold -----------------------------------------------------------
    def _noise(self, ch: _Channel) -> tuple[np.ndarray, np.ndarray]:
        """Each region's noise scale for this window length (1.4826 x median: the MAD-consistent
        scale): of the displacement's length (R,) and per axis (R, 2). Per channel, because summed
        flow noise grows with the window (a random walk), so a 1.2 s window is noisier than a
        0.13 s one; per person, because it is learnt from this face's own recent motion (talking
        moves the brows and lips up and down far more than sideways); refreshed every
        ``noise_refresh`` samples."""
        prm = self.params
        if len(ch.fd_history) < prm.min_samples_for_noise:
            prior = prm.prior_scale_px
            return np.full(len(REGIONS), prior), np.full((len(REGIONS), 2), prior / RAYLEIGH_MAD)
        if ch.noise is None or ch.noise_xy is None or len(self.samples) % prm.noise_refresh == 0:
            arr = np.stack(ch.fd_history)
            ch.noise = np.maximum(
                np.median(np.hypot(arr[..., 0], arr[..., 1]), axis=0) * MAD_SIGMA + 1e-6, prm.min_noise_px
            )
            ch.noise_xy = np.maximum(np.median(arr, axis=0) * MAD_SIGMA + 1e-6, prm.min_noise_px / RAYLEIGH_MAD)
        return ch.noise, ch.noise_xy

    def _feature(self, ch: _Channel, now: float, talking: bool) -> tuple[float, float, np.ndarray] | None:
        prm = self.params
        i = self._index_at(now - ch.k_s)
        h = self._index_at(self.samples[i].t - ch.k_s)
        tail = len(self.samples) - 1
        if not (h < i < tail) or self.segments[h] != self.segments[tail]:
            return None
        p = self.positions
        from_head = p[i] - p[h]
        apex = apex_vector(from_head, p[i] - p[tail])
        # Noise scale from the plain displacement over the window: the apex feature itself is 0
        # whenever head and tail differences point different ways (half of all noise samples),
        # so its median would understate the noise several times over.
        ch.fd_history.append(np.abs(from_head))
        while len(ch.fd_history) > prm.threshold_window_s * self.fps():
            ch.fd_history.popleft()
        record = ch is self._channels[0]
        if record:
            self._windows += 1
        mask = self._mask(h, i, tail, talking, record)
        if mask is None:
            return self.samples[i].t, 0.0, np.zeros(len(REGIONS))
        noise, noise_xy = self._noise(ch)
        lids = (p[i] - p[h])[_UPPER_LIDS, 1]
        t_i = self.samples[i].t
        # both upper lids down together, by noise units and by pixels: a blink (see blink_noise_units)
        if (lids > np.maximum(prm.blink_noise_units * noise[_UPPER_LIDS], prm.blink_min_px)).all():
            # the lids are down at i, so the blink spans i; within the micro window of it, whichever
            # channel saw it (the macro windows' k was the blink's reach before: +-2.4 s per blink)
            k = self._channels[0].k_s
            self.blink_intervals.append((t_i - k, t_i + k))
        first, last = _near_centre(h, i, tail, prm.blink_margin_frames)
        if self._blink_overlaps(self.samples[first].t, self.samples[last].t):
            self._gate("blink", EYELID_MASK | BROW_MASK, mask, record)
        scores, z = matched_scores(apex, noise_xy, mask)
        best = int(np.argmax(scores))
        # The templates are bilateral (but contempt's), so a one-sided movement of one region reads
        # at 1/sqrt(2) of its size in them: each region alone is a candidate too, weighed down so
        # that it needs more units than a template to reach the floor (single regions are many more
        # chances for noise to peak than templates).
        single = np.hypot(*(apex / noise_xy).T) * mask * prm.single_region_weight
        if single.max() > scores[best]:
            return self.samples[i].t, float(single.max()), np.where(single == single.max(), single, 0.0)
        return self.samples[i].t, float(scores[best]), z[best]

    def _threshold(self, ch: _Channel) -> float:
        """T = mean + p (max - mean) over the recent window, never below the noise floor: the
        adaptive part alone fires on noise in a quiet stretch (max ~ mean)."""
        values = np.array([v for _, v, _ in ch.history])
        adaptive = float(values.mean() + self.params.threshold_p * (values.max() - values.mean()))
        return max(adaptive, self.params.noise_floor_units)

    # --- events --------------------------------------------------------------------------
    def _onset(self, apex: int, active: np.ndarray, max_rise_s: float) -> tuple[int, float]:
        """Walk back from the apex while the distance from it keeps growing; the onset is the
        first sample (from the apex) within ``boundary_share`` of where that growth settled.

        Taking the maximum over the whole rise window instead let slow drift and noise keep
        "rising" past the true onset, which made micro-expressions look longer than 0.5 s.
        """
        boundary = self.params.boundary_share
        p = self.positions
        t_apex = self.samples[apex].t
        settle = max(2, round(self.params.settle_s * self.fps()))
        dists: list[float] = []
        best, still = 0.0, 0
        j = apex
        while j > 0 and t_apex - self.samples[j - 1].t <= max_rise_s and self.segments[j - 1] == self.segments[apex]:
            j -= 1
            d = float(np.linalg.norm(p[apex][active] - p[j][active], axis=1).sum())
            dists.append(d)
            if d > best * (1.0 + boundary):
                best, still = d, 0
            else:
                still += 1
                if still >= settle:
                    break
        if not dists or best <= 0:
            return apex, 0.0
        first = next(n for n, d in enumerate(dists) if d >= (1.0 - boundary) * best)
        return apex - 1 - first, best

    def _find_peaks(self, ch: _Channel) -> None:
        prm = self.params
        hist = ch.history
        m = max(1, round(ch.k_s * self.fps() / 2))  # local-max half-width
        if len(hist) < 2 * m + 1:
            return
        j = len(hist) - 1 - m
        t_j, s_j, z_j = hist[j]
        neighbours = [hist[x][1] for x in range(j - m, j + m + 1) if x != j]
        if s_j < prm.noise_floor_units or s_j < max(neighbours):
            return  # cheap checks first: the adaptive threshold is never below the floor
        threshold = self._threshold(ch)
        if s_j < threshold:
            return
        if t_j - ch.history[0][0] < max(prm.noise_warmup_s, prm.noise_warmup_windows * ch.k_s):
            # the noise scale of this window is not known yet: summed flow over a long window changes
            # slowly, so its median needs several windows' worth of samples to mean anything
            return
        # At high frame rates a real expression keeps the feature up for several samples (even the
        # shortest, 1/25 s, spans 2-3 at 60 fps); a lone noise spike does not.
        support = 1 + sum(v >= prm.support_share * threshold for v in neighbours)
        if support < max(1, round(prm.min_support_s * self.fps())):
            return
        apex = self._index_at(t_j)
        active = z_j >= prm.active_share * z_j.max()
        onset, amplitude = self._onset(apex, active, ch.max_rise_s)
        if amplitude <= 0:
            return
        t_on = self.samples[onset].t
        if any(t_on <= e_off and t_j >= e_on for e_on, e_off in self._emitted):
            return
        if any(abs(pe.apex_idx_t - t_j) < MICRO_MAX_S for pe in self._pending):
            return
        self._pending.append(
            _Pending(
                t_j,
                t_on,
                s_j / self._threshold(ch),
                active,
                amplitude,
                self.positions[apex].copy(),
                s_j,
                ch is self._channels[0],
            )
        )

    def _offset(self, apex: int, pe: _Pending) -> int | None:
        """Where the trajectory, falling back from the apex, is back at baseline or has settled.

        Returning all the way is the textbook offset, but flow summed over a large movement does
        not come back exactly (a jaw drop left the chin ~1 px off on the bench), so a fall of at
        least ``fall_min_share`` of the rise that then stops for ``settle_s`` also ends the event.
        """
        boundary = self.params.boundary_share
        settle = max(2, round(self.params.settle_s * self.fps()))
        best, still = 0.0, 0
        backs: list[float] = []
        for j in range(apex + 1, len(self.samples)):
            if self.segments[j] != self.segments[apex]:
                return j - 1
            back = float(np.linalg.norm(self.positions[j][pe.active] - pe.apex_pos[pe.active], axis=1).sum())
            backs.append(back)
            if back >= (1.0 - boundary) * pe.amplitude:
                return j
            if back > best * (1.0 + boundary):
                best, still = back, 0
            else:
                still += 1
            if best >= self.params.fall_min_share * pe.amplitude and still >= settle:
                # the first sample within the boundary share of where the fall settled
                first = next(n for n, b in enumerate(backs) if b >= (1.0 - boundary) * best)
                return apex + 1 + first
        return None

    def _half_width_bounds(self, apex: int, pe: _Pending) -> tuple[int, int] | None:
        """Onset and offset from the width at half height, for a micro window's peak whose walked
        boundaries came out longer than a micro-expression: on a moving head the trajectory drifts
        on after a small action, so it never comes back to the baseline band and the offset walk
        runs on (tune listeners: 5 of 8 missed 0.02-IOD actions were found by the micro window and
        then closed as 0.6-1.5 s macro events). A smooth rise and fall spans about twice its width
        at half height (a raised cosine exactly), so the event is twice the time from the apex to
        each half-height crossing (interpolated between samples), or to the one crossing found
        within MICRO_MAX_S of the apex on both sides; None where neither side crosses."""
        p, act, seg = self.positions, pe.active, self.segments[apex]
        half = 0.5 * pe.amplitude
        t_apex = self.samples[apex].t

        def crossing(step: int) -> float | None:
            """Seconds from the apex to where the distance from it first reaches ``half``."""
            j, before = apex, 0.0
            while 0 <= j + step < len(self.samples):
                j += step
                dt = abs(self.samples[j].t - t_apex)
                if self.segments[j] != seg or dt > MICRO_MAX_S:
                    return None
                d = float(np.linalg.norm(p[j][act] - pe.apex_pos[act], axis=1).sum())
                if d >= half:
                    prev_dt = abs(self.samples[j - step].t - t_apex)
                    return prev_dt + (dt - prev_dt) * (half - before) / max(d - before, 1e-9)
                before = d
            return None

        back, ahead = crossing(-1), crossing(1)
        if back is None and ahead is None:
            return None
        back = back if back is not None else ahead
        ahead = ahead if ahead is not None else back
        assert back is not None and ahead is not None
        onset, offset = self._index_at(t_apex - 2 * back), self._index_at(t_apex + 2 * ahead)
        while self.segments[onset] != seg:
            onset += 1
        while self.segments[offset] != seg:
            offset -= 1
        return onset, offset

    def _is_blink(self, active: np.ndarray, displacement: np.ndarray) -> bool:
        """Only eyelids (and brows, which follow them) moved, and both upper lids went down."""
        if not active[EYELID_MASK].any() or active[~(EYELID_MASK | BROW_MASK)].any():
            return False
        lids = displacement[[REGION_INDEX["lid_upper_R"], REGION_INDEX["lid_upper_L"]], 1]
        return bool((lids > 0).all())

    def _close(self, pe: _Pending, now: float) -> tuple[bool, Spot | None]:
        """(finished, spot): the offset is the first sample after the apex back within the
        baseline band; a finished candidate may still be rejected as a distractor (spot None)."""
        prm = self.params
        apex = self._index_at(pe.apex_idx_t)
        offset = self._offset(apex, pe)
        if offset is None:
            if now - pe.onset_t < prm.max_event_s:
                return False, None
            offset = len(self.samples) - 1
        onset = self._index_at(pe.onset_t)
        samples = self.samples
        if (
            prm.micro_half_width_bounds
            and pe.micro_window
            and samples[offset].t - samples[onset].t > MICRO_MAX_S
            and (bounds := self._half_width_bounds(apex, pe)) is not None
        ):
            onset, offset = bounds
        displacement = (self.positions[apex] - self.positions[onset]).copy()
        if self._is_blink(pe.active, displacement):
            self.suppressed["blink"] += 1
            return True, None
        mouth_only = not pe.active[~MOUTH_MASK].any()
        if mouth_only and now < samples[offset].t + prm.talk_decide_s:
            return False, None  # talking is only recognised after two jaw cycles: wait for it
        if mouth_only and self._talk_overlaps(samples[onset].t - prm.talk_hold_s, samples[offset].t + prm.talk_hold_s):
            self.suppressed["talk"] += 1
            return True, None
        lids_only = not pe.active[~(EYELID_MASK | BROW_MASK)].any()
        if lids_only and self._blink_overlaps(samples[onset].t, samples[offset].t):
            self.suppressed["blink"] += 1
            return True, None
        kind = "micro" if samples[offset].t - samples[onset].t <= MICRO_MAX_S else "macro"
        self._emitted.append((samples[onset].t, samples[offset].t))
        return True, Spot(
            kind=kind,
            onset_t=samples[onset].t,
            apex_t=samples[apex].t,
            offset_t=samples[offset].t,
            strength=pe.strength,
            regions=tuple(r.name for r, a in zip(REGIONS, pe.active, strict=True) if a),
            displacement=displacement,
            onset_crop=samples[onset].fer_crop,
            apex_crop=samples[apex].fer_crop,
            noise_px=self.noise_px,
            peak_units=pe.peak_units,
        )

    def push(self, sample: MotionSample) -> list[Spot]:
        if self.samples and sample.t <= self.samples[-1].t:
            return []  # a repeated or out-of-order timestamp carries no motion
        self._append(sample)
        now = sample.t
        talking = self._talking(now)
        self._channels[0].k_s = micro_k_s(self.fps(), self.params.micro_n_s)
        for ch in self._channels:
            feat = self._feature(ch, now, talking)
            if feat is None:
                continue
            ch.history.append(feat)
            while ch.history and now - ch.history[0][0] > self.params.threshold_window_s:
                ch.history.popleft()
            self._find_peaks(ch)
        out = []
        for pe in list(self._pending):
            finished, spot = self._close(pe, now)
            if finished or self._index_at(pe.onset_t) == 0:
                self._pending.remove(pe)
            if spot is not None:
                out.append(spot)
        return out

    def stats(self) -> SpotterStats:
        """Gate shares and noise levels since the last reset (see SpotterStats)."""
        n = max(self._windows, 1)
        names = [r.name for r in REGIONS]
        noise = self._channels[0].noise
        return SpotterStats(
            windows=self._windows,
            gated={
                g: {r: round(float(v) / n, 4) for r, v in zip(names, c, strict=True)} for g, c in self._gated.items()
            },
            noise={r: round(float(v), 4) for r, v in zip(names, noise, strict=True)} if noise is not None else {},
        )

    @property
    def noise_px(self) -> float:
        """The face's motion noise now: the micro window's noise scale, mean over regions, canonical
        px (as last refreshed: reading it must not refresh it, or reporting an event would change
        what is spotted next)."""
        noise = self._channels[0].noise
        return float(np.mean(noise)) if noise is not None else self.params.prior_scale_px

    @property
    def times(self) -> Sequence[float]:
        """Media time of each sample in the buffer (``samples[i].t``), sorted, for bisecting."""
        return self._times

    @property
    def ear_median(self) -> float:
        """Median eye openness over the buffer, as of the last push (the blink test's reference)."""
        return self._ear_median

    @property
    def talking(self) -> bool:
        return self.samples[-1].t <= self._talk_until if self.samples else False
