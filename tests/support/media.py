"""Fixtures for tests of the media workers: an in-process bus and a small blocking executor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bridge.bus import InProcessBus
from bridge.executor import BlockingExecutor


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    b = InProcessBus()
    await b.start()
    yield b
    await b.aclose()


@pytest.fixture
def executor() -> Iterator[BlockingExecutor]:
    """Two threads, as on the 2-core machines the project runs on; shut down after the test."""
    ex = BlockingExecutor(2)
    yield ex
    ex.shutdown()
