"""MeetingService: the meeting lifecycle, shared by the web app, the demo and the WebRTC bridge.

It owns nothing it did not build: ``running_service(settings)`` builds the bus,
the database engine and the store writer in the order that loses no cue at
shutdown (see ``bridge/store/__init__.py``), and tears them down in reverse.

Features that other parts of MicroCue add later plug in as hooks instead of
imports, so this module never imports them and works before they exist:

* ``summary_hook(meeting_id)``: computes and stores the summary at meeting end;
* ``bot_hook(meeting_id, target)``: asks a bridge to join an external meeting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bridge import policy, tokens
from bridge.bus import EventBus, create_bus
from bridge.config import Settings
from bridge.errors import MicroCueError, NotBuiltYet
from bridge.store import db, migrate, repo
from bridge.store.tables import Meeting, Participant
from bridge.store.writer import StoreWriter
from bridge.targets import JoinTarget, TargetRefused, check_target, parse_allow
from bridge.tokens import TokenKind
from inference.cues import CUE_TYPES, EMOTION_CUE_TYPES, Cue

log = logging.getLogger("microcue.service")

#: Seconds ``end_meeting`` waits for the store writer to write what it holds, so the
#: summary sees the meeting's last cues (the writer flushes every 0.5 s).
END_SETTLE_TIMEOUT_S = 3.0
#: Poll interval while waiting for the writer to settle.
SETTLE_POLL_S = 0.05
#: Seconds a new bus subscription may take to be confirmed (MQTT SUBACK) at start-up.
SUBSCRIBE_READY_TIMEOUT_S = 10.0

SummaryHook = Callable[[str], Awaitable[Any]]
#: Stops one meeting's activity somewhere (rooms, bots, sockets): ``(meeting_id, reason)``.
MeetingCloser = Callable[[str, str], Awaitable[object]]
#: The reasons closers are given (websockets map them to their close codes).
REASON_ENDED = "meeting ended"
REASON_ERASED = "meeting erased"
#: Recalls the bot of one meeting: ``(meeting_id, reason) -> whether one was there``.
BotRecall = Callable[[str, str], Awaitable[bool]]
#: Seconds end and erase give the closers to stop rooms, bots and sockets (the issue's 2 s bound).
CLOSE_TIMEOUT_S = 2.0
#: Meetings whose purpose decision the store writer keeps in memory.
POLICY_CACHE_SIZE = 4096


BotHook = Callable[[str, JoinTarget], Awaitable[Mapping[str, Any]]]


class MeetingNotFound(MicroCueError):
    def __init__(self, meeting_id: str) -> None:
        super().__init__(f"no meeting with id {meeting_id!r} (never created, or erased)")
        self.meeting_id = meeting_id


class MeetingEnded(MicroCueError):
    def __init__(self, meeting_id: str) -> None:
        super().__init__(f"meeting {meeting_id!r} has ended; create a new meeting")
        self.meeting_id = meeting_id


class ParticipantNotFound(MicroCueError):
    def __init__(self, meeting_id: str, participant_id: str) -> None:
        super().__init__(f"meeting {meeting_id!r} has no participant {participant_id!r}")


class HostNotAllowed(MicroCueError):
    def __init__(self, host: str) -> None:
        super().__init__(
            f"host {host!r} is not on the operator's allow-list (MICROCUE_JOIN_ALLOW); ask the operator to add it"
        )
        self.host = host


class TooManyMeetings(MicroCueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"this service already runs {limit} meetings (MICROCUE_MAX_MEETINGS); end one or try later")


class FeatureUnavailable(MicroCueError):
    """A hook another part of MicroCue provides is not installed in this build."""


@dataclass(frozen=True, slots=True)
class CreatedMeeting:
    """A new meeting and its secrets; the tokens are shown once and only stored hashed."""

    meeting: Meeting
    presenter_token: str
    join_token: str
    dashboard_url: str
    join_url: str


class MeetingService:
    """Meeting lifecycle over the store; holds the bus and writer for whoever needs them."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus,
        sessions: async_sessionmaker[AsyncSession],
        writer: StoreWriter | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.sessions = sessions
        self.writer = writer
        self.summary_hook: SummaryHook | None = None
        self.bot_hook: BotHook | None = None
        self.bot_recall: BotRecall | None = None
        #: Called by end and erase, in order, so that nothing keeps analysing a closed meeting.
        self.closers: list[MeetingCloser] = []
        self._allowed_cache: dict[str, frozenset[str]] = {}

    # --- links ---------------------------------------------------------------------------------

    def dashboard_url(self, meeting_id: str, presenter_token: str) -> str:
        return f"{self.settings.base_url}/meetings/{quote(meeting_id)}/dashboard?token={quote(presenter_token)}"

    def join_url(self, meeting_id: str, join_token: str) -> str:
        return f"{self.settings.base_url}/join/{quote(meeting_id)}?token={quote(join_token)}"

    # --- lifecycle -----------------------------------------------------------------------------

    async def create_meeting(
        self, *, title: str, kind: str = "general", context: str, retention_days: int | None = None
    ) -> CreatedMeeting:
        """A meeting, its presenter token and a first join token (the link to share with people)."""
        decision = policy.decide(context, self.settings)
        async with self.sessions() as session:
            if await repo.count_open_meetings(session=session) >= self.settings.max_meetings:
                raise TooManyMeetings(self.settings.max_meetings)
            meeting = await repo.create_meeting(
                session=session,
                title=title,
                kind=kind,
                context=context,
                policy=self.settings.policy,
                retention_days=retention_days,
            )
            presenter = await tokens.issue(session=session, meeting_id=meeting.id, kind=TokenKind.PRESENTER)
            join = await tokens.issue(session=session, meeting_id=meeting.id, kind=TokenKind.JOIN)
        log.info(
            "meeting %s created (kind=%s, context=%s, emotions %s)",
            meeting.id,
            kind,
            context,
            "allowed" if decision.emotions_allowed else "withheld",
        )
        return CreatedMeeting(
            meeting=meeting,
            presenter_token=presenter,
            join_token=join,
            dashboard_url=self.dashboard_url(meeting.id, presenter),
            join_url=self.join_url(meeting.id, join),
        )

    async def get_meeting(self, meeting_id: str) -> Meeting:
        async with self.sessions() as session:
            meeting = await repo.get_meeting(session=session, meeting_id=meeting_id)
        if meeting is None:
            raise MeetingNotFound(meeting_id)
        return meeting

    async def end_meeting(self, meeting_id: str) -> Meeting:
        """Marks the meeting ended (idempotent), lets the writer store its last cues, then
        runs the summary hook when one is installed; a failing summary is logged, never
        un-ends the meeting."""
        async with self.sessions() as session:
            meeting = await repo.end_meeting(session=session, meeting_id=meeting_id)
        if meeting is None:
            raise MeetingNotFound(meeting_id)
        await self.close_meeting(meeting_id, REASON_ENDED)
        await self._settle_writer()
        if self.summary_hook is not None:
            try:
                await self.summary_hook(meeting_id)
            except Exception:
                log.exception("summary of meeting %s failed; the meeting stays ended", meeting_id)
        return meeting

    async def _settle_writer(self) -> None:
        if self.writer is None:
            return
        for _ in range(int(END_SETTLE_TIMEOUT_S / SETTLE_POLL_S)):
            if not self.writer.pending:
                return
            await asyncio.sleep(SETTLE_POLL_S)

    async def erase_meeting(self, meeting_id: str) -> repo.Removed:
        """Erasure: every row of the meeting in every table, tokens included. Rooms, bots and
        sockets stop first, so no cue of the meeting is produced (or stored) afterwards."""
        await self.close_meeting(meeting_id, REASON_ERASED)
        await self._settle_writer()
        async with self.sessions() as session:
            removed = await repo.delete_meeting(session=session, meeting_id=meeting_id)
        if not removed.meeting_ids:
            raise MeetingNotFound(meeting_id)
        return removed

    async def close_meeting(self, meeting_id: str, reason: str) -> None:
        """Runs every closer (rooms, bots, signalling and live sockets) for ``meeting_id``, at
        most ``CLOSE_TIMEOUT_S``; one failing closer is logged and does not stop the others."""
        self._allowed_cache.pop(meeting_id, None)
        if not self.closers:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                results = await asyncio.gather(*(c(meeting_id, reason) for c in self.closers), return_exceptions=True)
        except TimeoutError:
            log.error("closing meeting %s took more than %.0f s", meeting_id, CLOSE_TIMEOUT_S)
            return
        for result in results:
            if isinstance(result, BaseException):
                log.error("closing meeting %s: a closer failed", meeting_id, exc_info=result)

    async def recall_bot(self, meeting_id: str) -> bool:
        """The meeting's bot leaves; False when there was none."""
        await self.get_meeting(meeting_id)
        if self.bot_recall is None:
            return False
        return await self.bot_recall(meeting_id, "recalled by the presenter")

    async def revoke_tokens(self, meeting_id: str, *, token: str | None = None, kind: TokenKind | None = None) -> int:
        async with self.sessions() as session:
            revoked = await tokens.revoke(session=session, meeting_id=meeting_id, token=token, kind=kind)
        log.info("meeting %s: %d token(s) revoked", meeting_id, revoked)
        return revoked

    async def allowed_cue_types(self, meeting_id: str) -> frozenset[str]:
        """The meeting's one purpose decision (stricter of stored and current), cached."""
        allowed = self._allowed_cache.get(meeting_id)
        if allowed is not None:
            return allowed
        async with self.sessions() as session:
            meeting = await repo.get_meeting(session=session, meeting_id=meeting_id)
        if meeting is None:  # unknown: the writer rejects its cues anyway; store nothing sensitive
            return CUE_TYPES - EMOTION_CUE_TYPES
        allowed = policy.for_meeting(meeting.context, meeting.policy, self.settings).allowed_cue_types
        if len(self._allowed_cache) >= POLICY_CACHE_SIZE:
            self._allowed_cache.pop(next(iter(self._allowed_cache)))
        self._allowed_cache[meeting_id] = allowed
        return allowed

    async def emotions_allowed(self, meeting_id: str) -> bool:
        """Whether the meeting's purpose decision lets its analyzers infer emotions (what an
        adapter's analysis runs under); MeetingNotFound for a meeting that is not stored."""
        meeting = await self.get_meeting(meeting_id)
        return policy.for_meeting(meeting.context, meeting.policy, self.settings).emotions_allowed

    async def admit_cue(self, cue: Cue) -> bool:
        """The store writer's gate: a cue kind the meeting's policy withholds is never stored,
        whoever published it (a bridge, or any client of the MQTT broker). When the database
        cannot say, emotion kinds are refused (fail closed)."""
        try:
            allowed = await self.allowed_cue_types(cue.meeting_id)
        except Exception as exc:
            log.warning("policy lookup for meeting %s failed (%s); withholding emotion cues", cue.meeting_id, exc)
            allowed = CUE_TYPES - EMOTION_CUE_TYPES
        return cue.type in allowed

    async def summary(self, meeting_id: str) -> dict[str, Any] | None:
        async with self.sessions() as session:
            row = await repo.get_summary(session=session, meeting_id=meeting_id)
        return None if row is None else dict(row.body)

    # --- participants and tokens ---------------------------------------------------------------

    async def issue_join_token(self, meeting_id: str, role: str | None = None) -> str:
        """A new invitation; with ``role`` whoever joins with it takes that role."""
        meeting = await self.get_meeting(meeting_id)
        if meeting.ended_at is not None:
            raise MeetingEnded(meeting_id)
        async with self.sessions() as session:
            return await tokens.issue(session=session, meeting_id=meeting_id, kind=TokenKind.JOIN, role=role)

    async def join_participant(
        self,
        meeting_id: str,
        participant_id: str,
        *,
        display_name: str,
        consent: bool,
        role: str = "participant",
        resume_secret: str | None = None,
    ) -> Participant:
        """Records a participant who joined, or joined again (their first join time is kept), with
        their consent choice. With ``resume_secret`` they may later rejoin as themselves
        (``resume_allowed``); only its hash is stored."""
        resume_hash = None if resume_secret is None else tokens.hash_token(resume_secret)
        async with self.sessions() as session:
            return await repo.add_participant(
                session=session,
                meeting_id=meeting_id,
                participant_id=participant_id,
                display_name=display_name,
                consent=consent,
                role=role,
                resume_hash=resume_hash,
            )

    async def resume_allowed(self, meeting_id: str, participant_id: str, secret: str) -> bool:
        """Whether ``secret`` is the one this earlier participant of the meeting was given when they
        joined, so a new connection may continue as them (their analysis, their timeline)."""
        async with self.sessions() as session:
            earlier = await repo.get_participant(session=session, meeting_id=meeting_id, participant_id=participant_id)
        if earlier is None or earlier.resume_hash is None:
            return False
        if not tokens.verify(secret, earlier.resume_hash):
            log.warning("a resume for participant %s of meeting %s had the wrong secret", participant_id, meeting_id)
            return False
        return True

    async def leave_participant(self, meeting_id: str, participant_id: str) -> None:
        """Records when the participant left (a later join as the same participant clears it)."""
        async with self.sessions() as session:
            await repo.participant_left(session=session, meeting_id=meeting_id, participant_id=participant_id)

    async def update_participant(
        self, meeting_id: str, participant_id: str, *, role: str | None = None, display_name: str | None = None
    ) -> Participant:
        """The presenter sets a participant's role or name; summaries and coaching read the
        participants table when they are computed, so they follow at once."""
        await self.get_meeting(meeting_id)
        async with self.sessions() as session:
            row = await repo.update_participant(
                session=session,
                meeting_id=meeting_id,
                participant_id=participant_id,
                role=role,
                display_name=display_name,
            )
        if row is None:
            raise ParticipantNotFound(meeting_id, participant_id)
        log.info("meeting %s: participant %s now %s", meeting_id, participant_id, row.role)
        return row

    async def first_joined_at(self, meeting_id: str) -> datetime | None:
        """When the meeting's first participant joined (None: nobody yet): a room rebuilt after a
        restart continues the meeting's timeline from there."""
        async with self.sessions() as session:
            return await repo.first_joined_at(session=session, meeting_id=meeting_id)

    async def participants(self, meeting_id: str) -> list[Participant]:
        async with self.sessions() as session:
            return await repo.list_participants(session=session, meeting_id=meeting_id)

    async def recent_cues(self, meeting_id: str, *, types: frozenset[str], limit: int) -> list[Cue]:
        async with self.sessions() as session:
            return await repo.recent_cues(session=session, meeting_id=meeting_id, types=types, limit=limit)

    async def check_token(self, token: str | None, meeting_id: str, kind: TokenKind) -> tokens.TokenCheck:
        async with self.sessions() as session:
            return await tokens.check(session=session, token=token, meeting_id=meeting_id, kind=kind)

    # --- bots ----------------------------------------------------------------------------------

    async def request_bot(self, meeting_id: str, target: JoinTarget) -> Mapping[str, Any]:
        """The target check first (scheme, host:port allow-list, resolved once to a permitted
        address: ``bridge.targets``), then the hook a bridge installs, which connects to
        that checked address only."""
        if target.kind == "whep":  # nothing would connect anywhere: say so before any check
            raise NotBuiltYet("joining over WHEP is not built yet in this version; use 'janus' or 'page'")
        try:
            allow = parse_allow(self.settings.join_allow)
        except ValueError as exc:
            raise TargetRefused(f"the operator's allow-list is invalid: {exc}") from exc
        schemes = {"janus": ("ws", "wss"), "page": ("http", "https")}.get(target.kind, ("https",))
        checked = await check_target(target.url, allow, schemes=schemes)
        target = dataclasses.replace(target, address=checked.address)
        meeting = await self.get_meeting(meeting_id)
        if meeting.ended_at is not None:
            raise MeetingEnded(meeting_id)
        if self.bot_hook is None:
            raise FeatureUnavailable("bot joining not available in this build")
        return await self.bot_hook(meeting_id, target)

    # --- health --------------------------------------------------------------------------------

    async def database_ok(self) -> bool:
        try:
            async with self.sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readiness: database check failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
            return False
        return True


