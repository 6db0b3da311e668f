"""Engine set-up and the two ways migrations run (from code, and the plain ``alembic`` CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.config import Settings
from bridge.store import migrate
from bridge.store.db import create_engine, is_sqlite, safe_url

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]


async def test_sqlite_connections_get_wal_and_foreign_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "dir", database_url="")
    engine = create_engine(settings)
    try:
        assert (tmp_path / "fresh" / "dir").is_dir()  # created on first use
        for _ in range(2):  # every pooled connection, not only the first
            async with engine.connect() as conn:
                assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
                assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
                assert await conn.scalar(text("PRAGMA busy_timeout")) == 5000
    finally:
        await engine.dispose()
    assert (tmp_path / "fresh" / "dir" / "microcue.db").is_file()


def test_urls_are_reported_without_passwords() -> None:
    url = "postgresql+asyncpg://microcue:s3cret@db.internal:5432/microcue"
    assert "s3cret" not in safe_url(url) and "db.internal" in safe_url(url)
    assert is_sqlite(Settings(database_url="").effective_database_url)
    assert not is_sqlite(url)


def test_migrations_ship_with_the_package() -> None:
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()
    assert migrate.head_revision(Settings(database_url="")) == "0004"


async def test_upgrade_keeps_existing_rows(tmp_path: Path) -> None:
    """Re-running upgrade at start-up must never touch data (no batch copy, no cascade)."""
    settings = Settings(data_dir=tmp_path, database_url="")
    await migrate.upgrade(settings)
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO meetings (id, title, kind, context, policy, created_at) "
                    "VALUES ('m1', 't', 'general', 'public', 'default', '2026-01-01 00:00:00')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO cues (meeting_id, participant_id, seq, type, t, aus, detail) "
                    "VALUES ('m1', 'p', 0, 'presence', 0, '[]', '')"
                )
            )
        await migrate.upgrade(settings)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM cues")) == 1
    finally:
        await engine.dispose()


def test_plain_alembic_cli_takes_the_url_from_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCUE_")}
    env["MICROCUE_DATA_DIR"] = str(tmp_path / "cli")
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini")]

    def run(*argv: str) -> str:
        done = subprocess.run(
            [*alembic, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("upgrade", "head")
    assert (tmp_path / "cli" / "microcue.db").is_file()  # MICROCUE_DATA_DIR decided where, not alembic.ini
    assert run("current").strip() == "0004 (head)"
    run("check")  # models and migrations agree: nothing to autogenerate
    run("downgrade", "base")
    assert run("current").strip() == ""
