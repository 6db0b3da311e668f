"""When a participant talks (inference/speech.py), the voice stream's settled horizon, the batched
VAD of recordings, and what an analyzer does with it: the flag on each expression, the wait, the
cue's detail, the confidence input; and the talk figures of the summary."""

from __future__ import annotations

import itertools
from dataclasses import replace
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from bench.spotting.fit_speaking import adjusted, fit_odds_ratio
from bridge import policy
from bridge.confidence import DEFAULT_MIN_CONFIDENCE, split_shown
from bridge.config import Settings
from bridge.insights.summary import ParticipantInfo, summarize
from bridge.media.voice import RTP_WRAP, _SenderClock
from inference import expressions
from inference.analyzer import SPEECH_WAIT_S, WHILE_TALKING, FaceModels, ParticipantAnalyzer
from inference.cues import Cue
from inference.expressions import calibrated, classify
from inference.landmarks import FaceMesh
from inference.regions import REGIONS
from inference.speech import MAX_SEGMENTS, SpeechTimeline, SpeechUpdate, covered, merge, overlaps, talk_share
from inference.spotting import Spot
from inference.types import FrameFaces
from inference.voice import CONTEXT, SAMPLE_RATE, WINDOW, RecordingVad, VadOptions, VoiceActivityStream

pytestmark = pytest.mark.unit

W_S = WINDOW / SAMPLE_RATE  # one model window, 32 ms


# ---- intervals -----------------------------------------------------------------------------------


def test_overlap_is_shared_time_not_touching() -> None:
    speech = merge([(5.0, 6.0), (1.0, 2.0), (1.5, 3.0)])
    assert speech == [(1.0, 3.0), (5.0, 6.0)]
    assert overlaps(speech, 2.5, 4.0) and overlaps(speech, 0.0, 1.5) and overlaps(speech, 4.0, 7.0)
    assert overlaps(speech, 1.2, 1.4)  # inside
    assert not overlaps(speech, 3.0, 5.0)  # touches both ends, shares nothing
    assert not overlaps(speech, 0.0, 1.0) and not overlaps(speech, 6.0, 9.0) and not overlaps([], 0.0, 9.0)
    assert overlaps(speech, 5.5, 5.5) and not overlaps(speech, 4.0, 4.0)  # an instant


def test_share_counts_only_the_span() -> None:
    speech = [(1.0, 3.0), (5.0, 6.0)]
    assert covered(speech, 0.0, 10.0) == pytest.approx(3.0)
    assert covered(speech, 2.0, 5.5) == pytest.approx(1.5)
    assert talk_share(speech, 0.0, 10.0) == pytest.approx(0.3)
    assert talk_share(speech, 7.0, 9.0) == 0.0
    assert talk_share(speech, 4.0, 4.0) is None


# ---- what a timeline can say, and when ---------------------------------------------------------


def test_no_audio_is_not_known_and_never_waits() -> None:
    tl = SpeechTimeline()
    assert tl.speaking(1.0, 1.3) is None and tl.decided(1.0, 1.3)


def test_talk_is_known_only_as_far_as_it_is_settled() -> None:
    tl = SpeechTimeline()
    tl.add(SpeechUpdate(segments=((2.0, 4.0),), open_since=None, settled_until=6.0))
    assert tl.speaking(3.5, 3.8) is True
    assert tl.speaking(4.5, 5.0) is False  # settled silence
    assert tl.speaking(5.8, 6.3) is None and not tl.decided(5.8, 6.3)  # not settled that far: wait
    # talking again from 7 s, settled to 8 s: an event overlapping that is decided at once
    tl.add(SpeechUpdate(open_since=7.0, settled_until=8.0))
    assert tl.speaking(7.5, 9.0) is True and tl.decided(7.5, 9.0)
    assert tl.speaking(6.2, 6.6) is False
    assert tl.speaking(8.5, 8.9) is None  # after the settled horizon of the open segment
    # the audio ended: nothing more will come, so nothing waits, and what is not known stays None
    tl.add(SpeechUpdate(segments=((7.0, 8.2),), open_since=None, settled_until=8.2, live=False))
    assert tl.decided(8.5, 8.9) and tl.speaking(8.5, 8.9) is None
    tl.forget_before(5.0)
    assert tl.segments == [(7.0, 8.2)]


