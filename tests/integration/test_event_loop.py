"""The integration tests run the bridge on uvloop, as production does (``tests/integration/conftest.py``)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

pytestmark = pytest.mark.integration


async def test_the_bridge_is_tested_on_the_loop_production_runs_it_on() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
