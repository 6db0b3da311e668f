"""Voice activity on real speech (espeak-ng) and silence: the Silero stream alone, then through real
aiortc peers (Opus) into a VoiceWorker publishing ``speaking`` cues."""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path

import numpy as np
import pytest
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack

from bridge.bus import InProcessBus
from bridge.demo.actions import EMOTION_AUS, Action, contempt_aus
from bridge.demo.puppet import face_landmarks, scripted_frames
from bridge.demo.scene import astronaut, write_video
from bridge.executor import BlockingExecutor
from bridge.media.analysis import AdapterContext
from bridge.media.peers import PeerSet, negotiate, wait_connected
from bridge.media.voice import VoiceWorker
from bridge.rooms.base import Participant
from inference.analyzer import FaceModels, ParticipantAnalyzer
from inference.cues import Cue
from inference.models import ModelSet
from inference.voice import SAMPLE_RATE, SileroVad, VadEvent, VoiceActivityStream
from tests.support.fakes.tracks import FakeMic
from tests.support.speech import espeak, track, with_audio

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
pytest_plugins = ["tests.fixtures_models", "tests.support.media"]  # the verified model cache (model_dir)

SENTENCE = "Good morning everyone, thank you for joining the meeting today. Let us look at the numbers."
SILENCE_S = 1.5
#: How far a detected boundary may sit from the true one: the VAD's hysteresis (0.25 s to confirm
#: speech, 0.5 s of silence to end) plus espeak's own leading/trailing quiet.
BOUNDARY_TOLERANCE_S = 0.6


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A real synthesised English sentence, 16 kHz mono int16, trimmed of espeak's silent edges."""
    return espeak(SENTENCE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


@pytest.fixture(scope="module")
def vad(model_dir: Path) -> SileroVad:
    return SileroVad(ModelSet(model_dir, prefer_gpu=False).session("vad"))


def segments(events: list[VadEvent]) -> list[tuple[float, float]]:
    starts = [e for e in events if e.kind == "start"]
    ends = [e for e in events if e.kind == "end"]
    assert len(starts) == len(ends), events
    for s, e in zip(starts, ends, strict=True):
        assert s.start == e.start and e.end is not None and e.end > e.start
    return [(e.start, e.end) for e in ends if e.end is not None]


def test_speaking_segments_are_where_the_speech_is(vad: SileroVad, speech: np.ndarray) -> None:
    d = len(speech) / SAMPLE_RATE
    audio = np.concatenate([silence(SILENCE_S), speech, silence(2 * SILENCE_S), speech, silence(SILENCE_S)])
    truth = [(SILENCE_S, SILENCE_S + d), (3 * SILENCE_S + d, 3 * SILENCE_S + 2 * d)]
    stream = VoiceActivityStream(vad, t0=10.0)  # media time of the first sample
    events: list[VadEvent] = []
    for i in range(0, len(audio), 320):  # 20 ms chunks, as WebRTC delivers them
        events += stream.push(audio[i : i + 320])
    events += stream.flush()
    found = segments(events)
    assert len(found) == 2, f"expected two speaking segments, got {found}"
    for (s, e), (ts, te) in zip(found, truth, strict=True):
        assert abs(s - (10.0 + ts)) < BOUNDARY_TOLERANCE_S, (found, truth)
        assert abs(e - (10.0 + te)) < BOUNDARY_TOLERANCE_S, (found, truth)
    assert all(e.confidence > 0.5 for e in events)


def test_silence_and_noise_are_not_speech(vad: SileroVad) -> None:
    rng = np.random.default_rng(0)
    noise = (rng.normal(0, 300, 3 * SAMPLE_RATE)).astype(np.int16)  # fan-like hiss, -40 dBFS
    stream = VoiceActivityStream(vad)
    assert stream.push(silence(3.0)) == [] and stream.push(noise) == [] and stream.flush() == []
    assert not stream.speaking


def test_streams_do_not_share_state_and_reset(vad: SileroVad, speech: np.ndarray) -> None:
    a, b = VoiceActivityStream(vad), VoiceActivityStream(vad)
    assert any(e.kind == "start" for e in a.push(speech))
    assert b.push(silence(1.0)) == [] and not b.speaking
    a.reset(t0=5.0)
    assert not a.speaking and a.now == 5.0
    with pytest.raises(ValueError, match="mono"):
        a.push(np.zeros((2, 512), np.float32))


# ---- through real WebRTC (Opus) ------------------------------------------------------------


async def test_speaking_cues_from_a_real_peer(
    netns: str, vad: SileroVad, speech: np.ndarray, bus: InProcessBus, executor: BlockingExecutor, tmp_path: Path
) -> None:
    wav = tmp_path / "talk.wav"
    audio = np.concatenate([silence(1.0), speech, silence(1.5)])
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(audio.tobytes())
    player = MediaPlayer(str(wav))  # paced in real time, as a microphone would be
    peers = PeerSet()
    workers: list[VoiceWorker] = []
    sub = bus.subscribe("m-voice")
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        assert player.audio is not None
        publisher.addTrack(player.audio)

        @bridge.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            worker = VoiceWorker(meeting_id="m-voice", participant_id="ann", vad=vad, bus=bus, executor=executor)
            worker.attach(track)
            workers.append(worker)

        await negotiate(publisher, bridge)
        await wait_connected(bridge)
        cues: list[Cue] = []

        async def collect() -> None:
            async for cue in sub:
                cues.append(cue)
                if cue.value == 0.0:
                    return

        await asyncio.wait_for(collect(), 30)
    finally:
        await sub.aclose()
        for w in workers:
            await w.aclose()
        await peers.aclose()
    assert [c.value for c in cues] == [1.0, 0.0], cues
    assert all(c.type == "speaking" and c.participant_id == "ann" for c in cues)
    talk = cues[1].t - cues[0].t
    d = len(speech) / SAMPLE_RATE
    assert abs(talk - d) < 2 * BOUNDARY_TOLERANCE_S, f"speaking lasted {talk:.2f} s, the speech {d:.2f} s"
    assert workers[0].frames > 0 and workers[0].refused == 0


async def test_no_consent_no_voice_analysis(vad: SileroVad, bus: InProcessBus, executor: BlockingExecutor) -> None:

    worker = VoiceWorker(meeting_id="m-voice", participant_id="bo", vad=vad, bus=bus, executor=executor, consent=False)
    track = AudioStreamTrack()  # 20 ms frames of silence, paced in real time
    try:
        worker.attach(track)
        await asyncio.sleep(0.5)
    finally:
        track.stop()
        await worker.aclose()
    assert worker.frames >= 10 and worker.refused == worker.frames
    assert executor.stats.submitted == 0, "audio of a participant without consent reached the model"
    with pytest.raises(RuntimeError):
        worker.attach(AudioStreamTrack())


async def test_segment_ends_when_the_packets_stop(
    vad: SileroVad, speech: np.ndarray, bus: InProcessBus, executor: BlockingExecutor
) -> None:
    sub = bus.subscribe("m-voice")
    worker = VoiceWorker(meeting_id="m-voice", participant_id="dee", vad=vad, bus=bus, executor=executor)
    track = FakeMic(speech[: 2 * SAMPLE_RATE])  # 2 s of talk, then the packets stop
    cues: list[Cue] = []
    try:
        worker.attach(track)

        async def collect() -> None:
            async for cue in sub:
                cues.append(cue)
                if cue.value == 0.0:
                    return

        await asyncio.wait_for(collect(), 5)  # 2 s of speech + 0.5 s of silence + slack
    finally:
        track.stop()
        await worker.aclose()
        await sub.aclose()
    assert [c.value for c in cues] == [1.0, 0.0]
    assert 1.5 < cues[1].t - cues[0].t < 3.0


async def test_one_participants_broken_audio_stays_with_that_participant(
    vad: SileroVad, bus: InProcessBus, executor: BlockingExecutor
) -> None:
    """Issue 12: one participant's voice-reader exception used to escape detach() and stop the
    whole Janus bot; now it is logged and that participant's audio alone stops."""
    worker = VoiceWorker(meeting_id="m-voice", participant_id="x", vad=vad, bus=bus, executor=executor, consent=True)
    track = FakeMic(garbled=True)  # a video frame on an audio track: the resampler fails
    try:
        worker.attach(track)
        await asyncio.sleep(0.3)
        assert not worker.attached  # the reader ended on its own
        await worker.detach()  # what an adapter does when the connection drops: must not raise
    finally:
        track.stop()
        await worker.aclose()


# ---- issue 22: the participant's voice tells their face's analyzer when they talk ----------------


async def test_a_micro_expression_while_talking_is_flagged_through_real_peers(
    netns: str, vad: SileroVad, speech: np.ndarray, face_models: FaceModels, bus: InProcessBus, tmp_path: Path
) -> None:
    """One participant's camera and microphone over real aiortc peers (VP8 and Opus, played in real
    time from one file, so voice and face keep their timing) into a room ``Participant``: its voice
    worker tells its video worker when they talk, and of two injected micro-expressions only the one
    inside the spoken sentence comes out "while talking"."""
    face = astronaut()
    landmarks = face_landmarks(face_models, face)
    listening = Action("micro", "contempt", contempt_aus("R"), 2.5, 2.65, 2.8, 0.07)
    talking = Action("micro", "surprise", EMOTION_AUS["surprise"], 7.5, 7.65, 7.85, 0.08)
    speech_at = talking.onset - 2.0
    assert speech_at > listening.offset + 1.5 and speech_at + len(speech) / SAMPLE_RATE > talking.offset + 1.5
    fps, seconds = 15.0, 12.0
    video = tmp_path / "face.mp4"
    write_video(video, scripted_frames(face, landmarks, [listening, talking], seconds, fps), fps=fps)
    clip = with_audio(video, track(seconds, [(speech_at, speech)]), tmp_path / "face_and_voice.mp4")

    executor = BlockingExecutor(2)
    ctx = AdapterContext(
        meeting_id="m-talk",
        bus=bus,
        analyzer_factory=lambda: ParticipantAnalyzer(face_models, track_gaze=False, fps_hint=fps),
        vad=vad,
        fps=fps,
        executor=executor,
    )
    sub = bus.subscribe("m-talk")
    player = MediaPlayer(str(clip))  # audio and video paced in real time from one clock
    peers = PeerSet()
    ann = Participant("ann", ctx, "Ann")
    cues: list[Cue] = []
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        assert player.audio is not None and player.video is not None
        publisher.addTrack(player.audio)
        publisher.addTrack(player.video)
        bridge.on("track", lambda track: ann.attach(track, peers))
        await negotiate(publisher, bridge)
        await wait_connected(bridge)

        async def collect() -> None:
            async for cue in sub:
                cues.append(cue)
                ended = any(c.type == "speaking" and c.value == 0.0 for c in cues)
                if ended and sum(c.type == "micro_expression" for c in cues) >= 2:
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), seconds + 20)
        assert ann.live()["audio"] == "receiving"
    finally:
        await sub.aclose()
        await ann.aclose()
        await peers.aclose()
        executor.shutdown()
    talk = [c for c in cues if c.type == "speaking"]
    assert [c.value for c in talk][:2] == [1.0, 0.0], talk
    micro = [c for c in cues if c.type == "micro_expression"]

    def cue_of(action: Action) -> Cue:
        # the media clock starts at the first frame's arrival: match by the gap between the two
        near = [
            c for c in micro if c.apex_s is not None and abs(c.apex_s - (talk[0].t + action.apex - speech_at)) < 0.6
        ]
        assert len(near) == 1, (action, [(c.apex_s, c.detail) for c in micro], talk)
        return near[0]

    assert cue_of(talking).detail.endswith("while talking"), micro
    assert "while talking" not in cue_of(listening).detail, micro
