"""Timelines from cue streams: interval arithmetic and held signals, shared by the summary and coaching.

Engagement, sentiment and presence are emitted on change, so each is a *held* signal: a value
lasts until the next cue of its kind (inference/engagement.py). These helpers turn cue lists into
intervals and time-weighted means; they know nothing of meetings, stores or reports, which is why
both ``summary`` and ``coaching`` can build on them without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from inference.cues import Cue
from inference.speech import Interval, merge

#: A held presence value at or above this means "in view" (presence cues are 0 or 1).
PRESENT_AT = 0.5
#: Digits kept in the stored body: cues carry 3 decimals (inference/engagement.py rounds to 3).
DIGITS = 3
#: Emotions whose micro-expressions count as negative signals (issue 7, part 3 and 5).
NEGATIVE_EMOTIONS: frozenset[str] = frozenset({"contempt", "disgust", "fear", "sadness", "anger"})

#: (start, end, value) of a held signal.
Segment = tuple[float, float, float]


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersection of two merged interval lists (two-pointer walk)."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if end > start:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def total(intervals: Iterable[Interval]) -> float:
    return sum(end - start for start, end in intervals)


def held(points: Iterable[tuple[float, float]], end: float) -> list[Segment]:
    """A sample-and-hold signal: each value lasts until the next one, the last until ``end``.

    Two values at the same instant: the later one in order wins (the first gets zero length).
    """
    pts = sorted(points, key=lambda p: p[0])
    out: list[Segment] = []
    for i, (t, v) in enumerate(pts):
        stop = min(pts[i + 1][0] if i + 1 < len(pts) else end, end)
        if stop > t:
            out.append((t, stop, v))
    return out


def masked(segments: Sequence[Segment], mask: Sequence[Interval]) -> list[Segment]:
    """The parts of ``segments`` inside the merged ``mask``."""
    out: list[Segment] = []
    i = j = 0
    while i < len(segments) and j < len(mask):
        s, e, v = segments[i]
        start, end = max(s, mask[j][0]), min(e, mask[j][1])
        if end > start:
            out.append((start, end, v))
        if e < mask[j][1]:
            i += 1
        else:
            j += 1
    return out


def weighted_mean(pieces: Iterable[Segment]) -> float | None:
    weight = value = 0.0
    for s, e, v in pieces:
        weight += e - s
        value += v * (e - s)
    return value / weight if weight > 0 else None


def bucket_means(pieces: Sequence[Segment], width: float, count: int) -> list[float | None]:
    """Time-weighted mean of the pieces within each ``width``-second bucket; None where nothing is covered."""
    sums = [0.0] * count
    weights = [0.0] * count
    for s, e, v in pieces:
        start = s
        i = int(start // width)
        while start < e and i < count:
            stop = min(e, (i + 1) * width)
            if stop > start:
                sums[i] += v * (stop - start)
                weights[i] += stop - start
            start = stop
            i += 1
    return [sums[i] / weights[i] if weights[i] > 0 else None for i in range(count)]


def presence_intervals(cues: Sequence[Cue], end: float) -> list[Interval]:
    """When the participant was in view.

    From presence cues when there are any (absent before the first one); a
    participant with no presence cue at all (an audio-only peer, an older
    producer) counts as present from their first cue to the end.
    """
    points = [(c.t, c.value if c.value is not None else 1.0) for c in cues if c.type == "presence"]
    if not points:
        return [(min(c.t for c in cues), end)] if cues else []
    return merge((s, e) for s, e, v in held(points, end) if v >= PRESENT_AT)


def speaking_intervals(cues: Sequence[Cue], end: float) -> list[Interval]:
    """Talk segments from speaking cues (1 = started, 0 = stopped); an open start runs to ``end``.

    An end without a start (its start cue was never stored) is ignored rather than guessed.
    """
    out: list[Interval] = []
    started: float | None = None
    for cue in sorted((c for c in cues if c.type == "speaking"), key=lambda c: c.t):
        speaking = (cue.value if cue.value is not None else 0.0) >= PRESENT_AT
        if speaking and started is None:
            started = cue.t
        elif not speaking and started is not None:
            out.append((started, cue.t))
            started = None
    if started is not None:
        out.append((started, end))
    return merge(out)


def signal_segments(cues: Sequence[Cue], kind: str, end: float) -> list[Segment]:
    return held(((c.t, c.value) for c in cues if c.type == kind and c.value is not None), end)


def meeting_duration(cues: Iterable[Cue]) -> float:
    """Media seconds from the meeting's start to its last cue (an expression ends at its offset)."""
    return max((max(c.t, c.offset_s or 0.0) for c in cues), default=0.0)


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def clock(t: float) -> str:
    """Media seconds as m:ss, the way people read a recording."""
    minutes, seconds = divmod(round(t), 60)
    return f"{minutes}:{seconds:02d}"
