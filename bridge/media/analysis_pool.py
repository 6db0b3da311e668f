"""Participants' analyzers sharded over processes, one per core, so the GIL stops serialising.

Profiled at 12 participants in one process (``py-spy record --gil`` on ``bench.bridge_load``,
docs/benchmarks.md "Bridge throughput at 10-12 participants"), about 70 % of the time the GIL
was held went to the event loop (aiortc's pure-Python RTP/RTCP/DTLS handling, half of it) and
28 % to the analyzers' numpy glue on the pool threads; the models and OpenCV release the GIL,
the glue around them does not, so analysis waits whenever the loop runs. Here each
participant's ``ParticipantAnalyzer`` lives in one of N worker processes (its own interpreter
and GIL, the models loaded once per process); the bridge keeps the event loop and sends each
sampled frame over a pipe (``send_bytes``: one copy each way, 0.46 MB per 640x480 frame in
YUV 4:2:0) and gets the ``AnalysisStep`` back. Colour conversion happens in the worker
process too.

A ``RemoteAnalyzer`` satisfies ``bridge.media.worker.Analyzer``; its ``push`` blocks a pool thread
(not the loop) until the result is back. A crashed worker process is restarted on the next
frame; the participants it held start afresh (the worker counts an error and a reset).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bridge.models.face import load_face_models
from inference.analyzer import AnalysisStep, ParticipantAnalyzer
from inference.runtime import RuntimeChoice
from inference.speech import SpeechUpdate

log = logging.getLogger("microcue.analysis_pool")

#: How long a worker process may take to load the models before the pool gives up on it.
START_TIMEOUT_S = 120.0
#: A frame whose analysis takes longer than this means the worker process hangs.
PUSH_TIMEOUT_S = 30.0
YUV420_NDIM = 2  # av.VideoFrame.to_ndarray() of yuv420p: (H * 3/2, W), planes stacked


def pool_threads(processes: int) -> int:
    """Executor threads for a bridge using ``processes`` analysis processes: two per process, so
    each has the next frame waiting while it analyses one (the threads only wait on pipes)."""
    return 2 * processes


@dataclass(frozen=True)
class ModelOptions:
    """What each worker process needs to load the same models as the bridge would."""

    model_dir: Path
    gaze: bool = True
    emotion: bool = True
    runtime: RuntimeChoice = "auto"


def _worker_main(conn: Connection, options: ModelOptions) -> None:
    """Worker process: load the models once, then serve requests until "stop" or EOF."""
    cv2.setNumThreads(1)  # one core per process: parallelism comes from the participants
    try:
        models = load_face_models(
            options.model_dir, prefer_gpu=False, gaze=options.gaze, emotion=options.emotion, runtime=options.runtime
        )
    except Exception as exc:
        conn.send(("err", exc))
        return
    conn.send(("ready", os.getpid()))
    analyzers: dict[int, ParticipantAnalyzer] = {}
    buf = bytearray()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        kind = msg[0]
        try:
            if kind == "push":
                _, aid, shape, layout, t, speech = msg
                if speech is not None:
                    analyzers[aid].hear(speech)
                size = int(np.prod(shape))
                if len(buf) < size:
                    buf = bytearray(size)
                conn.recv_bytes_into(buf)
                frame = np.frombuffer(buf, dtype=np.uint8, count=size).reshape(shape)
                rgb = cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420) if layout == "yuv420p" else frame
                conn.send(("ok", analyzers[aid].push(rgb, t)))
            elif kind == "new":
                _, aid, kwargs = msg
                analyzers[aid] = ParticipantAnalyzer(models, **kwargs)
            elif kind == "reset":
                analyzers[msg[1]].reset()
            elif kind == "drop":
                analyzers.pop(msg[1], None)
            elif kind == "stop":
                return
        except Exception as exc:  # handed back to the caller's thread, which raises it
            conn.send(("err", exc))


class _Shard:
    """One worker process and the lock that keeps its request/response pairs whole."""

    def __init__(self, ctx: Any, options: ModelOptions, index: int) -> None:
        self._ctx, self._options, self.index = ctx, options, index
        self.lock = threading.Lock()
        self.generation = 0
        self.participants = 0
        self._start()

    def _start(self) -> None:
        self.conn, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(
            target=_worker_main, args=(child, self._options), name=f"microcue-analysis-{self.index}", daemon=True
        )
        self.proc.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT_S):
            self.proc.kill()
            raise RuntimeError(f"analysis process {self.index} did not load the models in {START_TIMEOUT_S:g} s")
        status, detail = self.conn.recv()
        if status != "ready":
            raise RuntimeError(f"analysis process {self.index} could not load the models: {detail}")
        self.generation += 1

    def restart(self) -> None:
        """Called with ``lock`` held after the process died or hung."""
        log.warning("analysis process %d (pid %s) died or hung; restarting it", self.index, self.proc.pid)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()
        self._start()

    def call(self, msg: tuple[Any, ...], payload: np.ndarray | None = None, *, reply: bool) -> Any:
        """Send one request (with the lock held by the caller) and wait for its answer."""
        try:
            self.conn.send(msg)
            if payload is not None:
                self.conn.send_bytes(payload.data.cast("B"))
            if not reply:
                return None
            if not self.conn.poll(PUSH_TIMEOUT_S):
                raise TimeoutError(f"analysis process {self.index} gave no answer in {PUSH_TIMEOUT_S:g} s")
            status, value = self.conn.recv()
        except (EOFError, OSError, TimeoutError) as exc:
            self.restart()
            raise RuntimeError(f"analysis process {self.index} failed ({exc}); restarted") from exc
        if status == "err":
            raise value
        return value

    def stop(self) -> None:
        with self.lock:
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            self.proc.join(timeout=5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(timeout=5)
            self.conn.close()


class RemoteAnalyzer:
    """A ``ParticipantAnalyzer`` living in a worker process (``bridge.media.worker.Analyzer``)."""

    def __init__(self, pool: AnalysisPool, shard: _Shard, kwargs: dict[str, Any]) -> None:
        self._pool, self._shard, self._kwargs = pool, shard, kwargs
        self._id = next(pool.ids)
        self._generation = -1  # which incarnation of the process holds our analyzer
        self._heard: SpeechUpdate | None = None  # goes with the next frame
        self.closed = False

    def _ensure(self) -> None:
        if self.closed:  # used again after close(): a fresh analyzer, counted again
            self.closed = False
            self._shard.participants += 1
        if self._generation != self._shard.generation:
            self._shard.call(("new", self._id, self._kwargs), reply=False)
            self._generation = self._shard.generation

    def push_frame(self, frame: np.ndarray, layout: str, t: float) -> AnalysisStep:
        """``frame``: RGB (H, W, 3) or, cheaper to send, yuv420p planes (H * 3/2, W)."""
        with self._shard.lock:
            self._ensure()
            speech, self._heard = self._heard, None
            msg = ("push", self._id, frame.shape, layout, t, speech)
            return self._shard.call(msg, np.ascontiguousarray(frame), reply=True)

    def hear(self, update: SpeechUpdate) -> None:
        """When the person talks: sent with the next frame, in the same message (no extra round trip)."""
        self._heard = update if self._heard is None else self._heard.then(update)

    def push(self, rgb: np.ndarray, t: float) -> AnalysisStep:
        return self.push_frame(rgb, "rgb24", t)

    def reset(self) -> None:
        with self._shard.lock:
            if self._generation == self._shard.generation:
                self._shard.call(("reset", self._id), reply=False)

    def close(self) -> None:
        """Free the analyzer in its process (the worker is gone for good)."""
        if self.closed:
            return
        self.closed = True
        self._shard.participants -= 1
        with self._shard.lock:
            if self._generation == self._shard.generation:
                self._shard.call(("drop", self._id), reply=False)
            self._generation = -1


class AnalysisPool:
    """N worker processes; ``analyzer()`` places each new participant on the least-loaded one."""

    def __init__(self, processes: int, options: ModelOptions) -> None:
        if processes < 1:
            raise ValueError(f"an analysis pool needs at least one process, got {processes}")
        ctx = mp.get_context("spawn")  # no fork: the parent runs threads and an event loop
        self.ids = itertools.count(1)
        self._shards = [_Shard(ctx, options, i) for i in range(processes)]

    @property
    def processes(self) -> int:
        return len(self._shards)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._shards if s.proc.pid is not None]

    def analyzer(self, **kwargs: Any) -> RemoteAnalyzer:
        """A new participant's analyzer (``ParticipantAnalyzer`` keyword arguments)."""
        shard = min(self._shards, key=lambda s: s.participants)
        shard.participants += 1
        return RemoteAnalyzer(self, shard, kwargs)

    def close(self) -> None:
        for shard in self._shards:
            shard.stop()
