"""JSON and CSV exports of a meeting report: the same numbers as the HTML page.

JSON is the report data as is (``meeting_report.report_data``). CSV is one long
table, one number per row, so a spreadsheet can filter by ``section`` and
``metric`` without knowing the JSON shape:

    section, participant_id, participant, metric, start_s, end_s, value, detail
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from bridge.confidence import TALK_NOT_ASSESSED

CSV_COLUMNS: tuple[str, ...] = (
    "section",
    "participant_id",
    "participant",
    "metric",
    "start_s",
    "end_s",
    "value",
    "detail",
)

Row = dict[str, Any]


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _row(section: str, metric: str, value: Any = None, **extra: Any) -> Row:
    return {"section": section, "metric": metric, "value": value, **extra}


def _participant_rows(p: dict[str, Any], width: float) -> Iterator[Row]:
    who = {"participant_id": p["participant_id"], "participant": p["display_name"]}
    for metric in ("time_present_s", "talk_time_s", "talk_turns", "engagement_mean", "sentiment_mean", "cue_count"):
        if p.get(metric) is not None:
            yield _row("participant", metric, p[metric], detail=p["role"], **who)
    for metric in ("talk_share", "micro_not_assessed_s"):
        if p.get(metric) is not None:
            yield _row("participant", metric, p[metric], detail=TALK_NOT_ASSESSED, **who)
    for a, b in p["talk_segments"]:
        yield _row("talk_segment", "speaking", b - a, start_s=a, end_s=b, **who)
    for name in ("engagement", "sentiment"):
        for i, v in enumerate(p.get(f"{name}_timeline") or []):
            if v is not None:
                yield _row(f"{name}_timeline", name, v, start_s=i * width, end_s=(i + 1) * width, **who)
    for kind, counts in (p.get("expressions") or {}).items():
        for emotion, n in counts.items():
            yield _row("expressions", f"{kind}:{emotion}", n, **who)
    for e in p.get("expression_events") or []:
        yield _row(
            "expression_event",
            f"{e['kind']}:{e['emotion']}",
            e["confidence"],
            start_s=e["t"],
            detail="confidence, while talking" if e.get("while_talking") else "confidence",
            **who,
        )


def rows(data: dict[str, Any]) -> Iterator[Row]:
    """Every number of the report, one per row."""
    s = data["summary"]
    m = data["meeting"]
    yield _row("meeting", "title", m["title"], detail=f"{m['kind']} / {m['context']}")
    yield _row("meeting", "duration_s", s["duration_s"])
    yield _row("meeting", "cue_count", s["cue_count"])
    for kind, n in s["cue_counts"].items():
        yield _row("meeting", f"cues:{kind}", n)
    pol = s["policy"]
    yield _row("policy", "emotions_withheld", pol["emotions_withheld"], detail=pol["statement"])
    yield _row("policy", "overridden", pol["overridden"], detail=f"MICROCUE_POLICY={pol['policy']}")
    yield _row("notice", "signal_not_truth", None, detail=s["notice"])
    if s.get("talk_notice"):
        yield _row("notice", "talk", None, detail=s["talk_notice"])
    width = float(s["bucket_s"])
    for p in s["participants"]:
        yield from _participant_rows(p, width)
    meeting = s["meeting"]
    for i, v in enumerate(meeting["engagement_curve"]):
        if v is not None:
            yield _row("meeting_curve", "engagement", v, start_s=i * width, end_s=(i + 1) * width)
    for minute in meeting["minutes"]:
        yield _row(
            "minute",
            "engagement",
            minute["engagement"],
            start_s=minute["start_s"],
            end_s=minute["end_s"],
            detail=f"minute {minute['minute']}, {minute['participants']} participant(s)",
        )
    for label in ("most_engaging_minute", "least_engaging_minute"):
        if meeting[label] is not None:
            minute = meeting[label]
            yield _row(
                "meeting",
                label,
                minute["engagement"],
                start_s=minute["start_s"],
                end_s=minute["end_s"],
                detail=f"minute {minute['minute']}",
            )
    names = {p["participant_id"]: p["display_name"] for p in s["participants"]}
    for k in meeting["key_moments"]:
        value = k.get("delta", k.get("count"))
        yield _row(
            "key_moment",
            k["kind"],
            value,
            start_s=k["t"],
            end_s=k["end"],
            detail=k["detail"],
            participant_id=k["participant_id"],
            participant=names.get(k["participant_id"], ""),
        )
    yield from _coaching_rows(s.get("coaching"), names)


def _coaching_rows(c: dict[str, Any] | None, names: dict[str, str]) -> Iterator[Row]:
    if not c:
        return
    if not c["available"]:
        yield _row("coaching", "available", False, detail=c["reason"])
        return
    for metric in (
        "rep_talk_s",
        "others_talk_s",
        "rep_talk_share",
        "speaker_switches",
        "switches_per_minute",
        "buyer_engagement_during_rep_monologues",
        "buyer_engagement_during_rep_speech",
        "buyer_engagement_during_buyer_speech",
    ):
        yield _row("coaching", metric, c[metric])
    yield _row("coaching", "talk_to_listen", c["talk_to_listen"])
    if c["longest_monologue"]:
        lm = c["longest_monologue"]
        yield _row("coaching", "longest_monologue_s", lm["duration_s"], start_s=lm["t"], end_s=lm["end"])
    for third, v in enumerate(c["buyer_sentiment_by_third"] or [], start=1):
        yield _row("coaching", f"buyer_sentiment_third_{third}", v)
    if c["sentiment_trend"] is not None:
        yield _row("coaching", "sentiment_trend", c["sentiment_trend"])
    for h in c["hesitation_moments"] or []:
        yield _row(
            "hesitation",
            h["emotion"],
            h["confidence"],
            start_s=h["t"],
            detail=f"rep {h['rep_activity']}",
            participant_id=h["participant_id"],
            participant=names.get(h["participant_id"], ""),
        )
    for tip in c["tips"]:
        at = "; ".join(mo["at"] for mo in tip["moments"])
        yield _row("tip", tip["topic"], tip["severity"], detail=tip["text"] + (f" [moments: {at}]" if at else ""))
    for b in c["benchmarks"]:
        yield _row("benchmark", b["metric"], b["value"], detail=f"{b['applies_to']}; source: {b['source']}")


#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV Injection"):
#: ``=``, ``+``, ``-``, ``@``, and tab / carriage return, which some importers strip first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ``'`` so it shows as text.

    Numbers stay numbers (a negative value is data, not a formula); only strings, which carry
    display names, titles and tips typed by people, are changed.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def render_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows(data):
        writer.writerow({k: ("" if row.get(k) is None else neutralise_cell(row[k])) for k in CSV_COLUMNS})
    return buf.getvalue()
