"""Meeting tokens: random, stored only as SHA-256, compared in constant time.

A presenter token opens one meeting's live feed, reports and controls; a join
token lets a participant into one meeting's room and nothing else. The plain
token exists only in the response that created it (and in the links built from
it); the database keeps ``sha256(token)``, so a leaked database grants nothing.

Why SHA-256 and not a slow password hash: tokens carry 256 bits of randomness,
so brute force is hopeless anyway, and a fast hash lets a lookup by hash use the
unique index instead of scanning every row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from bridge.store import repo
from bridge.store.tables import Meeting, utcnow

#: Bytes of randomness per token: 32 bytes = 256 bits, about 43 URL-safe characters.
TOKEN_BYTES = 32
#: Longest string we hash at all: a real token is 43 characters; anything much longer is
#: garbage (or an attempt to make us hash megabytes per request).
MAX_TOKEN_LEN = 256
#: Days a presenter token keeps opening reports after the meeting ended, when the meeting sets
#: no retention of its own; the same 30 days ``microcue purge --older-than`` suggests.
PRESENTER_DAYS_AFTER_END = 30
#: Hash compared when no row matched, so a miss costs the same comparison as a hit.
_DUMMY_HASH = hashlib.sha256(b"microcue-no-such-token").hexdigest()


class TokenKind(StrEnum):
    """The two token scopes; values are what ``tokens.kind`` stores."""

    PRESENTER = "presenter"
    JOIN = "join"


class TokenStatus(StrEnum):
    """Outcome of checking a token against one meeting and one scope."""

    OK = "ok"
    MISSING = "missing"  # no token presented at all
    UNKNOWN = "unknown"  # not a token we issued (or its meeting was erased)
    WRONG_MEETING = "wrong_meeting"  # a real token, for another meeting
    WRONG_KIND = "wrong_kind"  # a real token for this meeting, of the other scope
    EXPIRED = "expired"  # was valid: join tokens end with the meeting, presenter tokens after retention


@dataclass(frozen=True, slots=True)
class TokenCheck:
    status: TokenStatus
    meeting_id: str | None = None
    kind: str | None = None
    #: the role a role-bound invitation seats its holder in (join tokens only)
    role: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is TokenStatus.OK

    @property
    def authenticated(self) -> bool:
        """A real token, whatever it grants: refusals are then 403, not 401."""
        return self.status in (TokenStatus.OK, TokenStatus.WRONG_MEETING, TokenStatus.WRONG_KIND)


def new_token() -> str:
    """A fresh random token (URL-safe, no padding), fit for a query string."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The lowercase hex SHA-256 the database stores (``repo.TOKEN_HASH_RE``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def verify(token: str, token_hash: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(hash_token(token).encode("ascii"), token_hash.encode("ascii"))


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time equality for shared secrets such as the API key."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


async def issue(*, session: AsyncSession, meeting_id: str, kind: TokenKind, role: str | None = None) -> str:
    """Stores the hash of a new token and returns the token itself (shown once); ``role`` makes a
    join token a role-bound invitation."""
    token = new_token()
    await repo.store_token(
        session=session, meeting_id=meeting_id, kind=kind.value, token_hash=hash_token(token), role=role
    )
    return token


async def check(*, session: AsyncSession, token: str | None, meeting_id: str, kind: TokenKind) -> TokenCheck:
    """Is ``token`` a ``kind`` token of ``meeting_id``? Says why not, for the right refusal."""
    if not token:
        return TokenCheck(TokenStatus.MISSING)
    if len(token) > MAX_TOKEN_LEN:
        return TokenCheck(TokenStatus.UNKNOWN)
    row = await repo.find_token(session=session, token_hash=hash_token(token))
    # Found by its hash, re-checked in constant time: the lookup alone would already be
    # correct, the comparison keeps a miss and a hit doing the same work.
    if row is None or not verify(token, row.token_hash):
        verify(token, _DUMMY_HASH)
        return TokenCheck(TokenStatus.UNKNOWN)
    if not hmac.compare_digest(row.meeting_id.encode("utf-8"), meeting_id.encode("utf-8")):
        return TokenCheck(TokenStatus.WRONG_MEETING, meeting_id=row.meeting_id, kind=row.kind)
    if row.kind != kind.value:
        return TokenCheck(TokenStatus.WRONG_KIND, meeting_id=row.meeting_id, kind=row.kind)
    meeting = await repo.get_meeting(session=session, meeting_id=row.meeting_id)
    if meeting is None or expired(row.kind, meeting, utcnow()):
        return TokenCheck(TokenStatus.EXPIRED, meeting_id=row.meeting_id, kind=row.kind)
    return TokenCheck(TokenStatus.OK, meeting_id=row.meeting_id, kind=row.kind, role=row.role)


def expires_at(kind: str, meeting: Meeting) -> datetime | None:
    """When a token of ``kind`` stops working: a join token when the meeting ends (nobody joins an
    ended meeting), a presenter token once the meeting's retention after its end has passed
    (the reports it opens are then due for purging). None while the meeting runs."""
    if meeting.ended_at is None:
        return None
    if kind == TokenKind.JOIN.value:
        return meeting.ended_at
    return meeting.ended_at + timedelta(days=meeting.retention_days or PRESENTER_DAYS_AFTER_END)


def expired(kind: str, meeting: Meeting, now: datetime) -> bool:
    at = expires_at(kind, meeting)
    return at is not None and now >= at


async def revoke(
    *, session: AsyncSession, meeting_id: str, token: str | None = None, kind: TokenKind | None = None
) -> int:
    """Deletes one token of this meeting (``token``) or all of a ``kind``; returns how many went."""
    if token is not None:
        if len(token) > MAX_TOKEN_LEN:
            return 0
        return await repo.delete_tokens(session=session, meeting_id=meeting_id, token_hash=hash_token(token))
    return await repo.delete_tokens(session=session, meeting_id=meeting_id, kind=kind.value if kind else None)


def refusal_message(result: TokenCheck, kind: TokenKind) -> str:
    """One clear sentence for a refused token; never says which meeting a token belongs to."""
    wanted = "the meeting's presenter token" if kind is TokenKind.PRESENTER else "a join token of this meeting"
    match result.status:
        case TokenStatus.MISSING:
            return f"missing token: pass {wanted} as 'Authorization: Bearer <token>' or '?token='"
        case TokenStatus.UNKNOWN:
            return f"invalid token: expected {wanted}"
        case TokenStatus.WRONG_MEETING:
            return f"this token belongs to another meeting: expected {wanted}"
        case TokenStatus.WRONG_KIND:
            return f"a {result.kind} token cannot be used here: expected {wanted}"
        case TokenStatus.EXPIRED:
            if result.kind == TokenKind.JOIN.value:
                return "this join token expired: the meeting has ended"
            return "this presenter token expired: the meeting ended longer ago than its retention period"
        case _:
            return "token accepted"
