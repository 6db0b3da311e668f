"""Browsers other than a desktop chromium with its defaults, each meeting one that is, in a
built-in room, joining in both orders: a page restricted to H.264 both ways (as a client with
hardware H.264 only would be) and a phone-like portrait camera. Each sees the other and the
bridge analyses both; the H.264 page's own statistics say it sent H.264, and the portrait camera
reaches the others as a portrait tile that fits the grid's box. A page that offers only codecs
the bridge cannot decode (VP9, AV1) is refused with a message that says what to offer, and the
room goes on for the others."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from bridge.config import Settings
from bridge.demo.synthetic import face_loop_frames, to_yuv
from bridge.rooms.builtin import RELAY_BOX, tile_size
from tests.live_server import LiveServer
from tests.support.browser import CHROMIUM, fake_camera_args
from tests.support.join_page import Person, join, sees, start_join
from tests.support.rooms import create_meeting, face_in_view, write_y4m_frames
from web.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: Run before any page script: every video transceiver the page makes offers only these codecs
#: (what a browser without the others would offer).
ONLY_VIDEO_CODECS = """(mimes) => {
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
    const transceiver = add.call(this, trackOrKind, init);
    const kind = typeof trackOrKind === "string" ? trackOrKind : trackOrKind.kind;
    if (kind === "video") {
      const codecs = RTCRtpReceiver.getCapabilities("video").codecs.filter((c) => mimes.includes(c.mimeType));
      transceiver.setCodecPreferences(codecs);
    }
    return transceiver;
  };
}"""
#: The codec of the page's outgoing video, from its own statistics.
SENT_CODEC = """async () => {
  const stats = await window.MicroCueJoin.session.up.getStats();
  for (const s of stats.values()) {
    if (s.type === "outbound-rtp" && s.kind === "video" && s.codecId) return stats.get(s.codecId).mimeType;
  }
  return null;
}"""
#: Analysed frames each participant must reach: a few seconds of real analysis, not one keyframe.
MIN_ANALYSED = 30
#: A phone held upright: 9:16, cut from the middle of the 640x480 face loop (the face is centred).
PORTRAIT = (270, 480)


async def _context(browser: Any, codecs: list[str] | None) -> Any:
    context = await browser.new_context()
    if codecs is not None:
        await context.add_init_script(script=f"({ONLY_VIDEO_CODECS})({json.dumps(codecs)})")
    return context


async def _analysed(
    server: LiveServer, meeting_id: str, people: list[Person], timeout_s: float = 60.0
) -> dict[str, int]:
    """Wait until the bridge analysed MIN_ANALYSED frames of each; their counters."""
    deadline = time.monotonic() + timeout_s
    while True:
        room = server.app.state.web.rooms.rooms[meeting_id]
        counts = {p.name: room.participants[p.participant_id].video.stats.analysed for p in people}
        if all(n >= MIN_ANALYSED for n in counts.values()):
            return counts
        assert time.monotonic() < deadline, f"not analysed in {timeout_s} s: {counts}"
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("h264_first", [True, False], ids=["h264-page-first", "vp8-page-first"])
async def test_an_h264_only_browser_and_a_vp8_browser_meet_and_are_both_analysed(
    netns: str, tmp_path: Path, h264_first: bool
) -> None:
    args = fake_camera_args(tmp_path)
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = create_meeting(server)
        url = m["join_url"].replace(server.app.state.web.settings.base_url, server.base_url)
        hana, vic = Person("Hana"), Person("Vic")  # H.264 only / chromium's defaults
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                contexts = {"Hana": await _context(browser, ["video/H264"]), "Vic": await _context(browser, None)}
                for p in (hana, vic) if h264_first else (vic, hana):
                    await join(contexts[p.name], url, p)
                await sees(hana, {"Vic"})
                await sees(vic, {"Hana"})
                counts = await _analysed(server, m["id"], [hana, vic])
                sent = {p.name: await p.page.evaluate(SENT_CODEC) for p in (hana, vic)}
                assert sent == {"Hana": "video/H264", "Vic": "video/VP8"}, sent
                room = server.app.state.web.rooms.rooms[m["id"]]
                stats = room.stats()
                for p in (hana, vic):
                    assert stats[p.participant_id]["resets"] == 0, (p.name, stats[p.participant_id])
                    assert stats[p.participant_id]["offers"] == {"publish": 1, "subscribe": 1}, stats
                print(f"sent {sent}; analysed {counts}")
            finally:
                await browser.close()


async def test_a_browser_offering_only_vp9_and_av1_is_told_what_to_offer(netns: str, tmp_path: Path) -> None:
    args = fake_camera_args(tmp_path)
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = create_meeting(server)
        url = m["join_url"].replace(server.app.state.web.settings.base_url, server.base_url)
        vic, nina = Person("Vic"), Person("Nina")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                await join(await _context(browser, None), url, vic)
                page = await start_join(await _context(browser, ["video/VP9", "video/AV1"]), url, nina)
                status = page.locator("#status")
                await status.filter(has_text="no codec in common").wait_for(timeout=60_000)
                text = await status.inner_text()
                assert "VP8 or H.264" in text, text
                # the room goes on for Vic, alone in it: still analysed, nobody else listed
                room = server.app.state.web.rooms.rooms[m["id"]]
                before = room.participants[vic.participant_id].video.stats.analysed
                await asyncio.sleep(3.0)
                assert room.participants[vic.participant_id].video.stats.analysed > before
                assert set(room.participants) == {vic.participant_id}, room.stats()
                await sees(vic, set())
            finally:
                await browser.close()


def _portrait_camera_args(folder: Path) -> list[str]:
    """Chromium flags for a camera that films upright (a real face, 270x480)."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = PORTRAIT
    left = (640 - width) // 2
    frames = [rgb[:height, left : left + width] for rgb in face_loop_frames(seconds=4.0, fps=15)]
    write_y4m_frames(folder / "face.y4m", to_yuv(frames), 15)
    return fake_camera_args(folder)


