"""LiveHub: one bus subscription fanned out to every presenter websocket of this process.

The hub keeps, per meeting, the latest state cue of each participant (sentiment,
engagement, attention, presence, speaking) and the last expression cues, so a
presenter who connects (or reconnects) gets a snapshot at once instead of an
empty page. Each cue is encoded to JSON once and handed to every connection of
its meeting; each connection has its own bounded queue (``LiveConnection``),
so one slow presenter never holds the others back nor grows memory.

Memory bounds: ``MAX_TRACKED_MEETINGS`` meetings (least recently active evicted
first, never one with a viewer), ``MAX_PARTICIPANTS_PER_MEETING`` participants
per meeting, ``RECENT_EXPRESSIONS`` expression cues per meeting, and the
connection queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge import metrics
from bridge.bus import EventBus, Subscription
from bridge.confidence import below_floor
from bridge.service import REASON_ERASED
from bridge.store.tables import Participant
from inference.cues import EXPRESSION_TYPES, Cue

log = logging.getLogger("microcue.web.hub")

#: Expression cues kept per meeting for the snapshot (the dashboard's feed shows fewer).
RECENT_EXPRESSIONS = 50
#: Keys of hidden (below the confidence floor) cues remembered per meeting, so a cue counted live is
#: not counted again when the store seeds the meeting: more than the store seed ever brings back.
HIDDEN_KEYS_KEPT = 4 * RECENT_EXPRESSIONS
#: Cue kinds whose latest value describes a participant's current state.
STATE_TYPES: tuple[str, ...] = ("sentiment", "engagement", "attention", "presence", "speaking")
#: Meetings whose state is kept in memory; a process serves far fewer live meetings.
MAX_TRACKED_MEETINGS = 1000
#: Participants tracked per meeting: a large webinar, with room to spare.
MAX_PARTICIPANTS_PER_MEETING = 500
#: Default per-connection send queue: 2.5 s of a busy 200 cues/s meeting.
DEFAULT_SEND_QUEUE = 500
#: State cues read back from the store to seed a meeting the hub has not seen since it started
#: (restart, eviction, another instance took the cues): enough for the latest of each kind for
#: every participant of a large meeting.
SEED_STATE_CUES = 2000
#: Seconds the hub waits for its bus subscription to be confirmed at start-up.
SUBSCRIBE_READY_TIMEOUT_S = 10.0


def encode(message: dict[str, Any]) -> str:
    """Compact JSON, the one encoding every websocket message uses."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


class LiveConnection:
    """One presenter's bounded, drop-oldest queue of encoded messages.

    ``offer`` never waits: when the queue is full the oldest message goes and is
    counted, and the sender tells the client how many it skipped. ``close_with``
    asks the sender to close (meeting erased, server stopping).
    """

    def __init__(self, meeting_id: str, allowed_types: frozenset[str], *, maxsize: int = DEFAULT_SEND_QUEUE) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.meeting_id = meeting_id
        self.allowed_types = allowed_types
        self.maxsize = maxsize
        self._queue: deque[str] = deque()
        self._wakeup = asyncio.Event()
        #: Skipped since the client was last told.
        self.skipped_unreported = 0
        self.skipped_total = 0
        self.close_request: tuple[int, str] | None = None
        #: Counted in the hub (and the websocket gauge) until detached.
        self.attached = False

    def __len__(self) -> int:
        return len(self._queue)

    def offer_cue(self, cue_type: str, text: str) -> None:
        if cue_type in self.allowed_types:
            self.offer(text)

    def offer(self, text: str) -> None:
        if self.close_request is not None:
            return
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.skipped_unreported += 1
            self.skipped_total += 1
            metrics.websocket_skipped(1)
        self._queue.append(text)
        self._wakeup.set()

    def close_with(self, code: int, reason: str, final: str | None = None) -> None:
        """Close soon; ``final`` is the one message still sent before the close frame."""
        self.close_request = (code, reason)
        self._queue.clear()
        if final is not None:
            self._queue.append(final)
        self._wakeup.set()

    def pop(self) -> str | None:
        return self._queue.popleft() if self._queue else None

    async def wait(self, max_wait_s: float) -> None:
        """Until something is queued or a close is requested, at most ``max_wait_s`` seconds."""
        if self._queue or self.close_request is not None:
            return
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait_s):
                await self._wakeup.wait()


