"""Analyzers in worker processes (bridge.media.analysis_pool): same results as in-process, errors
come back, a killed process is replaced, and a real peer's video reaches one through a worker."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamTrack

from bridge.bus import InProcessBus
from bridge.config import Settings
from bridge.demo.synthetic import SyntheticFaceTrack, face_loop_frames, to_yuv
from bridge.executor import BlockingExecutor
from bridge.media.analysis_pool import AnalysisPool, ModelOptions, RemoteAnalyzer
from bridge.media.peers import PeerSet, negotiate, prefer_codec, wait_connected
from bridge.media.worker import ParticipantWorker
from inference.analyzer import AnalysisStep, FaceModels, ParticipantAnalyzer
from inference.cues import Cue

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def pool() -> Iterator[AnalysisPool]:
    p = AnalysisPool(2, ModelOptions(Settings().model_dir))
    yield p
    p.close()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return face_loop_frames(seconds=1.0, fps=15.0)


def _same(a: AnalysisStep, b: AnalysisStep) -> None:
    assert (a.faces.primary is None) == (b.faces.primary is None)
    if a.faces.primary is not None and b.faces.primary is not None:
        np.testing.assert_allclose(a.faces.primary.landmarks, b.faces.primary.landmarks, atol=1e-3)
    assert [c.type for c in a.cues] == [c.type for c in b.cues]
    assert a.metrics == b.metrics


def test_remote_analyzer_matches_the_in_process_one(
    pool: AnalysisPool, face_models: FaceModels, frames: list[np.ndarray]
) -> None:
    local, remote = ParticipantAnalyzer(face_models, fps_hint=15), pool.analyzer(fps_hint=15)
    local_yuv, remote_yuv = ParticipantAnalyzer(face_models, fps_hint=15), pool.analyzer(fps_hint=15)
    try:
        found = 0
        for i, (rgb, yuv) in enumerate(zip(frames, to_yuv(frames), strict=True)):
            t = i / 15
            a, b = local.push(rgb, t), remote.push(rgb, t)
            _same(a, b)
            found += a.faces.primary is not None
            # the worker's path: yuv420p planes sent, converted in the analysis process
            rgb_of_yuv = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
            _same(local_yuv.push(rgb_of_yuv, t), remote_yuv.push_frame(yuv, "yuv420p", t))
        assert found == len(frames)
    finally:
        remote.close()
        remote_yuv.close()


def test_errors_come_back_and_a_killed_process_is_replaced(pool: AnalysisPool, frames: list[np.ndarray]) -> None:
    remote = pool.analyzer(fps_hint=15)
    try:
        with pytest.raises(ValueError, match="expected an RGB uint8 frame"):
            remote.push(np.zeros((8, 8), np.uint8), 0.0)
        assert remote.push(frames[0], 0.1).faces.primary is not None  # the analyzer still works
        pids = pool.pids()
        os.kill(remote._shard.proc.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="restarted"):
            remote.push(frames[1], 0.2)
        assert pool.pids() != pids
        step = remote.push(frames[2], 0.3)  # a fresh analyzer in the new process
        assert step.faces.primary is not None
        remote.close()  # a worker whose factory hands back the same object uses it again
        assert remote.push(frames[3], 0.4).faces.primary is not None and not remote.closed
    finally:
        remote.close()


async def test_real_peer_video_is_analysed_in_a_worker_process(netns: str, pool: AnalysisPool) -> None:
    bus = InProcessBus()
    await bus.start()
    sub = bus.subscribe("m-pool")
    executor = BlockingExecutor(4)
    peers = PeerSet()
    workers: list[ParticipantWorker] = []
    analyzers: list[RemoteAnalyzer] = []
    try:
        publisher, bridge = peers.create("publisher"), peers.create("bridge")
        publisher.addTrack(SyntheticFaceTrack(to_yuv(face_loop_frames(seconds=2.0, fps=15.0)), fps=15))
        prefer_codec(publisher, "video", "video/VP8")

        def remote() -> RemoteAnalyzer:
            analyzers.append(pool.analyzer(fps_hint=15))
            return analyzers[-1]

        @bridge.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            worker = ParticipantWorker(
                meeting_id="m-pool", participant_id="alice", analyzer_factory=remote, bus=bus, fps=15, executor=executor
            )
            worker.attach(track)
            workers.append(worker)

        await negotiate(publisher, bridge)
        await wait_connected(bridge)
        cues: list[Cue] = []

        async def collect() -> None:
            async for cue in sub:
                cues.append(cue)
                if {"presence", "engagement"} <= {c.type for c in cues}:
                    return

        await asyncio.wait_for(collect(), 30)
        assert next(c for c in cues if c.type == "presence").value == 1.0
        assert workers[0].stats.analysed >= 5 and workers[0].stats.errors == 0
    finally:
        await sub.aclose()
        for w in workers:
            await w.aclose()
        await peers.aclose()
        executor.shutdown()
        await bus.aclose()
    assert all(a.closed for a in analyzers)  # aclose freed the analyzer in its process
