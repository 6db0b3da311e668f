"""ParticipantWorker with real aiortc peers (in a network namespace), real encoded video of a real
face (VP8 and H.264) and the real models; plus the worker's edge cases on local tracks."""

from __future__ import annotations

import asyncio
import fractions
import re
import time

import av
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from bridge.bus import InProcessBus
from bridge.demo.synthetic import EncodedFaceTrack, SyntheticFaceTrack, encode_vp8, face_loop_frames, to_yuv
from bridge.executor import BlockingExecutor
from bridge.media.peers import PeerSet, keyframe_requester, negotiate, prefer_codec, wait_connected
from bridge.media.worker import RTP_WRAP, VIDEO_GAP_S, ParticipantWorker, _MediaClock
from inference.analyzer import FaceModels, ParticipantAnalyzer
from inference.cues import Cue
from tests.support.fakes.analyzers import FakeAnalyzer
from tests.support.fakes.tracks import FakeCamera
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
pytest_plugins = ["tests.support.media"]

MEETING = "m-worker"


@pytest.fixture(scope="module")
def face_yuv() -> list[np.ndarray]:
    return to_yuv(face_loop_frames(seconds=2.0, fps=15.0))


# ---- the namespace itself -----------------------------------------------------------------


async def test_two_peers_connect_in_the_namespace(netns: str) -> None:
    peers = PeerSet()
    try:
        a, b = peers.create("a"), peers.create("b")
        a.createDataChannel("probe")
        await negotiate(a, b)
        await asyncio.gather(wait_connected(a, 10), wait_connected(b, 10))
        for pc in (a, b):
            hosts = {
                line.split()[4] for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")
            }
            assert hosts == {netns}, f"ICE gathered {hosts}, expected only the namespace address"
    finally:
        await peers.aclose()
    assert len(peers) == 0


# ---- real peers, real face, real models ---------------------------------------------------


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264", "replayed video/VP8"])
async def test_cues_arrive_from_a_real_peer(
    netns: str,
    codec: str,
    face_models: FaceModels,
    face_yuv: list[np.ndarray],
    bus: InProcessBus,
    executor: BlockingExecutor,
) -> None:
    peers = PeerSet()
    workers: list[ParticipantWorker] = []
    sub = bus.subscribe(MEETING)
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        replay = codec.startswith("replayed ")
        codec = codec.removeprefix("replayed ")
        track = EncodedFaceTrack(encode_vp8(face_yuv, 15)) if replay else SyntheticFaceTrack(face_yuv, fps=15)
        publisher.addTrack(track)
        prefer_codec(publisher, "video", codec)

        @bridge.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            worker = ParticipantWorker(
                meeting_id=MEETING,
                participant_id="alice",
                analyzer_factory=lambda: ParticipantAnalyzer(face_models, fps_hint=15),
                bus=bus,
                fps=15,
                executor=executor,
            )
            worker.attach(track)
            workers.append(worker)

        await negotiate(publisher, bridge)
        assert codec.split("/")[1] in bridge.remoteDescription.sdp
        await wait_connected(bridge)
        kinds: set[str] = set()
        cues: list[Cue] = []

        async def collect() -> None:
            async for cue in sub:
                cues.append(cue)
                kinds.add(cue.type)
                if {"presence", "engagement"} <= kinds:
                    return

        await asyncio.wait_for(collect(), 20)
        assert all(c.meeting_id == MEETING and c.participant_id == "alice" for c in cues)
        assert [c.seq for c in cues] == sorted(c.seq for c in cues) and cues[0].seq >= 1
        presence = [c for c in cues if c.type == "presence"]
        assert presence[0].value == 1.0, "the real face was not found in the decoded stream"
        stats = workers[0].stats
        assert stats.analysed >= 10 and stats.received >= stats.analysed
        assert stats.latency_p95 is not None and stats.latency_p95 < 1.0
        # why the spotter may be silent, live: gate shares and noise per region (issue 11)
        spotting = stats.as_dict()["spotting"]
        assert spotting["windows"] >= 0 and set(spotting["gated"]) == {"blink", "talk", "head", "light", "occlusion"}
    finally:
        await sub.aclose()
        for w in workers:
            await w.aclose()
        await peers.aclose()


