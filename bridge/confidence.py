"""The confidence floor: expression signals below it are hidden wherever a presenter looks
(dashboard, live feed, reports), and counted so the presenter knows how many were hidden.

Confidence is calibrated to the share of true events (docs/benchmarks.md, "Spotting on real
faces"), so the default floor hides signals that are more likely false than true.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from inference.cues import EXPRESSION_TYPES, Cue

#: Default of ``MICROCUE_MIN_CONFIDENCE``: confidence is calibrated to the share of true events
#: (inference/expressions.py CALIBRATION, reliability table in docs/benchmarks.md), so at 0.5 a shown
#: signal is at least as likely true as false on the bench it was fitted on. (0.3 before calibration.)
DEFAULT_MIN_CONFIDENCE = 0.5


def below_floor(cue_type: str, confidence: float | None, floor: float) -> bool:
    """An expression signal whose confidence is under the floor (or unknown while a floor is set)."""
    if cue_type not in EXPRESSION_TYPES or floor <= 0.0:
        return False
    return confidence is None or confidence < floor


def split_shown(cues: Iterable[Cue], floor: float) -> tuple[list[Cue], int]:
    """(the cues a presenter may see, how many expression signals were hidden)."""
    shown: list[Cue] = []
    hidden = 0
    for c in cues:
        if below_floor(c.type, c.confidence, floor):
            hidden += 1
        else:
            shown.append(c)
    return shown, hidden


def count_hidden(cues: Sequence[Cue], floor: float) -> int:
    return sum(below_floor(c.type, c.confidence, floor) for c in cues)


#: How a person's talk time is labelled wherever a presenter reads it (the tile, the reports,
#: ``analyze`` JSON): while someone talks their face moves with the speech and a micro-expression
#: is seldom told apart from it, so a micro signal then shows only if its confidence (which takes
#: the talk into account, inference/expressions.py SPEAKING_ODDS_RATIO) clears the floor above.
TALK_NOT_ASSESSED = "talking: micro-expressions not assessed"
#: ...and what is said instead when there was no audio to tell talk from silence.
NO_AUDIO = "no audio: talking not known"
