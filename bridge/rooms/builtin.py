"""Built-in rooms: participants publish to the bridge directly over WebRTC (no meeting server).

Each participant's browser (or an aiortc peer) makes two connections to the bridge, each offered
once by the participant over the signalling websocket: ``publish`` carries their camera and
microphone up (analysed, consent permitting), ``subscribe`` has a fixed number of receive slots
that the bridge fills with the other participants' media through aiortc's ``MediaRelay``. People
coming and going change which source feeds a slot, never the SDP, so neither side renegotiates
(aiortc's renegotiation has open problems, aiortc issues #686 and #1079) and one participant's
arrival never disturbs another's analysis. The bridge never sends offers itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp
from av import VideoFrame
from av.frame import Frame
from av.packet import Packet

from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.media.analysis import AdapterContext, Analysis
from bridge.media.peers import keyframe_requester, without_receive_estimate
from bridge.rooms.base import MeetingAdapter
from bridge.rooms.ice import DEFAULT_ICE_ALLOW, Network, candidate_allowed, filter_candidates, parse_networks
from bridge.service import MeetingService

log = logging.getLogger("microcue.rooms.builtin")

#: A browser offer with audio, video and its ICE candidates is 3-8 kB; anything this large is
#: not an offer from a participant.
MAX_SDP_BYTES = 64 * 1024
#: Rooms are small by design (up to 8 people, the product's scope); relaying is O(n^2) streams.
MAX_PARTICIPANTS = 8
#: The box the video the others receive fits in (QVGA: 320x240 from a 640x480 camera, 136x240
#: from a phone's 360x640 portrait camera): a tile in a grid of up to 8 people, shown whole in its
#: cell. The relay re-encodes per receiver, so this sets most of a room's CPU; the analysis reads
#: the publisher's full picture, never the tile.
RELAY_BOX = (320, 240)


class SignalError(MicroCueError):
    """A signalling message the bridge refuses; the text goes back to that participant only."""


def check_offer(sdp: object) -> str:
    """The offer as text, or a SignalError saying what is wrong with it."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalError("the offer has no SDP text")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise SignalError(f"the offer is {len(sdp.encode())} bytes, more than the {MAX_SDP_BYTES} allowed")
    if not sdp.startswith("v=0"):
        raise SignalError("the offer is not SDP (it must start with 'v=0')")
    if "\nm=video " not in sdp.replace("\r\n", "\n"):
        raise SignalError("the offer has no video: publish a camera to join the analysis")
    check_offer_limits(sdp)
    return sdp


#: A participant publishes at most one camera and one microphone (aiortc starts a decoder
#: per received stream, so each extra sending section costs a thread).
MAX_SENDING_SECTIONS = 2
#: Every media section of an offer: the participant's own two plus a receive slot of each
#: kind for every other participant of a full room.
MAX_MEDIA_SECTIONS = 2 * MAX_PARTICIPANTS


def check_offer_limits(sdp: str) -> None:
    """Refuses offers that would cost the bridge more than one participant should: too many
    media sections, more than one sending camera or microphone, or no BUNDLE group (without
    it every section gets its own ICE transport and ports)."""
    try:
        parsed = SessionDescription.parse(sdp)
    except (ValueError, AssertionError, IndexError, KeyError) as exc:
        raise SignalError(f"the offer could not be used: {exc or type(exc).__name__}") from exc
    media = parsed.media
    if len(media) > MAX_MEDIA_SECTIONS:
        raise SignalError(f"the offer has {len(media)} media sections, more than the {MAX_MEDIA_SECTIONS} allowed")
    sending = [m for m in media if (m.direction or "sendrecv") in ("sendrecv", "sendonly")]
    if len(sending) > MAX_SENDING_SECTIONS or len({m.kind for m in sending}) < len(sending):
        raise SignalError("the offer sends more than one camera and one microphone; publish one of each at most")
    bundles = [g for g in parsed.group if g.semantic == "BUNDLE"]
    mids = {m.rtp.muxId for m in media}
    if not bundles or not mids <= {str(i) for i in bundles[0].items}:
        raise SignalError(
            "the offer could not be used: it has no BUNDLE group covering every media section "
            "(a=group:BUNDLE), which the bridge requires"
        )


Notify = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
#: Called when a publisher without a signalling socket (WHIP) loses its connection.
OnLost = Callable[[], Awaitable[None]]
#: A trickled remote candidate: (its m-line's mid or None, the ``candidate:...`` attribute value).
RemoteCandidate = tuple[str | None, str]


