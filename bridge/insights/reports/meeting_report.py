"""Post-meeting engagement report (issue 7, part 4): one self-contained, printable HTML page.

The figures come from the meeting's summary (``bridge.insights.summary``): the stored
one when it is still valid under today's policy, else computed from the stored
cues on the spot. JSON and CSV (``bridge.insights.reports.exports``) carry the same
numbers, so what a person reads and what a spreadsheet gets never disagree.

Charts reuse ``bridge.insights.reports.charts`` (matplotlib rendered to inline SVG) and
its palette, like the ``analyze --report`` page.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import matplotlib.pyplot as plt
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.confidence import TALK_NOT_ASSESSED
from bridge.config import Settings
from bridge.insights.reports.charts import ATTENTION, ENGAGEMENT, EXPRESSION, SENTIMENT, _svg, bars, timeline
from bridge.insights.reports.file_report import _version, environment
from bridge.insights.summary import load_summary
from bridge.insights.timeline import NEGATIVE_EMOTIONS, clock
from bridge.store import repo

#: One colour per participant, starting with the shared palette (charts.py), then distinct calm hues.
PARTICIPANT_COLOURS: tuple[str, ...] = (
    ENGAGEMENT,
    EXPRESSION,
    SENTIMENT,
    "#8e5ea2",
    "#c0504d",
    "#2a9d8f",
    "#6b7280",
    ATTENTION,
)
#: The room's mean engagement, drawn over the participants' lines.
ROOM_COLOUR = "#1f2933"
#: Negative-emotion expression markers (the dashboard's alert red).
NEGATIVE_COLOUR = "#c0504d"
#: matplotlib's pyplot keeps global state; routes render in worker threads, one at a time.
_RENDER_LOCK = threading.Lock()


def colour(i: int) -> str:
    return PARTICIPANT_COLOURS[i % len(PARTICIPANT_COLOURS)]


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def report_data(*, session: AsyncSession, meeting_id: str, settings: Settings) -> dict[str, Any] | None:
    """Everything a report shows, as plain JSON-ready data; None for an unknown meeting."""
    meeting = await repo.get_meeting(session=session, meeting_id=meeting_id)
    if meeting is None:
        return None
    summary = await load_summary(session=session, meeting_id=meeting_id, settings=settings)
    assert summary is not None  # the meeting exists
    return {
        "meeting": {
            "id": meeting.id,
            "title": meeting.title,
            "kind": meeting.kind,
            "context": meeting.context,
            "created_at": _iso(meeting.created_at),
            "started_at": _iso(meeting.started_at),
            "ended_at": _iso(meeting.ended_at),
        },
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "microcue_version": _version(),
        "summary": summary,
    }


def activity_chart(people: list[dict[str, Any]], duration: float, emotions: bool) -> str:
    """One row per participant: talk segments as bars, expression signals as markers at their apex."""
    height = 0.9 + 0.55 * max(len(people), 1)
    fig, ax = plt.subplots(figsize=(9, height), dpi=100)
    labels = []
    for row, p in enumerate(people):
        y = len(people) - 1 - row
        labels.append(p["display_name"])
        segments = [(a, b - a) for a, b in p["talk_segments"]]
        ax.broken_barh(segments, (y - 0.18, 0.36), color=colour(row), alpha=0.35, linewidth=0)
        events = (p["expression_events"] or []) if emotions else []
        for e in events:
            negative = e["emotion"] in NEGATIVE_EMOTIONS
            ax.plot(
                e["t"],
                y,
                marker="o" if e["kind"] == "micro" else "s",
                markersize=7 if e["kind"] == "micro" else 6,
                color=NEGATIVE_COLOUR if negative else EXPRESSION,
                markeredgecolor="white",
                linestyle="none",
            )
            ax.annotate((e["emotion"] or "unclear")[:3], (e["t"], y + 0.22), fontsize=7, ha="center", color="#52606d")
    ax.set_yticks(range(len(people)), list(reversed(labels)))
    ax.set_ylim(-0.6, len(people) - 0.4)
    ax.set_xlim(0, max(duration, 1.0))
    ax.set_xlabel(
        "seconds (bars: speaking; ● micro, ■ macro expression signal; red: negative)"
        if emotions
        else "seconds (bars: speaking)"
    )
    ax.grid(axis="x", alpha=0.25)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return _svg(fig)


def charts(summary: dict[str, Any]) -> dict[str, str]:
    """The report's SVG charts, keyed by name; emotion charts only when the policy allows them."""
    people = summary["participants"]
    width = float(summary["bucket_s"])
    emotions = not summary["policy"]["emotions_withheld"]
    curve = summary["meeting"]["engagement_curve"]
    seconds = [(i + 0.5) * width for i in range(len(curve))]
    out: dict[str, str] = {}
    if not people or not curve:
        return out
    series = {p["display_name"]: (p["engagement_timeline"], colour(i)) for i, p in enumerate(people)}
    series["room mean"] = (curve, ROOM_COLOUR)
    out["engagement"] = timeline(seconds, series, ylabel="engagement 0 .. 1", height=2.6)
    if emotions:
        sentiment = {
            p["display_name"]: (p["sentiment_timeline"], colour(i))
            for i, p in enumerate(people)
            if any(v is not None for v in p["sentiment_timeline"])
        }
        if sentiment:
            out["sentiment"] = timeline(seconds, sentiment, ylim=(-1.0, 1.0), ylabel="sentiment -1 .. 1", height=2.4)
    out["activity"] = activity_chart(people, float(summary["duration_s"]), emotions)
    out["talk"] = bars(
        [p["display_name"] for p in people], [p["talk_time_s"] for p in people], xlabel="seconds speaking"
    )
    return out


def render_html(data: dict[str, Any]) -> str:
    """The printable page; safe to call from worker threads (rendering is serialised)."""
    summary = data["summary"]
    with _RENDER_LOCK:
        svgs = charts(summary)
    names = {p["participant_id"]: p["display_name"] for p in summary["participants"]}
    return (
        environment()
        .get_template("meeting_report.html.j2")
        .render(
            meeting=data["meeting"],
            generated=data["generated_at"],
            version=data["microcue_version"],
            s=summary,
            svgs=svgs,
            names=names,
            clock=clock,
            negative=NEGATIVE_EMOTIONS,
            talk_label=TALK_NOT_ASSESSED,
        )
    )