@pytest.mark.parametrize("portrait_first", [True, False], ids=["portrait-first", "landscape-first"])
async def test_a_portrait_phone_camera_is_analysed_and_relayed_upright(
    netns: str, tmp_path: Path, portrait_first: bool
) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path / "data"))) as server:
        m = create_meeting(server)
        url = m["join_url"].replace(server.app.state.web.settings.base_url, server.base_url)
        pat, lan = Person("Pat"), Person("Lan")  # portrait / landscape camera
        async with async_playwright() as pw:
            # one browser per camera: chromium's fake camera file is a launch flag
            browsers = {
                "Pat": await pw.chromium.launch(
                    executable_path=CHROMIUM, args=_portrait_camera_args(tmp_path / "portrait")
                ),
                "Lan": await pw.chromium.launch(executable_path=CHROMIUM, args=fake_camera_args(tmp_path)),
            }
            try:
                for p in (pat, lan) if portrait_first else (lan, pat):
                    await join(await browsers[p.name].new_context(), url, p)
                shown = {p.name: (await sees(p, {o.name}))[0] for p, o in ((pat, lan), (lan, pat))}
                # each sees the other whole, scaled into the tile box with its shape kept
                assert (shown["Lan"]["width"], shown["Lan"]["height"]) == tile_size(*PORTRAIT, RELAY_BOX), shown
                assert (shown["Pat"]["width"], shown["Pat"]["height"]) == RELAY_BOX, shown
                counts = await _analysed(server, m["id"], [pat, lan])
                room = server.app.state.web.rooms.rooms[m["id"]]
                stats = room.stats()
                assert stats[pat.participant_id]["resets"] == 0, stats[pat.participant_id]
                # the analysis reads the upright picture itself and finds the face in it
                await face_in_view(server, m, pat.participant_id)
                print(f"shown {shown}; analysed {counts}")
            finally:
                for b in browsers.values():
                    await b.close()
