"""Keyword-only async queries; every write function commits its own unit of work.

Routes, the writer, reports and the CLI call these and never build SQL
themselves, so erasure and retention have one place to be right in.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Insert, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.store.tables import (
    ASSIGNABLE_ROLES,
    ID_LEN,
    MEETING_CHILD_TABLES,
    MEETING_CONTEXTS,
    MEETING_KINDS,
    PARTICIPANT_ROLES,
    TEXT_LEN,
    TOKEN_KINDS,
    Base,
    CueRow,
    Meeting,
    Participant,
    Summary,
    Token,
    utcnow,
)
from inference.cues import Cue

log = logging.getLogger("microcue.store")

#: Ids per ``IN (...)`` list: far below SQLite's 32766 and PostgreSQL's 32767 bound parameters.
IN_CHUNK = 500
#: A token hash is the lowercase hex SHA-256 of the token (bridge/tokens.py).
TOKEN_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
#: The cue columns besides the surrogate key, in the order of the Cue fields.
CUE_COLUMNS: tuple[str, ...] = (
    "meeting_id",
    "participant_id",
    "seq",
    "type",
    "t",
    "onset_s",
    "apex_s",
    "offset_s",
    "emotion",
    "valence",
    "value",
    "aus",
    "confidence",
    "detail",
)


@dataclass(frozen=True, slots=True)
class CueInsert:
    """What one ``insert_cues`` call did with each cue it was handed."""

    inserted: int = 0
    #: Already stored (same meeting, participant, seq and type): a redelivery, not an error.
    duplicates: int = 0
    #: Their meeting is not in the store (never created, or erased meanwhile); not written.
    unknown_meeting: int = 0


@dataclass(frozen=True, slots=True)
class Removed:
    """What an erasure or a purge deleted: the meetings and the rows per table."""

    meeting_ids: tuple[str, ...] = ()
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def new_id() -> str:
    return uuid.uuid4().hex


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_len(name: str, value: str, limit: int) -> None:
    """PostgreSQL refuses an over-long value and SQLite silently keeps it: refuse it on both, here."""
    if len(value) > limit:
        raise ValueError(f"{name} must be at most {limit} characters, got {len(value)}")


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), IN_CHUNK):
        yield ids[i : i + IN_CHUNK]


def _insert(session: AsyncSession, model: type[Base]) -> Insert:
    """The dialect's INSERT, which is the one that knows ON CONFLICT."""
    table = cast(Table, model.__table__)
    name = session.sync_session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"database dialect {name!r}: MicroCue supports sqlite and postgresql")


# --- cues <-> rows: the only place that knows both shapes -------------------------------------


def cue_to_row(cue: Cue) -> dict[str, Any]:
    """Column values for one cue (the ``cues`` table minus its surrogate key)."""
    row = {name: getattr(cue, name) for name in CUE_COLUMNS}
    row["aus"] = list(cue.aus)
    return row


def row_to_cue(row: CueRow) -> Cue:
    """Back to the one schema; ``Cue`` re-validates, so a corrupt row fails loudly here."""
    fields: dict[str, Any] = {name: getattr(row, name) for name in CUE_COLUMNS}
    fields["aus"] = tuple(row.aus or ())
    return Cue(**fields)


# --- meetings -----------------------------------------------------------------------------------


async def create_meeting(
    *,
    session: AsyncSession,
    title: str,
    kind: str = "general",
    context: str = "customer",
    policy: str = "default",
    retention_days: int | None = None,
    meeting_id: str | None = None,
    started_at: datetime | None = None,
    created_at: datetime | None = None,
) -> Meeting:
    _check("kind", kind, MEETING_KINDS)
    _check("context", context, MEETING_CONTEXTS)
    _check_len("title", title, TEXT_LEN)
    if meeting_id is not None:
        _check_len("meeting_id", meeting_id, ID_LEN)
    if retention_days is not None and retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    meeting = Meeting(
        id=meeting_id or new_id(),
        title=title,
        kind=kind,
        context=context,
        policy=policy,
        created_at=created_at or utcnow(),
        started_at=started_at,
        ended_at=None,
        retention_days=retention_days,
    )
    session.add(meeting)
    await session.commit()
    return meeting


async def get_meeting(*, session: AsyncSession, meeting_id: str) -> Meeting | None:
    return await session.get(Meeting, meeting_id)


