"""Meeting summary, computed only from the cues in the store.

Why only from stored cues: the summary must be the same whether the service
ran the whole meeting or crashed and restarted halfway (issue 7, part 3), so it
never reads process memory. ``summarize`` is pure (hand-built cue lists in unit
tests give exact answers); ``compute_summary`` loads what it needs from the
store, and ``make_summary_hook`` is what ``MeetingService.end_meeting`` runs.

How the cue streams are read (inference/engagement.py): engagement, sentiment
and presence are emitted on change (and at least every 30 s), so each is a
*held* signal: a value lasts until the next cue of its kind. Every mean here is
therefore time-weighted over the seconds a participant was present, not a
mean of cues. ``speaking`` cues are 1 at a start and 0 at an end
(bridge/media/voice.py); a start without an end runs to the end of the meeting.
While someone talks, their micro-expressions are not assessed (a micro signal then shows only if
its confidence clears the floor, bridge/confidence.py): each person's share of their time in view
spent talking says how much of it that was, and each expression says whether it came while talking.

Purpose policy (bridge/policy.py): when a meeting may not infer emotions, no
sentiment or expression figure is computed at all, even from cues that would
be in the store, and the summary says so.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge import policy
from bridge.cluster import lease
from bridge.confidence import TALK_NOT_ASSESSED, split_shown
from bridge.config import Settings
from bridge.executor import run_in_background
from bridge.insights import coaching
from bridge.insights.timeline import (
    NEGATIVE_EMOTIONS,
    Segment,
    bucket_means,
    clock,
    intersect,
    masked,
    meeting_duration,
    presence_intervals,
    rounded,
    signal_segments,
    speaking_intervals,
    total,
    weighted_mean,
)
from bridge.store import repo
from bridge.store.tables import Meeting
from inference.cues import EMOTION_CUE_TYPES, EMOTIONS, Cue
from inference.speech import overlaps

#: Bump when the body's shape changes, so readers can tell old stored summaries apart.
#: 2: talk_share, micro_not_assessed_s and each expression event's while_talking.
SUMMARY_VERSION = 2
#: Width of a timeline bucket (issue 7: "engagement timeline (per 10 s)").
BUCKET_S = 10.0
#: Most/least engaging *minutes* (issue 7).
MINUTE_S = 60.0
#: Negative micro-expressions whose apexes fall within this window form one cluster (issue 7 brief).
CLUSTER_WINDOW_S = 30.0
#: Fewest negative micro-expressions that make a cluster: one alone is a signal, not a pattern.
CLUSTER_MIN = 2
#: Smallest change of the 10 s engagement mean between neighbouring buckets that is a key moment.
#: Our choice: engagement streams are only emitted on changes of 0.10 (inference/engagement.py
#: CHANGE_ENGAGEMENT), so a swing of 0.15 is above the stream's own resolution.
KEY_SWING = 0.15
#: Key moments of each kind kept per participant (largest first); the report has one page.
KEY_MOMENTS_PER_KIND = 3

#: Shown in every summary and report (docs/contracts.md: "signal, not truth").
SIGNAL_NOTICE = (
    "Every figure here is a signal derived from faces and voices, with a confidence: it is not the truth "
    "about what anyone felt, meant or intended, and never proof of a lie, guilt or intent."
)
#: Shown with the talk figures: what talking means for what is assessed, and for whom MicroCue works.
TALK_NOTICE = (
    f"Talk share is the share of a person's time in view that they talked ({TALK_NOT_ASSESSED}). While "
    "someone talks their face moves with the speech, and a micro-expression of under half a second "
    "is seldom told apart from it: such signals are shown only when their confidence still clears the "
    "floor, and are marked as coming while talking. Macro-expressions (0.6 to 3 s) are assessed "
    "throughout, but few are found while someone talks: no expression in talk time does not mean none "
    "was made. The reactions MicroCue reads best are those of people who listen. 0 % means no "
    "speech was heard: a person without a working microphone also reads 0 %."
)
#: Shown when the meeting's policy withheld emotion inference.
WITHHELD_NOTICE = (
    "No emotion figures: this meeting's purpose policy does not allow emotion inference, so sentiment, "
    "micro- and macro-expressions and negative-expression moments were not computed."
)


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """What the summary needs to know about a person besides their cues."""

    id: str
    display_name: str = ""
    role: str = "participant"
    consent: bool | None = None


# --- per participant ----------------------------------------------------------------------------


def engagement_moments(participant_id: str, timeline: Sequence[float | None], width: float) -> list[dict[str, Any]]:
    """Largest rises (peaks) and falls (drops) of the bucketed engagement between neighbouring buckets."""
    changes: list[tuple[float, int]] = []
    for i in range(1, len(timeline)):
        before, after = timeline[i - 1], timeline[i]
        if before is not None and after is not None:
            changes.append((after - before, i))
    out: list[dict[str, Any]] = []
    for kind, chosen in (
        ("engagement_drop", sorted((c for c in changes if c[0] <= -KEY_SWING), key=lambda c: c[0])),
        ("engagement_peak", sorted((c for c in changes if c[0] >= KEY_SWING), key=lambda c: -c[0])),
    ):
        for delta, i in chosen[:KEY_MOMENTS_PER_KIND]:
            before, after = timeline[i - 1], timeline[i]
            assert before is not None and after is not None
            verb = "fell" if delta < 0 else "rose"
            out.append(
                {
                    "kind": kind,
                    "participant_id": participant_id,
                    "t": i * width,
                    "end": (i + 1) * width,
                    "value": rounded(after),
                    "delta": rounded(delta),
                    "detail": f"engagement {verb} from {before:.2f} to {after:.2f} at {clock(i * width)}",
                }
            )
    return out


def negative_clusters(participant_id: str, cues: Sequence[Cue]) -> list[dict[str, Any]]:
    """Runs of negative micro-expressions: all those within ``CLUSTER_WINDOW_S`` of the run's first apex."""
    events = sorted(
        (c for c in cues if c.type == "micro_expression" and c.emotion in NEGATIVE_EMOTIONS),
        key=lambda c: c.apex_s if c.apex_s is not None else c.t,
    )
    apex = [c.apex_s if c.apex_s is not None else c.t for c in events]
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(events):
        j = i
        while j + 1 < len(events) and apex[j + 1] - apex[i] <= CLUSTER_WINDOW_S:
            j += 1
        if j - i + 1 >= CLUSTER_MIN:
            emotions = Counter(str(c.emotion) for c in events[i : j + 1])
            out.append(
                {
                    "kind": "negative_cluster",
                    "participant_id": participant_id,
                    "t": rounded(apex[i]),
                    "end": rounded(apex[j]),
                    "count": j - i + 1,
                    "emotions": dict(sorted(emotions.items())),
                    "detail": (
                        f"{j - i + 1} negative micro-expression signals between {clock(apex[i])} and "
                        f"{clock(apex[j])} ({', '.join(sorted(emotions))})"
                    ),
                }
            )
            i = j + 1
        else:
            i += 1
    return out


