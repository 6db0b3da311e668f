"""Migrations and every repo function, on a SQLite file and on the real PostgreSQL.

Each PostgreSQL test gets a database of its own (``microcue_test_<random>``),
dropped afterwards, so runs are repeatable and parallel-safe.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.commands import db as db_command
from bridge.commands import purge as purge_command
from bridge.config import Settings
from bridge.store import migrate, repo
from bridge.store.db import create_engine, create_session_factory
from bridge.store.errors import SchemaOutdated
from bridge.store.tables import Base, CueRow, LeaseRow, Meeting, Participant, Summary, Token
from inference.cues import Cue
from tests.services import POSTGRES, require_service
from tests.support.postgres import fresh_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TABLES = ("meetings", "participants", "cues", "summaries", "tokens", "meeting_leases")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path / "data", database_url="")
        return
    require_service("PostgreSQL", POSTGRES)
    async with fresh_postgres_database() as url:
        yield Settings(data_dir=tmp_path / "data", database_url=url)


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await migrate.upgrade(settings)
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


async def schema_diff(settings: Settings) -> list[object]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:

            def diff(sync: Connection) -> list[object]:
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                return list(compare_metadata(context, Base.metadata))

            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


async def table_names(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def total_rows(session: AsyncSession) -> dict[str, int]:
    """Counted straight from each table, not through repo, so erasure is checked independently."""
    return {t: int(await session.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in TABLES}


def cues_for(meeting_id: str, n: int = 4) -> list[Cue]:
    out: list[Cue] = []
    for i in range(n):
        out.append(Cue(type="engagement", t=float(i), meeting_id=meeting_id, participant_id="p1", seq=i, value=0.1 * i))
        out.append(
            Cue(
                type="micro_expression",
                t=i + 0.5,
                meeting_id=meeting_id,
                participant_id="p2",
                seq=i,
                onset_s=i + 0.4,
                apex_s=i + 0.5,
                offset_s=i + 0.6,
                emotion="happiness",
                valence=0.7,
                aus=("AU6", "AU12"),
                confidence=0.66,
                detail="smile flash",
            )
        )
    return out


async def populate(session: AsyncSession, meeting_id: str, *, hash_char: str) -> None:
    """One meeting with a row in every table."""
    await repo.create_meeting(session=session, title=f"meeting {meeting_id}", meeting_id=meeting_id)
    await repo.add_participant(session=session, meeting_id=meeting_id, participant_id="p1", consent=True)
    await repo.add_participant(session=session, meeting_id=meeting_id, participant_id="p2", consent=True)
    await repo.insert_cues(session=session, cues=cues_for(meeting_id))
    await repo.save_summary(session=session, meeting_id=meeting_id, body={"cues": 8})
    await repo.store_token(session=session, meeting_id=meeting_id, kind="presenter", token_hash=hash_char * 64)
    await repo.store_token(session=session, meeting_id=meeting_id, kind="join", token_hash="f" + hash_char * 63)
    session.add(
        LeaseRow(
            meeting_id=meeting_id,
            token=1,
            holder="w1",
            holder_url="http://w1:8080",
            acquired_at=NOW,
            renewed_at=NOW,
            expires_at=NOW,
            released=True,
            request={"meeting_id": meeting_id},
        )
    )
    await session.commit()


# --- migrations ----------------------------------------------------------------------------------


async def test_upgrade_downgrade_upgrade_matches_the_models(settings: Settings) -> None:
    assert await migrate.current(settings) is None
    await migrate.upgrade(settings)
    assert await migrate.current(settings) == migrate.head_revision(settings) == "0004"
    assert await schema_diff(settings) == []
    assert set(TABLES) <= await table_names(settings)
    await migrate.upgrade(settings)  # again: a no-op, as every service start-up does it

    await migrate.downgrade(settings, "base")
    assert await migrate.current(settings) is None
    assert await table_names(settings) <= {"alembic_version"}

    await migrate.upgrade(settings)
    assert await schema_diff(settings) == []
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            await populate(session, "m1", hash_char="a")
            assert (await total_rows(session))["cues"] == 8
    finally:
        await engine.dispose()


async def test_database_constraints_hold_without_the_repo(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The CHECKs and foreign keys are in the migrated schema itself, not only in Python."""
    async with sessions() as session:
        await repo.create_meeting(session=session, title="x", meeting_id="m1")
        with pytest.raises(IntegrityError):
            await session.execute(
                text(
                    "INSERT INTO meetings (id, title, kind, context, policy, created_at) "
                    "VALUES ('m2', 't', 'party', 'public', 'default', :now)"
                ),
                {"now": NOW.replace(tzinfo=None)},
            )
        await session.rollback()
        with pytest.raises(IntegrityError):  # a cue of a meeting that does not exist
            await session.execute(
                text(
                    "INSERT INTO cues (meeting_id, participant_id, seq, type, t, aus, detail) "
                    "VALUES ('nope', 'p', 0, 'presence', 0, '[]', '')"
                )
            )
        await session.rollback()


