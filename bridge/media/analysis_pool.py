"""Participants' analyzers sharded over processes, one per core, so the GIL stops serialising.

Profiled at 12 participants in one process (``py-spy record --gil`` on ``bench.bridge_load``,
docs/benchmarks.md "Bridge throughput at 10-12 participants"), about 70 % of the time the GIL
was held went to the event loop (aiortc's pure-Python RTP/RTCP/DTLS handling, half of it) and
28 % to the analyzers' numpy glue on the pool threads; the models and OpenCV release the GIL,
the glue around them does not, so analysis waits whenever the loop runs. Here each
participant's ``ParticipantAnalyzer`` lives in one of N worker processes (its own interpreter
and GIL, the models loaded once per process); the bridge keeps the event loop, writes each sampled
frame into a shared-memory block of the process (0.46 MB per 640x480 frame in YUV 4:2:0: one
copy, where a pipe took one each way and the syscalls), sends a small message over a pipe and
gets the ``AnalysisStep`` back. Colour conversion happens in the worker process, reading the
shared block in place.

Participants sharing a process are served in arrival order (``FifoLock``), so under overload
they all slow down alike; none is left behind.

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
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bridge.media.fifo_lock import FifoLock
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


#: Executor threads per analysis process. Each thread only waits (for its turn on a process and
#: for the answer), so they are cheap; with two per process a participant's thread could wait for
#: a busy process while the other process idled, so there are enough for the participants a
#: process serves under overload (8 analysed at 15 fps fill a core, docs/benchmarks.md).
THREADS_PER_PROCESS = 8


def pool_threads(processes: int) -> int:
    """Executor threads for a bridge using ``processes`` analysis processes (THREADS_PER_PROCESS)."""
    return THREADS_PER_PROCESS * processes


@dataclass(frozen=True)
class ModelOptions:
    """What each worker process needs to load the same models as the bridge would."""

    model_dir: Path
    gaze: bool = True
    emotion: bool = True
    runtime: RuntimeChoice = "auto"


def _frame_rgb(shm: SharedMemory, shape: tuple[int, ...], layout: str) -> np.ndarray:
    """The frame in the shared block as the worker's own RGB array (converted or copied), so the
    bridge may write the next frame into the block once the answer is sent; the view of the
    block dies with this call."""
    frame = np.ndarray(shape, dtype=np.uint8, buffer=shm.buf)
    return cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420) if layout == "yuv420p" else frame.copy()


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
    # The bridge creates and unlinks the block. Spawned children share its resource tracker,
    # where opening the block here registers a name already registered (a no-op).
    shm: SharedMemory | None = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            if shm is not None:
                shm.close()
            return
        kind = msg[0]
        try:
            if kind == "push":
                _, aid, shape, layout, t, speech, block = msg
                if speech is not None:
                    analyzers[aid].hear(speech)
                if shm is None or shm.name != block:  # the bridge grew the block for a larger frame
                    if shm is not None:
                        with contextlib.suppress(BufferError):
                            shm.close()
                    shm = SharedMemory(name=block)
                conn.send(("ok", analyzers[aid].push(_frame_rgb(shm, shape, layout), t)))
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
        self.lock = FifoLock()
        self.generation = 0
        self.participants = 0
        # frames go to the process through this block (grown for a larger frame; lock held)
        self._shm: SharedMemory | None = None
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

    def frame_block(self, frame: np.ndarray) -> str:
        """Copy ``frame`` into the shared block (lock held) and return the block's name."""
        if self._shm is None or self._shm.size < frame.nbytes:
            self._free_block()
            self._shm = SharedMemory(create=True, size=max(frame.nbytes, 1))
        np.copyto(np.ndarray(frame.shape, dtype=np.uint8, buffer=self._shm.buf), frame, casting="no")
        return self._shm.name

    def _free_block(self) -> None:
        if self._shm is not None:
            with contextlib.suppress(OSError, BufferError):
                self._shm.close()
            with contextlib.suppress(OSError):
                self._shm.unlink()
            self._shm = None

    def call(self, msg: tuple[Any, ...], *, reply: bool) -> Any:
        """Send one request (with the lock held by the caller) and wait for its answer."""
        try:
            self.conn.send(msg)
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
            self._free_block()


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
        if frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
        with self._shard.lock:
            self._ensure()
            speech, self._heard = self._heard, None
            block = self._shard.frame_block(frame)
            return self._shard.call(("push", self._id, frame.shape, layout, t, speech, block), reply=True)

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