async def count_open_meetings(*, session: AsyncSession) -> int:
    """Meetings not ended yet: what the service's meeting cap counts."""
    return int(await session.scalar(select(func.count()).select_from(Meeting).where(Meeting.ended_at.is_(None))) or 0)


async def start_meeting(*, session: AsyncSession, meeting_id: str, at: datetime | None = None) -> Meeting | None:
    """Marks the first start only; a bot that rejoins does not move it."""
    meeting = await session.get(Meeting, meeting_id)
    if meeting is not None and meeting.started_at is None:
        meeting.started_at = at or utcnow()
        await session.commit()
    return meeting


async def end_meeting(*, session: AsyncSession, meeting_id: str, at: datetime | None = None) -> Meeting | None:
    """Idempotent: a second end (retried request) keeps the first end time."""
    meeting = await session.get(Meeting, meeting_id)
    if meeting is not None and meeting.ended_at is None:
        meeting.ended_at = at or utcnow()
        await session.commit()
    return meeting


# --- participants --------------------------------------------------------------------------------


async def add_participant(
    *,
    session: AsyncSession,
    meeting_id: str,
    participant_id: str,
    display_name: str = "",
    role: str = "participant",
    consent: bool = False,
    joined_at: datetime | None = None,
    resume_hash: str | None = None,
) -> Participant:
    """Insert or update (a rejoin, or consent given later); the first ``joined_at`` is kept, and
    the ``resume_hash`` too unless a new one is given."""
    _check("role", role, PARTICIPANT_ROLES)
    _check_len("participant_id", participant_id, ID_LEN)
    _check_len("display_name", display_name, TEXT_LEN)
    stmt = _insert(session, Participant).values(
        meeting_id=meeting_id,
        id=participant_id,
        display_name=display_name,
        role=role,
        consent=consent,
        joined_at=joined_at or utcnow(),
        left_at=None,
        resume_hash=resume_hash,
    )
    changed: dict[str, Any] = {"display_name": display_name, "role": role, "consent": consent, "left_at": None}
    if resume_hash is not None:
        changed["resume_hash"] = resume_hash
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=["meeting_id", "id"],
        set_=changed,
    )
    await session.execute(stmt)
    await session.commit()
    participant = await session.get(Participant, (meeting_id, participant_id), populate_existing=True)
    assert participant is not None  # just written in this session
    return participant


async def get_participant(*, session: AsyncSession, meeting_id: str, participant_id: str) -> Participant | None:
    """One participant of one meeting, or None (an id is only unique within its meeting)."""
    if len(participant_id) > ID_LEN:
        return None
    return await session.get(Participant, (meeting_id, participant_id))


async def first_joined_at(*, session: AsyncSession, meeting_id: str) -> datetime | None:
    """When the meeting's first participant joined: a restarted service's time zero for it."""
    stmt = select(func.min(Participant.joined_at)).where(Participant.meeting_id == meeting_id)
    value = (await session.execute(stmt)).scalar_one_or_none()
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


async def update_participant(
    *,
    session: AsyncSession,
    meeting_id: str,
    participant_id: str,
    role: str | None = None,
    display_name: str | None = None,
) -> Participant | None:
    """Sets what the presenter changed (None: unchanged); None when there is no such participant."""
    if role is not None:
        _check("role", role, PARTICIPANT_ROLES)
    if display_name is not None:
        _check_len("display_name", display_name, TEXT_LEN)
    participant = await session.get(Participant, (meeting_id, participant_id))
    if participant is None:
        return None
    if role is not None:
        participant.role = role
    if display_name is not None:
        participant.display_name = display_name
    await session.commit()
    return participant


async def participant_left(
    *, session: AsyncSession, meeting_id: str, participant_id: str, at: datetime | None = None
) -> Participant | None:
    participant = await session.get(Participant, (meeting_id, participant_id))
    if participant is not None:
        participant.left_at = at or utcnow()
        await session.commit()
    return participant


async def list_participants(*, session: AsyncSession, meeting_id: str) -> list[Participant]:
    result = await session.scalars(
        select(Participant).where(Participant.meeting_id == meeting_id).order_by(Participant.joined_at)
    )
    return list(result)


# --- cues ----------------------------------------------------------------------------------------


