"""When a participant talks, as the analyzer of their face learns it from their voice.

The voice activity (``inference.voice``, run by the bridge's voice worker or over a file's audio
track) sends :class:`SpeechUpdate` values, plain data that can cross a process boundary; the
face's analyzer keeps them in a :class:`SpeechTimeline` and asks it, for each spotted
expression, whether the person was talking during it. While someone talks their face moves with
the speech, and a micro-expression (under half a second, a few pixels) is then rarely told apart
from it (docs/benchmarks.md); so the answer travels with the signal into its confidence, its
cue and the reports.

Times are media seconds, the same clock as the video frames (the meeting's, or the file's).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Interval = tuple[float, float]

#: Closed segments are kept this long behind the newest frame: a spot reaches back at most a
#: macro-expression (3 s, inference/spotting.py) plus the wait below, so 30 s is ample.
KEEP_S = 30.0
#: Most closed segments an update carries when updates pile up without a frame to take them (a
#: stalled camera, a talker): talk segments last at least 0.25 s (inference/voice.py
#: min_speech_s) and a pause must last 0.5 s, so 256 hold three minutes or more, far past KEEP_S.
MAX_SEGMENTS = 256


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union; touching intervals join."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def overlaps(intervals: Sequence[Interval], start: float, end: float) -> bool:
    """Whether ``start..end`` shares some time with any of the merged, sorted ``intervals``;
    touching is not overlapping. An instant (start == end) overlaps the interval it lies inside."""
    i = bisect.bisect_right(intervals, (start, float("inf")))  # first interval starting after ``start``
    if i > 0 and intervals[i - 1][1] > start:
        return True
    return i < len(intervals) and intervals[i][0] < end


def covered(intervals: Sequence[Interval], start: float, end: float) -> float:
    """Seconds of ``start..end`` inside the merged ``intervals``."""
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in intervals if s < end and e > start)


@dataclass(frozen=True, slots=True)
class SpeechUpdate:
    """What the voice activity knows now: segments closed since the last update, the one still
    open, and how far speech and silence are decided for good (the VAD's hysteresis decides a
    few hundred milliseconds late, see ``VoiceActivityStream.settled_until``)."""

    segments: tuple[Interval, ...] = ()
    #: a segment is open since then (the person is talking now); None while silent
    open_since: float | None = None
    settled_until: float = 0.0
    #: False once the audio ended (left, track stopped, a whole file): nothing more will come, so
    #: nobody waits for it
    live: bool = True

    def then(self, later: SpeechUpdate) -> SpeechUpdate:
        """This update followed by ``later`` as one (the worker merges what piles up between frames)."""
        segments = (*self.segments, *later.segments)[-MAX_SEGMENTS:]
        return SpeechUpdate(segments, later.open_since, max(self.settled_until, later.settled_until), later.live)


@dataclass
class SpeechTimeline:
    """One participant's talk as far as it is known; ``heard`` stays False without any audio."""

    segments: list[Interval] = field(default_factory=list)
    open_since: float | None = None
    settled_until: float = 0.0
    live: bool = False
    heard: bool = False

    def add(self, update: SpeechUpdate) -> None:
        if update.segments:
            self.segments = merge([*self.segments, *update.segments])
        self.open_since = update.open_since
        self.settled_until = max(self.settled_until, update.settled_until) if self.heard else update.settled_until
        self.live = update.live
        self.heard = True

    def forget_before(self, t: float) -> None:
        """Drop segments that ended before ``t`` (no spot can reach back to them)."""
        drop = 0
        while drop < len(self.segments) and self.segments[drop][1] < t:
            drop += 1
        if drop:
            del self.segments[:drop]

    def _known_speech(self) -> list[Interval]:
        if self.open_since is None or self.settled_until <= self.open_since:
            return self.segments
        return merge([*self.segments, (self.open_since, self.settled_until)])

    def speaking(self, start: float, end: float) -> bool | None:
        """Whether the person talked during ``start..end``: True as soon as known speech overlaps
        it, False once silence is settled over all of it, None while that is not known (no
        audio, or audio not yet decided that far)."""
        if not self.heard:
            return None
        if overlaps(self._known_speech(), start, end):
            return True
        return False if self.settled_until >= end else None

    def decided(self, start: float, end: float) -> bool:
        """Whether waiting longer cannot change :meth:`speaking` for ``start..end``."""
        return not self.heard or not self.live or self.speaking(start, end) is not None


def talk_share(speech: Sequence[Interval], start: float, end: float) -> float | None:
    """Share of ``start..end`` inside the merged ``speech`` intervals (None for an empty span)."""
    span = end - start
    return covered(speech, start, end) / span if span > 0 else None
