"""The one cue schema (docs/contracts.md).

The same object travels on the dashboard websocket, as the MQTT payload, as a
database row and in ``microcue analyze`` output, so every producer and consumer
builds and parses it here and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

CueType = Literal[
    "micro_expression",
    "macro_expression",
    "sentiment",
    "engagement",
    "speaking",
    "presence",
    "attention",
]
Emotion = Literal["happiness", "sadness", "surprise", "fear", "anger", "disgust", "contempt"]

CUE_TYPES: frozenset[str] = frozenset(get_args(CueType))
EMOTIONS: tuple[str, ...] = get_args(Emotion)
EXPRESSION_TYPES: frozenset[str] = frozenset({"micro_expression", "macro_expression"})
#: Cue kinds that infer emotion; the purpose policy (docs/policy.md)
#: withholds them for workplace and education meetings.
EMOTION_CUE_TYPES: frozenset[str] = frozenset({"micro_expression", "macro_expression", "sentiment"})


class CueError(ValueError):
    """A cue payload does not match the schema; the message names the field."""


@dataclass(frozen=True, slots=True)
class Cue:
    """A single live signal about one participant. A signal, never a truth."""

    type: CueType
    t: float
    meeting_id: str = ""
    participant_id: str = ""
    seq: int = 0
    value: float | None = None
    onset_s: float | None = None
    apex_s: float | None = None
    offset_s: float | None = None
    emotion: Emotion | None = None
    valence: float | None = None
    aus: tuple[str, ...] = field(default_factory=tuple)
    confidence: float | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.type not in CUE_TYPES:
            raise CueError(f"type must be one of {sorted(CUE_TYPES)}, got {self.type!r}")
        if self.emotion is not None and self.emotion not in EMOTIONS:
            raise CueError(f"emotion must be one of {list(EMOTIONS)}, got {self.emotion!r}")
        for name in ("t", "value", "onset_s", "apex_s", "offset_s", "valence", "confidence"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise CueError(f"{name} must be a finite number, got {v!r}")
        if self.type in EXPRESSION_TYPES and None in (self.onset_s, self.apex_s, self.offset_s):
            raise CueError(f"{self.type} needs onset_s, apex_s and offset_s")

    def stamped(self, *, meeting_id: str, participant_id: str, seq: int) -> Cue:
        """The bridge stamps identity and order when the cue leaves a worker."""
        return replace(self, meeting_id=meeting_id, participant_id=participant_id, seq=seq)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; fields that do not apply to this cue kind are left out."""
        d = asdict(self)
        d["aus"] = list(self.aus)
        return {k: v for k, v in d.items() if v is not None and not (k == "aus" and not v)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cue:
        if not isinstance(data, dict):
            raise CueError(f"cue must be a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise CueError(f"unknown cue fields: {sorted(unknown)}")
        if "type" not in data or "t" not in data:
            raise CueError("cue needs at least 'type' and 't'")
        kwargs = dict(data)
        kwargs["aus"] = tuple(kwargs.get("aus") or ())
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise CueError(str(exc)) from exc
