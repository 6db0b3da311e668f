"""``microcue worker``: a bridge worker that takes meetings from the broker and holds them by lease.

What one worker does, and why:

* takes join requests from the shared subscription (``bridge.cluster.distributor``) while its
  load, counted in participants, leaves room (``MICROCUE_WORKER_CAPACITY``); a request it has
  no room for goes back to the group;
* holds each meeting it runs through a PostgreSQL lease with a fencing token
  (``bridge.cluster.lease``), renewed every ``RENEW_S``; a meeting whose lease is lost or
  whose local deadline passes is stopped at once, and its cues stop at the deadline
  (``FencedBus``), so two workers never publish for one meeting at the same time;
* sweeps for meetings whose holder died (lease expired, never released) and offers their
  join request to the group again: that is the takeover after a crash;
* publishes cues on the MQTT bus only; the web role stores them (roles share the bus and the
  database, nothing else);
* drains on SIGTERM: leaves the shared subscription, stops its meetings, releases their
  leases and passes their join requests on, so others take them at once.

Cue times stay on one clock across workers: time zero is the meeting's first grant (a
database time), so a successor's cues continue the meeting's timeline and the gap between
grants is missing time (``lease.coverage_gaps``), not shifted cues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.bus import EventBus, Subscription
from bridge.bus.mqtt import MqttBus, settings_tls
from bridge.cluster import lease as leases
from bridge.cluster.distributor import JoinRequest, WorkerLink
from bridge.config import Settings
from bridge.media.analysis import Analysis
from bridge.rooms import JoinTarget, MeetingAdapter, create_adapter
from bridge.rooms.builtin import BuiltinRoom, BuiltinRooms, SignalError
from bridge.service import MeetingService
from bridge.store import db, migrate
from bridge.store.errors import SchemaOutdated
from bridge.targets import TargetRefused, check_target, parse_allow
from inference.cues import Cue

log = logging.getLogger("microcue.worker")

#: How often a worker looks for meetings whose holder died; adds at most this to the takeover.
SWEEP_S = 1.0
#: An orphan nobody took (every worker full) is offered again after this long.
ORPHAN_RETRY_S = 10.0
#: A request passed on for lack of room waits this long first, so a full group does not spin.
PASS_ON_DELAY_S = 0.5
#: Passes after which a request nobody has room for is dropped with an error in the log
#: (the web role's confirmation retries, and the sweeper, offer it again later).
MAX_HOPS = 20
#: How long a participant's offer waits for the room its worker is taking.
ROOM_WAIT_S = 5.0
ROOM_POLL_S = 0.05
#: Seconds a stopping worker waits for the broker to acknowledge what it published last (its
#: meetings' final cues); a broker that is gone does not hold the exit up longer than this.
BUS_FLUSH_S = 5.0


class FencedBus:
    """The bus as one meeting's adapter sees it: cues pass only while the lease is valid."""

    def __init__(self, bus: EventBus, lease: leases.Lease) -> None:
        self.bus = bus
        self.lease = lease
        self.fenced = 0

    async def start(self) -> None:  # the worker owns the real bus
        return None

    async def aclose(self) -> None:
        return None

    async def publish(self, cue: Cue) -> None:
        if not self.lease.valid():
            self.fenced += 1
            return
        await self.bus.publish(cue)

    def subscribe(self, meeting_id: str | None = None) -> Subscription:
        return self.bus.subscribe(meeting_id)


@dataclass
class HeldMeeting:
    lease: leases.Lease
    request: JoinRequest
    adapter: MeetingAdapter
    task: asyncio.Task[None]
    taken_at: float = field(default_factory=time.monotonic)

    @property
    def participants(self) -> int:
        """Load of this meeting: the estimate until the adapter has people, then the count
        (connected members for a built-in room: those who left keep their state, not a load)."""
        if isinstance(self.adapter, BuiltinRoom):
            return len(self.adapter.members) or self.request.participants
        return len(self.adapter.participants) or self.request.participants


