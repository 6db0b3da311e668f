"""A lock handed out in the order it was asked for.

``threading.Lock`` promises no order: a thread that releases it and asks again at once may get
it back before threads that have waited longer. An analysis process is shared by several
participants' threads; served in arrival order, each participant waits its turn and under
overload every one of them slows down alike instead of one being left behind (issue 23).
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FifoLock:
    """Context manager; waiters get the lock first come, first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._waiting: deque[object] = deque()
        self._held = False

    def acquire(self) -> None:
        me = object()
        with self._cond:
            self._waiting.append(me)
            while self._held or self._waiting[0] is not me:
                self._cond.wait()
            self._waiting.popleft()
            self._held = True

    def release(self) -> None:
        with self._cond:
            if not self._held:
                raise RuntimeError("release of an unheld FifoLock")
            self._held = False
            self._cond.notify_all()

    def waiting(self) -> int:
        """Threads waiting for the lock now (for tests and gauges)."""
        with self._cond:
            return len(self._waiting)

    def __enter__(self) -> FifoLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
