"""What an adapter tells the service about its participants: names (and renames) for the store,
and the live consent basis and video state shown on the presenter's tiles."""

from __future__ import annotations

import asyncio

import pytest

from bridge.bus import InProcessBus
from bridge.rooms import AdapterContext
from bridge.rooms.base import AUDIO_NOT_ANALYSED, VIDEO_NONE
from bridge.rooms.janus import JanusAdapter
from tests.support.fakes.analyzers import FakeAnalyzer

pytestmark = pytest.mark.unit


async def test_names_and_renames_reach_the_service_and_tiles_show_the_consent_basis() -> None:
    recorded: list[tuple[str, str]] = []

    async def record(participant_id: str, display: str) -> None:
        recorded.append((participant_id, display))

    ctx = AdapterContext(
        meeting_id="m",
        bus=InProcessBus(),
        analyzer_factory=lambda: FakeAnalyzer(refuse_frames="no frames in this test"),
        consent=True,
        consent_basis="announced",
        on_participant=record,
    )
    adapter = JanusAdapter("ws://127.0.0.1:1", 1234, ctx)
    try:
        adapter.participant("101", "Alice")
        adapter.participant("101", "Alice")  # seen again, same name: nothing new to store
        adapter.participant("101", "Alicia")  # Janus lists the feed with a new display name
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert recorded == [("101", "Alice"), ("101", "Alicia")]
        assert adapter.participants["101"].display == "Alicia"
        live = adapter.live()["101"]
        assert live == {
            "display": "Alicia",
            "consent": True,
            "consent_basis": "announced",
            "video": VIDEO_NONE,
            "audio": AUDIO_NOT_ANALYSED,  # this context has no voice activity detector
        }
    finally:
        await adapter.aclose()
