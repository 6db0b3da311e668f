"""Three people in Debian's chromium hold a meeting in a built-in room, as new users would: each
opens the join link, consents and publishes a fake camera showing a real face. One leaves and
comes back. Checked: one connection per direction per participant for the whole meeting (offers
counted on both sides), no analyzer reset, every page shows the others' video (pixels checked in
the page), every publisher analysed steadily and evenly from 3 s after joining (the 10-fps target
is judged by bench/browser_rooms.py, which runs this test), and each participant present >= 90 % of
their time in the summary. Also: the service restarts under two of them and
both pages come back as the same participants. Runs in a private network namespace."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

from bridge.config import Settings
from inference.voice import SAMPLE_RATE
from tests.live_server import LiveServer
from tests.support.browser import ARTIFACTS, CHROMIUM, fake_camera_args
from tests.support.join_page import Person, join, sees
from tests.support.rates import check_steady_and_fair, loadavg, longest_stall, rate, record
from tests.support.rooms import create_meeting, end_meeting, write_y4m_frames
from tests.support.speech import espeak, track, write_wav
from web.app import create_app
from web.commands.demo import FPS as DEMO_FPS
from web.commands.demo import scripted_frames

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

#: analysis is judged from this long after joining (the issue's "within 3 s")
WITHIN_S = 3.0
#: share of their time in the meeting each participant must be present in the summary
MIN_PRESENT = 0.9
STAY_S = 20.0
#: share of the namespace's UDP datagrams the kernel may drop for a full receive buffer
MAX_UDP_DROPPED = 0.01


async def test_three_chromium_participants_hold_a_meeting(netns: str, tmp_path: Path) -> None:

    args = fake_camera_args(tmp_path)
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = create_meeting(server)
        url = m["join_url"].replace(server.app.state.web.settings.base_url, server.base_url)
        ann, ben, cy = Person("Ann"), Person("Ben"), Person("Cy")
        ben_again = Person("Ben")
        everyone = [ann, ben, cy, ben_again]
        stop_sampling = asyncio.Event()

        async def sample() -> None:  # the bridge's own counters, twice a second
            while not stop_sampling.is_set():
                room = server.app.state.web.rooms.rooms.get(m["id"])
                now = time.perf_counter()
                for p in everyone:
                    worker = room.participants.get(p.participant_id) if room and p.participant_id else None
                    if worker is not None:
                        p.samples.append((now, worker.video.stats.analysed))
                await asyncio.sleep(0.5)

        udp_before = _udp_counters()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            sampler = asyncio.create_task(sample())
            try:
                context = await browser.new_context()  # one browser process, one page per person
                await join(context, url, ann)
                await join(context, url, ben)
                await join(context, url, cy)
                room = server.app.state.web.rooms.rooms[m["id"]]
                t0 = room.ctx.t0
                for person, others in ((ann, {"Ben", "Cy"}), (ben, {"Ann", "Cy"}), (cy, {"Ann", "Ben"})):
                    await sees(person, others)
                await asyncio.sleep(max(0.0, ben.joined + STAY_S - time.perf_counter()))
                # Ben leaves (closes the page) and comes back in a new page: a new participant
                stats_before = room.stats()
                await ben.page.close()
                ben.left = time.perf_counter()
                for person, others in ((ann, {"Cy"}), (cy, {"Ann"})):
                    await sees(person, others)
                await join(context, url, ben_again)
                for person, others in ((ann, {"Ben", "Cy"}), (cy, {"Ann", "Ben"}), (ben_again, {"Ann", "Cy"})):
                    await sees(person, others)
                await asyncio.sleep(max(0.0, ben_again.joined + STAY_S - time.perf_counter()))
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await ann.page.screenshot(path=str(ARTIFACTS / "builtin_three_browsers_ann.png"), full_page=True)
                # the presenter's dashboard (in chromium) names everyone and shows their consent
                board = await context.new_page()
                await board.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
                for p in (ann, cy, ben_again):
                    tile = board.locator(f'.tile[data-participant="{p.participant_id}"]')
                    await tile.locator(".name", has_text=p.name).wait_for(timeout=30_000)
                    await tile.locator(".consent", has_text="consented").wait_for(timeout=15_000)
                await board.close()
                # one connection per direction per participant, each offered once (page and bridge agree)
                stats = room.stats()
                record(
                    "room stats: "
                    + repr(
                        {
                            p.name: {
                                k: stats[p.participant_id].get(k)
                                for k in (
                                    "received",
                                    "analysed",
                                    "dropped",
                                    "resolution_changes",
                                    "keyframe_requests",
                                    "resets",
                                )
                            }
                            for p in (ann, cy, ben_again)
                        }
                    )
                    + f" executor lag max {room.ctx.executor.stats.max_lag_s:.3f} s"
                )
                udp = _udp_counters()
                udp_delta = {k: udp[k] - udp_before[k] for k in ("InDatagrams", "InErrors", "RcvbufErrors")}
                rtp = await _inbound_rtp(room, (ann, cy, ben_again))
                record(f"UDP in the namespace: {udp_delta}; inbound RTP (kind, received, lost): {rtp}")
                # the bridge drains its media sockets (bridge/eventloop.py): on asyncio's own loop
                # the kernel dropped 11-17 % of the datagrams here for full socket buffers
                assert udp_delta["RcvbufErrors"] <= MAX_UDP_DROPPED * udp_delta["InDatagrams"], (udp_delta, rtp)
                for p in (ann, cy, ben_again):
                    negotiations = await p.page.evaluate("window.MicroCueJoin.session.negotiations")
                    assert negotiations == {"publish": 1, "subscribe": 1}, (p.name, negotiations)
                    assert stats[p.participant_id]["offers"] == {"publish": 1, "subscribe": 1}, stats
                    assert stats[p.participant_id]["tracks"] == 1, (p.name, stats[p.participant_id])
                    assert stats[p.participant_id]["resets"] == 0, f"{p.name}: {stats[p.participant_id]}"
                assert stats_before[ben.participant_id]["resets"] == 0, stats_before
                assert room.peers.created == 2 * 4  # Ann, Ben, Cy, Ben again: two each, never more
                end = time.perf_counter()
                for p in (ann, cy, ben_again):
                    p.left = end
            finally:
                stop_sampling.set()
                await sampler
                await browser.close()
        label = {id(p): p.name + ("(again)" if p is ben_again else "") for p in everyone}
        rates = {label[id(p)]: round(rate(p.samples, p.joined + WITHIN_S, p.left or 0.0), 1) for p in everyone}
        stalls = {label[id(p)]: longest_stall(p.samples, p.joined + WITHIN_S, p.left or 0.0) for p in everyone}
        record(
            f"analysed fps from {WITHIN_S} s after joining: {rates}; longest stall {max(stalls.values()):.1f} s; "
            f"{loadavg()}",
            scenario="builtin room, 3 chromium pages",
            rates=rates,
        )
        summary = await end_meeting(server, m)
        present = {p["participant_id"]: p["time_present_s"] for p in summary["summary"]["participants"]}
        shares = {}
        for p in everyone:
            assert p.left is not None
            shares[label[id(p)]] = round(present[p.participant_id] / (p.left - p.joined), 3)
        record(f"present share of time in the meeting: {shares} (meeting t0 {t0:.1f})")
        assert all(share >= MIN_PRESENT for share in shares.values()), shares
        check_steady_and_fair(rates, stalls)


@pytest.mark.parametrize("order", [("Ann", "Ben"), ("Ben", "Ann")], ids=["ann-first", "ben-first"])
async def test_chromium_participants_come_back_as_themselves_after_a_restart(
    netns: str, tmp_path: Path, order: tuple[str, str]
) -> None:
    """The service restarts under two chromium participants: uvicorn closes their signalling with
    1012, each page reconnects on its own, rejoins as the same participant (resume) and offers
    again; both see each other again and both are analysed again by the new process."""
    args = fake_camera_args(tmp_path)
    settings = Settings(data_dir=tmp_path)
    first = LiveServer(create_app(settings)).start()
    port = first.port
    people = {name: Person(name) for name in order}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            context = await browser.new_context()
            try:
                m = create_meeting(first)
                url = m["join_url"].replace(first.app.state.web.settings.base_url, first.base_url)
                for name in order:
                    await join(context, url, people[name])
                for person in people.values():
                    await sees(person, set(people) - {person.name})
            finally:
                first.stop()  # uvicorn's shutdown closes every websocket with 1012
            restarted = time.perf_counter()
            with LiveServer(create_app(settings), port=port) as second:
                for person in people.values():
                    try:
                        await person.page.wait_for_function(
                            "() => (window.MicroCueJoin.session || {}).reconnects === 1", timeout=60_000
                        )
                    except PlaywrightTimeout:
                        status = await person.page.text_content("#status")
                        raise AssertionError(
                            f"{person.name}'s page did not come back: {status!r}; console: {person.console[-10:]}"
                        ) from None
                    await person.page.wait_for_selector("#status:has-text('You are in the meeting')", timeout=30_000)
                    session = await person.page.evaluate(
                        "(() => { const s = window.MicroCueJoin.session;"
                        " return {id: s.participantId, resumed: s.resumed, negotiations: s.negotiations}; })()"
                    )
                    assert session == {
                        "id": person.participant_id,
                        "resumed": True,
                        "negotiations": {"publish": 1, "subscribe": 1},
                    }, (person.name, session)
                back = time.perf_counter() - restarted
                for person in people.values():
                    await sees(person, set(people) - {person.name})
                room = second.app.state.web.rooms.rooms[m["id"]]
                deadline = time.monotonic() + 30
                while not all(
                    pid in room.participants and room.participants[pid].video.stats.analysed > 15
                    for pid in (p.participant_id for p in people.values())
                ):
                    assert time.monotonic() < deadline, {
                        pid: w.video.stats.as_dict() for pid, w in room.participants.items()
                    }
                    await asyncio.sleep(0.5)
                assert set(room.participants) == {p.participant_id for p in people.values()}
                record(
                    f"restart under {' then '.join(order)}: both pages back in the meeting "
                    f"{back:.1f} s after the old process stopped; {loadavg()}"
                )
        finally:
            await browser.close()


async def _inbound_rtp(room: Any, people: tuple[Person, ...]) -> dict[str, list[tuple[str, int, int]]]:
    """(kind, packets received, packets lost) of each stream the bridge receives from each
    publisher, from aiortc's own statistics (RTX streams count separately)."""
    out = {}
    for p in people:
        pc = room.members[p.participant_id].up
        report = await pc.getStats() if pc is not None else {}
        out[p.name] = [(s.kind, s.packetsReceived, s.packetsLost) for s in report.values() if s.type == "inbound-rtp"]
    return out


