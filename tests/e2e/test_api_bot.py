"""The presenter asks the service for a bot (POST /api/meetings/{id}/bot): the service joins a
real Janus VideoRoom (inside the network namespace) and that meeting's live feed gets the
publisher's cues."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from bridge.config import Settings
from tests.live_server import LiveServer
from tests.support.janus import ROOM, JanusServer, Publisher
from tests.support.rooms import create_meeting
from web.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
pytest_plugins = ["tests.support.janus"]


async def test_the_api_sends_a_bot_into_a_janus_room(
    janus: JanusServer, publishers: list[Publisher], face_yuv: list[np.ndarray], netns: str, tmp_path: Path
) -> None:
    alice = Publisher(janus.url, 101, "Alice", face_yuv)
    publishers.append(alice)
    await alice.start()
    allow = janus.url.split("//", 1)[1]  # MICROCUE_JOIN_ALLOW lists host:port pairs
    with LiveServer(create_app(Settings(data_dir=tmp_path / "data", join_allow=allow))) as server:
        m = create_meeting(server)
        r = await asyncio.to_thread(
            httpx.post,
            f"{server.base_url}/api/meetings/{m['id']}/bot",
            json={"janus": janus.url, "room": ROOM},
            headers={"Authorization": f"Bearer {m['presenter_token']}"},
            timeout=60,
        )
        assert r.status_code == 202, r.text
        assert r.json()["detail"]["kind"] == "janus"
        feed = f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}"
        seen: set[str] = set()
        async with websockets.connect(feed) as ws:
            async with asyncio.timeout(90):
                while "presence" not in seen:
                    msg = json.loads(await ws.recv())
                    if msg["type"] == "cue" and msg["cue"]["participant_id"] == "101":
                        seen.add(msg["cue"]["type"])
