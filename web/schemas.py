"""Request and response models of the HTTP API: rows never leak into responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.store.tables import TEXT_LEN, MeetingContext, MeetingKind

#: Longest retention a meeting may ask for; the operator's purge limit applies on top.
MAX_RETENTION_DAYS = 3650
#: Janus VideoRoom ids are unsigned 64-bit integers.
MAX_JANUS_ROOM = 2**64 - 1
#: Longest URL accepted for a bot target.
MAX_URL_LEN = 2048


class MeetingCreate(BaseModel):
    """A new meeting. ``context`` is required: it decides what MicroCue may infer (policy)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=TEXT_LEN, examples=["Quarterly pitch"])
    kind: MeetingKind = "general"
    context: MeetingContext = Field(examples=["customer"])
    retention_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)


class MeetingCreated(BaseModel):
    """The presenter token is shown here once; only its hash is stored."""

    id: str
    presenter_token: str
    join_url: str
    dashboard_url: str


class PolicyPublic(BaseModel):
    context: str
    policy: str
    emotions_allowed: bool
    allowed_cue_types: list[str]
    overridden: bool
    notice: str


class MeetingPublic(BaseModel):
    id: str
    title: str
    kind: str
    context: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    retention_days: int | None
    policy: PolicyPublic


class JoinLink(BaseModel):
    """A participant invitation; the token is shown once."""

    meeting_id: str
    join_token: str
    join_url: str


class ParticipantPublic(BaseModel):
    id: str
    display_name: str
    role: str
    consent: bool
    joined_at: datetime
    left_at: datetime | None


class SummaryPublic(BaseModel):
    meeting_id: str
    summary: dict[str, Any]


class Erased(BaseModel):
    meeting_id: str
    rows: dict[str, int]


class BotRequest(BaseModel):
    """``{"janus": "ws://host:8188", "room": 1234}`` or ``{"whep": "https://host/whep/..."}``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    janus: str | None = Field(default=None, max_length=MAX_URL_LEN, examples=["ws://janus.example:8188"])
    room: int | None = Field(default=None, ge=0, le=MAX_JANUS_ROOM)
    whep: str | None = Field(default=None, max_length=MAX_URL_LEN)

    @field_validator("janus")
    @classmethod
    def _janus_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("ws", "wss"), "janus")

    @field_validator("whep")
    @classmethod
    def _whep_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("http", "https"), "whep")

    @model_validator(mode="after")
    def _one_target(self) -> BotRequest:
        if (self.janus is None) == (self.whep is None):
            raise ValueError("give exactly one of 'janus' (with 'room') or 'whep'")
        if self.janus is not None and self.room is None:
            raise ValueError("'janus' needs 'room', the VideoRoom id to join")
        if self.whep is not None and self.room is not None:
            raise ValueError("'room' only applies to 'janus'")
        return self

    @property
    def host(self) -> str:
        return (urlsplit(self.janus or self.whep or "").hostname or "").lower()


def _check_url(value: str, schemes: tuple[str, ...], name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"'{name}' must be a {'/'.join(schemes)} URL with a host, got {value!r}")
    return value


class TokenRevoke(BaseModel):
    """``{"token": "<a token of this meeting>"}`` or ``{"kind": "join"}`` (every join token)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    token: str | None = Field(default=None, min_length=1, max_length=256)
    kind: Literal["join", "presenter"] | None = None

    @model_validator(mode="after")
    def _one(self) -> TokenRevoke:
        if (self.token is None) == (self.kind is None):
            raise ValueError("give exactly one of 'token' (one token) or 'kind' (every token of that kind)")
        return self


class TokensRevoked(BaseModel):
    meeting_id: str
    revoked: int


class BotRecalled(BaseModel):
    meeting_id: str
    status: Literal["left"] = "left"


class BotAccepted(BaseModel):
    meeting_id: str
    status: Literal["joining"] = "joining"
    detail: dict[str, Any] = Field(default_factory=dict)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: bool
    bus: bool
    bus_kind: str
    bus_connected: bool | None = None


class JoinInfo(BaseModel):
    """What the join page tells a participant before they consent (AI Act Art. 50(3))."""

    meeting_id: str
    title: str
    context: str
    emotions_allowed: bool
    inferred: list[str]
    not_inferred: list[str]
    notice: str
    signal_url: str
