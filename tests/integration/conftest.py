"""Integration tests run the bridge in this process: on the loop production runs it on.

WebRTC tests here ask for the ``netns`` fixture and run inside a private network namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from bridge import eventloop
from tests.e2e.netns import netns, pytest_collection_modifyitems, pytest_runtest_protocol

__all__ = ["netns", "pytest_collection_modifyitems", "pytest_runtest_protocol"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], object]] | None:
    """uvloop, like ``microcue serve`` (uvicorn) and the worker (``bridge.eventloop``): a bridge
    tested on asyncio's own loop would not meet uvloop's differences (its datagram draining, its
    subprocess spawn) before production does. The e2e tests keep asyncio's loop: their browsers
    and peers stand for other people's machines, and Playwright spawns its driver from the loop."""
    factory = eventloop.loop_factory()
    return None if factory is None else {"uvloop": factory}
