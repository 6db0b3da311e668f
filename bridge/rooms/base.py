"""MeetingAdapter ABC and the per-participant bundle every adapter uses.

An adapter owns the signalling with one meeting server and the peer connections
it creates; everything after "a remote track arrived for participant X" is the
same for every meeting kind, so it lives here in :class:`Participant` (video
worker + voice worker sharing one cue sequence) and adapters stay thin. What an adapter
analyses with comes in its :class:`~bridge.media.analysis.AdapterContext`, built per meeting
by the process's :class:`~bridge.media.analysis.Analysis`.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import logging
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from bridge.media.analysis import AdapterContext
from bridge.media.peers import KeyframeRequest, PeerSet
from bridge.media.voice import VoiceWorker
from bridge.media.worker import ParticipantWorker

log = logging.getLogger("microcue.rooms")


#: What a participant's tile says about their video (``Participant.video_state``).
VIDEO_WAITING = "waiting for video"
VIDEO_RECEIVING = "receiving"
VIDEO_NONE = "no video"
#: What a participant's tile says about their audio (``Participant.audio_state``): without it,
#: when they talk is not known.
AUDIO_RECEIVING = "receiving"
AUDIO_NONE = "no audio"
AUDIO_NOT_ANALYSED = "not analysed"


class Participant:
    """One remote participant's workers; tracks come and go (renegotiation, rejoin, restart)."""

    def __init__(self, participant_id: str, ctx: AdapterContext, display: str = "") -> None:
        self.id = participant_id
        self.display = display
        self.ctx = ctx
        seq = itertools.count(1)  # one cue order per participant across video and voice
        self.video = ParticipantWorker(
            meeting_id=ctx.meeting_id,
            participant_id=participant_id,
            analyzer_factory=ctx.analyzer_factory,
            bus=ctx.bus,
            fps=ctx.fps,
            consent=ctx.consent,
            executor=ctx.executor,
            meeting_t0=ctx.t0,
            seq=seq,
        )
        self.voice = (
            VoiceWorker(
                meeting_id=ctx.meeting_id,
                participant_id=participant_id,
                vad=ctx.vad,
                bus=ctx.bus,
                consent=ctx.consent,
                executor=ctx.executor,
                meeting_t0=ctx.t0,
                seq=seq,
                on_speech=self.video.hear_speech,  # when they talk, for their expressions
            )
            if ctx.vad is not None
            else None
        )

    def attach(self, track: MediaStreamTrack, peers: PeerSet, request_keyframe: KeyframeRequest | None = None) -> None:
        """Route a remote track to its worker; anything we do not analyse is still drained.
        ``request_keyframe`` lets the video worker's watchdog ask the sender for a keyframe."""
        if track.kind == "video":
            self.video.attach(track, request_keyframe)
        elif track.kind == "audio" and self.voice is not None:
            self.voice.attach(track)
        else:
            peers.blackhole(track)

    async def detach(self, reason: str = "left the meeting") -> None:
        """Left the meeting (or the server went away): stop reading; state kept for a rejoin."""
        await self.video.detach(reason)
        if self.voice is not None:
            await self.voice.detach()

    def set_consent(self, consent: bool) -> None:
        self.video.set_consent(consent)
        if self.voice is not None:
            self.voice.consent = consent

    def video_state(self) -> str:
        """ "waiting for video" while attached with no frame yet or the watchdog waits for a keyframe."""
        if not self.video.attached:
            return VIDEO_NONE
        if self.video.stats.waiting_for_keyframe or self.video.stats.received == 0:
            return VIDEO_WAITING
        return VIDEO_RECEIVING

    def audio_state(self) -> str:
        """ "receiving" while a microphone is analysed; "no audio" without one; "not analysed" when
        this bridge runs no voice activity detector (``--no-voice``)."""
        if self.voice is None:
            return AUDIO_NOT_ANALYSED
        return AUDIO_RECEIVING if self.voice.attached else AUDIO_NONE

    def live(self) -> dict[str, Any]:
        """What the presenter's tile shows besides cues: consent basis, video and audio state."""
        return {
            "display": self.display,
            "consent": self.video.consent,
            "consent_basis": self.ctx.consent_basis,
            "video": self.video_state(),
            "audio": self.audio_state(),
        }

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"display": self.display, **self.video.stats.as_dict()}
        if self.voice is not None:
            out["audio_frames"] = self.voice.frames
        return out

    async def aclose(self) -> None:
        await self.video.aclose()
        if self.voice is not None:
            await self.voice.aclose()


class MeetingAdapter(abc.ABC):
    """The bot inside one meeting. ``run()`` until ``aclose()``; reconnecting is the adapter's job."""

    kind: str = ""

    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.participants: dict[str, Participant] = {}
        self.peers = PeerSet()
        #: set once the adapter receives media from the meeting (for callers and tests)
        self.ready = asyncio.Event()
        self._hook_tasks: set[asyncio.Task[None]] = set()

    def participant(self, participant_id: str, display: str = "") -> Participant:
        p = self.participants.get(participant_id)
        if p is None:
            p = self.participants[participant_id] = Participant(participant_id, self.ctx, display)
            log.info("participant %s (%s) joined", participant_id, display or "no name")
            self._announce(participant_id, display)
        elif display and display != p.display:
            self.rename(participant_id, display)
        return p

    def rename(self, participant_id: str, display: str) -> None:
        p = self.participants.get(participant_id)
        if p is None or p.display == display:
            return
        log.info("participant %s renamed %r -> %r", participant_id, p.display, display)
        p.display = display
        self._announce(participant_id, display)

    def _announce(self, participant_id: str, display: str) -> None:
        hook = self.ctx.on_participant
        if hook is None:
            return
        task = asyncio.create_task(hook(participant_id, display), name=f"participant-{participant_id}")
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not record participant: %s", task.exception())

    def live(self) -> dict[str, dict[str, Any]]:
        return {pid: p.live() for pid, p in self.participants.items()}

    @abc.abstractmethod
    async def run(self) -> None:
        """Join and stay in the meeting until cancelled or ``aclose()``; raise on a fatal error."""

    async def aclose(self) -> None:
        """Close every peer connection, then every participant's workers."""
        await self.peers.aclose()
        participants, self.participants = list(self.participants.values()), {}
        await asyncio.gather(*(p.aclose() for p in participants), return_exceptions=True)
