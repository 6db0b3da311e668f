"""Charts as inline SVG strings, so a report is one self-contained file that prints well."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display: reports are rendered in services and CI
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

#: Labels are people's display names: never parse ``$...$`` as mathtext (a name like
#: ``$\\frac{$`` made matplotlib raise and the report answer 500).
_NO_MATH: dict[RcKeyType, bool] = {"text.parse_math": False, "text.usetex": False}

# Calm palette shared with the dashboard: engagement blue, sentiment green/red, expressions amber.
ENGAGEMENT = "#3b6ea5"
ATTENTION = "#8aa9c8"
SENTIMENT = "#4f8a5b"
EXPRESSION = "#c7882b"


def _svg(fig: plt.Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def timeline(
    seconds: Sequence[float],
    series: dict[str, tuple[Sequence[float | None], str]],
    *,
    marks: Sequence[tuple[float, str]] = (),
    ylim: tuple[float, float] = (0.0, 1.0),
    ylabel: str = "",
    height: float = 2.2,
) -> str:
    """Lines over media time with optional vertical marks (time, colour) for events."""
    with matplotlib.rc_context(_NO_MATH):
        return _timeline(seconds, series, marks=marks, ylim=ylim, ylabel=ylabel, height=height)


def _timeline(
    seconds: Sequence[float],
    series: dict[str, tuple[Sequence[float | None], str]],
    *,
    marks: Sequence[tuple[float, str]],
    ylim: tuple[float, float],
    ylabel: str,
    height: float,
) -> str:
    fig, ax = plt.subplots(figsize=(9, height), dpi=100)
    for label, (values, colour) in series.items():
        xs = [s for s, v in zip(seconds, values, strict=True) if v is not None]
        ys = [v for v in values if v is not None]
        ax.plot(xs, ys, color=colour, linewidth=1.8, label=label)
    for t, colour in marks:
        ax.axvline(t, color=colour, linewidth=1.0, alpha=0.7)
    ax.set_ylim(*ylim)
    ax.set_xlabel("seconds")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if series:
        ax.legend(loc="upper right", frameon=False, fontsize=8, ncol=len(series))
    return _svg(fig)


def bars(labels: Sequence[str], values: Sequence[float], colour: str = ENGAGEMENT, xlabel: str = "") -> str:
    with matplotlib.rc_context(_NO_MATH):
        return _bars(labels, values, colour, xlabel)


def _bars(labels: Sequence[str], values: Sequence[float], colour: str, xlabel: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(len(labels), 1)), dpi=100)
    ax.barh(list(labels), list(values), color=colour)
    ax.set_xlabel(xlabel)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _svg(fig)
