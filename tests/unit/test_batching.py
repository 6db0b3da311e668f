"""bridge.models.batching: concurrent single-crop calls are merged into batches, each caller gets its rows."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bridge import executor
from bridge.metrics import REGISTRY
from bridge.models.batching import BatchingModel, batching_on
from tests.support.fakes.models import FakeModel

pytestmark = pytest.mark.unit


def _served(model: str) -> float:
    return REGISTRY.get_sample_value("microcue_inference_batched_crops_total", {"model": model}) or 0.0


def test_concurrent_calls_share_batches_and_get_their_own_rows() -> None:
    """16 participants' threads, 10 crops each, against a model that takes 2 ms a call."""
    served_before = _served("doubler")
    inner = FakeModel(call_s=0.002)
    model = BatchingModel(inner, window_s=0.05, max_batch=8)
    start = threading.Barrier(16)

    def one(i: int) -> bool:
        start.wait()
        ok = True
        for k in range(10):
            x = np.full((1, 2, 2, 3), float(100 * i + k), np.float32)
            ok &= bool(np.array_equal(model(x)["y"], 2 * x))
        return ok

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(16)))
    assert sum(inner.sizes) == 160 and model.items == 160
    assert max(inner.sizes) > 1, f"no call was batched: {inner.sizes}"
    assert max(inner.sizes) <= 8  # max_batch holds
    assert model.overlap >= 0.05  # it learnt that it is not alone
    assert _served("doubler") - served_before == 160  # /metrics shows the scheduler's work


def test_a_lone_caller_never_waits_the_window() -> None:
    """One participant (or `microcue analyze`): nobody else's crops will come, so no wait."""
    inner = FakeModel()
    model = BatchingModel(inner, window_s=10.0)
    x = np.ones((1, 2, 2, 3), np.float32)
    began = time.monotonic()
    for _ in range(5):
        assert np.array_equal(model(x)["y"], 2 * x)
    assert time.monotonic() - began < 5.0, "a lone call waited for the 10 s window"
    assert inner.sizes == [1] * 5 and model.overlap == 0.0


def test_an_error_reaches_every_caller_of_the_batch() -> None:
    model = BatchingModel(FakeModel(fail=True), window_s=0.05)
    model.overlap = 1.0  # as after a busy minute: every caller of a tick is batched together
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
    fixed = FakeModel()
    fixed.input_shape = (1, 2, 2, 3)
    with pytest.raises(ValueError, match="dynamic batch"):
        BatchingModel(fixed)


def test_batching_choice_and_the_inference_pool_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto batches on CUDA only; MICROCUE_INFERENCE_THREADS and the command's flag size the pool
    whose threads feed the scheduler."""
    assert [batching_on(c, d) for c in ("auto", "on", "off") for d in ("cpu", "cuda")] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="auto, on or off"):
        batching_on("yes", "cpu")  # type: ignore[arg-type]
    monkeypatch.setattr(executor, "_default", None)
    monkeypatch.setattr(executor, "_threads", None)
    monkeypatch.setenv("MICROCUE_INFERENCE_THREADS", "24")
    assert executor.default_executor().max_workers == 24
    executor.size_inference_pool(40)  # `--inference-threads 40` wins over the environment
    assert executor.default_executor().max_workers == 40
    executor.size_inference_pool(0)  # 0: one thread per core
    assert executor.default_executor().max_workers == max(1, os.cpu_count() or 1)