def test_updates_merge_in_order_and_stay_bounded() -> None:
    a = SpeechUpdate(((0.0, 1.0),), open_since=None, settled_until=1.5)
    b = SpeechUpdate(((2.0, 3.0),), open_since=4.0, settled_until=4.5, live=True)
    both = a.then(b)
    assert both.segments == ((0.0, 1.0), (2.0, 3.0)) and both.open_since == 4.0 and both.settled_until == 4.5
    many = a
    for i in range(2 * MAX_SEGMENTS):
        many = many.then(SpeechUpdate(((10.0 + i, 10.5 + i),), settled_until=11.0 + i))
    last = 2 * MAX_SEGMENTS - 1
    assert len(many.segments) == MAX_SEGMENTS and many.segments[-1] == (10.0 + last, 10.5 + last)


# ---- the voice stream's horizon -----------------------------------------------------------------


def _stream() -> VoiceActivityStream:
    return VoiceActivityStream(vad=None, t0=0.0)  # type: ignore[arg-type]  # fed probabilities only


def test_settled_until_stops_where_the_hysteresis_may_still_change_its_mind() -> None:
    s = _stream()
    for _ in range(10):  # 0.32 s of silence
        s.step(0.0)
    assert s.settled_until == pytest.approx(s.now) and s.open_since is None
    s.step(0.9)  # a loud window: maybe speech from here, not confirmed before min_speech_s
    assert s.settled_until == pytest.approx(10 * W_S)
    for _ in range(10):
        s.step(0.9)
    assert s.speaking and s.open_since == pytest.approx(10 * W_S)
    assert s.settled_until == pytest.approx(s.now)  # talking up to now, for sure
    quiet_from = s.now
    s.step(0.0)  # a quiet window: the end of talk, or a pause inside it
    assert s.settled_until == pytest.approx(quiet_from)
    while s.speaking:
        s.step(0.0)
    assert s.settled_until == pytest.approx(s.now) and s.open_since is None


# ---- the batched VAD of a recording ---------------------------------------------------------------