async def test_cascade_deletes_children_at_the_database_level(sessions: async_sessionmaker[AsyncSession]) -> None:
    """``ON DELETE CASCADE`` works on its own (on SQLite only because foreign_keys is on per connection)."""
    async with sessions() as session:
        await populate(session, "m1", hash_char="a")
        await session.execute(text("DELETE FROM meetings WHERE id = 'm1'"))
        await session.commit()
        assert await total_rows(session) == dict.fromkeys(TABLES, 0)


# --- meetings, participants ----------------------------------------------------------------------


async def test_meeting_round_trip(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        created = await repo.create_meeting(
            session=session, title="Q3 pipeline review", kind="sales", context="customer", retention_days=14
        )
        assert len(created.id) == 32
        with pytest.raises(ValueError, match="context must be one of"):
            await repo.create_meeting(session=session, title="x", context="office")
        # The bus accepts meeting ids up to 256 characters; so do both databases, and no more.
        await repo.create_meeting(session=session, title="x", meeting_id="m" * 256)
        with pytest.raises(ValueError, match="meeting_id must be at most 256"):
            await repo.create_meeting(session=session, title="x", meeting_id="m" * 257)
        with pytest.raises(ValueError, match="title must be at most 200"):
            await repo.create_meeting(session=session, title="t" * 201)
    async with sessions() as session:
        meeting = await repo.get_meeting(session=session, meeting_id=created.id)
        assert meeting is not None
        assert (meeting.title, meeting.kind, meeting.context, meeting.policy, meeting.retention_days) == (
            "Q3 pipeline review",
            "sales",
            "customer",
            "default",
            14,
        )
        assert meeting.created_at.tzinfo is UTC and meeting.started_at is None and meeting.ended_at is None
        assert await repo.get_meeting(session=session, meeting_id="missing") is None

        await repo.start_meeting(session=session, meeting_id=created.id, at=NOW)
        await repo.start_meeting(session=session, meeting_id=created.id, at=NOW + timedelta(hours=1))
        await repo.end_meeting(session=session, meeting_id=created.id, at=NOW + timedelta(hours=2))
        await repo.end_meeting(session=session, meeting_id=created.id, at=NOW + timedelta(hours=3))
        assert await repo.end_meeting(session=session, meeting_id="missing") is None
    async with sessions() as session:
        meeting = await repo.get_meeting(session=session, meeting_id=created.id)
        assert meeting is not None
        assert meeting.started_at == NOW  # the first start and the first end win
        assert meeting.ended_at == NOW + timedelta(hours=2)


async def test_participant_upsert(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        for meeting_id in ("m1", "m2"):
            await repo.create_meeting(session=session, title=meeting_id, meeting_id=meeting_id)
        first = await repo.add_participant(
            session=session, meeting_id="m1", participant_id="p1", display_name="Ana", role="buyer", joined_at=NOW
        )
        assert first.consent is False
        await repo.participant_left(
            session=session, meeting_id="m1", participant_id="p1", at=NOW + timedelta(minutes=5)
        )
        again = await repo.add_participant(
            session=session, meeting_id="m1", participant_id="p1", display_name="Ana B.", role="buyer", consent=True
        )
        # Same participant id in another meeting is another person.
        await repo.add_participant(session=session, meeting_id="m2", participant_id="p1", display_name="Bo")
        with pytest.raises(ValueError, match="role must be one of"):
            await repo.add_participant(session=session, meeting_id="m1", participant_id="p9", role="boss")
    assert (again.display_name, again.consent, again.joined_at, again.left_at) == ("Ana B.", True, NOW, None)
    async with sessions() as session:
        listed = await repo.list_participants(session=session, meeting_id="m1")
        assert [(p.id, p.display_name, p.consent) for p in listed] == [("p1", "Ana B.", True)]
        assert (await total_rows(session))["participants"] == 2


# --- cues ----------------------------------------------------------------------------------------


async def test_cues_round_trip_in_time_order_with_filters(sessions: async_sessionmaker[AsyncSession]) -> None:
    cues = cues_for("m1")
    async with sessions() as session:
        await repo.create_meeting(session=session, title="x", meeting_id="m1")
        await repo.create_meeting(session=session, title="y", meeting_id="m2")
        result = await repo.insert_cues(session=session, cues=list(reversed(cues)) + cues_for("m2", 1))
        assert result == repo.CueInsert(inserted=10)
    async with sessions() as session:
        stored = await repo.cues_for_meeting(session=session, meeting_id="m1")
        assert stored == sorted(cues, key=lambda c: c.t)  # every field survives, aus included
        since = await repo.cues_for_meeting(session=session, meeting_id="m1", since_t=2.0)
        assert [c.t for c in since] == [2.0, 2.5, 3.0, 3.5]  # inclusive
        micro = await repo.cues_for_meeting(session=session, meeting_id="m1", types=["micro_expression"])
        assert {c.type for c in micro} == {"micro_expression"} and len(micro) == 4
        assert micro[0].aus == ("AU6", "AU12")
        assert await repo.cues_for_meeting(session=session, meeting_id="m1", types=[]) == []


async def test_insert_cues_is_idempotent(sessions: async_sessionmaker[AsyncSession]) -> None:
    cues = cues_for("m1")
    async with sessions() as session:
        await repo.create_meeting(session=session, title="x", meeting_id="m1")
        assert await repo.insert_cues(session=session, cues=cues) == repo.CueInsert(inserted=8)
        assert await repo.insert_cues(session=session, cues=cues) == repo.CueInsert(duplicates=8)
        extra = Cue(type="presence", t=9.0, meeting_id="m1", participant_id="p1", seq=0, value=1.0)
        orphan = Cue(type="presence", t=9.0, meeting_id="gone", participant_id="p1", seq=0, value=1.0)
        mixed = await repo.insert_cues(session=session, cues=[cues[0], extra, orphan, extra])
        assert mixed == repo.CueInsert(inserted=1, duplicates=2, unknown_meeting=1)
        assert await repo.insert_cues(session=session, cues=[]) == repo.CueInsert()
        # A worker restarted for the same meeting counts seq from 0 again: new cues, not redeliveries.
        restarted = replace(cues[0], t=cues[0].t + 100.0)
        assert await repo.insert_cues(session=session, cues=[restarted]) == repo.CueInsert(inserted=1)
        assert await session.scalar(select(func.count()).select_from(CueRow)) == 10


async def test_insert_cues_handles_batches_beyond_parameter_limits(sessions: async_sessionmaker[AsyncSession]) -> None:
    """5000 cues x 14 columns exceeds one statement's bound parameters on both dialects."""
    cues = [
        Cue(type="attention", t=i / 15, meeting_id="m1", participant_id="p1", seq=i, value=0.5) for i in range(5000)
    ]
    async with sessions() as session:
        await repo.create_meeting(session=session, title="x", meeting_id="m1")
        assert (await repo.insert_cues(session=session, cues=cues)).inserted == 5000
        assert (await repo.insert_cues(session=session, cues=cues)).duplicates == 5000


# --- summaries, tokens ---------------------------------------------------------------------------


async def test_summary_is_saved_and_replaced(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        await repo.create_meeting(session=session, title="x", meeting_id="m1")
        assert await repo.get_summary(session=session, meeting_id="m1") is None
        await repo.save_summary(session=session, meeting_id="m1", body={"v": 1}, computed_at=NOW)
        second = await repo.save_summary(
            session=session, meeting_id="m1", body={"v": 2, "per": {"p1": [0.5, None]}}, computed_at=NOW + timedelta(1)
        )
        assert second.body == {"v": 2, "per": {"p1": [0.5, None]}}
    async with sessions() as session:
        summary = await repo.get_summary(session=session, meeting_id="m1")
        assert summary is not None
        assert summary.body == {"v": 2, "per": {"p1": [0.5, None]}} and summary.computed_at == NOW + timedelta(1)
        assert await session.scalar(select(func.count()).select_from(Summary)) == 1


async def test_tokens_are_found_by_hash_only(sessions: async_sessionmaker[AsyncSession]) -> None:
    digest = "ab" * 32
    async with sessions() as session:
        await repo.create_meeting(session=session, title="x", meeting_id="m1")
        stored = await repo.store_token(session=session, meeting_id="m1", kind="presenter", token_hash=digest)
        with pytest.raises(ValueError, match="SHA-256"):
            await repo.store_token(session=session, meeting_id="m1", kind="join", token_hash="plain-token")
        with pytest.raises(ValueError, match="kind must be one of"):
            await repo.store_token(session=session, meeting_id="m1", kind="admin", token_hash=digest)
    async with sessions() as session:
        found = await repo.find_token(session=session, token_hash=digest)
        assert found is not None and (found.id, found.meeting_id, found.kind) == (stored.id, "m1", "presenter")
        assert await repo.find_token(session=session, token_hash="cd" * 32) is None
        with pytest.raises(IntegrityError):  # one hash, one token
            await repo.store_token(session=session, meeting_id="m1", kind="join", token_hash=digest)


# --- erasure and retention -----------------------------------------------------------------------


async def test_delete_meeting_removes_every_row_and_only_those(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        await populate(session, "m1", hash_char="a")
        await populate(session, "m2", hash_char="b")
        before = await total_rows(session)
        assert before == {
            "meetings": 2,
            "participants": 4,
            "cues": 16,
            "summaries": 2,
            "tokens": 4,
            "meeting_leases": 2,
        }
        kept = await repo.count_rows(session=session, meeting_id="m2")

        removed = await repo.delete_meeting(session=session, meeting_id="m1")
        assert removed.meeting_ids == ("m1",)
        assert removed.rows == {
            "cues": 8,
            "participants": 2,
            "summaries": 1,
            "tokens": 2,
            "meeting_leases": 1,
            "meetings": 1,
        }
    async with sessions() as session:
        assert await repo.count_rows(session=session, meeting_id="m1") == dict.fromkeys(TABLES, 0)
        assert await repo.count_rows(session=session, meeting_id="m2") == kept
        after = await total_rows(session)
        assert {t: before[t] - after[t] for t in TABLES} == removed.rows
        again = await repo.delete_meeting(session=session, meeting_id="m1")
        assert again.meeting_ids == () and again.total == 0


async def test_purge_older_than(sessions: async_sessionmaker[AsyncSession]) -> None:
    day = timedelta(days=1)
    async with sessions() as session:
        # (id, created, started, ended, retention_days)
        plan = [
            ("old_ended", NOW - 60 * day, NOW - 50 * day, NOW - 40 * day, None),
            ("recent", NOW - 10 * day, NOW - 10 * day, NOW - 5 * day, None),
            ("old_never_ended", NOW - 40 * day, None, None, None),
            ("long_running", NOW - 40 * day, NOW - 40 * day, None, None),
            ("short_retention", NOW - 6 * day, NOW - 6 * day, NOW - 5 * day, 3),
            ("long_retention", NOW - 41 * day, NOW - 41 * day, NOW - 40 * day, 365),
            ("kept_retention", NOW - 3 * day, NOW - 3 * day, NOW - 2 * day, 3),
        ]
        for meeting_id, created, started, ended, retention in plan:
            await repo.create_meeting(
                session=session,
                title=meeting_id,
                meeting_id=meeting_id,
                created_at=created,
                started_at=started,
                retention_days=retention,
            )
            if ended is not None:
                await repo.end_meeting(session=session, meeting_id=meeting_id, at=ended)
            await repo.insert_cues(session=session, cues=cues_for(meeting_id, 1))
        expected = ("long_retention", "long_running", "old_ended", "old_never_ended", "short_retention")

        dry = await repo.purge_older_than(session=session, older_than=30 * day, now=NOW, dry_run=True)
        assert dry.meeting_ids == expected and dry.rows["cues"] == 10 and dry.rows["meetings"] == 5
        assert (await total_rows(session))["meetings"] == 7  # dry run removed nothing

        removed = await repo.purge_older_than(session=session, older_than=30 * day, now=NOW)
        assert removed.meeting_ids == expected
        assert removed.rows == dry.rows
        with pytest.raises(ValueError, match="positive"):
            await repo.purge_older_than(session=session, older_than=timedelta(0))
    async with sessions() as session:
        left = set(await session.scalars(select(Meeting.id)))
        assert left == {"recent", "kept_retention"}
        assert set(await session.scalars(select(CueRow.meeting_id).distinct())) == left
        assert await session.scalar(select(func.count()).select_from(Participant)) == 0
        assert await session.scalar(select(func.count()).select_from(Token)) == 0


# --- the commands --------------------------------------------------------------------------------


def command_args(*argv: str) -> argparse.Namespace:
    """Only our two subcommands: the full CLI also imports every other command's dependencies."""
    parser = argparse.ArgumentParser(prog="microcue")
    sub = parser.add_subparsers(dest="command", required=True)
    db_command.register(sub)
    purge_command.register(sub)
    return parser.parse_args(argv)


async def test_db_and_purge_commands(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    # The commands run their own event loop, as the CLI does; run them off this test's loop.
    def run(*argv: str) -> str:
        args = command_args(*argv)
        assert args.run(args, settings) == 0
        return capsys.readouterr().out

    async def call(*argv: str) -> str:
        return await asyncio.to_thread(run, *argv)

    assert "at revision none (empty database), head is 0004 (run 'microcue db upgrade')" in await call("db", "current")
    with pytest.raises(SchemaOutdated, match="microcue db upgrade"):
        await call("purge", "--older-than", "30d")
    assert "at revision 0004" in await call("db", "upgrade")
    assert "(up to date)" in await call("db", "current")

    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            old = datetime.now(UTC) - timedelta(days=45)
            await repo.create_meeting(session=session, title="old", meeting_id="old1", created_at=old)
            await repo.insert_cues(session=session, cues=cues_for("old1", 2))
            await repo.create_meeting(session=session, title="new", meeting_id="new1")
    finally:
        await engine.dispose()

    dry = await call("purge", "--older-than", "30d", "--dry-run")
    assert dry.splitlines()[:2] == ["purge older than 30d: would remove 1 meeting(s)", "  meeting old1"]
    out = await call("purge", "--older-than", "720h")
    assert out.splitlines() == [
        "purge older than 30d: removed 1 meeting(s)",
        "  meeting old1",
        "  rows: cues 4, participants 0, summaries 0, tokens 0, meeting_leases 0, meetings 1",
    ]
    assert await call("purge", "--older-than", "30d") == "purge older than 30d: removed 0 meeting(s)\n"
    assert "at revision none" in await call("db", "downgrade", "base")
    assert await table_names(settings) <= {"alembic_version"}
