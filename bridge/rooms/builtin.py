"""Built-in rooms: participants publish to the bridge directly over WebRTC (no meeting server).

Each participant's browser (or an aiortc peer) sends one SDP offer over the signalling
websocket; the bridge answers from its own RTCPeerConnection, analyses the received camera and
microphone (consent permitting) and relays the other participants' media back through aiortc's
``MediaRelay``, so a small meeting works with nothing else installed. A participant who joins
later is seen by those already present after they re-offer (the join page and RoomClient do it
when told ``{"type": "renegotiate"}``); the bridge never sends offers itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.facemodels import load_face_models
from bridge.policy import for_meeting
from bridge.rooms.base import AdapterContext, MeetingAdapter
from bridge.rooms.ice import DEFAULT_ICE_ALLOW, Network, filter_candidates, parse_networks
from bridge.service import MeetingService
from inference.analyzer import FaceModels, ParticipantAnalyzer
from inference.models import ModelSet
from inference.voice import SileroVad

log = logging.getLogger("microcue.rooms.builtin")

#: A browser offer with audio, video and its ICE candidates is 3-8 kB; anything this large is
#: not an offer from a participant.
MAX_SDP_BYTES = 64 * 1024
#: Rooms are small by design (DESIGN.md: up to 8); relaying is O(n^2) streams.
MAX_PARTICIPANTS = 8


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
        raise SignalError("the offer could not be used: it has no BUNDLE group covering every media section "
                          "(a=group:BUNDLE), which the bridge requires")


Notify = Callable[[], Awaitable[None]]


@dataclass
class _Member:
    pc: RTCPeerConnection
    notify: Notify | None = None
    published: list[MediaStreamTrack] = field(default_factory=list)
    #: relays this member's tracks; one per member, so that leaving drops aiortc's per-source
    #: bookkeeping with it (MediaRelay forgets a source only once frames flowed and ended, so a
    #: room-wide relay kept every never-started track of everyone who ever connected)
    relay: MediaRelay = field(default_factory=MediaRelay)


class BuiltinRoom(MeetingAdapter):
    """One built-in meeting's peers, relay and workers."""

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

    async def _relay_into(self, pc: RTCPeerConnection, participant_id: str) -> None:
        """Fill the m-lines the participant offered to receive on with the others' media.

        A participant offers its own camera/microphone (sendrecv) plus recvonly slots for the
        others (the join page and RoomClient add MAX_PARTICIPANTS - 1 of each kind); each slot
        gets one other participant's relayed track, so the answer never adds media lines the
        offer did not have (which aiortc cannot answer).
        """
        waiting = {"video": [], "audio": []}  # type: dict[str, list[tuple[MediaRelay, MediaStreamTrack]]]
        for other_id, other in self.members.items():
            if other_id != participant_id:
                for track in other.published:
                    waiting.setdefault(track.kind, []).append((other.relay, track))
        for transceiver in pc.getTransceivers():
            queue = waiting.get(transceiver.kind) or []
            if not queue or transceiver._offerDirection not in ("recvonly", "sendrecv"):
                continue
            relay, track = queue.pop(0)
            transceiver.sender.replaceTrack(relay.subscribe(track, buffered=False))
            transceiver.direction = "sendrecv"

    def _tell_others(self, participant_id: str) -> None:
        """New media to relay: everyone else re-offers to receive it (the bridge never offers)."""
        for other_id, other in self.members.items():
            if other_id != participant_id and other.notify is not None:
                task = asyncio.create_task(other.notify(), name=f"renegotiate-{other_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def answer(self, participant_id: str, display: str, consent: bool, sdp: object,
                     notify: Notify | None = None) -> str:
        """Take a participant's offer (first or renewed) and return the bridge's answer."""
        offer = filter_candidates(check_offer(sdp), self.ice_networks)
        if participant_id not in self.members and len(self.members) >= MAX_PARTICIPANTS:
            raise SignalError(f"this room is full ({MAX_PARTICIPANTS} participants)")
        await self.leave(participant_id, reason="renegotiated", keep_worker=True)
        participant = self.participant(participant_id, display)
        participant.set_consent(consent)
        pc = self.peers.create(f"builtin-{participant_id}")
        member = self.members[participant_id] = _Member(pc, notify)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            member.published.append(track)
            # the analysis reads its own relayed copy: the original feeds every subscriber
            participant.attach(member.relay.subscribe(track, buffered=False), self.peers)
            self.ready.set()
            if track.kind == "video":
                self._tell_others(participant_id)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await self._relay_into(pc, participant_id)
            await pc.setLocalDescription(await pc.createAnswer())
        except OperationError as exc:  # nothing aiortc can decode in a media line
            await self.leave(participant_id, reason="bad offer")
            raise SignalError(f"no codec in common with the bridge ({exc}); offer VP8 or H.264 video "
                              "and Opus audio") from exc
        except (ValueError, AssertionError, InvalidAccessError, InvalidStateError) as exc:  # malformed SDP
            await self.leave(participant_id, reason="bad offer")
            raise SignalError(f"the offer could not be used: {exc or type(exc).__name__}") from exc
        log.info("participant %s (%s) connected, consent=%s", participant_id, display or "no name", consent)
        return pc.localDescription.sdp

    async def leave(self, participant_id: str, reason: str = "left the meeting", keep_worker: bool = False) -> None:
        member = self.members.pop(participant_id, None)
        if member is not None:
            await self.peers.close(member.pc)
        if keep_worker:
            return
        # Participant ids are per connection (a rejoin gets a new one): nothing to keep, and
        # keeping it would leave an analyzer, VAD state and tasks behind per connection.
        participant = self.participants.pop(participant_id, None)
        if participant is not None:
            await participant.detach(reason)
            await participant.aclose()

    async def aclose(self) -> None:
        self._closed.set()
        self.members.clear()
        await super().aclose()