class _LoudnessVad:
    """A stateless stand-in for Silero: probability from the window's loudness, so batched rows
    and a stream must agree exactly, and any slip in the rows' bookkeeping shows."""

    def __init__(self) -> None:
        self.calls = 0

    @staticmethod
    def _p(x: np.ndarray) -> np.ndarray:
        assert x.shape[-1] == CONTEXT + WINDOW
        return (np.abs(x[..., CONTEXT:]).mean(axis=-1) > 0.05).astype(np.float32) * 0.9

    def __call__(self, x: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        self.calls += 1
        return float(self._p(x)[0]), state

    def batch(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        assert state.shape == (2, x.shape[0], 128)
        return self._p(x), state


@pytest.mark.parametrize("chunk", [160, 4000, 10 * SAMPLE_RATE])
def test_recording_vad_in_rows_finds_what_the_stream_finds(chunk: int) -> None:
    rng = np.random.default_rng(3)
    audio = np.zeros(23 * SAMPLE_RATE + 77, np.float32)
    for start, end in [(0.5, 2.0), (3.1, 7.9), (8.2, 8.6), (11.0, 16.5), (20.0, 22.9)]:
        a, b = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        audio[a:b] = rng.uniform(-0.3, 0.3, b - a)
    vad = _LoudnessVad()
    stream = VoiceActivityStream(vad, VadOptions(), t0=1.5)
    events = stream.push(audio) + stream.flush()
    expected = [(e.start, e.end) for e in events if e.kind == "end"]
    assert len(expected) == 4  # the 0.3 s pause at 7.9 s stays inside a segment
    rec = RecordingVad(vad, VadOptions(), t0=1.5, rows=3, row_windows=40, warmup_windows=8)
    for i in range(0, len(audio), chunk):
        rec.push(audio[i : i + chunk])
    assert rec.finish() == expected  # the same probabilities, the same hysteresis: exactly
    windows = len(audio) // WINDOW
    assert windows <= rec.windows < 1.5 * windows  # each window once, plus warm-ups and padding


def test_recording_vad_of_silence_and_of_nothing() -> None:
    vad = _LoudnessVad()
    rec = RecordingVad(vad)
    rec.push(np.zeros(3 * SAMPLE_RATE, np.int16))
    assert rec.finish() == []
    assert RecordingVad(vad).finish() == []


# ---- the analyzer: flag, wait, detail, confidence -------------------------------------------------


def _spot(kind: str, onset: float, offset: float) -> Spot:
    crop = np.zeros((64, 64), np.uint8)
    disp = np.zeros((len(REGIONS), 2))
    return Spot(kind, onset, (onset + offset) / 2, offset, 2.0, ("brow_inner_R",), disp, crop, crop, noise_px=0.2)


class _NoFace:
    """The tracker of a face that is never found: the spotter stays out of the way."""

    def update(self, rgb: np.ndarray, t: float) -> FrameFaces:
        return FrameFaces(t=t, faces=(), primary=None)

    def reset(self) -> None:
        pass


class _Unused:
    """A model that must never run: the face is never found, and no CNN is given."""

    name, runtime, input_shape = "unused", "none", (1, 128, 128, 3)
    output_names = ("regressors", "classificators", FaceMesh.POINTS, FaceMesh.PRESENCE)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise AssertionError("no model runs in this test")


def _analyzer(spots: list[Spot]) -> ParticipantAnalyzer:
    """A real ParticipantAnalyzer whose spots are handed in as the spotter would hand them over."""
    a = ParticipantAnalyzer(FaceModels(detector=_Unused(), landmarks=_Unused()), track_gaze=False)
    a.tracker = _NoFace()  # type: ignore[assignment]
    a._waiting += [(spot, 0) for spot in spots]  # what Spotter.push returned, at the first frame
    return a


FRAME = np.zeros((8, 8, 3), np.uint8)


def _run(a: ParticipantAnalyzer, until: float, hear: dict[float, SpeechUpdate] | None = None) -> list[Any]:
    out = []
    t = 0.0
    while t <= until:
        if hear and round(t, 3) in hear:
            a.hear(hear[round(t, 3)])
        out += [(round(t, 3), f) for f in a.push(FRAME, t).expressions]
        t = round(t + 0.1, 3)
    return out


def test_without_audio_nothing_waits_and_talk_is_not_known() -> None:
    a = _analyzer([_spot("micro", 1.0, 1.3)])
    step = a.push(FRAME, 0.0)  # before the spot's offset even: nothing to wait for
    [found] = step.expressions
    assert found.speaking is None
    [cue] = [c for c in step.cues if c.type == "micro_expression"]
    assert WHILE_TALKING not in cue.detail


def test_an_expression_waits_for_the_voice_then_carries_it_into_its_cue() -> None:
    a = _analyzer([_spot("micro", 1.0, 1.3), _spot("macro", 1.5, 2.5), _spot("micro", 3.0, 3.3)])
    hear = {
        0.0: SpeechUpdate(settled_until=0.0),  # audio known, nothing settled yet
        0.5: SpeechUpdate(open_since=0.9, settled_until=1.1),  # talking from 0.9: the first overlaps it
        2.0: SpeechUpdate(segments=((0.9, 1.6),), settled_until=2.6),  # ended at 1.6, silence settled to 2.6
        # then nothing: the third waits SPEECH_WAIT_S past its offset and goes out not known
    }
    got = _run(a, 6.0, hear)
    assert [(t, f.spot.onset_t, f.speaking) for t, f in got] == [
        (0.5, 1.0, True),
        (2.0, 1.5, True),  # the macro overlaps 0.9-1.6 too; it is flagged, never suppressed
        (round(3.3 + SPEECH_WAIT_S, 1), 3.0, None),
    ]


def test_a_stalled_camera_does_not_count_as_waiting() -> None:
    """Frames resume far later in media time after a stall; the voice, held up as well, is still
    given its frames' worth of time before anything goes out not known."""
    a = _analyzer([_spot("micro", 1.0, 1.3)])
    a.hear(SpeechUpdate(settled_until=0.5))
    assert a.push(FRAME, 0.0).expressions == ()
    assert a.push(FRAME, 6.0).expressions == ()  # 4.7 s past its offset, but one frame later
    a.hear(SpeechUpdate(segments=((1.2, 2.0),), settled_until=6.0))
    [found] = a.push(FRAME, 6.1).expressions
    assert found.speaking is True


def test_cue_detail_and_confidence_input() -> None:
    a = _analyzer([_spot("micro", 1.0, 1.3)])
    a.hear(SpeechUpdate(segments=((0.5, 2.0),), settled_until=3.0, live=False))
    step = a.push(FRAME, 0.0)
    [cue] = [c for c in step.cues if c.type == "micro_expression"]
    assert cue.detail.endswith(WHILE_TALKING) and step.expressions[0].speaking is True


def test_speaking_is_an_input_of_a_micro_signals_confidence_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 0.0 < expressions.SPEAKING_ODDS_RATIO < 1.0  # fitted: talk makes a micro signal less likely true
    assert calibrated(2.0, 0.3, speaking=True) < calibrated(2.0, 0.3, speaking=False) == calibrated(2.0, 0.3)
    monkeypatch.setattr(expressions, "SPEAKING_ODDS_RATIO", 0.25)  # what a fit would set
    base = calibrated(2.0, 0.3)
    talking = calibrated(2.0, 0.3, speaking=True)
    assert talking < base and talking / (1 - talking) == pytest.approx(0.25 * base / (1 - base))
    assert calibrated(2.0, 0.3, speaking=None) == base == calibrated(2.0, 0.3, speaking=False)
    micro, macro = _spot("micro", 1.0, 1.3), _spot("macro", 1.0, 2.5)
    assert classify(micro, speaking=True).confidence < classify(micro, speaking=False).confidence
    assert classify(macro, speaking=True).confidence == classify(macro, speaking=False).confidence


# ---- the talk calibration at the display floor (SPEAKING_ODDS_RATIO) ---------------------------------


def _talk_threshold(r: float, floor: float = DEFAULT_MIN_CONFIDENCE) -> float:
    """The verifier chance at which a talking signal's adjusted confidence is exactly the floor."""
    return floor / (floor + r * (1 - floor))


def test_the_ratio_is_a_fitted_penalty() -> None:
    r = expressions.SPEAKING_ODDS_RATIO
    assert 0.0 < r < 1.0  # talk makes a micro signal less likely true, never certain to be false
    assert _talk_threshold(r) > DEFAULT_MIN_CONFIDENCE  # so some signals that show in silence are hidden in talk


def test_talk_adjusted_confidence_is_monotone_in_the_verifiers_chance() -> None:
    ps = np.linspace(0.01, 0.99, 99)
    talking = [calibrated(1.0, 0.2, True, float(p)) for p in ps]
    silent = [calibrated(1.0, 0.2, False, float(p)) for p in ps]
    assert all(b > a for a, b in itertools.pairwise(talking))
    assert all(t < s for t, s in zip(talking, silent, strict=True))
    assert silent == pytest.approx(ps)  # silence leaves the verifier's chance as it is


def _cue_of(verified: float, talk: tuple[tuple[float, float], ...] | None) -> list[Cue]:
    """The cue a real analyzer makes of one spot; ``talk``: the person's talk segments (None: no audio)."""
    a = _analyzer([replace(_spot("micro", 1.0, 1.3), verified=verified)])
    if talk is not None:
        a.hear(SpeechUpdate(segments=talk, settled_until=5.0, live=False))
    return [c for c in a.push(FRAME, 2.0).cues if c.type == "micro_expression"]


def test_a_talking_signal_under_the_floor_is_hidden_and_the_same_one_silent_is_not() -> None:
    r = expressions.SPEAKING_ODDS_RATIO
    p = (DEFAULT_MIN_CONFIDENCE + _talk_threshold(r)) / 2  # shows in silence, not while talking
    talking = _cue_of(p, ((0.5, 2.0),))
    silent = _cue_of(p, ((3.0, 4.0),))  # talk, but not during the signal
    unknown = _cue_of(p, None)
    assert [c.detail.endswith(WHILE_TALKING) for c in (*talking, *silent, *unknown)] == [True, False, False]
    shown, hidden = split_shown(talking, DEFAULT_MIN_CONFIDENCE)
    assert shown == [] and hidden == 1
    for cues in (silent, unknown):
        shown, hidden = split_shown(cues, DEFAULT_MIN_CONFIDENCE)
        assert len(shown) == 1 and hidden == 0
    # a strong enough signal still shows while talking: the floor decides, talk does not veto
    shown, _ = split_shown(_cue_of(0.99, ((0.5, 2.0),)), DEFAULT_MIN_CONFIDENCE)
    assert len(shown) == 1


def test_the_fit_recovers_a_known_odds_ratio() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.55, 0.99, 4000)
    y = (rng.uniform(size=len(p)) < adjusted(p, 0.3)).astype(float)
    assert fit_odds_ratio(p, y) == pytest.approx(0.3, rel=0.15)


# ---- the summary's talk figures --------------------------------------------------------------------


def _cue(kind: str, t: float, value: float | None = None, pid: str = "ann", **kw: Any) -> Cue:
    return Cue(type=kind, t=t, value=value, meeting_id="m", participant_id=pid, **kw)


def test_summary_says_how_much_of_the_time_in_view_was_talk() -> None:
    cues = [
        _cue("presence", 0.0, 1.0),
        _cue("presence", 0.0, 1.0, pid="ben"),
        _cue("speaking", 10.0, 1.0),
        _cue("speaking", 25.0, 0.0),
        _cue("presence", 20.0, 0.0),  # out of view from 20 s: 20-25 s of talk is not in view
        _cue("presence", 30.0, 1.0),
        _cue("micro_expression", 12.3, onset_s=12.0, apex_s=12.1, offset_s=12.3, emotion="anger", confidence=0.9),
        _cue("micro_expression", 31.3, onset_s=31.0, apex_s=31.1, offset_s=31.3, emotion="anger", confidence=0.9),
        _cue("engagement", 40.0, 0.5, pid="ben"),
    ]
    decision = policy.for_meeting("customer", None, Settings())
    s = summarize(cues, [ParticipantInfo("ann"), ParticipantInfo("ben")], decision=decision)
    ann, ben = s["participants"]
    # in view 0-20 and 30-40 (30 s), talking in view 10-20 (10 s)
    assert ann["talk_time_s"] == 15.0 and ann["micro_not_assessed_s"] == 10.0
    assert ann["talk_share"] == pytest.approx(10.0 / 30.0, abs=1e-3)
    assert [e["while_talking"] for e in ann["expression_events"]] == [True, False]
    assert ben["talk_share"] == 0.0 and ben["micro_not_assessed_s"] == 0.0
    assert "talking: micro-expressions not assessed" in s["talk_notice"]
    withheld = summarize(cues, [ParticipantInfo("ann")], decision=policy.for_meeting("workplace", None, Settings()))
    assert withheld["participants"][0]["talk_share"] == pytest.approx(10.0 / 30.0, abs=1e-3)
    assert withheld["participants"][0]["micro_not_assessed_s"] is None


# ---- the voice worker keeps the VAD on the sender's clock ------------------------------------------


def _opus_frame(pts: int, ms: int = 20) -> Any:
    """An audio frame as aiortc decodes Opus: 48 kHz, RTP timestamp as pts, time base 1/48000."""
    frame = av.AudioFrame(format="s16", layout="mono", samples=48 * ms)
    frame.sample_rate = 48_000
    frame.pts = pts
    frame.time_base = Fraction(1, 48_000)
    return frame


def test_lost_packets_become_silence_and_late_audio_is_not_counted_twice() -> None:
    clock = _SenderClock()
    start = RTP_WRAP - 960 * 2  # the timestamps wrap two frames in
    assert clock.place(_opus_frame(start)) == 0.0
    assert clock.place(_opus_frame(start + 960)) == 0.0  # the next 20 ms, in order
    assert clock.place(_opus_frame((start + 4 * 960) % RTP_WRAP)) == pytest.approx(0.040)  # two lost, across the wrap
    # no packets for 0.25 s: silence went in; then the late packets of that time arrive after all
    last = _opus_frame((start + 5 * 960) % RTP_WRAP)
    clock.advance(0.25, last)
    assert clock.place(last) == pytest.approx(-0.25)  # all of it already covered
    assert clock.place(_opus_frame((start + 5 * 960 + 12_000 - 480) % RTP_WRAP)) == pytest.approx(-0.01)
    assert clock.place(_opus_frame((start + 5 * 960 + 12_000 + 480) % RTP_WRAP)) == 0.0  # caught up
    # the sender restarted its clock: start again from there, no minutes of silence
    assert clock.place(_opus_frame(10**9)) == 0.0 and clock.place(_opus_frame(10**9 + 960)) == 0.0
    # frames without a time base (a local track): counted as they come
    frame = av.AudioFrame(format="s16", layout="mono", samples=320)
    frame.sample_rate, frame.pts = SAMPLE_RATE, 0
    assert frame.time_base is None
    assert _SenderClock().place(frame) == 0.0 and clock.place(frame) == 0.0