async def insert_cues(*, session: AsyncSession, cues: Sequence[Cue]) -> CueInsert:
    """Idempotent batch insert: a redelivered cue is skipped, never duplicated.

    Identity is (meeting, participant, seq, type, t): a resend repeats all of
    them, a restarted worker reusing ``seq`` does not repeat ``t``.

    Cues of a meeting not in the store are left out and counted instead of
    failing the batch: after an erasure the cues still in flight must vanish
    too, and one orphan must not block the cues of every other meeting.
    """
    if not cues:
        return CueInsert()
    wanted = sorted({c.meeting_id for c in cues})
    known: set[str] = set()
    for chunk in _chunks(wanted):
        known.update(await session.scalars(select(Meeting.id).where(Meeting.id.in_(chunk))))
    rows = [cue_to_row(c) for c in cues if c.meeting_id in known]
    unknown = len(cues) - len(rows)
    if unknown:
        log.warning("skipping %d cue(s) of unknown meeting(s) %s", unknown, sorted(set(wanted) - known))
    inserted = 0
    if rows:
        stmt = _insert(session, CueRow).on_conflict_do_nothing(  # type: ignore[attr-defined]
            index_elements=["meeting_id", "participant_id", "seq", "type", "t"]
        )
        # RETURNING yields only the rows that went in, so the count is exact on both dialects.
        result = await session.execute(stmt.returning(CueRow.id), rows)
        inserted = len(result.all())
    await session.commit()
    return CueInsert(inserted=inserted, duplicates=len(rows) - inserted, unknown_meeting=unknown)


async def cues_for_meeting(
    *,
    session: AsyncSession,
    meeting_id: str,
    since_t: float | None = None,
    types: Iterable[str] | None = None,
) -> list[Cue]:
    """In media-time order; ``since_t`` is inclusive so a reader resuming at t misses nothing."""
    stmt = select(CueRow).where(CueRow.meeting_id == meeting_id)
    if since_t is not None:
        stmt = stmt.where(CueRow.t >= since_t)
    if types is not None:
        stmt = stmt.where(CueRow.type.in_(list(types)))
    result = await session.scalars(stmt.order_by(CueRow.t, CueRow.id))
    return [row_to_cue(r) for r in result]


async def recent_cues(*, session: AsyncSession, meeting_id: str, types: Iterable[str], limit: int) -> list[Cue]:
    """The ``limit`` latest cues of these kinds, oldest first (uses the (meeting_id, t) index).

    The live dashboard's snapshot after a restart: bounded, unlike ``cues_for_meeting``.
    """
    stmt = (
        select(CueRow)
        .where(CueRow.meeting_id == meeting_id, CueRow.type.in_(list(types)))
        .order_by(CueRow.t.desc(), CueRow.id.desc())
        .limit(limit)
    )
    rows = list(await session.scalars(stmt))
    return [row_to_cue(r) for r in reversed(rows)]


# --- summaries -----------------------------------------------------------------------------------


async def save_summary(
    *, session: AsyncSession, meeting_id: str, body: dict[str, Any], computed_at: datetime | None = None
) -> Summary:
    """Replaces an earlier summary: recomputing after late cues is allowed."""
    at = computed_at or utcnow()
    stmt = _insert(session, Summary).values(meeting_id=meeting_id, computed_at=at, body=body)
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=["meeting_id"], set_={"computed_at": at, "body": body}
    )
    await session.execute(stmt)
    await session.commit()
    summary = await session.get(Summary, meeting_id, populate_existing=True)
    assert summary is not None  # just written in this session
    return summary


async def get_summary(*, session: AsyncSession, meeting_id: str) -> Summary | None:
    return await session.get(Summary, meeting_id)


# --- tokens --------------------------------------------------------------------------------------


async def store_token(
    *, session: AsyncSession, meeting_id: str, kind: str, token_hash: str, role: str | None = None
) -> Token:
    """Takes the hash, never the token: the plain token exists only in the creator's response.
    ``role`` binds a join token to the role its holder takes (a role-bound invitation)."""
    _check("kind", kind, TOKEN_KINDS)
    if role is not None:
        if kind != "join":
            raise ValueError(f"only join tokens carry a role, not {kind} tokens")
        _check("role", role, ASSIGNABLE_ROLES)
    if not TOKEN_HASH_RE.match(token_hash):
        raise ValueError("token_hash must be a lowercase hex SHA-256 (64 characters), not the token itself")
    token = Token(id=new_id(), meeting_id=meeting_id, kind=kind, token_hash=token_hash, created_at=utcnow(), role=role)
    session.add(token)
    await session.commit()
    return token


