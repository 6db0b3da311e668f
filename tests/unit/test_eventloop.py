"""Every process that carries media runs on uvloop (bridge/eventloop.py), as uvicorn runs
``microcue serve``: asyncio's own loop drops RTP under load."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from bridge import eventloop

pytestmark = pytest.mark.unit


def test_run_uses_uvloop_and_returns_the_result() -> None:
    async def main() -> type:
        return type(asyncio.get_running_loop())

    assert eventloop.loop_factory() is uvloop.new_event_loop
    assert eventloop.run(main()) is uvloop.Loop
