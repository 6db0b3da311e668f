"""One inference scheduler per worker: concurrent single-crop calls become one batched call.

Every participant's analyzer calls its models one crop at a time from its own executor
thread. On a GPU one call per crop leaves the device idle between tiny kernels, so a
``BatchingModel`` wraps a model whose graph takes a dynamic batch (``bridge.models.convert.batch``)
and, per tick, gathers the crops that arrive from all threads: the first caller of a tick
waits up to ``window_s`` (or until ``max_batch`` crops are in), runs them as one batch and
hands each caller its own rows. The analyzers do not change (it is an ``inference.runtime.Model``).

``load_batched`` is where a process gets them: ``bridge.models.face.load_face_models`` calls it
when ``MICROCUE_BATCHING`` resolves to on ("auto": on a working CUDA device only). The models are
loaded once per process and shared by every participant, so there is one scheduler per model
and worker. On the CPU "auto" does not batch: LiteRT at batch 1 is faster there than any batch
in onnxruntime (docs/benchmarks.md "Batched face models", ``bench/gpu_batch.py --scheduler``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx

from bridge import metrics
from bridge.models.convert.batch import dynamic_batch
from inference.models import ModelSet, create_session
from inference.runtime import Device, Model, OrtModel

#: How long the first crop of a tick waits for others: a fraction of the 67 ms frame period at
#: 15 fps, so batching adds at most this to the frame-to-cue latency.
WINDOW_S = 0.004
MAX_BATCH = 128
#: Weight of the newest call in the running share of calls that found another call in flight.
#: Below ``ALONE_SHARE`` the caller is taken to be alone (one participant, or the ``analyze``
#: command) and runs at once: waiting a window for crops that never come doubled ``analyze``'s
#: wall time (12.8 -> 25.4 ms per frame on tests/data/WolfgangLanger_Pexels.mp4). 0.1 and 0.05
#: mean "about one call in twenty of the last few dozen overlapped".
OVERLAP_WEIGHT = 0.1
ALONE_SHARE = 0.05


@dataclass
class _Tick:
    inputs: list[np.ndarray] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    full: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


class BatchingModel:
    """A ``Model`` that merges concurrent calls into batches for a batch-N ``inner`` model."""

    def __init__(self, inner: Model, *, window_s: float = WINDOW_S, max_batch: int = MAX_BATCH) -> None:
        if inner.input_shape[0] != -1:
            raise ValueError(f"{inner.name}: batching needs a dynamic batch axis, got {inner.input_shape}")
        self.inner = inner
        self.name, self.runtime = inner.name, inner.runtime
        self.input_shape, self.output_names = inner.input_shape, inner.output_names
        self.window_s, self.max_batch = window_s, max_batch
        self._lock = threading.Lock()
        self._tick: _Tick | None = None
        self._in_flight = 0
        #: running share of calls that arrived while another was in flight (0: always alone)
        self.overlap = 0.0
        #: batches run and crops served, for the benchmark and /metrics
        self.batches = 0
        self.items = 0

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.overlap += OVERLAP_WEIGHT * ((self._in_flight > 0) - self.overlap)
            self._in_flight += 1
            tick = self._tick
            leader = tick is None
            if tick is None:
                tick = self._tick = _Tick()
            start = sum(len(i) for i in tick.inputs)
            tick.inputs.append(x)
            if start + len(x) >= self.max_batch:
                self._tick = None  # full: the next caller opens a new tick
                tick.full.set()
        try:
            if leader:
                if self.overlap >= ALONE_SHARE:
                    tick.full.wait(self.window_s)
                with self._lock:
                    if self._tick is tick:
                        self._tick = None
                self._run(tick)
            else:
                tick.done.wait()
        finally:
            with self._lock:
                self._in_flight -= 1
        if tick.error is not None:
            raise tick.error
        assert tick.outputs is not None
        return {k: v[start : start + len(x)] for k, v in tick.outputs.items()}

    def _run(self, tick: _Tick) -> None:
        try:
            batch = np.concatenate(tick.inputs) if len(tick.inputs) > 1 else tick.inputs[0]
            tick.outputs = self.inner(batch)
            self.batches += 1
            self.items += len(batch)
            metrics.batch_run(self.name, len(batch))
        except BaseException as exc:  # every caller of the tick gets it, not only the leader
            tick.error = exc
        finally:
            tick.done.set()


BatchingChoice = Literal["auto", "on", "off"]


def batching_on(choice: BatchingChoice, device: Device) -> bool:
    """Whether ``choice`` batches on ``device``: "auto" only where CUDA runs the models."""
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"unknown batching choice {choice!r}; choose auto, on or off")
    return choice == "on" or (choice == "auto" and device == "cuda")


def load_batched(
    models: ModelSet, name: str, *, window_s: float = WINDOW_S, max_batch: int = MAX_BATCH
) -> BatchingModel:
    """``name``'s verified ONNX file with a dynamic batch axis, on onnxruntime (CUDA with I/O
    binding where it works), behind one scheduler. The graph is rewritten in memory at load
    (tens of milliseconds), so the model cache and its manifest stay as fetched."""
    path = models.path(name)
    graph = onnx.load(str(path))
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    if batch_dim.HasField("dim_value"):  # the emotion CNN's Keras export is batch-free already
        graph = dynamic_batch(graph)
    session = create_session(
        path, threads=models.threads, prefer_gpu=models.prefer_gpu, graph=graph.SerializeToString()
    )
    return BatchingModel(OrtModel(name, session), window_s=window_s, max_batch=max_batch)
