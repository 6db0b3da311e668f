"""Sales-call coaching for meetings of kind ``sales`` (issue 7, part 5), from stored cues only.

Figures: the rep's talk-to-listen ratio, longest monologue, interactivity
(speaker switches per minute), buyer engagement while the rep holds a
monologue versus while the buyer speaks, hesitation moments (buyer negative
micro-expressions, with what the rep was doing), buyer sentiment by call third,
and 3 to 5 tips built from those figures, each citing the moments it is about.

Hesitation moments and sentiment are emotion inference: under a policy that
withholds emotions they are not computed, and the coaching says so.

The one published benchmark we compare with is in ``BENCHMARKS`` with its
source; every other threshold below is MicroCue's own choice and says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.insights.timeline import (
    NEGATIVE_EMOTIONS,
    Interval,
    Segment,
    clock,
    intersect,
    masked,
    merge,
    presence_intervals,
    rounded,
    signal_segments,
    speaking_intervals,
    total,
    weighted_mean,
)
from inference.cues import Cue

#: Rep share of talk time on successful discovery calls: 43:57 (Gong Labs research;
#: docs/sources.md "Sales-call benchmarks").
BENCHMARK_TALK_SHARE = 0.43
#: Pause before answering on successful calls, ~1 s (Gong's "patience" statistic; docs/sources.md).
#: A rep pause shorter than this is not a hand-over, so rep segments that close are joined into one monologue.
PATIENCE_S = 1.0
#: Rep talk share above this is "talking too much". Our tolerance: 7 points over the benchmark.
TALK_SHARE_HIGH = 0.50
#: Rep talk share below this is "not leading enough". Our tolerance: 13 points under the benchmark.
TALK_SHARE_LOW = 0.30
#: A rep speech stretch at least this long is a monologue for the engagement comparison.
#: Our choice: longer than a question plus a short answer.
MONOLOGUE_MIN_S = 20.0
#: A longest monologue at or above this gets a "break it up" tip. Our choice, not a published benchmark.
LONG_MONOLOGUE_S = 60.0
#: Speaker switches per minute below this count as low interactivity. Our choice, not a published benchmark.
LOW_SWITCHES_PER_MIN = 2.0
#: Buyer engagement during monologues this much below their engagement while speaking gets a tip.
#: Our choice: engagement streams move in steps of 0.10 (inference/engagement.py CHANGE_ENGAGEMENT).
ENGAGEMENT_GAP = 0.10
#: A change of mean buyer sentiment from the first to the last third of at least this is a trend.
SENTIMENT_TREND = 0.10
#: Tips returned: at least 3 when there is speech to coach on, never more than 5 (issue 7).
MIN_TIPS, MAX_TIPS = 3, 5
#: Moments cited per tip, so a tip stays one sentence long.
MOMENTS_PER_TIP = 3

BENCHMARKS: tuple[dict[str, Any], ...] = (
    {
        "metric": "talk_to_listen",
        "value": "43:57",
        "rep_share": BENCHMARK_TALK_SHARE,
        "applies_to": "successful discovery calls",
        "source": (
            "Gong Labs, The highest converting talk-to-listen ratio in sales "
            "(gong.io/resources/labs/talk-to-listen-conversion-ratio)"
        ),
    },
    {
        "metric": "patience",
        "value": "~1 s pause before answering",
        "applies_to": "successful calls",
        "source": "Gong Help Center, Analyze team performance: the patience statistic (help.gong.io)",
    },
)
#: Thresholds that are MicroCue's own choices, listed in the report next to the benchmarks.
OWN_THRESHOLDS: dict[str, float] = {
    "talk_share_high": TALK_SHARE_HIGH,
    "talk_share_low": TALK_SHARE_LOW,
    "monologue_min_s": MONOLOGUE_MIN_S,
    "long_monologue_s": LONG_MONOLOGUE_S,
    "low_switches_per_min": LOW_SWITCHES_PER_MIN,
    "engagement_gap": ENGAGEMENT_GAP,
    "sentiment_trend": SENTIMENT_TREND,
}


def rep_stretches(rep_talk: Sequence[Interval], others_talk: Sequence[Interval]) -> list[Interval]:
    """Rep speech joined across pauses shorter than ``PATIENCE_S`` in which nobody else spoke."""
    out: list[Interval] = []
    for start, end in rep_talk:
        if out and start - out[-1][1] <= PATIENCE_S and not intersect([(out[-1][1], start)], others_talk):
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def speaker_switches(talk: Mapping[str, Sequence[Interval]]) -> int:
    """How often the floor changes hands: turns ordered by start, consecutive same-speaker turns collapsed."""
    turns = sorted((start, pid) for pid, intervals in talk.items() for start, _ in intervals)
    switches = 0
    for (_, before), (_, after) in itertools.pairwise(turns):
        switches += before != after
    return switches


def _pooled_mean(pieces: Sequence[Sequence[Segment]]) -> float | None:
    return weighted_mean(p for piece in pieces for p in piece)


def _moment(start: float, end: float | None, label: str) -> dict[str, Any]:
    span = clock(start) if end is None else f"{clock(start)}-{clock(end)}"
    return {"t": rounded(start), "end": rounded(end), "at": span, "label": label}


def coach(
    cues: Sequence[Cue], roles: Mapping[str, str], *, duration_s: float, emotions_allowed: bool
) -> dict[str, Any]:
    """Coaching figures and tips for one sales call; pure (tests feed hand-built cue lists)."""
    reps = sorted(pid for pid, role in roles.items() if role == "rep")
    buyers = sorted(pid for pid, role in roles.items() if role == "buyer")
    base: dict[str, Any] = {
        "benchmarks": [dict(b) for b in BENCHMARKS],
        "own_thresholds": dict(OWN_THRESHOLDS),
        "emotions_withheld": not emotions_allowed,
    }
    if not reps or not buyers:
        return {
            **base,
            "available": False,
            "reason": "coaching needs at least one participant with role 'rep' and one with role 'buyer'",
        }
    by_pid: dict[str, list[Cue]] = {}
    for c in cues:
        by_pid.setdefault(c.participant_id, []).append(c)
    talk = {pid: speaking_intervals(cs, duration_s) for pid, cs in by_pid.items()}
    talk = {pid: t for pid, t in talk.items() if t}
    rep_talk = merge(i for pid in reps for i in talk.get(pid, []))
    others_talk = merge(i for pid, ts in talk.items() if pid not in reps for i in ts)
    buyer_talk = merge(i for pid in buyers for i in talk.get(pid, []))
    rep_s, others_s = total(rep_talk), total(others_talk)
    share = rep_s / (rep_s + others_s) if rep_s + others_s > 0 else None
    # Whole percent from the unrounded share, so the tip text and the ratio always agree.
    pct = None if share is None else round(100 * share)

    stretches = rep_stretches(rep_talk, others_talk)
    longest = max(stretches, key=lambda i: i[1] - i[0], default=None)
    monologues = [s for s in stretches if s[1] - s[0] >= MONOLOGUE_MIN_S]
    switches = speaker_switches(talk)
    minutes = duration_s / 60.0
    per_minute = switches / minutes if minutes > 0 else None

    def buyer_engagement(window: Sequence[Interval]) -> float | None:
        pieces = []
        for pid in buyers:
            own = by_pid.get(pid, [])
            mask = intersect(presence_intervals(own, duration_s), window)
            pieces.append(masked(signal_segments(own, "engagement", duration_s), mask))
        return _pooled_mean(pieces)

    eng_monologue = buyer_engagement(monologues)
    eng_rep_speech = buyer_engagement(rep_talk)
    eng_buyer_speech = buyer_engagement(buyer_talk)
    monologue_engagement = [
        {**_moment(s, e, "rep monologue"), "buyer_engagement": rounded(buyer_engagement([(s, e)]))}
        for s, e in monologues
    ]

    hesitations: list[dict[str, Any]] | None = None
    thirds: list[float | None] | None = None
    trend: str | None = None
    if emotions_allowed:
        hesitations = []
        for pid in buyers:
            for c in by_pid.get(pid, []):
                if c.type == "micro_expression" and c.emotion in NEGATIVE_EMOTIONS:
                    t = c.apex_s if c.apex_s is not None else c.t
                    rep_speaking = any(s <= t < e for s, e in rep_talk)
                    hesitations.append(
                        {
                            "t": rounded(t),
                            "at": clock(t),
                            "participant_id": pid,
                            "emotion": c.emotion,
                            "confidence": rounded(c.confidence),
                            "rep_activity": "speaking" if rep_speaking else "listening",
                        }
                    )
        hesitations.sort(key=lambda h: h["t"])
        third = duration_s / 3.0
        thirds = []
        for k in range(3):
            window = [(k * third, (k + 1) * third)] if third > 0 else []
            pieces = []
            for pid in buyers:
                own = by_pid.get(pid, [])
                mask = intersect(presence_intervals(own, duration_s), window)
                pieces.append(masked(signal_segments(own, "sentiment", duration_s), mask))
            thirds.append(rounded(_pooled_mean(pieces)))
        if thirds[0] is not None and thirds[2] is not None:
            change = thirds[2] - thirds[0]
            trend = "rising" if change >= SENTIMENT_TREND else "falling" if change <= -SENTIMENT_TREND else "steady"

    figures: dict[str, Any] = {
        "rep_ids": reps,
        "buyer_ids": buyers,
        "duration_s": rounded(duration_s),
        "rep_talk_s": rounded(rep_s),
        "others_talk_s": rounded(others_s),
        "rep_talk_share": rounded(share),
        "rep_talk_pct": pct,
        "talk_to_listen": None if pct is None else f"{pct}:{100 - pct}",
        "longest_monologue": None
        if longest is None
        else {
            **_moment(longest[0], longest[1], "longest rep monologue"),
            "duration_s": rounded(longest[1] - longest[0]),
        },
        "monologues": monologue_engagement,
        "speaker_switches": switches,
        "switches_per_minute": rounded(per_minute),
        "buyer_engagement_during_rep_monologues": rounded(eng_monologue),
        "buyer_engagement_during_rep_speech": rounded(eng_rep_speech),
        "buyer_engagement_during_buyer_speech": rounded(eng_buyer_speech),
        "hesitation_moments": hesitations,
        "buyer_sentiment_by_third": thirds,
        "sentiment_trend": trend,
    }
    return {**base, "available": True, **figures, "tips": tips(figures, duration_s=duration_s)}


def tips(f: Mapping[str, Any], *, duration_s: float) -> list[dict[str, Any]]:
    """3 to 5 tips, problems first; each names the figure it comes from and cites its moments."""
    share = f["rep_talk_share"]
    longest = f["longest_monologue"]
    if share is None:
        return [
            {
                "topic": "no_speech",
                "severity": "improve",
                "moments": [],
                "text": "No speech was detected in this call (no speaking cues), so talk ratio, monologues "
                "and interactivity cannot be coached: check that microphones were analysed.",
            }
        ]
    cite_longest = [longest] if longest else []
    improve: list[dict[str, Any]] = []
    keep: list[dict[str, Any]] = []
    pct = f["rep_talk_pct"]
    bench = "the ~43:57 of successful discovery calls (Gong research)"
    if share > TALK_SHARE_HIGH:
        improve.append(
            {
                "topic": "talk_ratio",
                "severity": "improve",
                "moments": cite_longest,
                "text": f"You talked {pct}% of the time ({f['talk_to_listen']}) against {bench}. "
                f"Ask an open question and let the buyer talk, starting where you spoke longest "
                f"({longest['at'] if longest else 'n/a'}).",
            }
        )
    elif share < TALK_SHARE_LOW:
        improve.append(
            {
                "topic": "talk_ratio",
                "severity": "improve",
                "moments": cite_longest,
                "text": f"You talked only {pct}% of the time ({f['talk_to_listen']}) against {bench}: "
                "summarise what you heard and steer the call to next steps.",
            }
        )
    else:
        keep.append(
            {
                "topic": "talk_ratio",
                "severity": "keep",
                "moments": cite_longest,
                "text": f"Your talk-to-listen ratio {f['talk_to_listen']} is close to {bench}: keep it.",
            }
        )

    if longest and longest["duration_s"] >= LONG_MONOLOGUE_S:
        improve.append(
            {
                "topic": "monologue",
                "severity": "improve",
                "moments": [longest],
                "text": f"Your longest monologue ran {longest['duration_s']:.0f} s ({longest['at']}): "
                f"break stretches over {LONG_MONOLOGUE_S:.0f} s with a check-in question.",
            }
        )
    elif longest:
        keep.append(
            {
                "topic": "monologue",
                "severity": "keep",
                "moments": [longest],
                "text": f"Your longest monologue was {longest['duration_s']:.0f} s ({longest['at']}), under "
                f"{LONG_MONOLOGUE_S:.0f} s: you kept the floor open.",
            }
        )

    per_min = f["switches_per_minute"]
    if per_min is not None and per_min < LOW_SWITCHES_PER_MIN:
        improve.append(
            {
                "topic": "interactivity",
                "severity": "improve",
                "moments": cite_longest,
                "text": f"Only {per_min:.1f} speaker switches per minute ({f['speaker_switches']} in "
                f"{duration_s / 60:.1f} min): make it a conversation, with short questions "
                "and answers, especially around the longest stretch.",
            }
        )
    elif per_min is not None:
        keep.append(
            {
                "topic": "interactivity",
                "severity": "keep",
                "moments": [],
                "text": f"{per_min:.1f} speaker switches per minute: a real back-and-forth; keep it.",
            }
        )

    mono, listen = f["buyer_engagement_during_rep_monologues"], f["buyer_engagement_during_buyer_speech"]
    if mono is not None and listen is not None and listen - mono >= ENGAGEMENT_GAP:
        lowest = sorted(
            f["monologues"], key=lambda m: m["buyer_engagement"] if m["buyer_engagement"] is not None else 1.0
        )[:MOMENTS_PER_TIP]
        improve.append(
            {
                "topic": "engagement",
                "severity": "improve",
                "moments": lowest,
                "text": f"Buyer engagement signal was {mono:.2f} during your monologues against {listen:.2f} "
                f"while the buyer spoke; it sagged most at {', '.join(m['at'] for m in lowest)}: "
                "hand over sooner there.",
            }
        )

    hesitations = f["hesitation_moments"] or []
    while_speaking = [h for h in hesitations if h["rep_activity"] == "speaking"]
    while_listening = [h for h in hesitations if h["rep_activity"] == "listening"]
    if while_speaking:
        cited = while_speaking[:MOMENTS_PER_TIP]
        improve.append(
            {
                "topic": "hesitation",
                "severity": "improve",
                "moments": [_moment(h["t"], None, f"buyer {h['emotion']} signal") for h in cited],
                "text": f"{len(while_speaking)} hesitation signal(s) from the buyer while you were talking "
                f"({', '.join(h['at'] + ' ' + str(h['emotion']) for h in cited)}): pause at such "
                "points and ask how what you said lands. A signal, not proof of a feeling.",
            }
        )
    if while_listening:
        cited = while_listening[:MOMENTS_PER_TIP]
        improve.append(
            {
                "topic": "hesitation_listening",
                "severity": "improve",
                "moments": [_moment(h["t"], None, f"buyer {h['emotion']} signal") for h in cited],
                "text": f"{len(while_listening)} hesitation signal(s) while the buyer spoke "
                f"({', '.join(h['at'] for h in cited)}): revisit those topics with a follow-up "
                "question; they may hide an objection. A signal, not proof of a feeling.",
            }
        )

    thirds, trend = f["buyer_sentiment_by_third"], f["sentiment_trend"]
    if trend == "falling" and thirds is not None:
        start = 2 * duration_s / 3
        improve.append(
            {
                "topic": "sentiment",
                "severity": "improve",
                "moments": [_moment(start, duration_s, "last third of the call")],
                "text": f"Buyer sentiment signal fell from {thirds[0]:.2f} in the first third to "
                f"{thirds[2]:.2f} in the last ({clock(start)}-{clock(duration_s)}): "
                "recap agreed value before discussing price and next steps.",
            }
        )
    elif trend == "rising" and thirds is not None:
        keep.append(
            {
                "topic": "sentiment",
                "severity": "keep",
                "moments": [],
                "text": f"Buyer sentiment signal rose from {thirds[0]:.2f} to {thirds[2]:.2f} over the call: "
                "the way you closed worked.",
            }
        )
    return (improve + keep)[:MAX_TIPS]