def _udp_counters() -> dict[str, int]:
    """The namespace's UDP counters (/proc/net/snmp): whether the kernel dropped datagrams for a
    full socket buffer (RcvbufErrors) when the bridge reports lost packets."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=True)}


# ---- issue 22: talk, from the microphone, on the tiles, in the summary and on expressions -----

#: Ann's fake microphone loops a spoken stretch then silence (chromium loops the WAV); her camera
#: loops the demo's face with scripted micro-expressions (12 s), so over a meeting some of them fall
#: in her talk and some do not.
TALK_LOOP_S = 10.0
TALK_STAY_S = 36.0
#: Expressions this close to a talk boundary are not checked: the flag is decided on the voice
#: activity as the analyzer knew it, the talk segments are the final ones.
FLAG_MARGIN_S = 0.25


def _talk_intervals(cues: list[dict[str, Any]], pid: str, end: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    start: float | None = None
    for c in sorted((c for c in cues if c["type"] == "speaking" and c["participant_id"] == pid), key=lambda c: c["t"]):
        if c["value"] >= 0.5 and start is None:
            start = c["t"]
        elif c["value"] < 0.5 and start is not None:
            out.append((start, c["t"]))
            start = None
    if start is not None:
        out.append((start, end))
    return out


async def _live_cues(server: LiveServer, m: dict[str, Any], into: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Every cue the presenter's live feed sends (the floor is 0 in this test, so all of them)."""
    url = f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}"
    async with websockets.connect(url) as ws:
        while not stop.is_set():
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if msg["type"] == "cue":
                into.append(msg["cue"])