class RelaySlot(MediaStreamTrack):
    """A track that never ends, fed by whichever participant its downstream slot carries now.

    The downstream sender keeps one track for the whole meeting: aiortc's sender loop stops for
    good when its track ends, so a publisher leaving must not end the track the sender reads.
    ``set_source(None)`` makes the slot silent (no RTP) until someone else is put in it.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._changed = asyncio.Event()

    @property
    def source(self) -> MediaStreamTrack | None:
        return self._source

    def set_source(self, track: MediaStreamTrack | None) -> None:
        old, self._source = self._source, track
        if old is not None and old is not track:
            old.stop()
        self._changed.set()

    async def recv(self) -> Frame | Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            self._changed.clear()
            if source is None:
                await self._changed.wait()
                continue
            frame_task = asyncio.ensure_future(source.recv())
            changed_task = asyncio.ensure_future(self._changed.wait())
            try:
                done, _ = await asyncio.wait({frame_task, changed_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed_task.cancel()
            if frame_task not in done:  # another participant was put in this slot meanwhile
                frame_task.cancel()
                continue
            try:
                return frame_task.result()
            except MediaStreamError:  # that publisher's track ended: silent until reassigned
                if self._source is source:
                    self._source = None
                continue

    def stop(self) -> None:
        self.set_source(None)
        super().stop()


class TileTrack(MediaStreamTrack):
    """A publisher's video scaled down once for everyone who receives it.

    The bridge encodes each relayed video once per receiver (aiortc cannot forward RTP without
    decoding), so the relay's resolution sets most of the room's CPU: a 640x480 camera relayed to
    two others cost six VP8 encodes at full size in a three-person room, and starved the
    analysis. Receivers show each other as grid tiles; the analysis keeps the full picture.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack, box: tuple[int, int]) -> None:
        super().__init__()
        self.source = source
        self.box = box

    async def recv(self) -> Frame | Packet:
        frame = await self.source.recv()
        if not isinstance(frame, VideoFrame):
            return frame
        size = tile_size(frame.width, frame.height, self.box)
        if size == (frame.width, frame.height):
            return frame
        tile = frame.reformat(width=size[0], height=size[1])
        tile.pts, tile.time_base = frame.pts, frame.time_base
        return tile

    def stop(self) -> None:
        self.source.stop()
        super().stop()


def tile_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The picture scaled to fit ``box`` with its aspect kept (never enlarged); even sides, as
    yuv420p needs. A portrait camera fits by its height: scaled by width alone, a 720x1280 phone
    would be relayed at 320x568, 2.4 times a landscape tile's pixels to encode per receiver."""
    scale = min(1.0, box[0] / width, box[1] / height)
    if scale == 1.0:
        return width, height
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


@dataclass
class _Slot:
    """One receive m-line of a participant's downstream connection."""

    transceiver: RTCRtpTransceiver
    track: RelaySlot
    #: the publisher carried now, or None
    owner: str | None = None
    #: whether anybody was ever carried (fresh slots are preferred, see ``_free_slot``)
    used: bool = False


@dataclass
class _Member:
    """A participant's two connections: ``up`` (what they publish), ``down`` (what they receive)."""

    display: str
    notify: Notify | None = None
    up: RTCPeerConnection | None = None
    down: RTCPeerConnection | None = None
    published: list[MediaStreamTrack] = field(default_factory=list)
    slots: list[_Slot] = field(default_factory=list)
    #: relays this member's tracks; one per member, so that leaving drops aiortc's per-source
    #: bookkeeping with it (MediaRelay forgets a source only once frames flowed and ended, so a
    #: room-wide relay kept every never-started track of everyone who ever connected)
    relay: MediaRelay = field(default_factory=MediaRelay)
    #: what the others receive of this member: the audio as it is, the video as a grid tile
    outgoing: dict[str, MediaStreamTrack] = field(default_factory=dict)
    #: relays ``outgoing`` to every receiver (one scaled copy, many subscribers)
    tile_relay: MediaRelay = field(default_factory=MediaRelay)
    #: offers taken per connection over the whole meeting (each connection takes exactly one)
    offers: dict[str, int] = field(default_factory=lambda: {"publish": 0, "subscribe": 0})


