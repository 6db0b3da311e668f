"""One inference scheduler per worker: concurrent single-crop calls become one batched call.

Every participant's analyzer calls its models one crop at a time from its own executor
thread. On a GPU one call per crop leaves the device idle between tiny kernels, so a
``BatchingModel`` wraps a model whose graph takes a dynamic batch (``bridge.models.convert.batch``)
and, per tick, gathers the crops that arrive from all threads: the first caller of a tick
waits up to ``window_s`` (or until ``max_batch`` crops are in), runs them as one batch and
hands each caller its own rows. The analyzers do not change (it is an ``inference.runtime.Model``).

On the CPU it is not used: LiteRT at batch 1 is faster there than any batch in onnxruntime
(docs/benchmarks.md "Batched face models").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from inference.runtime import Model

#: How long the first crop of a tick waits for others: a fraction of the 67 ms frame period at
#: 15 fps, so batching adds at most this to the frame-to-cue latency.
WINDOW_S = 0.004
MAX_BATCH = 128


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
        #: batches run and crops served, for the benchmark and /metrics
        self.batches = 0
        self.items = 0

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            tick = self._tick
            leader = tick is None
            if tick is None:
                tick = self._tick = _Tick()
            start = sum(len(i) for i in tick.inputs)
            tick.inputs.append(x)
            if start + len(x) >= self.max_batch:
                self._tick = None  # full: the next caller opens a new tick
                tick.full.set()
        if leader:
            tick.full.wait(self.window_s)
            with self._lock:
                if self._tick is tick:
                    self._tick = None
            self._run(tick)
        else:
            tick.done.wait()
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
        except BaseException as exc:  # every caller of the tick gets it, not only the leader
            tick.error = exc
        finally:
            tick.done.set()
