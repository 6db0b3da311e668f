"""The only bridge from the event loop to threads: ``run_blocking`` and ``run_in_background``.

Inference (onnxruntime, OpenCV) releases the GIL, so a thread pool sized to the
cores runs several participants in parallel while the loop keeps serving
DTLS/SRTP (aiortc #505: that work runs on the loop). Every call goes through
here so there is one place to measure the backlog: ``lag`` is how long work waited
for a free thread, and a warning is logged (rate-limited) when it grows past what
live video tolerates, which is the first sign the machine has too many
participants.

Work that is not live inference (rendering a report, computing a summary, loading models,
rendering the demo's frames) goes through ``run_in_background``: the same kind of pool, but its
own, so a report that takes a second to draw never delays a participant's frames.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from bridge.config import Settings
from bridge.cpus import usable_cores

log = logging.getLogger("microcue.executor")

P = ParamSpec("P")
R = TypeVar("R")

#: Queue wait above which inference is falling behind: one analysis tick at 15 fps is 67 ms,
#: so waiting longer than two ticks means frames are being skipped because of the pool.
SLOW_LAG_S = 0.15
#: At most one "falling behind" warning per this many seconds: the condition is sustained,
#: so repeating it per frame would drown the log.
WARN_EVERY_S = 10.0


@dataclass
class ExecutorStats:
    """Gauges for /metrics and the load benchmark."""

    submitted: int = 0
    completed: int = 0
    in_flight: int = 0
    last_lag_s: float = 0.0
    max_lag_s: float = 0.0
    slow: int = 0


def pool_size(threads: int | None) -> int:
    """``threads``, or one per core this process may use (``bridge.cpus``) when 0 or None."""
    return threads or usable_cores()


class BlockingExecutor:
    """A thread pool with a lag gauge; ``run_blocking`` awaits ``fn(*args)`` on a worker thread."""

    def __init__(self, max_workers: int | None = None, *, name: str = "microcue-infer") -> None:
        self.max_workers = pool_size(max_workers)
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix=name)
        self.stats = ExecutorStats()
        self._last_warn = -WARN_EVERY_S
        self._closed = False

    async def run_blocking(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` off the loop, keeping the caller's context (log fields, tracing)."""
        if self._closed:
            raise RuntimeError("the blocking executor is shut down")
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        queued_at = time.perf_counter()

        def call() -> R:
            self._note_lag(time.perf_counter() - queued_at)
            return ctx.run(functools.partial(fn, *args, **kwargs))

        self.stats.submitted += 1
        self.stats.in_flight += 1
        try:
            return await loop.run_in_executor(self._pool, call)
        finally:
            self.stats.in_flight -= 1
            self.stats.completed += 1

    def _note_lag(self, lag: float) -> None:
        # Runs on a pool thread; plain attribute stores are atomic enough for gauges.
        self.stats.last_lag_s = lag
        self.stats.max_lag_s = max(self.stats.max_lag_s, lag)
        if lag > SLOW_LAG_S:
            self.stats.slow += 1
            now = time.monotonic()
            if now - self._last_warn >= WARN_EVERY_S:
                self._last_warn = now
                log.warning(
                    "inference is falling behind: work waited %.0f ms for one of %d threads "
                    "(%d slow calls so far); too many participants for this machine?",
                    lag * 1000,
                    self.max_workers,
                    self.stats.slow,
                )

    def shutdown(self) -> None:
        """Stop taking work; running calls finish on their threads (they cannot be interrupted)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


_default: BlockingExecutor | None = None
_threads: int | None = None  # set by size_inference_pool; None: MICROCUE_INFERENCE_THREADS


def default_executor() -> BlockingExecutor:
    """The process-wide pool, created on first use: ``MICROCUE_INFERENCE_THREADS`` threads (or
    what ``size_inference_pool`` set from the command line), else one per core."""
    global _default  # noqa: PLW0603 - one pool per process is the point
    if _default is None or _default._closed:
        threads = Settings().inference_threads if _threads is None else _threads
        _default = BlockingExecutor(threads or None)
    return _default


def size_inference_pool(threads: int) -> None:
    """Size the process-wide pool from a command's settings (``--inference-threads`` as well as
    the environment), where a service loads its models, before any frame is analysed. A pool
    of another size is replaced; calls already running on it finish there."""
    global _default, _threads  # noqa: PLW0603 - one pool per process is the point
    _threads = threads
    if _default is not None and _default.max_workers != pool_size(threads):
        _default = None


async def run_blocking(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``await run_blocking(analyzer.push, rgb, t)`` on the process-wide pool."""
    return await default_executor().run_blocking(fn, *args, **kwargs)


_background: BlockingExecutor | None = None
#: Threads for non-inference work: reports and summaries are rare and short, one at a time is
#: enough, and a second thread keeps a slow report from queueing a model load behind it.
BACKGROUND_WORKERS = 2


def background_executor() -> BlockingExecutor:
    """The process-wide pool for work that must not compete with live inference."""
    global _background  # noqa: PLW0603 - one pool per process is the point
    if _background is None or _background._closed:
        _background = BlockingExecutor(BACKGROUND_WORKERS, name="microcue-background")
    return _background


async def run_in_background(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``await run_in_background(render_html, data)``: off the loop and off the inference pool."""
    return await background_executor().run_blocking(fn, *args, **kwargs)