def _expression_counts(cues: Sequence[Cue]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {"micro": dict.fromkeys(EMOTIONS, 0), "macro": dict.fromkeys(EMOTIONS, 0)}
    for c in cues:
        if c.type in ("micro_expression", "macro_expression") and c.emotion is not None:
            counts["micro" if c.type == "micro_expression" else "macro"][c.emotion] += 1
    return counts


def summarize_participant(
    info: ParticipantInfo, cues: Sequence[Cue], *, end: float, buckets: int, emotions_allowed: bool
) -> dict[str, Any]:
    present = presence_intervals(cues, end)
    talk = speaking_intervals(cues, end)
    engagement = masked(signal_segments(cues, "engagement", end), present)
    timeline = bucket_means(engagement, BUCKET_S, buckets)
    in_view = total(present)
    talking_in_view = total(intersect(talk, present))
    body: dict[str, Any] = {
        "participant_id": info.id,
        "display_name": info.display_name or info.id,
        "role": info.role,
        "consent": info.consent,
        "cue_count": len(cues),
        "time_present_s": rounded(total(present)),
        "talk_time_s": rounded(total(talk)),
        "talk_turns": len(talk),
        "talk_segments": [[rounded(a), rounded(b)] for a, b in talk],
        # share of the time in view spent talking: micro-expressions not assessed then
        "talk_share": rounded(talking_in_view / in_view) if in_view > 0 else None,
        "engagement_mean": rounded(weighted_mean(engagement)),
        "engagement_timeline": [rounded(v) for v in timeline],
        "key_moments": engagement_moments(info.id, timeline, BUCKET_S),
    }
    if emotions_allowed:
        sentiment = masked(signal_segments(cues, "sentiment", end), present)
        expressions = [c for c in cues if c.type in ("micro_expression", "macro_expression")]
        body["sentiment_mean"] = rounded(weighted_mean(sentiment))
        body["sentiment_timeline"] = [rounded(v) for v in bucket_means(sentiment, BUCKET_S, buckets)]
        body["expressions"] = _expression_counts(cues)
        body["micro_not_assessed_s"] = rounded(talking_in_view)
        body["expression_events"] = [
            {
                "t": rounded(c.apex_s if c.apex_s is not None else c.t),
                "kind": "micro" if c.type == "micro_expression" else "macro",
                "emotion": c.emotion,
                "confidence": rounded(c.confidence),
                "while_talking": overlaps(talk, c.onset_s if c.onset_s is not None else c.t, c.offset_s or c.t),
            }
            for c in sorted(expressions, key=lambda c: c.apex_s if c.apex_s is not None else c.t)
        ]
        body["key_moments"] += negative_clusters(info.id, cues)
    else:
        body["sentiment_mean"] = None
        body["sentiment_timeline"] = None
        body["expressions"] = None
        body["micro_not_assessed_s"] = None  # nothing emotional is assessed at all
        body["expression_events"] = None
    body["key_moments"].sort(key=lambda m: (m["t"], m["kind"]))
    return body


# --- the whole meeting ------------------------------------------------------------------------------


def _minutes(per_participant: Sequence[list[Segment]], duration: float) -> list[dict[str, Any]]:
    count = math.ceil(duration / MINUTE_S) if duration > 0 else 0
    columns = [bucket_means(p, MINUTE_S, count) for p in per_participant]
    out: list[dict[str, Any]] = []
    for i in range(count):
        values = [col[i] for col in columns if col[i] is not None]
        mean = sum(v for v in values if v is not None) / len(values) if values else None
        out.append(
            {
                "minute": i + 1,
                "start_s": i * MINUTE_S,
                "end_s": min((i + 1) * MINUTE_S, duration),
                "engagement": rounded(mean),
                "participants": len(values),
            }
        )
    return out


def policy_block(decision: policy.PolicyDecision) -> dict[str, Any]:
    """The policy the figures were computed under, and the sentence every report shows."""
    if decision.overridden:
        statement = decision.notice
    elif not decision.emotions_allowed:
        statement = f"{decision.notice} {WITHHELD_NOTICE}"
    else:
        statement = (
            f"This is a {decision.context} meeting: emotion signals (sentiment, micro- and macro-expressions) "
            "are inferred, and participants were told so when they joined (EU AI Act Art. 50(3))."
        )
    return {**decision.to_dict(), "emotions_withheld": not decision.emotions_allowed, "statement": statement}


def summarize(
    cues: Sequence[Cue],
    participants: Sequence[ParticipantInfo],
    *,
    decision: policy.PolicyDecision,
    kind: str = "general",
    min_confidence: float = 0.0,
) -> dict[str, Any]:
    """The summary body for these cues; pure, so every figure is testable on hand-built cue lists.

    Expression signals below ``min_confidence`` (MICROCUE_MIN_CONFIDENCE) enter no figure; how
    many were hidden is in ``hidden_low_confidence``."""
    allowed = decision.emotions_allowed
    if not allowed:
        # Second line of defence: emotion cues that reached the store anyway never enter a figure.
        cues = [c for c in cues if c.type not in EMOTION_CUE_TYPES]
    cues, hidden = split_shown(cues, min_confidence)
    by_participant: dict[str, list[Cue]] = defaultdict(list)
    for c in cues:
        by_participant[c.participant_id].append(c)
    infos = {p.id: p for p in participants}
    for pid in by_participant:
        infos.setdefault(pid, ParticipantInfo(id=pid, display_name=pid))
    duration = meeting_duration(cues)
    buckets = math.ceil(duration / BUCKET_S) if duration > 0 else 0

    people = [
        summarize_participant(
            info, by_participant.get(info.id, []), end=duration, buckets=buckets, emotions_allowed=allowed
        )
        for info in infos.values()
    ]
    curve: list[float | None] = []
    for i in range(buckets):
        values = [p["engagement_timeline"][i] for p in people if p["engagement_timeline"][i] is not None]
        curve.append(rounded(sum(values) / len(values)) if values else None)
    engaged = [
        masked(
            signal_segments(by_participant.get(p.id, []), "engagement", duration),
            presence_intervals(by_participant.get(p.id, []), duration),
        )
        for p in infos.values()
    ]
    minutes = _minutes(engaged, duration)
    rated = [m for m in minutes if m["engagement"] is not None]
    most = max(rated, key=lambda m: m["engagement"], default=None)
    # With a single rated minute there is nothing to compare it with.
    least = min(rated, key=lambda m: m["engagement"]) if len(rated) >= 2 else None  # noqa: PLR2004
    body: dict[str, Any] = {
        "version": SUMMARY_VERSION,
        "kind": kind,
        "duration_s": rounded(duration),
        "bucket_s": BUCKET_S,
        "cue_count": len(cues),
        "cue_counts": dict(sorted(Counter(c.type for c in cues).items())),
        "min_confidence": min_confidence,
        "hidden_low_confidence": hidden,
        "notice": SIGNAL_NOTICE,
        "talk_notice": TALK_NOTICE,
        "policy": policy_block(decision),
        "participants": people,
        "meeting": {
            "engagement_curve": curve,
            "minutes": minutes,
            "most_engaging_minute": most,
            "least_engaging_minute": least,
            "key_moments": sorted(
                (m for p in people for m in p["key_moments"]), key=lambda m: (m["t"], m["participant_id"])
            ),
        },
    }
    if kind == "sales":
        body["coaching"] = coaching.coach(
            cues, {p.id: p.role for p in infos.values()}, duration_s=duration, emotions_allowed=allowed
        )
    return body


# --- from the store -------------------------------------------------------------------------------


def meeting_decision(meeting: Meeting, settings: Settings) -> policy.PolicyDecision:
    """The stricter of the policy the meeting ran under and the one in force now.

    A meeting run under ``unrestricted`` keeps its emotion figures only while the
    operator still runs unrestricted; a meeting run under the default never gains them.
    """
    return policy.for_meeting(meeting.context, meeting.policy, settings)


async def compute_summary(*, session: AsyncSession, meeting: Meeting, settings: Settings) -> dict[str, Any]:
    """The summary from the stored cues and participants of ``meeting``."""
    cues = await repo.cues_for_meeting(session=session, meeting_id=meeting.id)
    participants = [
        ParticipantInfo(id=p.id, display_name=p.display_name, role=p.role, consent=p.consent)
        for p in await repo.list_participants(session=session, meeting_id=meeting.id)
    ]
    decision = meeting_decision(meeting, settings)
    # Pure CPU work (about 0.2 s for an hour with ten people): off the event loop, so live feeds keep flowing.
    body = await run_in_background(
        summarize, cues, participants, decision=decision, kind=meeting.kind, min_confidence=settings.min_confidence
    )
    body["meeting_id"] = meeting.id
    body["ended"] = meeting.ended_at is not None
    # Time no worker analysed (one crashed, another took over): missing, not quiet (bridge/cluster/lease.py).
    gaps = await lease.coverage_gaps(session, meeting.id)
    body["coverage"] = {"gaps": gaps, "missing_s": round(sum(g["missing_s"] for g in gaps), 3)}
    return body


async def compute_and_store(*, session: AsyncSession, meeting_id: str, settings: Settings) -> dict[str, Any] | None:
    """Computes the summary; stores it once the meeting has ended (a running meeting's is a preview)."""
    meeting = await repo.get_meeting(session=session, meeting_id=meeting_id)
    if meeting is None:
        return None
    body = await compute_summary(session=session, meeting=meeting, settings=settings)
    if meeting.ended_at is not None:
        await repo.save_summary(session=session, meeting_id=meeting_id, body=body)
    return body


async def load_summary(*, session: AsyncSession, meeting_id: str, settings: Settings) -> dict[str, Any] | None:
    """The stored summary when it is still valid under today's policy, else a fresh one."""
    meeting = await repo.get_meeting(session=session, meeting_id=meeting_id)
    if meeting is None:
        return None
    stored = await repo.get_summary(session=session, meeting_id=meeting_id)
    if stored is not None:
        body = dict(stored.body)
        allowed_then = not body.get("policy", {}).get("emotions_withheld", True)
        people = await repo.list_participants(session=session, meeting_id=meeting_id)
        if (
            body.get("version") == SUMMARY_VERSION
            and allowed_then == meeting_decision(meeting, settings).emotions_allowed
            and all(_identities(body).get(p.id) == (p.role, p.display_name or p.id) for p in people)
        ):
            return body
    return await compute_and_store(session=session, meeting_id=meeting_id, settings=settings)


def _identities(body: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Who the stored summary thinks each participant is: a role or name the presenter changed
    since (``PATCH .../participants/{pid}``) makes it stale, so coaching follows the roles as they stand."""
    return {p["participant_id"]: (p.get("role"), p.get("display_name")) for p in body.get("participants", [])}


def make_summary_hook(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> Callable[[str], Awaitable[dict[str, Any] | None]]:
    """``MeetingService.summary_hook``: computes (and, for an ended meeting, stores) the summary."""

    async def hook(meeting_id: str) -> dict[str, Any] | None:
        async with sessions() as session:
            return await compute_and_store(session=session, meeting_id=meeting_id, settings=settings)

    return hook
