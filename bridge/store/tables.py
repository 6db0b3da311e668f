"""SQLAlchemy 2 models; ``migrations/versions`` must create exactly this schema.

A test compares the migrated database with this metadata on SQLite and on
PostgreSQL, so a model change without a migration fails CI.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

MeetingKind = Literal["general", "sales"]
MeetingContext = Literal["customer", "public", "research", "clinical", "workplace", "education"]
ParticipantRole = Literal["presenter", "rep", "buyer", "participant"]
TokenKind = Literal["presenter", "join"]

MEETING_KINDS: tuple[str, ...] = get_args(MeetingKind)
MEETING_CONTEXTS: tuple[str, ...] = get_args(MeetingContext)
PARTICIPANT_ROLES: tuple[str, ...] = get_args(ParticipantRole)
TOKEN_KINDS: tuple[str, ...] = get_args(TokenKind)
#: Roles a presenter may give a participant (an invitation or a tile); ``presenter`` is the
#: meeting owner's own seat, never handed out.
AssignableRole = Literal["rep", "buyer", "participant"]
ASSIGNABLE_ROLES: tuple[str, ...] = get_args(AssignableRole)

#: Named constraints: SQLite batch migrations and downgrades can only drop what has a name.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Meeting and participant ids: the bus accepts meeting ids of up to 256 characters
#: (bridge/bus/inprocess.py MAX_MEETING_ID_LEN); PostgreSQL enforces the bound, SQLite does not,
#: so both get the bus's bound rather than our own 32-hex ids' length.
ID_LEN = 256
#: Meeting titles and participant display names, as typed by people.
TEXT_LEN = 200

#: SQLite only numbers ``INTEGER PRIMARY KEY`` rows itself; PostgreSQL gets a real bigint.
BIGINT_PK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on both dialects.

    SQLite has no timezone type: SQLAlchemy stores naive text and compares
    strings, so every value is normalised to naive UTC there and given its
    tzinfo back on load; retention cut-offs then compare correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Meeting(Base):
    __tablename__ = "meetings"
    __table_args__ = (
        CheckConstraint(_in("kind", MEETING_KINDS), name="kind"),
        CheckConstraint(_in("context", MEETING_CONTEXTS), name="context"),
    )

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    title: Mapped[str] = mapped_column(String(TEXT_LEN))
    kind: Mapped[str] = mapped_column(String(16))
    context: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # None until the first participant (or the bot) is in: a created meeting may never run.
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Per-meeting retention; purge honours it only when it is shorter than the operator's.
    retention_days: Mapped[int | None] = mapped_column(Integer)


class Participant(Base):
    """Keyed by (meeting, participant): adapters number participants per meeting, not globally."""

    __tablename__ = "participants"
    __table_args__ = (CheckConstraint(_in("role", PARTICIPANT_ROLES), name="role"),)

    meeting_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(TEXT_LEN))
    role: Mapped[str] = mapped_column(String(16))
    consent: Mapped[bool] = mapped_column(Boolean)
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime())
    left_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    #: SHA-256 (hex) of the secret a built-in room participant rejoins with after a restart
    #: or failover (web/ws/signal.py); NULL for participants of external meetings.
    resume_hash: Mapped[str | None] = mapped_column(String(64))


class CueRow(Base):
    """One ``inference.cues.Cue``; convert only through ``repo.cue_to_row``/``row_to_cue``.

    No CHECK constraints here: ``Cue`` validates on construction, and a database
    that refused a valid cue would wedge the writer's retry loop.
    """

    __tablename__ = "cues"
    __table_args__ = (
        # A redelivery (MQTT QoS 1 resend, writer retry) is byte-identical, so it matches on all five;
        # ``t`` is in the key because a worker restarted for the same meeting counts ``seq`` from 0
        # again, and its new cues must not be taken for redeliveries (same rule as bridge/bus/mqtt.py).
        UniqueConstraint("meeting_id", "participant_id", "seq", "type", "t"),
        Index(None, "meeting_id", "t"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    meeting_id: Mapped[str] = mapped_column(String(ID_LEN), ForeignKey("meetings.id", ondelete="CASCADE"))
    participant_id: Mapped[str] = mapped_column(String(ID_LEN))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    t: Mapped[float] = mapped_column(Float)
    onset_s: Mapped[float | None] = mapped_column(Float)
    apex_s: Mapped[float | None] = mapped_column(Float)
    offset_s: Mapped[float | None] = mapped_column(Float)
    emotion: Mapped[str | None] = mapped_column(String(16))
    valence: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    aus: Mapped[list[str]] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text)


class Summary(Base):
    __tablename__ = "summaries"

    meeting_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True
    )
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class Token(Base):
    """Only the SHA-256 of a token is kept, so a leaked database grants no access."""

    __tablename__ = "tokens"
    __table_args__ = (
        CheckConstraint(_in("kind", TOKEN_KINDS), name="kind"),
        CheckConstraint(f"role IS NULL OR {_in('role', ASSIGNABLE_ROLES)}", name="role"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(String(ID_LEN), ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A role-bound invitation: whoever joins with this join token takes this role (sales coaching).
    role: Mapped[str | None] = mapped_column(String(16))


class LeaseRow(Base):
    """One grant of a meeting to a bridge worker (bridge/cluster/lease.py); the newest grant is the lease.

    A row per grant, never overwritten, so the history of who analysed the meeting when
    (and the gaps between grants) stays for the summary. ``token`` counts grants per
    meeting: the fencing token.
    """

    __tablename__ = "meeting_leases"

    meeting_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(TEXT_LEN))
    #: where the holder serves built-in room signalling (MICROCUE_WORKER_URL), for the web role's proxy
    holder_url: Mapped[str] = mapped_column(String(TEXT_LEN))
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime())
    renewed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    released: Mapped[bool] = mapped_column(Boolean)
    requeued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    request: Mapped[dict[str, Any]] = mapped_column(JSON)


#: Tables that hang off a meeting, children first: the order erasure deletes in.
MEETING_CHILD_TABLES: tuple[type[Base], ...] = (CueRow, Participant, Summary, Token, LeaseRow)