class BuiltinRooms:
    """Every built-in room of a service process; models are loaded once, on the first join."""

    def __init__(self, settings: Settings, service: MeetingService) -> None:
        self.settings = settings
        self.service = service
        self.rooms: dict[str, BuiltinRoom] = {}
        self._models: FaceModels | None = None
        self._vad: SileroVad | None = None
        self._lock = asyncio.Lock()

    async def load_models(self) -> tuple[FaceModels, SileroVad | None]:
        async with self._lock:
            if self._models is None:
                def load() -> tuple[FaceModels, SileroVad]:
                    models = load_face_models(self.settings.model_dir)
                    vad = SileroVad(ModelSet(self.settings.model_dir, prefer_gpu=False).session("vad"))
                    return models, vad

                self._models, self._vad = await asyncio.get_running_loop().run_in_executor(None, load)
            return self._models, self._vad

    async def context(self, meeting_id: str, *, consent: bool) -> AdapterContext:
        """What a meeting's adapter needs: the shared models, the service's bus, and an analyzer
        per participant under the meeting's purpose policy (built-in rooms and API bots alike)."""
        meeting = await self.service.get_meeting(meeting_id)
        models, vad = await self.load_models()
        allowed = for_meeting(meeting.context, meeting.policy, self.settings).emotions_allowed
        fps = self.settings.analysis_fps

        def analyzer() -> ParticipantAnalyzer:
            return ParticipantAnalyzer(models, emotions_allowed=allowed, fps_hint=fps)

        return AdapterContext(meeting_id=meeting_id, bus=self.service.bus, analyzer_factory=analyzer,
                              vad=vad, fps=fps, consent=consent)

    async def room(self, meeting_id: str) -> BuiltinRoom:
        room = self.rooms.get(meeting_id)
        if room is not None:
            return room
        # built-in rooms have a consent page: nobody is analysed before saying yes
        ctx = await self.context(meeting_id, consent=False)
        room = self.rooms.get(meeting_id)  # another join may have created it meanwhile
        if room is None:
            room = self.rooms[meeting_id] = BuiltinRoom(ctx)
            room.ice_networks = parse_networks(self.settings.ice_allow)
        return room

    async def close_meeting(self, meeting_id: str, reason: str) -> None:
        """The service's closer: the meeting ended or was erased; its room, peers and workers go."""
        room = self.rooms.pop(meeting_id, None)
        if room is not None:
            log.info("built-in room of meeting %s closed: %s", meeting_id, reason)
            await room.aclose()

    async def aclose(self) -> None:
        rooms, self.rooms = list(self.rooms.values()), {}
        await asyncio.gather(*(r.aclose() for r in rooms), return_exceptions=True)