async def test_participant_without_consent_is_never_analysed(
    netns: str, face_yuv: list[np.ndarray], bus: InProcessBus, executor: BlockingExecutor
) -> None:
    peers = PeerSet()
    analyzer = FakeAnalyzer()
    worker: ParticipantWorker | None = None
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        publisher.addTrack(SyntheticFaceTrack(face_yuv, fps=15))
        got_track = asyncio.Event()

        @bridge.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            nonlocal worker
            worker = ParticipantWorker(
                meeting_id=MEETING,
                participant_id="bob",
                analyzer_factory=lambda: analyzer,
                bus=bus,
                fps=15,
                consent=False,
                executor=executor,
            )
            worker.attach(track)
            got_track.set()

        await negotiate(publisher, bridge)
        await asyncio.wait_for(got_track.wait(), 10)
        assert worker is not None
        await wait_until(lambda: worker.stats.received >= 15, 15, "frames from the peer")
        assert analyzer.calls == 0 and worker.stats.analysed == 0
        assert worker.stats.refused == worker.stats.received
        # consent given later: analysis starts
        worker.set_consent(True)
        await wait_until(lambda: analyzer.calls >= 3, 10, "analysis after consent")
    finally:
        if worker is not None:
            await worker.aclose()
        await peers.aclose()


async def test_peer_that_never_sends_media(netns: str, bus: InProcessBus, executor: BlockingExecutor) -> None:
    peers = PeerSet()
    analyzer = FakeAnalyzer()
    workers: list[ParticipantWorker] = []
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        publisher.addTrack(FakeCamera(flowing=False))  # announced, never a frame

        @bridge.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            worker = make_worker(bus, executor, analyzer, "silent")
            worker.attach(track)
            workers.append(worker)

        await negotiate(publisher, bridge)
        await wait_connected(bridge)
        await asyncio.sleep(1.0)
        assert workers and workers[0].attached
        assert workers[0].stats.received == 0 and analyzer.calls == 0
    finally:
        started = time.monotonic()
        for w in workers:
            await w.aclose()
        await peers.aclose()
    assert time.monotonic() - started < 5, "closing a silent participant must not hang"


async def test_ice_that_never_completes_is_timed_out_and_closed(netns: str) -> None:
    peers = PeerSet()
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        publisher.addTrack(VideoStreamTrack())
        await publisher.setLocalDescription(await publisher.createOffer())
        # every candidate points at a port nobody listens on: connectivity checks can never succeed
        sdp = re.sub(r"(a=candidate:\S+ \d+ udp \d+ \S+) \d+", r"\1 9", publisher.localDescription.sdp)
        assert sdp != publisher.localDescription.sdp and " 9 typ host" in sdp
        await bridge.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await bridge.setLocalDescription(await bridge.createAnswer())
        with pytest.raises(TimeoutError):
            await wait_connected(bridge, within=2.0)
        assert bridge.connectionState != "connected"
    finally:
        await peers.aclose()
    assert len(peers) == 0 and bridge.connectionState == "closed"


# ---- edge cases on local tracks (no network needed) ---------------------------------------


def make_worker(
    bus: InProcessBus, executor: BlockingExecutor, analyzer: FakeAnalyzer, pid: str, fps: float = 15.0
) -> ParticipantWorker:
    return ParticipantWorker(
        meeting_id=MEETING, participant_id=pid, analyzer_factory=lambda: analyzer, bus=bus, fps=fps, executor=executor
    )


async def test_newest_frame_sampled_at_target_fps_and_stale_frames_dropped(
    bus: InProcessBus, executor: BlockingExecutor
) -> None:
    analyzer = FakeAnalyzer()
    worker = make_worker(bus, executor, analyzer, "carol", fps=5)
    track = FakeCamera(fps=30)
    try:
        worker.attach(track)
        await asyncio.sleep(2.0)
    finally:
        track.stop()
        await worker.aclose()
    s = worker.stats
    assert 8 <= s.analysed <= 12, f"analysed {s.analysed} frames in 2 s at 5 fps"
    assert s.received >= 50
    assert s.dropped >= s.received - s.analysed - 2  # all but the sampled ones (and at most the last)
    assert analyzer.times == sorted(analyzer.times)
    assert s.cues == s.analysed and s.latency_p95 is not None


