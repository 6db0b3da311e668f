"""A person in Debian's chromium opens the join link, consents, and publishes a (fake-device)
camera showing a real face to the bridge over WebRTC; that participant's cues reach the
presenter's live feed, and a participant who joins later appears in the page (relayed).
Runs inside a private network namespace like every WebRTC test."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from playwright.async_api import async_playwright

from bridge.config import Settings
from bridge.demo.client import join_room
from bridge.demo.synthetic import SyntheticFaceTrack, face_loop_frames, to_yuv
from tests.live_server import LiveServer
from tests.support.browser import ARTIFACTS, CHROMIUM, fake_camera_args
from tests.support.rooms import create_meeting
from web.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_chromium_participant_publishes_and_cues_arrive(netns: str, tmp_path: Path) -> None:

    args = fake_camera_args(tmp_path)
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = create_meeting(server)
        url = m["join_url"].replace(server.app.state.web.settings.base_url, server.base_url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = await browser.new_page()
                await page.goto(url)
                await page.wait_for_selector("#disclosure:not([hidden])")
                await page.fill("#display-name", "Chromium Ada")
                await page.click("#join-consent")
                await page.wait_for_selector("#status:has-text('You are in the meeting')", timeout=60_000)
                assert "MicroCue bot" in await page.locator("#status").inner_text()  # the bot announces itself
                participant_id: Any = await page.evaluate("window.MicroCueJoin.session.participantId")
                seen: set[str] = set()
                feed = f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}"
                async with websockets.connect(feed) as ws:
                    async with asyncio.timeout(90):
                        while not {"presence", "engagement"} <= seen:
                            msg = json.loads(await ws.recv())
                            if msg["type"] == "cue" and msg["cue"]["participant_id"] == participant_id:
                                seen.add(msg["cue"]["type"])
                # someone joins after the browser: the bridge asks it to re-offer and relays them
                other = await join_room(
                    server.ws_url,
                    m["id"],
                    m["join_token"],
                    name="Bo",
                    consent=True,
                    tracks=[SyntheticFaceTrack(to_yuv(face_loop_frames(seconds=1.0)))],
                )
                try:
                    await page.wait_for_selector("#remote-media video", timeout=30_000)
                    # polled with evaluate: wait_for_function evaluates a string in the page, which the
                    # join page's CSP (no eval) rightly refuses
                    playing = False
                    async with asyncio.timeout(30):
                        while not playing:
                            playing = await page.evaluate(
                                "() => (document.querySelector('#remote-media video')?.videoWidth || 0) > 0"
                            )
                            await asyncio.sleep(0.2)
                    assert playing
                finally:
                    await other.aclose()
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "join_page_joined.png"), full_page=True)
            finally:
                await browser.close()