async def test_a_talking_chromium_participant_gets_talk_share_and_flagged_micro_expressions(
    netns: str, tmp_path: Path
) -> None:
    """Two chromium participants in a built-in room, each in their own browser (chromium's fake
    devices are per browser): Ann's microphone plays a spoken sentence (espeak-ng) then silence,
    her camera the demo's face with scripted micro-expressions; Ben's microphone plays silence.
    The presenter's dashboard, open from the start, gives Ann's tile a talk share near the WAV's and
    says Ben was not heard talking; the summary agrees; Ann's micro-expressions that came while she
    talked say "while talking" in their cue, and only those."""
    sentence = espeak("Good morning everyone, thank you for joining the meeting today. Let us look at the numbers.")
    said = len(sentence) / SAMPLE_RATE
    assert said < TALK_LOOP_S - 2.0
    share = said / TALK_LOOP_S
    ann_dir, ben_dir = tmp_path / "ann", tmp_path / "ben"
    ann_dir.mkdir()
    ben_dir.mkdir()
    settings = Settings(data_dir=tmp_path, min_confidence=0.0)  # every signal reaches the feed: the flag is checked
    write_y4m_frames(ann_dir / "face.y4m", await asyncio.to_thread(scripted_frames, settings), int(DEMO_FPS))
    ann_mic = write_wav(ann_dir / "talk.wav", track(TALK_LOOP_S, [(0.0, sentence)]), rate=48_000)
    ben_mic = write_wav(ben_dir / "quiet.wav", track(TALK_LOOP_S, []), rate=48_000)
    ann_args = [*fake_camera_args(ann_dir), f"--use-file-for-fake-audio-capture={ann_mic}"]
    ben_args = [*fake_camera_args(ben_dir), f"--use-file-for-fake-audio-capture={ben_mic}"]
    cues: list[dict[str, Any]] = []
    stop = asyncio.Event()
    with LiveServer(create_app(settings)) as server:
        m = create_meeting(server)
        url = m["join_url"].replace(server.app.state.web.settings.base_url, server.base_url)
        ann, ben = Person("Ann"), Person("Ben")
        feed = asyncio.create_task(_live_cues(server, m, cues, stop))
        async with async_playwright() as pw:
            ann_browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ann_args)
            ben_browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ben_args)
            try:
                board = await ben_browser.new_page(viewport={"width": 1280, "height": 900})
                await board.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
                await board.wait_for_selector(".connection.live", timeout=15_000)
                await join(await ann_browser.new_context(), url, ann)
                await join(await ben_browser.new_context(), url, ben)
                await sees(ann, {"Ben"})
                await sees(ben, {"Ann"})
                await asyncio.sleep(max(0.0, ann.joined + TALK_STAY_S - time.perf_counter()))
                room = server.app.state.web.rooms.rooms[m["id"]]
                assert room.live()[ann.participant_id]["audio"] == "receiving"
                voice = room.participants[ann.participant_id].voice
                assert voice is not None
                ann_tile = board.locator(f'.tile[data-participant="{ann.participant_id}"] .talk-line')
                ben_tile = board.locator(f'.tile[data-participant="{ben.participant_id}"] .talk-line')
                await ann_tile.filter(has_text="micro-expressions not assessed").wait_for(timeout=10_000)
                ann_line, ben_line = await ann_tile.inner_text(), await ben_tile.inner_text()
                feed_flags = await board.locator(".feed-item.while-talking").count()
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await board.screenshot(path=str(ARTIFACTS / "builtin_talk_dashboard.png"), full_page=True)
            finally:
                await ann_browser.close()
                await ben_browser.close()
        stop.set()
        await feed
        summary = (await end_meeting(server, m))["summary"]
    people = {p["participant_id"]: p for p in summary["participants"]}
    tile_share = int(re.match(r"Talking (\d+)%: micro-expressions not assessed", ann_line).group(1))  # type: ignore[union-attr]
    ann_micro = [c for c in cues if c["type"] == "micro_expression" and c["participant_id"] == ann.participant_id]
    talk = _talk_intervals(cues, ann.participant_id, summary["duration_s"])
    flags = [
        ("while talking" in c["detail"], any(s < c["offset_s"] and c["onset_s"] < e for s, e in talk))
        for c in ann_micro
        if all(
            abs(c["onset_s"] - b) > FLAG_MARGIN_S and abs(c["offset_s"] - b) > FLAG_MARGIN_S
            for s, e in talk
            for b in (s, e)
        )
    ]
    record(
        f"talk: WAV share {share:.2f}; Ann's tile {ann_line!r}, summary {people[ann.participant_id]['talk_share']}; "
        f"Ben's tile {ben_line!r}, summary {people[ben.participant_id]['talk_share']}; Ann's micro signals "
        f"(while talking, overlapping talk): {flags}; flagged in the dashboard feed: {feed_flags}; "
        f"micro {[(c['onset_s'], c['offset_s'], c['detail']) for c in ann_micro]}; talk {talk}; "
        f"audio lost on the way (filled as silence): {voice.lost_samples / SAMPLE_RATE:.2f} s; {loadavg()}"
    )
    # the WAV's share, give or take the VAD's hysteresis and the minutes before the audio flowed
    assert abs(tile_share / 100 - share) < 0.2, (ann_line, share)
    assert abs(people[ann.participant_id]["talk_share"] - share) < 0.2, people[ann.participant_id]
    assert ben_line == "Not heard talking: micro-expressions assessed"
    assert people[ben.participant_id]["talk_share"] == 0.0 and people[ben.participant_id]["talk_time_s"] == 0.0
    assert flags, f"no micro-expression of Ann's was spotted away from a talk boundary: {ann_micro}"
    assert all(flag == overlapping for flag, overlapping in flags), flags
    assert any(flag for flag, _ in flags), f"none of Ann's micro-expressions came while she talked: {flags}, {talk}"
    assert feed_flags >= 1
