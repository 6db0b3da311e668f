"""The one-page report of ``microcue analyze --report``: timelines and the spotted expressions."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from bridge.confidence import NO_AUDIO, TALK_NOT_ASSESSED
from bridge.insights.reports.charts import ATTENTION, ENGAGEMENT, EXPRESSION, SENTIMENT, timeline

TEMPLATES = Path(__file__).with_name("templates")


def environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))


def _version() -> str:
    try:
        return version("microcue")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "dev"


def render_file_report(result: dict[str, Any]) -> str:
    p = result["participants"][0]
    rows = p["per_second"]
    seconds = [r["second"] + 0.5 for r in rows]
    events = p["events"]
    marks = [(e["apex_s"], EXPRESSION) for e in events]
    engagement_svg = timeline(
        seconds,
        {
            "engagement": ([r["engagement"] for r in rows], ENGAGEMENT),
            "attention": ([r["attention"] for r in rows], ATTENTION),
        },
        marks=marks,
        ylabel="0 .. 1",
    )
    sentiment_svg = timeline(
        seconds,
        {"sentiment": ([r["sentiment"] for r in rows], SENTIMENT)},
        marks=marks,
        ylim=(-1.0, 1.0),
        ylabel="-1 .. 1",
    )
    values = [r["engagement"] for r in rows if r["engagement"] is not None]
    speech = p.get("speech") or {}
    return (
        environment()
        .get_template("file_report.html.j2")
        .render(
            source_name=Path(result["source"]).name,
            width=result["width"],
            height=result["height"],
            fps=result["fps"],
            frames=result["frames"],
            duration_s=result["duration_s"],
            complete=result["complete"],
            error=result["error"],
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            face_present_ratio=p["face_present_ratio"],
            micro_count=sum(e["kind"] == "micro" for e in events),
            macro_count=sum(e["kind"] == "macro" for e in events),
            engagement_mean=f"{sum(values) / len(values):.2f}" if values else "n/a",
            engagement_svg=engagement_svg,
            sentiment_svg=sentiment_svg,
            events=events,
            speech=speech,
            talk_label=TALK_NOT_ASSESSED,
            no_audio=NO_AUDIO,
            version=_version(),
        )
    )
