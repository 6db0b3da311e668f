"""bridge.models.batching: concurrent single-crop calls are merged into batches, each caller gets its rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bridge.models.batching import BatchingModel

pytestmark = pytest.mark.unit


class Doubler:
    """A batch-N model: out = 2 * x, and it records the batch sizes it saw."""

    name, runtime = "doubler", "fake"
    input_shape = (-1, 2, 2, 3)
    output_names = ("y",)

    def __init__(self, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.sizes.append(len(x))
        if self.fail:
            raise RuntimeError("device lost")
        return {"y": 2 * x}


def test_concurrent_calls_share_batches_and_get_their_own_rows() -> None:
    inner = Doubler()
    model = BatchingModel(inner, window_s=0.05, max_batch=8)
    start = threading.Barrier(16)

    def one(i: int) -> bool:
        x = np.full((1, 2, 2, 3), float(i), np.float32)
        start.wait()
        return bool(np.array_equal(model(x)["y"], 2 * x))

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(16)))
    assert sum(inner.sizes) == 16 and model.items == 16
    assert max(inner.sizes) > 1, f"no call was batched: {inner.sizes}"
    assert max(inner.sizes) <= 8  # max_batch holds


def test_a_lone_call_waits_only_the_window() -> None:
    inner = Doubler()
    model = BatchingModel(inner, window_s=0.001)
    x = np.ones((1, 2, 2, 3), np.float32)
    assert np.array_equal(model(x)["y"], 2 * x) and inner.sizes == [1]


def test_an_error_reaches_every_caller_of_the_batch() -> None:
    model = BatchingModel(Doubler(fail=True), window_s=0.05)
    start = threading.Barrier(4)

    def one(_: int) -> str:
        start.wait()
        try:
            model(np.zeros((1, 2, 2, 3), np.float32))
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, range(4))) == ["device lost"] * 4


def test_a_fixed_batch_model_is_refused() -> None:
    fixed = Doubler()
    fixed.input_shape = (1, 2, 2, 3)
    with pytest.raises(ValueError, match="dynamic batch"):
        BatchingModel(fixed)
