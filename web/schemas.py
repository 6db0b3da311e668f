"""Request and response models of the HTTP API: rows never leak into responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.errors import UsageError
from bridge.rooms.browser import available_recipes, check_page_url, load_recipe
from bridge.store.tables import TEXT_LEN, AssignableRole, MeetingContext, MeetingKind

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
    #: the role whoever joins with it takes (a role-bound invitation), None for a plain one
    role: str | None = None


class InviteRequest(BaseModel):
    """``{"role": "buyer"}``: a role-bound invitation; no body (or no role): a plain one."""

    model_config = ConfigDict(extra="forbid")

    role: AssignableRole | None = None


class ParticipantUpdate(BaseModel):
    """What the presenter may change about a participant: the role coaching reads, and the name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: AssignableRole | None = None
    display_name: str | None = Field(default=None, min_length=1, max_length=TEXT_LEN)

    @model_validator(mode="after")
    def _something(self) -> ParticipantUpdate:
        if self.role is None and self.display_name is None:
            raise ValueError("give 'role' (rep, buyer or participant) and/or 'display_name'")
        return self


class ParticipantPublic(BaseModel):
    id: str
    display_name: str
    role: str
    consent: bool
    joined_at: datetime
    left_at: datetime | None
    #: while the meeting runs: "asked" (join page) or "announced" (the bot announced itself)
    consent_basis: str | None = None
    #: while the meeting runs: "waiting for video", "receiving" or "no video"
    video: str | None = None
    #: while the meeting runs: "receiving", "no audio" (when they talk is not known) or "not analysed"
    audio: str | None = None


class SummaryPublic(BaseModel):
    meeting_id: str
    summary: dict[str, Any]


class Erased(BaseModel):
    meeting_id: str
    rows: dict[str, int]


class BotRequest(BaseModel):
    """``{"janus": "ws://host:8188", "room": 1234}``, ``{"whep": "https://host/whep/..."}`` or
    ``{"page": "https://meet.example/room", "recipe": "janus-videoroom"}`` (the browser bot)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    janus: str | None = Field(default=None, max_length=MAX_URL_LEN, examples=["ws://janus.example:8188"])
    room: int | None = Field(default=None, ge=0, le=MAX_JANUS_ROOM)
    whep: str | None = Field(default=None, max_length=MAX_URL_LEN)
    page: str | None = Field(default=None, max_length=MAX_URL_LEN, examples=["https://meet.example/room/42"])
    recipe: str | None = Field(default=None, max_length=64, examples=["janus-videoroom"])

    @field_validator("janus")
    @classmethod
    def _janus_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("ws", "wss"), "janus")

    @field_validator("whep")
    @classmethod
    def _whep_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("http", "https"), "whep")

    @field_validator("page")
    @classmethod
    def _page_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return check_page_url(v)
        except UsageError as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _one_target(self) -> BotRequest:
        if [self.janus, self.whep, self.page].count(None) != 2:  # noqa: PLR2004 - exactly one of three
            raise ValueError("give exactly one of 'janus' (with 'room'), 'whep' or 'page' (with 'recipe')")
        if self.page is not None and self.recipe is None:
            raise ValueError(f"'page' needs 'recipe', how to join that page; available: {available_recipes()}")
        if self.recipe is not None:
            try:
                load_recipe(self.recipe)
            except UsageError as exc:
                raise ValueError(str(exc)) from exc
        if self.page is None and self.recipe is not None:
            raise ValueError("'recipe' only applies to 'page'")
        if self.janus is not None and self.room is None:
            raise ValueError("'janus' needs 'room', the VideoRoom id to join")
        if self.whep is not None and self.room is not None:
            raise ValueError("'room' only applies to 'janus'")
        return self

    @property
    def host(self) -> str:
        return (urlsplit(self.janus or self.whep or self.page or "").hostname or "").lower()


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