async def find_token(*, session: AsyncSession, token_hash: str) -> Token | None:
    return await session.scalar(select(Token).where(Token.token_hash == token_hash))


async def delete_tokens(
    *, session: AsyncSession, meeting_id: str, token_hash: str | None = None, kind: str | None = None
) -> int:
    """Revocation: one token (by its hash) or every token of a kind, of this meeting only."""
    statement = delete(Token).where(Token.meeting_id == meeting_id)
    if token_hash is not None:
        statement = statement.where(Token.token_hash == token_hash)
    if kind is not None:
        _check("kind", kind, TOKEN_KINDS)
        statement = statement.where(Token.kind == kind)
    result = await session.execute(statement)
    await session.commit()
    return int(cast(Any, result).rowcount or 0)


# --- erasure and retention -----------------------------------------------------------------------


def _meeting_column(model: type[Base]) -> Any:
    """The column that ties a table's rows to one meeting."""
    return model.__table__.c["id" if model is Meeting else "meeting_id"]


def _meeting_tables() -> tuple[type[Base], ...]:
    """Every table that holds a meeting's rows, children first (the order deletes must follow)."""
    return (*MEETING_CHILD_TABLES, Meeting)


async def _count_meetings(session: AsyncSession, meeting_ids: Sequence[str]) -> dict[str, int]:
    rows: dict[str, int] = {m.__tablename__: 0 for m in _meeting_tables()}
    for chunk in _chunks(meeting_ids):
        for model in _meeting_tables():
            stmt = select(func.count()).select_from(model).where(_meeting_column(model).in_(chunk))
            rows[model.__tablename__] += int(await session.scalar(stmt) or 0)
    return rows


async def count_rows(*, session: AsyncSession, meeting_id: str) -> dict[str, int]:
    """Rows of one meeting per table, meetings included: what an erasure must bring to zero."""
    return await _count_meetings(session, [meeting_id])


async def _delete_meetings(session: AsyncSession, meeting_ids: Sequence[str]) -> dict[str, int]:
    """Explicit deletes per table, children first: correct even where cascades are off, and counted."""
    rows: dict[str, int] = {m.__tablename__: 0 for m in _meeting_tables()}
    for chunk in _chunks(meeting_ids):
        for model in _meeting_tables():
            stmt = delete(model).where(_meeting_column(model).in_(chunk)).execution_options(synchronize_session=False)
            result = await session.execute(stmt)
            rows[model.__tablename__] += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return rows


async def delete_meeting(*, session: AsyncSession, meeting_id: str) -> Removed:
    """Erasure (docs/policy.md): every row of the meeting, in every table."""
    rows = await _delete_meetings(session, [meeting_id])
    await session.commit()
    removed = Removed(meeting_ids=(meeting_id,) if rows["meetings"] else (), rows=rows)
    log.info("erased meeting %s: %s", meeting_id, rows)
    return removed


def _reference_time(meeting: Meeting) -> datetime:
    """Age counts from the end of a meeting, or its start or creation if it never ended."""
    return meeting.ended_at or meeting.started_at or meeting.created_at


async def purge_older_than(
    *,
    session: AsyncSession,
    older_than: timedelta,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Removed:
    """Retention: removes meetings older than ``older_than``, or than their own shorter retention.

    A meeting's ``retention_days`` may only shorten the operator's limit, never
    extend it: it is a promise made to the participants.
    """
    if older_than <= timedelta(0):
        raise ValueError(f"older_than must be positive, got {older_than}")
    now = now or utcnow()
    reference = func.coalesce(Meeting.ended_at, Meeting.started_at, Meeting.created_at)
    candidates = await session.scalars(
        select(Meeting).where((reference < now - older_than) | Meeting.retention_days.is_not(None))
    )
    expired: list[str] = []
    for meeting in candidates:
        limit = older_than
        if meeting.retention_days is not None:
            limit = min(limit, timedelta(days=meeting.retention_days))
        if _reference_time(meeting) < now - limit:
            expired.append(meeting.id)
    expired.sort()
    if dry_run:
        return Removed(meeting_ids=tuple(expired), rows=await _count_meetings(session, expired))
    rows = await _delete_meetings(session, expired)
    await session.commit()
    log.info("purged %d meeting(s) older than %s: %s", len(expired), older_than, rows)
    return Removed(meeting_ids=tuple(expired), rows=rows)