@asynccontextmanager
async def running_service(
    settings: Settings, *, apply_migrations: bool = True, bus: EventBus | None = None
) -> AsyncIterator[MeetingService]:
    """Bus, engine and store writer for the lifetime of the block, closed in the order
    that loses no cue: bus first (subscriptions drain), then the writer flushes, then
    the engine goes. ``bus`` lets a caller hand in one it built (tests, benchmarks)."""
    if apply_migrations:
        await migrate.upgrade(settings)
    engine: AsyncEngine = db.create_engine(settings)
    sessions = db.create_session_factory(engine)
    bus = bus if bus is not None else create_bus(settings)
    writer: StoreWriter | None = None
    try:
        await bus.start()
        subscription = bus.subscribe(None)
        await _wait_ready(subscription)
        service = MeetingService(settings, bus=bus, sessions=sessions)
        writer = StoreWriter(sessions, subscription, admit=service.admit_cue)
        service.writer = writer
        await writer.start()
        yield service
    finally:
        await bus.aclose()
        if writer is not None:
            await writer.aclose()
        await engine.dispose()


async def _wait_ready(subscription: object) -> None:
    """MQTT subscriptions confirm asynchronously; waiting bounds the start-up gap where cues
    published would not reach the writer. A broker that is down only delays this."""
    wait_ready = getattr(subscription, "wait_ready", None)
    if wait_ready is None:
        return
    try:
        async with asyncio.timeout(SUBSCRIBE_READY_TIMEOUT_S):
            await wait_ready()
    except TimeoutError:
        log.warning(
            "event bus subscription not confirmed within %.0f s; continuing, it completes on reconnect",
            SUBSCRIBE_READY_TIMEOUT_S,
        )