@dataclass
class _ParticipantState:
    latest: dict[str, dict[str, Any]]  # cue type -> cue dict


class _MeetingState:
    def __init__(self) -> None:
        self.participants: OrderedDict[str, _ParticipantState] = OrderedDict()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EXPRESSIONS)
        self.connections: set[LiveConnection] = set()
        self.ended = False
        #: Filled from the store once: live cues alone miss what happened before this process saw the meeting.
        self.seeded = False
        #: Expression signals under the confidence floor, hidden from presenters (counted, not sent),
        #: and the keys of the latest ones, so the store's copy of a cue seen live is not counted twice.
        self.hidden = 0
        self.hidden_keys: OrderedDict[tuple[str, int | None, float], None] = OrderedDict()

    def hide(self, cue: Cue) -> bool:
        """Counts a hidden cue once; False if it was already counted."""
        key = (cue.participant_id, cue.seq, cue.t)
        if key in self.hidden_keys:
            return False
        self.hidden_keys[key] = None
        if len(self.hidden_keys) > HIDDEN_KEYS_KEPT:
            self.hidden_keys.popitem(last=False)
        self.hidden += 1
        return True

    def apply(self, cue: Cue, as_dict: dict[str, Any]) -> None:
        if cue.type in EXPRESSION_TYPES:
            self.recent.append(as_dict)
        if not cue.participant_id:
            return
        state = self.participants.get(cue.participant_id)
        if state is None:
            if len(self.participants) >= MAX_PARTICIPANTS_PER_MEETING:
                self.participants.popitem(last=False)
            state = self.participants[cue.participant_id] = _ParticipantState(latest={})
        else:
            self.participants.move_to_end(cue.participant_id)
        if cue.type in STATE_TYPES:
            state.latest[cue.type] = as_dict


