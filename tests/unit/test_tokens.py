"""Tokens: random, stored as SHA-256 only, scoped to one meeting and one kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge import tokens
from bridge.config import Settings
from bridge.store import migrate, repo
from bridge.store.db import create_engine, create_session_factory
from bridge.store.tables import Token
from bridge.tokens import TokenKind, TokenStatus

pytestmark = pytest.mark.unit


def test_new_tokens_are_long_random_and_url_safe() -> None:
    made = {tokens.new_token() for _ in range(1000)}
    assert len(made) == 1000
    for token in made:
        assert len(token) >= 43  # 32 bytes in base64url
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_hash_is_the_stored_hex_sha256_and_verify_is_exact() -> None:
    token = tokens.new_token()
    digest = tokens.hash_token(token)
    assert repo.TOKEN_HASH_RE.match(digest)
    assert tokens.verify(token, digest)
    assert not tokens.verify(token + "x", digest)
    assert not tokens.verify(token[:-1], digest)


def test_same_secret() -> None:
    assert tokens.same_secret("key-1", "key-1")
    assert not tokens.same_secret("key-1", "key-2")
    assert not tokens.same_secret("", "key-1")


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = Settings(data_dir=tmp_path)
    await migrate.upgrade(settings)
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


async def test_check_scopes_token_to_meeting_and_kind(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        a = await repo.create_meeting(session=s, title="a", context="customer")
        b = await repo.create_meeting(session=s, title="b", context="customer")
        presenter_a = await tokens.issue(session=s, meeting_id=a.id, kind=TokenKind.PRESENTER)
        join_a = await tokens.issue(session=s, meeting_id=a.id, kind=TokenKind.JOIN)
        presenter_b = await tokens.issue(session=s, meeting_id=b.id, kind=TokenKind.PRESENTER)

        async def status(token: str | None, meeting_id: str, kind: TokenKind) -> TokenStatus:
            return (await tokens.check(session=s, token=token, meeting_id=meeting_id, kind=kind)).status

        assert await status(presenter_a, a.id, TokenKind.PRESENTER) is TokenStatus.OK
        assert await status(join_a, a.id, TokenKind.JOIN) is TokenStatus.OK
        assert await status(None, a.id, TokenKind.PRESENTER) is TokenStatus.MISSING
        assert await status("", a.id, TokenKind.PRESENTER) is TokenStatus.MISSING
        assert await status("nope", a.id, TokenKind.PRESENTER) is TokenStatus.UNKNOWN
        assert await status("x" * 10_000, a.id, TokenKind.PRESENTER) is TokenStatus.UNKNOWN
        assert await status(presenter_b, a.id, TokenKind.PRESENTER) is TokenStatus.WRONG_MEETING
        assert await status(join_a, a.id, TokenKind.PRESENTER) is TokenStatus.WRONG_KIND
        assert await status(presenter_a, a.id, TokenKind.JOIN) is TokenStatus.WRONG_KIND

        # Only hashes are stored: the plain token appears nowhere in the table.
        stored = list(await s.scalars(select(Token.token_hash)))
        assert len(stored) == 3
        assert not {presenter_a, join_a, presenter_b} & set(stored)


def test_refusal_messages_say_what_is_expected_without_naming_meetings() -> None:
    check = tokens.TokenCheck(TokenStatus.WRONG_MEETING, meeting_id="secret-meeting-id", kind="presenter")
    message = tokens.refusal_message(check, TokenKind.PRESENTER)
    assert "another meeting" in message
    assert "secret-meeting-id" not in message
    assert "Bearer" in tokens.refusal_message(tokens.TokenCheck(TokenStatus.MISSING), TokenKind.PRESENTER)
    wrong_kind = tokens.TokenCheck(TokenStatus.WRONG_KIND, meeting_id="m", kind="join")
    assert "join token cannot be used" in tokens.refusal_message(wrong_kind, TokenKind.PRESENTER)