class BuiltinRoom(MeetingAdapter):
    """One built-in meeting's connections, relay and workers.

    The SFU split: every participant has an upstream connection that carries their camera and
    microphone to the bridge and is negotiated once, and a downstream connection that the
    participant offers once with a fixed number of receive slots. Who is in which slot changes
    as people come and go by swapping the slot's source (``RTCRtpSender.replaceTrack`` style),
    so no connection is ever renegotiated and nobody's analysis is disturbed by someone else.
    The participant learns who is in which slot from a ``slots`` message (mid -> person).
    """

    kind = "builtin"

    def __init__(self, ctx: AdapterContext) -> None:
        super().__init__(ctx)
        self.members: dict[str, _Member] = {}
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: networks besides public ones that clients' ICE candidates may name (MICROCUE_ICE_ALLOW)
        self.ice_networks: tuple[Network, ...] = parse_networks(DEFAULT_ICE_ALLOW)

    async def run(self) -> None:
        await self._closed.wait()

    # ---- membership ------------------------------------------------------------------------

    def join(self, participant_id: str, display: str, consent: bool, notify: Notify | None = None) -> None:
        """Admit a participant (before any offer); consent decides whether they are analysed."""
        if participant_id in self.members:
            raise SignalError("this participant has already joined")
        if len(self.members) >= MAX_PARTICIPANTS:
            raise SignalError(f"this room is full ({MAX_PARTICIPANTS} participants)")
        self.members[participant_id] = _Member(display=display, notify=notify)
        self.participant(participant_id, display).set_consent(consent)

    def _member(self, participant_id: str) -> _Member:
        member = self.members.get(participant_id)
        if member is None:
            raise SignalError("join the room before sending an offer")
        return member

    async def leave(self, participant_id: str, reason: str = "left the meeting") -> None:
        """Remove the participant: their connections, their workers, their place in others' slots."""
        member = self.members.pop(participant_id, None)
        if member is not None:
            for pc in (member.up, member.down):
                if pc is not None:
                    await self.peers.close(pc)
            for tile in member.outgoing.values():
                tile.stop()
            for other_id, other in self.members.items():
                if any(slot.owner == participant_id for slot in other.slots):
                    for slot in other.slots:
                        if slot.owner == participant_id:
                            slot.track.set_source(None)
                            slot.owner = None
                    self._send_slots(other_id)
        participant = self.participants.pop(participant_id, None)
        if participant is not None:
            await participant.detach(reason)
            await participant.aclose()

    async def close_meeting(self) -> None:
        """End of the meeting: everyone leaves, the room stops."""
        for participant_id in list(self.members):
            await self.leave(participant_id, reason="meeting ended")
        await self.aclose()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per participant: the offers each connection took and the worker's counters."""
        return {
            pid: {
                "display": m.display,
                "offers": dict(m.offers),
                "connections": sum(pc is not None for pc in (m.up, m.down)),
                **(self.participants[pid].stats() if pid in self.participants else {}),
            }
            for pid, m in self.members.items()
        }

    # ---- upstream: what a participant publishes --------------------------------------------

    async def publish(self, participant_id: str, sdp: object, *, on_lost: OnLost | None = None) -> str:
        """Upstream: take the participant's offer of their camera (and microphone), return the answer.

        One offer per participant for the whole meeting; the same door serves any publisher that
        brings an SDP offer (the join page, RoomClient, WHIP). With ``on_lost`` (a WHIP publisher:
        no signalling socket tells us it went) the participant leaves when the connection fails or
        is closed by the other side, then ``on_lost`` runs.
        """
        offer = filter_candidates(check_offer(sdp), self.ice_networks)
        member = self._member(participant_id)
        if member.up is not None:
            raise SignalError("already publishing: the upstream connection is negotiated once")
        participant = self.participant(participant_id, member.display)
        pc = member.up = self.peers.create(f"up-{participant_id}")
        member.offers["publish"] += 1

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            member.published.append(track)
            # the analysis reads its own relayed copy: the original feeds every subscriber
            transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
            participant.attach(
                member.relay.subscribe(track, buffered=False),
                self.peers,
                keyframe_requester(transceiver) if transceiver is not None else None,
            )
            self.ready.set()
            for other_id in self.members:
                if other_id != participant_id and self._place(other_id, participant_id, track):
                    self._send_slots(other_id)

        if on_lost is not None:

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState in ("failed", "closed") and self.members.get(participant_id) is member:
                    await self.leave(participant_id, reason="connection lost")
                    await on_lost()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            for transceiver in pc.getTransceivers():
                transceiver.direction = "recvonly"
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            member.up = None
            await self.peers.close(pc)
            raise _offer_error(exc) from exc
        log.info("participant %s (%s) publishes", participant_id, member.display or "no name")
        return without_receive_estimate(pc.localDescription.sdp)

    async def add_candidates(self, participant_id: str, candidates: Sequence[RemoteCandidate], *, end: bool) -> None:
        """Trickled ICE candidates for a participant's upstream connection (WHIP PATCH); ``end``: no more."""
        member = self._member(participant_id)
        if member.up is None:
            raise SignalError(f"participant {participant_id} is not publishing")
        for mid, line in candidates:
            try:
                candidate = candidate_from_sdp(line.removeprefix("candidate:"))
            except (AssertionError, ValueError, IndexError) as exc:
                raise SignalError(f"not an ICE candidate: {line[:80]!r}") from exc
            if not candidate_allowed(candidate.ip, self.ice_networks):
                continue  # loopback, link-local or a network the operator did not allow (bridge/rooms/ice.py)
            candidate.sdpMid = mid
            if mid is None:
                candidate.sdpMLineIndex = 0
            await member.up.addIceCandidate(candidate)
        if end:
            await member.up.addIceCandidate(None)

    # ---- downstream: what a participant receives -------------------------------------------

    async def subscribe(self, participant_id: str, sdp: object) -> str:
        """Downstream: the participant offers receive slots once; the others are put in them."""
        offer = filter_candidates(check_offer(sdp), self.ice_networks)
        member = self._member(participant_id)
        if member.down is not None:
            raise SignalError("already receiving: the downstream connection is negotiated once")
        pc = member.down = self.peers.create(f"down-{participant_id}")
        member.offers["subscribe"] += 1

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:  # a receive-only page sends nothing; drain
            self.peers.blackhole(track)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            for transceiver in pc.getTransceivers():
                # aiortc stores the offer's direction from our side: "sendonly" = they receive
                if transceiver.kind in ("audio", "video") and transceiver._offerDirection in ("sendonly", "sendrecv"):
                    slot = _Slot(transceiver, RelaySlot(transceiver.kind))
                    transceiver.sender.replaceTrack(slot.track)
                    transceiver.direction = "sendonly"
                    member.slots.append(slot)
                else:
                    transceiver.direction = "inactive"
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            member.down, member.slots = None, []
            await self.peers.close(pc)
            raise _offer_error(exc) from exc
        for other_id, other in self.members.items():
            if other_id != participant_id:
                for track in other.published:
                    self._place(participant_id, other_id, track)
        self._send_slots(participant_id)
        return pc.localDescription.sdp

    def _free_slot(self, member: _Member, kind: str) -> _Slot | None:
        """A never-used slot first: a fresh m-line starts a clean stream in the receiver."""
        free = [s for s in member.slots if s.owner is None and s.track.kind == kind]
        free.sort(key=lambda s: s.used)
        return free[0] if free else None

    def _outgoing(self, publisher_id: str, track: MediaStreamTrack) -> MediaStreamTrack:
        """A receiver's copy of ``publisher_id``'s ``track``: video goes through the one tile track."""
        publisher = self.members[publisher_id]
        if track.kind != "video":
            return publisher.relay.subscribe(track, buffered=False)
        tile = publisher.outgoing.get(track.id)
        if tile is None:
            tile = publisher.outgoing[track.id] = TileTrack(publisher.relay.subscribe(track, buffered=False), RELAY_BOX)
        return publisher.tile_relay.subscribe(tile, buffered=False)

    def _place(self, receiver_id: str, publisher_id: str, track: MediaStreamTrack) -> bool:
        """Carry ``publisher_id``'s ``track`` in one of ``receiver_id``'s slots; False if no slot."""
        member = self.members[receiver_id]
        slot = self._free_slot(member, track.kind)
        if slot is None:
            return False
        slot.owner, slot.used = publisher_id, True
        slot.track.set_source(self._outgoing(publisher_id, track))
        if track.kind == "video":
            # a new picture in an old m-line needs a keyframe; aiortc has no public call for it
            slot.transceiver.sender._send_keyframe()
        return True

    def _send_slots(self, participant_id: str) -> None:
        member = self.members.get(participant_id)
        if member is None or member.notify is None or member.down is None:
            return
        slots = [
            {
                "mid": s.transceiver.mid,
                "kind": s.track.kind,
                "participant_id": s.owner,
                "name": self.members[s.owner].display if s.owner in self.members else None,
            }
            for s in member.slots
            if s.owner is not None
        ]
        task = asyncio.create_task(member.notify({"type": "slots", "slots": slots}), name=f"slots-{participant_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        self._closed.set()
        for member in self.members.values():
            for slot in member.slots:
                slot.track.stop()
        self.members.clear()
        for task in list(self._tasks):
            task.cancel()
        await super().aclose()


def _offer_error(exc: Exception) -> SignalError:
    if isinstance(exc, SignalError):
        return exc
    if isinstance(exc, OperationError):  # nothing aiortc can decode in a media line
        return SignalError(f"no codec in common with the bridge ({exc}); offer VP8 or H.264 video and Opus audio")
    return SignalError(f"the offer could not be used: {exc or type(exc).__name__}")


class BuiltinRooms:
    """Every built-in room of a service process; they share the process's ``analysis``, which
    loads its models on the first join."""

    def __init__(self, settings: Settings, service: MeetingService, analysis: Analysis) -> None:
        self.settings = settings
        self.service = service
        self.analysis = analysis
        self.rooms: dict[str, BuiltinRoom] = {}

    async def _time_zero(self, meeting_id: str) -> float:
        """perf_counter() of the meeting's time zero: now for a new room; for a room this process
        builds again after a restart, its first participant's join, so that the cues of those
        who rejoin continue the meeting's timeline instead of starting again at 0 (a cluster
        worker sets the lease's time zero instead, bridge/cluster/worker_role.py)."""
        first = await self.service.first_joined_at(meeting_id)
        local = time.perf_counter()
        if first is None:
            return local
        return local - max(0.0, (datetime.now(UTC) - first).total_seconds())

    async def room(self, meeting_id: str) -> BuiltinRoom:
        room = self.rooms.get(meeting_id)
        if room is not None:
            return room
        # built-in rooms have a consent page: nobody is analysed before saying yes
        allowed = await self.service.emotions_allowed(meeting_id)
        ctx = await self.analysis.context(meeting_id, bus=self.service.bus, emotions_allowed=allowed, consent=False)
        ctx.t0 = await self._time_zero(meeting_id)
        room = self.rooms.get(meeting_id)  # another join may have created it meanwhile
        if room is None:
            room = self.rooms[meeting_id] = BuiltinRoom(ctx)
            room.ice_networks = parse_networks(self.settings.ice_allow)
        return room

    # --- one publisher without signalling (WHIP): the whole use other ingest paths make of a room --

    async def publish(
        self,
        meeting_id: str,
        participant_id: str,
        display: str,
        consent: bool,
        sdp: object,
        *,
        on_lost: OnLost | None = None,
    ) -> str:
        """A publisher's SDP offer in, the bridge's answer out (with all its ICE candidates);
        ``on_lost`` runs when the publisher's connection goes without a goodbye."""
        room = await self.room(meeting_id)
        room.join(participant_id, display, consent)
        try:
            return await room.publish(participant_id, sdp, on_lost=on_lost)
        except Exception:
            await room.leave(participant_id, reason="bad offer")
            raise

    async def trickle(
        self, meeting_id: str, participant_id: str, candidates: Sequence[RemoteCandidate], *, end: bool
    ) -> None:
        room = self.rooms.get(meeting_id)
        if room is None:
            raise SignalError(f"meeting {meeting_id} has no room running")
        await room.add_candidates(participant_id, candidates, end=end)

    async def unpublish(self, meeting_id: str, participant_id: str) -> None:
        room = self.rooms.get(meeting_id)
        if room is not None:
            await room.leave(participant_id)

    async def close_meeting(self, meeting_id: str, reason: str = "meeting ended") -> None:
        """The service's closer: the meeting ended or was erased; everyone leaves, the room is gone."""
        room = self.rooms.pop(meeting_id, None)
        if room is not None:
            log.info("built-in room of meeting %s closed: %s", meeting_id, reason)
            await room.close_meeting()

    async def aclose(self) -> None:
        rooms, self.rooms = list(self.rooms.values()), {}
        await asyncio.gather(*(r.aclose() for r in rooms), return_exceptions=True)