class WorkerRooms(BuiltinRooms):
    """Built-in rooms of a worker: only meetings this worker holds a lease on are served here."""

    def __init__(
        self, settings: Settings, service: MeetingService, analysis: Analysis, held: dict[str, HeldMeeting]
    ) -> None:
        super().__init__(settings, service, analysis)
        self.held = held

    async def wait_held(self, meeting_id: str) -> bool:
        """Whether this worker holds the room, waiting out the moment between the lease row
        being committed and the room being registered here (the web role may be that quick)."""
        for _ in range(int(ROOM_WAIT_S / ROOM_POLL_S)):
            held = self.held.get(meeting_id)
            if held is not None and isinstance(held.adapter, BuiltinRoom):
                return True
            await asyncio.sleep(ROOM_POLL_S)
        return False

    async def room(self, meeting_id: str) -> BuiltinRoom:
        if await self.wait_held(meeting_id):
            held = self.held.get(meeting_id)
            if held is not None and isinstance(held.adapter, BuiltinRoom):
                return held.adapter
        raise SignalError(f"this bridge worker does not hold meeting {meeting_id}; reconnect to the meeting")


class WorkerRole:
    """The meetings one worker process holds, and the loops that keep them honest."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus,
        sessions: async_sessionmaker[AsyncSession],
        worker_id: str,
        analysis: Analysis,
    ) -> None:
        """``analysis``: the process's models and pool, which the worker loads at start and its
        builder closes after it (``running_worker``)."""
        self.settings = settings
        self.bus = bus
        self.sessions = sessions
        self.worker_id = worker_id
        self.capacity = settings.worker_capacity
        self.leases = leases.LeaseStore(sessions, worker_id, url=settings.effective_worker_url)
        self.service = MeetingService(settings, bus=bus, sessions=sessions)
        self.held: dict[str, HeldMeeting] = {}
        #: the address each taken Janus target was checked at, until its bot connects there
        self._addresses: dict[str, str] = {}
        self.analysis = analysis
        self.rooms = WorkerRooms(settings, self.service, self.analysis, self.held)
        self.link = WorkerLink(settings.mqtt_url, worker_id, self.on_join, self.status, tls=settings_tls(settings))
        self._lock = asyncio.Lock()  # capacity check and acquire happen as one step
        self._loops: list[asyncio.Task[None]] = []
        self.draining = False
        #: called with a meeting id when this worker stops a built-in room it held (the HTTP
        #: side closes that room's signalling websockets, so the clients reconnect elsewhere)
        self.room_closed_hooks: list[Callable[[str], Awaitable[None]]] = []
        # counters for /metrics and the tests
        self.taken = 0
        self.passed_on = 0
        self.lost = 0
        self.requeued = 0

    # --- state ----------------------------------------------------------------------------------

    @property
    def participants(self) -> int:
        return sum(h.participants for h in self.held.values())

    def status(self) -> dict[str, Any]:
        """The heartbeat body (retained on the broker) and part of /readyz."""
        return {
            "participants": self.participants,
            "capacity": self.capacity,
            "meetings": sorted(self.held),
            "draining": self.draining,
        }

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the models first (seconds), so a worker that says it is ready takes meetings at once."""
        await self.analysis.load()
        await self.link.start()
        self._loops = [
            asyncio.create_task(self._renew_loop(), name="lease-renew"),
            asyncio.create_task(self._sweep_loop(), name="lease-sweep"),
        ]

    async def drain(self) -> None:
        """SIGTERM: hand every meeting to the other workers now instead of after a lease expiry."""
        self.draining = True
        await self.link.stop_accepting()
        held = list(self.held.values())
        self.held.clear()
        await asyncio.gather(*(self._hand_over(h, "draining") for h in held))
        log.info("worker %s drained %d meetings", self.worker_id, len(held))

    async def _hand_over(self, held: HeldMeeting, reason: str) -> None:
        """Release, stop, and pass the request on: the next worker needs no lease expiry.

        Released first: that fences this worker's cues at once (the lease's deadline drops to
        zero), and a built-in room's participants, told to reconnect when the room stops, are
        then never sent back here by the web role."""
        await self.leases.release(held.lease)
        await self._stop(held, reason)
        await self._pass_on(held.request, delay=0.0)

    async def aclose(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for held in list(self.held.values()):
            await self._stop(held, "worker stopping")
        self.held.clear()
        await self.link.aclose()
        await self.rooms.aclose()

    # --- taking meetings ------------------------------------------------------------------------

    async def on_join(self, request: JoinRequest) -> None:
        try:
            await self._take(request)
        except Exception:
            log.exception(
                "join request %s for meeting %s failed on worker %s", request.id, request.meeting_id, self.worker_id
            )

    async def _take(self, request: JoinRequest) -> None:
        if not await self._take_if_room(request):
            await self._pass_on(request)  # outside the lock: its delay must not hold up other joins

    async def _take_if_room(self, request: JoinRequest) -> bool:
        """False when this worker cannot serve the request (full, or draining)."""
        async with self._lock:
            if self.draining:
                return False
            if request.meeting_id in self.held:
                return True  # a duplicate delivery or a re-sent request: already ours
            if request.kind == "janus":
                # The web role checked the target already; a request from anyone else who can
                # publish on the broker must not send a bot anywhere either: the same check again
                # (bridge/targets.py), and the bot connects to the address it resolved.
                try:
                    checked = await check_target(request.url, parse_allow(self.settings.join_allow))
                except (TargetRefused, ValueError) as exc:
                    log.error(
                        "meeting %s: target refused on this worker (%s); request %s dropped",
                        request.meeting_id,
                        exc,
                        request.id,
                    )
                    return True
                self._addresses[request.meeting_id] = checked.address
            if self.participants + request.participants > self.capacity:
                log.info(
                    "worker %s full (%d/%d participants): passing meeting %s on",
                    self.worker_id,
                    self.participants,
                    self.capacity,
                    request.meeting_id,
                )
                return False
            lease = await self.leases.acquire(request.meeting_id, request.as_dict())
            if lease is None:
                log.info(
                    "meeting %s is held by another worker (or ended); request %s dropped",
                    request.meeting_id,
                    request.id,
                )
                return True
            try:
                adapter = await self._adapter(request, lease)
            except Exception:
                await self.leases.release(lease)
                raise
            task = asyncio.create_task(self._run(request.meeting_id, adapter), name=f"meeting-{request.meeting_id}")
            self.held[request.meeting_id] = HeldMeeting(lease, request, adapter, task)
            self.taken += 1
        log.info(
            "worker %s took meeting %s (lease token %d, %d/%d participants)",
            self.worker_id,
            request.meeting_id,
            lease.token,
            self.participants,
            self.capacity,
        )
        return True

    async def _adapter(self, request: JoinRequest, lease: leases.Lease) -> MeetingAdapter:
        # built-in rooms have a consent page (nobody analysed before saying yes); a bot in an
        # external meeting announces itself by its display name instead
        allowed = await self.service.emotions_allowed(request.meeting_id)
        ctx = await self.analysis.context(
            request.meeting_id,
            bus=FencedBus(self.bus, lease),
            emotions_allowed=allowed,
            consent=request.kind != "builtin",
        )
        ctx.t0 = await self._meeting_t0(request.meeting_id)
        if request.kind == "builtin":
            return BuiltinRoom(ctx)
        address = self._addresses.pop(request.meeting_id, None)
        return create_adapter(JoinTarget(kind="janus", url=request.url, room=request.room, address=address), ctx)

    async def _meeting_t0(self, meeting_id: str) -> float:
        """perf_counter() value of the meeting's time zero (its first grant), via the database clock."""
        async with self.sessions() as session:
            zero = await leases.origin(session, meeting_id)
            now = (await session.execute(text("SELECT clock_timestamp()"))).scalar_one()
        local = time.perf_counter()
        if zero is None:
            return local
        if zero.tzinfo is None:
            zero = zero.replace(tzinfo=UTC)
        elapsed = (now - zero).total_seconds() if isinstance(now, datetime) else 0.0
        return local - max(elapsed, 0.0)

    async def _run(self, meeting_id: str, adapter: MeetingAdapter) -> None:
        try:
            await adapter.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("meeting %s failed on worker %s", meeting_id, self.worker_id)
        held = self.held.get(meeting_id)
        if held is not None and held.adapter is adapter:
            self.held.pop(meeting_id, None)
            await adapter.aclose()
            await self.leases.release(held.lease)

    async def _stop(self, held: HeldMeeting, reason: str) -> None:
        log.info("worker %s stops meeting %s: %s", self.worker_id, held.lease.meeting_id, reason)
        if isinstance(held.adapter, BuiltinRoom):
            for hook in self.room_closed_hooks:  # participants' signalling: reconnect elsewhere
                try:
                    await hook(held.lease.meeting_id)
                except Exception:
                    log.exception("closing the signalling of meeting %s failed", held.lease.meeting_id)
        held.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await held.task
        await held.adapter.aclose()

    async def _pass_on(self, request: JoinRequest, *, delay: float = PASS_ON_DELAY_S) -> None:
        """Release what this worker cannot serve: back to the group, one hop further."""
        if request.hops >= MAX_HOPS:
            log.error(
                "no worker had room for meeting %s after %d passes; dropping request %s",
                request.meeting_id,
                request.hops,
                request.id,
            )
            return
        await asyncio.sleep(delay)
        self.passed_on += 1
        bumped = JoinRequest(**{**request.as_dict(), "hops": request.hops + 1})
        await self.link.publish_join(bumped)

    # --- keeping leases -------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(leases.RENEW_S)
            await asyncio.gather(*(self._renew(m, h) for m, h in list(self.held.items())))
            await self._shed_overload()

    async def _renew(self, meeting_id: str, held: HeldMeeting) -> None:
        try:
            renewal = await self.leases.renew(held.lease)
        except Exception as exc:  # database unreachable: keep going until the deadline
            log.warning("renewing the lease of meeting %s failed: %s", meeting_id, exc)
            if held.lease.valid():
                return
            renewal = leases.Renewal(held=False)
        if self.held.get(meeting_id) is not held:
            return
        if not renewal.held:
            self.lost += 1
            self.held.pop(meeting_id, None)
            await self._stop(held, f"lease token {held.lease.token} lost (fenced)")
        elif renewal.meeting_ended:
            self.held.pop(meeting_id, None)
            await self.leases.release(held.lease)
            await self._stop(held, "meeting ended")

    async def _shed_overload(self) -> None:
        """Meetings grew past capacity: the newest goes back to the group."""
        while self.participants > self.capacity and len(self.held) > 1:
            meeting_id = max(self.held, key=lambda m: self.held[m].taken_at)
            held = self.held.pop(meeting_id)
            await self._hand_over(held, f"over capacity ({self.participants + held.participants}/{self.capacity})")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            if self.draining or not self.link.connected:
                continue
            try:
                orphans = await self.leases.orphans(retry_after_s=ORPHAN_RETRY_S)
            except Exception as exc:
                log.warning("sweeping for orphaned meetings failed: %s", exc)
                continue
            for body in orphans:
                try:
                    request = JoinRequest.from_dict(body)
                except ValueError as exc:
                    log.error("stored join request is unusable (%s): %r", exc, body)
                    continue
                self.requeued += 1
                log.warning("meeting %s lost its worker; offering it to the group again", request.meeting_id)
                await self.link.publish_join(JoinRequest(**{**request.as_dict(), "hops": 0}))


class WorkerSchemaOutdated(SchemaOutdated):
    """The schema check of a worker, whose advice differs: it never migrates, so two never race to."""

    def explain(self) -> str:
        return (
            f"the database is at revision {self.current or 'none'}, this worker needs {self.head}: start the web "
            "role first or run `microcue db upgrade` (workers never migrate, so two never race to)"
        )


def worker_name(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[WorkerRole]:
    """A started worker for the lifetime of the block, as ``running_service`` is for the web side.

    The schema is checked, never migrated. Then the engine, the MQTT bus and the worker start
    (models load before it says it is ready), and close in reverse, the order that loses no
    cue: the worker stops its meetings, the bus gets their last cues to the broker (at most
    ``BUS_FLUSH_S``) and closes, then the engine goes. Draining first is the caller's choice
    (on SIGTERM), so a failed start closes the same way without one.
    """
    await migrate.require_head(settings, outdated=WorkerSchemaOutdated)
    engine = db.create_engine(settings)
    sessions = db.create_session_factory(engine)
    bus = MqttBus.from_settings(settings)
    analysis = Analysis(settings)
    worker: WorkerRole | None = None
    try:
        await bus.start()
        worker = WorkerRole(settings, bus=bus, sessions=sessions, worker_id=worker_name(settings), analysis=analysis)
        await worker.start()
        yield worker
    finally:
        if worker is not None:
            await worker.aclose()
        await analysis.aclose()  # after the worker's meetings, whose analyzers use it
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BUS_FLUSH_S):
                await bus.flush()
        await bus.aclose()
        await engine.dispose()
