"""FifoLock: first come, first served, so participants sharing an analysis process get equal
turns under overload (issue 23's fair share)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from bridge.media.fifo_lock import FifoLock

pytestmark = pytest.mark.unit


def _wait_for(cond: Callable[[], bool], what: str) -> None:
    for _ in range(5000):
        if cond():
            return
        time.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock = FifoLock()
    order: list[int] = []

    def take(i: int) -> None:
        with lock:
            order.append(i)

    lock.acquire()
    threads = []
    for i in range(6):
        t = threading.Thread(target=take, args=(i,))
        t.start()
        threads.append(t)
        _wait_for(lambda i=i: lock.waiting() == i + 1, f"thread {i} to wait")
    lock.release()
    for t in threads:
        t.join(timeout=10)
    assert order == list(range(6))


def test_a_thread_that_asks_again_at_once_waits_its_turn() -> None:
    """Participants' threads hammering one analysis process, each waiting on it (the GIL released,
    as on the pipe) while it holds the lock: with threading.Lock the thread that just released
    takes it straight back and the others starve; here the turns go round."""
    lock = FifoLock()
    turns: Counter[int] = Counter()
    total = 300
    done = threading.Event()

    def participant(i: int) -> None:
        while not done.is_set():
            with lock:
                if sum(turns.values()) >= total:
                    done.set()
                    return
                turns[i] += 1
                time.sleep(0.0002)  # the analysis process at work

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(turns.values()) == total
    assert min(turns.get(i, 0) for i in range(6)) >= 0.8 * total / 6, turns


def test_release_unheld_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        FifoLock().release()