async def test_one_slow_participant_does_not_slow_the_others(bus: InProcessBus, executor: BlockingExecutor) -> None:
    slow, fast = FakeAnalyzer(delay=0.5), FakeAnalyzer(delay=0.005)
    workers = [make_worker(bus, executor, slow, "slow"), make_worker(bus, executor, fast, "fast")]
    tracks = [FakeCamera(fps=15), FakeCamera(fps=15)]
    try:
        for w, t in zip(workers, tracks, strict=True):
            w.attach(t)
        await asyncio.sleep(2.0)
    finally:
        for t in tracks:
            t.stop()
        for w in workers:
            await w.aclose()
    assert slow.calls <= 5, "the slow participant should skip frames, not queue them"
    assert fast.calls >= 20, f"fast participant analysed only {fast.calls} frames in 2 s at 15 fps"
    assert workers[0].stats.dropped > 15


async def test_resolution_change_resets_the_analyzer(bus: InProcessBus, executor: BlockingExecutor) -> None:
    analyzer = FakeAnalyzer()
    worker = make_worker(bus, executor, analyzer, "dave")
    track = FakeCamera(fps=15, size=(320, 240))
    try:
        worker.attach(track)
        await wait_until(lambda: analyzer.calls >= 5, 5, "first frames")
        before = analyzer.resets
        track.size = (640, 360)
        await wait_until(lambda: (360, 640, 3) in analyzer.shapes and analyzer.calls >= 12, 5, "new size")
    finally:
        track.stop()
        await worker.aclose()
    assert analyzer.resets == before + 1
    assert worker.stats.resets == 1


async def test_track_end_mute_and_rejoin(bus: InProcessBus, executor: BlockingExecutor) -> None:
    analyzer = FakeAnalyzer()
    worker = make_worker(bus, executor, analyzer, "erin")
    sub = bus.subscribe(MEETING)
    first = FakeCamera(fps=15)
    second = FakeCamera(fps=15)
    try:
        worker.attach(first)
        await wait_until(lambda: analyzer.calls >= 5, 5, "first track frames")
        first.stop()  # participant leaves: the track ends
        await wait_until(lambda: not worker.attached, 2, "reader to see the end")
        calls = analyzer.calls
        await asyncio.sleep(0.5)  # no frames at all (like a muted camera): nothing happens, nothing breaks
        assert analyzer.calls == calls
        resets = analyzer.resets
        worker.attach(second)  # rejoin
        await wait_until(lambda: analyzer.calls >= calls + 5, 5, "frames after rejoin")
        assert analyzer.resets == resets + 1 and worker.stats.tracks == 2
    finally:
        second.stop()
        await worker.aclose()
    cues = []
    while sub.pending:
        cues.append(await anext(aiter(sub)))
    await sub.aclose()
    seqs = [c.seq for c in cues]
    assert seqs == list(range(1, len(seqs) + 1)), "seq must keep counting across a rejoin"
    left = [c for c in cues if c.value == 0.0 and c.detail == "video ended"]
    assert len(left) == 1, "the end of the video is announced once as presence 0"
    assert all(c.t >= left[0].t for c in cues[seqs.index(left[0].seq) :])


async def test_analysis_error_is_counted_and_the_worker_keeps_going(
    bus: InProcessBus, executor: BlockingExecutor
) -> None:
    analyzer = FakeAnalyzer(fail_at=3)
    worker = make_worker(bus, executor, analyzer, "frank")
    track = FakeCamera(fps=15)
    try:
        worker.attach(track)
        await wait_until(lambda: analyzer.calls >= 8, 5, "frames after the error")
    finally:
        track.stop()
        await worker.aclose()
    assert worker.stats.errors == 1 and analyzer.resets >= 2


async def test_aclose_without_frames_and_audio_refused(bus: InProcessBus, executor: BlockingExecutor) -> None:

    worker = make_worker(bus, executor, FakeAnalyzer(), "gina")
    with pytest.raises(ValueError, match="video"):
        worker.attach(AudioStreamTrack())
    await worker.aclose()
    with pytest.raises(RuntimeError):
        worker.attach(FakeCamera())


