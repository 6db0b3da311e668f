"""Built-in rooms as tests use them: a meeting made through the API, its live cues, a fake camera file."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
import websockets

from bridge.demo.synthetic import face_loop_frames, to_yuv
from tests.live_server import LiveServer


def create_meeting(server: LiveServer, context: str = "customer") -> dict[str, Any]:
    r = httpx.post(f"{server.base_url}/api/meetings", json={"title": "Room", "context": context}, timeout=30)
    assert r.status_code == 201, r.text
    m: dict[str, Any] = r.json()
    m["join_token"] = m["join_url"].split("token=")[1]
    return m


async def end_meeting(server: LiveServer, m: dict[str, Any]) -> dict[str, Any]:
    """End the meeting as its presenter and return the stored summary (``GET .../summary``)."""
    auth = {"Authorization": f"Bearer {m['presenter_token']}"}
    base = f"{server.base_url}/api/meetings/{m['id']}"
    r = await asyncio.to_thread(httpx.post, f"{base}/end", headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    r = await asyncio.to_thread(httpx.get, f"{base}/summary", headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _live_cues(
    server: LiveServer, m: dict[str, Any], participant_id: str, *, latest: bool = False
) -> AsyncGenerator[dict[str, Any]]:
    """The participant's cues as the presenter's live feed sends them; with ``latest``, first the
    latest of each stream that the feed's opening snapshot holds (a presence cue is sent on change)."""
    async with websockets.connect(f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}") as ws:
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "snapshot" and latest:
                for person in msg["participants"]:
                    if person["participant_id"] == participant_id:
                        for cue in person["latest"].values():
                            if cue is not None:
                                yield cue
            elif msg["type"] == "cue" and msg["cue"]["participant_id"] == participant_id:
                yield msg["cue"]


async def cues_for(
    server: LiveServer, m: dict[str, Any], participant_id: str, want: set[str], seconds: float = 90.0
) -> set[str]:
    seen: set[str] = set()
    async with asyncio.timeout(seconds), contextlib.aclosing(_live_cues(server, m, participant_id)) as cues:
        async for cue in cues:
            seen.add(cue["type"])
            if want <= seen:
                break
    return seen


async def face_in_view(server: LiveServer, m: dict[str, Any], participant_id: str, seconds: float = 60.0) -> None:
    """Wait for the participant's presence cue that says their face is in view (value 1)."""
    feed = _live_cues(server, m, participant_id, latest=True)
    async with asyncio.timeout(seconds), contextlib.aclosing(feed) as cues:
        async for cue in cues:
            if cue["type"] == "presence" and cue["value"] == 1:
                return


def write_y4m(path: Path, seconds: float = 4.0, fps: int = 15) -> None:
    """The fake camera's file: YUV4MPEG2, 640x480, yuv420p, a real face looping."""
    write_y4m_frames(path, to_yuv(face_loop_frames(seconds=seconds, fps=fps)), fps)


def write_y4m_frames(path: Path, frames: list[Any], fps: int) -> None:
    """YUV4MPEG2 from yuv420p frames of one size (``bridge.demo.synthetic.to_yuv``), as chromium's
    fake camera reads it (and loops it)."""
    height, width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for yuv in frames:
            f.write(b"FRAME\n")
            f.write(yuv.tobytes())