class LiveHub:
    """Owns one bus subscription (all meetings) and its consumer task; ``aclose`` ends both."""

    def __init__(self, bus: EventBus, *, min_confidence: float = 0.0) -> None:
        self._bus = bus
        #: MICROCUE_MIN_CONFIDENCE: expression signals below it never reach a presenter.
        self.min_confidence = min_confidence
        self._meetings: OrderedDict[str, _MeetingState] = OrderedDict()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self.received = 0

    @property
    def connection_count(self) -> int:
        return sum(len(m.connections) for m in self._meetings.values())

    @property
    def pending(self) -> int:
        """Cues the bus queued for the hub and it has not taken yet: the hub's lag in cues."""
        return int(getattr(self._subscription, "pending", 0))

    @property
    def bus_dropped(self) -> int:
        return int(getattr(self._subscription, "dropped", 0))

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("LiveHub already started")
        self._subscription = self._bus.subscribe(None)
        wait_ready = getattr(self._subscription, "wait_ready", None)
        if wait_ready is not None:
            try:
                async with asyncio.timeout(SUBSCRIBE_READY_TIMEOUT_S):
                    await wait_ready()
            except TimeoutError:
                log.warning("live hub: bus subscription not confirmed yet; live cues start on reconnect")
        self._task = asyncio.create_task(self._consume(), name="live-hub-consume")
        self._task.add_done_callback(_log_task_failure)

    async def aclose(self) -> None:
        """Asks every connection to close (1001, going away), then stops consuming."""
        for state in self._meetings.values():
            for conn in state.connections:
                conn.close_with(1001, "server shutting down")
        if self._subscription is not None:
            await self._subscription.aclose()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    async def _consume(self) -> None:
        assert self._subscription is not None
        async for cue in self._subscription:
            self.received += 1
            metrics.cue_seen(cue.type)
            try:
                self.dispatch(cue)
            except Exception:
                # One bad cue must not end every presenter's live feed.
                log.exception("live hub: could not dispatch %r; continuing", cue)

    def dispatch(self, cue: Cue) -> None:
        """Updates the meeting's state and queues the cue on each of its connections."""
        state = self._state(cue.meeting_id, create=True)
        assert state is not None
        if below_floor(cue.type, cue.confidence, self.min_confidence):
            state.hide(cue)
            text = encode({"type": "hidden", "count": state.hidden, "min_confidence": self.min_confidence})
            for conn in state.connections:
                conn.offer_cue(cue.type, text)
            return
        as_dict = cue.to_dict()
        state.apply(cue, as_dict)
        if state.connections:
            text = encode({"type": "cue", "cue": as_dict})
            for conn in state.connections:
                conn.offer_cue(cue.type, text)

    def _state(self, meeting_id: str, *, create: bool) -> _MeetingState | None:
        state = self._meetings.get(meeting_id)
        if state is not None:
            self._meetings.move_to_end(meeting_id)
            return state
        if not create:
            return None
        if len(self._meetings) >= MAX_TRACKED_MEETINGS:
            self._evict_one()
        state = self._meetings[meeting_id] = _MeetingState()
        return state

    def _evict_one(self) -> None:
        for meeting_id, state in self._meetings.items():  # least recently active first
            if not state.connections:
                del self._meetings[meeting_id]
                return

    def needs_seed(self, meeting_id: str) -> bool:
        state = self._meetings.get(meeting_id)
        return state is None or not state.seeded

    def seed(self, meeting_id: str, *, state_cues: Iterable[Cue], expression_cues: Iterable[Cue]) -> None:
        """Merges stored cues (oldest first) under what the hub already has: a live cue that
        arrived while the store was being read is newer and wins."""
        state = self._state(meeting_id, create=True)
        assert state is not None
        if state.seeded:
            return
        state.seeded = True
        for cue in state_cues:
            if not cue.participant_id or cue.type not in STATE_TYPES:
                continue
            person = state.participants.get(cue.participant_id)
            if person is None:
                if len(state.participants) >= MAX_PARTICIPANTS_PER_MEETING:
                    continue
                person = state.participants[cue.participant_id] = _ParticipantState(latest={})
                state.participants.move_to_end(cue.participant_id, last=False)
            current = person.latest.get(cue.type)
            if current is None or current["t"] <= cue.t:
                person.latest[cue.type] = cue.to_dict()
        live = list(state.recent)
        keys = {(c["participant_id"], c["seq"], c["t"]) for c in live}
        shown: list[Cue] = []
        for c in expression_cues:
            if below_floor(c.type, c.confidence, self.min_confidence):
                state.hide(c)
            else:
                shown.append(c)
        stored = [c.to_dict() for c in shown if (c.participant_id, c.seq, c.t) not in keys]
        state.recent = deque(stored + live, maxlen=RECENT_EXPRESSIONS)

    def connect(
        self,
        meeting_id: str,
        *,
        allowed_types: frozenset[str],
        participants: Iterable[Participant],
        policy: dict[str, Any],
        maxsize: int = DEFAULT_SEND_QUEUE,
        coaching: dict[str, Any] | None = None,
    ) -> tuple[LiveConnection, str]:
        """Attaches a connection and returns it with its encoded snapshot.

        Synchronous on purpose: no cue can slip between the snapshot and the
        first queued cue, and none can be in both.
        """
        state = self._state(meeting_id, create=True)
        assert state is not None
        conn = LiveConnection(meeting_id, allowed_types, maxsize=maxsize)
        snapshot = self._snapshot(meeting_id, state, allowed_types, participants, policy)
        if coaching is not None:
            snapshot["coaching"] = coaching
        state.connections.add(conn)
        conn.attached = True
        metrics.websocket_opened()
        return conn, encode(snapshot)

    def disconnect(self, conn: LiveConnection) -> None:
        if not conn.attached:
            return
        conn.attached = False
        metrics.websocket_closed()
        state = self._meetings.get(conn.meeting_id)
        if state is not None:
            state.connections.discard(conn)

    def _snapshot(
        self,
        meeting_id: str,
        state: _MeetingState,
        allowed: frozenset[str],
        participants: Iterable[Participant],
        policy: dict[str, Any],
    ) -> dict[str, Any]:
        known = {p.id: p for p in participants}
        ids = list(known) + [pid for pid in state.participants if pid not in known]
        rows = []
        for pid in ids:
            person = known.get(pid)
            latest = state.participants.get(pid, _ParticipantState(latest={})).latest
            rows.append(
                {
                    "participant_id": pid,
                    "display_name": person.display_name if person is not None else "",
                    "role": person.role if person is not None else None,
                    "consent": person.consent if person is not None else None,
                    "left": person.left_at is not None if person is not None else False,
                    "latest": {t: c for t, c in latest.items() if t in allowed},
                }
            )
        return {
            "type": "snapshot",
            "meeting_id": meeting_id,
            "participants": rows,
            "recent": [c for c in state.recent if c["type"] in allowed],
            "policy": policy,
            "ended": state.ended,
            "hidden": {"count": state.hidden, "min_confidence": self.min_confidence},
        }

    def participant_changed(self, meeting_id: str, participant: dict[str, Any]) -> None:
        """The presenter changed someone's role or name: every open dashboard of the meeting is told."""
        state = self._state(meeting_id, create=False)
        if state is None:
            return
        text = encode({"type": "participant", "participant": participant})
        for conn in state.connections:
            conn.offer(text)

    def coaching_changed(self, meeting_id: str, coaching: dict[str, Any] | None) -> None:
        """Sales coaching recomputed (roles changed): dashboards replace what they show."""
        state = self._state(meeting_id, create=False)
        if state is None:
            return
        text = encode({"type": "coaching", "coaching": coaching})
        for conn in state.connections:
            conn.offer(text)

    def meeting_ended(self, meeting_id: str) -> None:
        """Every open feed of the meeting gets ``meeting_ended`` and is closed with 4409: the
        analysis has stopped, nothing more will come."""
        state = self._state(meeting_id, create=True)
        assert state is not None
        state.ended = True
        final = encode({"type": "meeting_ended", "meeting_id": meeting_id})
        for conn in state.connections:
            conn.close_with(CLOSE_MEETING_ENDED, "meeting ended", final=final)

    async def close_meeting(self, meeting_id: str, reason: str) -> None:
        """The service's closer (``MeetingService.closers``): end or erase closes the feeds."""
        if reason == REASON_ERASED:
            self.forget(meeting_id, reason=reason)
        else:
            self.meeting_ended(meeting_id)

    def forget(self, meeting_id: str, *, reason: str = "meeting erased") -> None:
        """Erasure: drop the meeting's state and close its live connections."""
        state = self._meetings.pop(meeting_id, None)
        if state is None:
            return
        for conn in state.connections:
            conn.close_with(CLOSE_MEETING_GONE, reason)
            conn.attached = False
            metrics.websocket_closed()


#: Close code when the meeting a presenter watches was erased (4000-4999 are the application's).
CLOSE_MEETING_GONE = 4410
#: Close code when the meeting ended: final, like HTTP 409 for a late join.
CLOSE_MEETING_ENDED = 4409


def _log_task_failure(task: asyncio.Task[None]) -> None:
    """Background failures are never silent."""
    if not task.cancelled() and task.exception() is not None:
        log.error("live hub task %s crashed", task.get_name(), exc_info=task.exception())