def test_media_clock_unwraps_rtp_and_reanchors_jumps() -> None:

    clock = _MediaClock(meeting_t0=100.0)

    def frame(pts: int) -> av.VideoFrame:
        f = av.VideoFrame(16, 16, "yuv420p")
        f.pts, f.time_base = pts, fractions.Fraction(1, 90000)
        return f

    start = RTP_WRAP - 3000  # the sender's random RTP origin, just before the 32-bit wrap
    assert clock.media_t(frame(start), now=102.0) == 2.0  # anchored on arrival
    assert clock.media_t(frame((start + 6000) % RTP_WRAP), now=102.5) == pytest.approx(2.0 + 6000 / 90000)
    assert clock.media_t(frame((start + 90000) % RTP_WRAP), now=103.0) == pytest.approx(3.0)
    # a sender whose clock jumps (here 60 s ahead) is re-anchored on arrival time, not trusted
    jumped = (start + 90000 + 60 * 90000) % RTP_WRAP
    assert clock.media_t(frame(jumped), now=104.0) == pytest.approx(4.0)
    assert clock.media_t(frame((jumped + 9000) % RTP_WRAP), now=104.1) == pytest.approx(4.1)


async def test_paused_camera_is_announced_and_resumes_fresh(bus: InProcessBus, executor: BlockingExecutor) -> None:

    analyzer = FakeAnalyzer()
    worker = make_worker(bus, executor, analyzer, "hal")
    sub = bus.subscribe(MEETING)
    track = FakeCamera(fps=15)
    try:
        worker.attach(track)
        await wait_until(lambda: analyzer.calls >= 5, 5, "first frames")
        track.flowing.clear()  # the participant turns the camera off: no frames at all
        calls, resets = analyzer.calls, analyzer.resets
        await asyncio.sleep(VIDEO_GAP_S + 0.5)
        assert analyzer.calls <= calls + 1
        track.flowing.set()
        await wait_until(lambda: analyzer.calls >= calls + 5, 5, "frames after the pause")
        assert analyzer.resets == resets + 1, "a resumed camera is a new stream for the analyzer"
    finally:
        track.stop()
        await worker.aclose()
    cues = []
    while sub.pending:
        cues.append(await anext(aiter(sub)))
    await sub.aclose()
    paused = [c for c in cues if c.detail == "camera paused"]
    assert len(paused) == 1 and paused[0].value == 0.0


async def test_watchdog_asks_for_a_keyframe_with_backoff_until_video_comes(
    netns: str, face_yuv: list[np.ndarray], bus: InProcessBus, executor: BlockingExecutor
) -> None:

    peers = PeerSet()
    workers: list[ParticipantWorker] = []
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        # a camera that sends nothing until it flows (a publisher whose keyframe never came)
        camera = FakeCamera(source=SyntheticFaceTrack(face_yuv, fps=15), flowing=False)
        publisher.addTrack(camera)

        @bridge.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceiver = next(t for t in bridge.getTransceivers() if t.receiver.track is track)
            worker = ParticipantWorker(
                meeting_id=MEETING,
                participant_id="late",
                analyzer_factory=FakeAnalyzer,
                bus=bus,
                fps=15,
                executor=executor,
            )
            worker.attach(track, keyframe_requester(transceiver))
            workers.append(worker)

        await negotiate(publisher, bridge)
        await wait_connected(bridge)
        await wait_until(lambda: bool(workers), 10, "the bridge's track")
        worker = workers[0]
        # nothing arrives: one PLI after 1 s, the next 1 s later, then 2 s later (backoff)
        await wait_until(lambda: worker.stats.keyframe_requests >= 2, 10, "two keyframe requests")
        assert worker.stats.waiting_for_keyframe
        assert worker.stats.as_dict()["waiting_for_keyframe"] is True
        await asyncio.sleep(1.0)
        assert worker.stats.keyframe_requests == 2, "the third request waits twice as long"
        # the camera starts: frames arrive, the watchdog stands down
        camera.flowing.set()
        await wait_until(lambda: worker.stats.received > 0, 10, "frames after the keyframe")
        await wait_until(lambda: not worker.stats.waiting_for_keyframe, 3, "the watchdog to stand down")
        requests = worker.stats.keyframe_requests
        await asyncio.sleep(2.0)
        assert worker.stats.keyframe_requests == requests, "no requests while frames flow"
    finally:
        for w in workers:
            await w.aclose()
        await peers.aclose()
