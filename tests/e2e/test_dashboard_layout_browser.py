"""The dashboard's layout at real screen sizes, and its room chart from the first cues (issue 25).

Debian's chromium (Playwright) renders a sales meeting with 1, 2, 6 and 12 participants at 1280,
1366 and 1920 px wide and on a 390-px phone: one server and one browser for the module, one
meeting per count, the viewport resized between widths. The cues are what a bridge worker
publishes: the analyser's 1 Hz streams (``inference.engagement.StreamCues``, which speak only on
change and repeat an unchanged value every 30 s) fed by faces that turn, blink and move.

The Janus bot's view of each person (consent "announced by the bot, not asked", "waiting for
video") comes from a running room, which this test has none of: the participants list is amended
in flight as a bot would report it, so the tiles carry their longest real texts.

Screenshots: tests/artifacts/dashboard_layout/, one PNG per count x width.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, Route, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from bridge.config import Settings
from bridge.store import repo
from inference.cues import Cue
from inference.engagement import EngagementInputs, StreamCues
from tests.live_server import LiveServer
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS, MIN_PIXEL_STDDEV, chromium_path, not_blank
from web.app import create_app

__all__ = ["chromium_path"]  # fixture used below
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

SHOTS = ARTIFACTS / "dashboard_layout"
#: The in-page checks (overflow, role picker, chart pixels), on window.layoutChecks.
CHECKS = Path(__file__).with_name("dashboard_layout_checks.js")
#: (width, height): the issue's laptop sizes, a full-HD screen and a phone (iPhone 12-15: 390 x 844).
VIEWPORTS = [(1280, 800), (1366, 850), (1920, 1080), (390, 844)]
COUNTS = [1, 2, 6, 12]
FPS = 10  # frames the analyser reads per second of each face
STREAM_S = 5.0  # seconds of cues per meeting: several 1 Hz periods
#: The first engagement cue must be on the chart within this many seconds (one room sample is 2 s).
FIRST_DRAW_S = 3.0
ROOM_SAMPLE_MS = 2000  # the dashboard's room sample period (web/static/dashboard.js)
#: Page time skipped after the last cue: longer than the 15 s after which the dashboard used to drop
#: a steady face, shorter than the streams' 30 s refresh (inference/engagement.py, REFRESH_S).
SILENT_MS = 20_000


@dataclass(frozen=True)
class Person:
    pid: str
    name: str
    consent: bool = True
    basis: str = "announced"  # what their consent rests on, as a Janus bot reports it
    video: str = "receiving"
    audio: str = "receiving"  # "no audio": the tile says when they talk is not known
    leaves_view_at: float | None = None  # seconds into the stream when their face leaves the camera


PEOPLE = [
    Person("p01", "Katherine Johnson-Whitfield"),
    Person("p02", "Grace Hopper", audio="no audio"),
    Person("p03", "Ada Lovelace", basis="asked"),
    Person("p04", "Alan Turing", leaves_view_at=3.0),
    Person("p05", "Hedy Lamarr", consent=False, basis="asked"),
    Person("p06", "Radia Perlman", video="waiting for video"),
    Person("p07", "Margaret Hamilton-Ostrowski", basis="asked"),
    Person("p08", "Tim Berners-Lee"),
    Person("p09", "Barbara Liskov"),
    Person("p10", "Donald Knuth"),
    Person("p11", "Frances Allen"),
    Person("p12", "Edsger W. Dijkstra"),
]


def analysed(people: list[Person]) -> list[Person]:
    """Those whose video the worker analyses: consented, and their video arrives."""
    return [p for p in people if p.consent and p.video == "receiving"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(data_dir=tmp_path_factory.mktemp("layout")))) as live:
        yield live


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    """One chromium for all sixteen layouts (each count gets its own page)."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def sales_meeting(server: LiveServer, people: list[Person]) -> dict[str, Any]:
    r = httpx.post(
        f"{server.base_url}/api/meetings",
        json={"title": f"Discovery call with {len(people)}", "kind": "sales", "context": "customer"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    m: dict[str, Any] = r.json()
    service = server.app.state.web.service

    async def join() -> None:
        async with service.sessions() as s:
            for p in people:
                await repo.add_participant(
                    session=s, meeting_id=m["id"], participant_id=p.pid, display_name=p.name, consent=p.consent
                )

    server.call(join())
    return m


async def as_a_bot_reports(page: Page, people: list[Person]) -> None:
    """Adds the running bot's view of each person to the participants list the page fetches."""
    by_id = {p.pid: p for p in people}

    async def amend(route: Route) -> None:
        response = await route.fetch()
        rows = await response.json()
        for row in rows:
            p = by_id[row["id"]]
            row["consent_basis"], row["video"], row["audio"] = p.basis, p.video, p.audio
        await route.fulfill(response=response, json=rows)

    await page.route("**/api/meetings/*/participants", amend)


def publish_streams(
    server: LiveServer, meeting_id: str, people: list[Person], first: threading.Event
) -> dict[str, float]:
    """Publishes, in real time, the cues a bridge worker sends for the analysed people; returns each
    one's last engagement value. ``first`` is set once the first engagement cue is on the bus."""
    faces = analysed(people)
    streams = {p.pid: StreamCues() for p in faces}
    last: dict[str, float] = {}
    seq = 0
    start = time.monotonic()
    for i in range(int(STREAM_S * FPS) + 1):
        t = i / FPS
        cues: list[Cue] = []
        if i == 0 and faces:
            seq += 1
            speaker = faces[0].pid
            cues.append(Cue(type="speaking", t=t, value=1.0, meeting_id=meeting_id, participant_id=speaker, seq=seq))
        for k, p in enumerate(faces):
            stream = streams[p.pid]
            stream.add_valence(t, 0.6 * math.sin(t / 1.5 + k))
            frame = EngagementInputs(
                t=t,
                present=p.leaves_view_at is None or t < p.leaves_view_at,
                yaw=28 * math.sin(0.9 * t + k),
                pitch=6 * math.cos(0.7 * t + k),
                eye_openness=0.19 + 0.03 * math.sin(3 * t + k),
                motion_px=0.8 + 0.6 * math.sin(t + k),
            )
            for cue in stream.push(frame):
                seq += 1
                cues.append(cue.stamped(meeting_id=meeting_id, participant_id=p.pid, seq=seq))
                if cue.type == "engagement" and cue.value is not None:
                    last[p.pid] = cue.value
        if cues:
            server.publish(*cues)
            if any(c.type == "engagement" for c in cues):
                first.set()
        time.sleep(max(0.0, start + t + 1 / FPS - time.monotonic()))
    return last


async def frames(page: Page, n: int = 3) -> None:
    """Lets the page lay out and paint ``n`` frames (a resize redraws the charts)."""
    await page.evaluate("(n) => layoutChecks.frames(n)", n)


async def chart(page: Page) -> dict[str, Any]:
    """The room chart's points and line pixels, and each tile's engagement sparkline points."""
    result: dict[str, Any] = await page.evaluate("() => layoutChecks.chart()")
    return result


@pytest.mark.parametrize("count", COUNTS)
async def test_tiles_fit_and_the_room_chart_draws(count: int, server: LiveServer, browser: Any, report: Any) -> None:
    people = PEOPLE[:count]
    m = sales_meeting(server, people)
    width, height = 1366, 850  # the screen
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.add_init_script(path=str(CHECKS))
    await as_a_bot_reports(page, people)
    await page.clock.install()  # time flows as usual until run_for jumps it ahead
    await page.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
    await page.wait_for_selector(".connection.live", timeout=10_000)
    await page.wait_for_function(f"() => document.querySelectorAll('#tiles .tile').length === {count}", timeout=10_000)

    caption = await page.locator("#room-caption").inner_text()
    assert "Mean engagement of the people in view" in caption and "last 5 min" in caption, caption
    assert await page.locator("#room-caption").is_visible()
    before = await chart(page)
    assert before["points"] == 0 and before["pixels"] == 0, f"the chart drew before any cue: {before}"

    first = threading.Event()
    feeder = asyncio.create_task(asyncio.to_thread(publish_streams, server, m["id"], people, first))
    assert await asyncio.to_thread(first.wait, 10), "no engagement cue was published"
    published = time.monotonic()
    await page.wait_for_function("() => layoutChecks.roomDraws()", timeout=FIRST_DRAW_S * 1000)
    first_draw_s = time.monotonic() - published
    last = await feeder

    # the room figure is the mean of the people in view: analysed, and their face still on camera
    in_view = [p for p in analysed(people) if p.leaves_view_at is None]
    await page.locator("#room-in-view").filter(has_text=f"{len(in_view)} of {count} in view").wait_for(timeout=5_000)
    expected = 100 * sum(last[p.pid] for p in in_view) / len(in_view)
    with contextlib.suppress(PlaywrightTimeout):  # the room is sampled every 2 s: the next sample has the last cues
        await page.wait_for_function(
            f"() => Math.abs(parseFloat(document.getElementById('room-value').textContent) - {expected}) <= 1",
            timeout=5_000,
        )
    shown = float((await page.locator("#room-value").inner_text()).rstrip("%"))
    assert abs(shown - expected) <= 1, f"room shows {shown}%, the mean of the people in view is {expected:.1f}%"

    # A steady face sends nothing new for up to 30 s (the streams speak on change): 20 s on, the
    # same people are still in view, the figure stands and the line has gone on.
    points = (await chart(page))["points"]
    await page.clock.run_for(SILENT_MS)
    await frames(page)
    assert await page.locator("#room-in-view").inner_text() == f"{len(in_view)} of {count} in view"
    assert await page.locator("#room-value").inner_text() == f"{shown:.0f}%"
    later = (await chart(page))["points"]
    assert later >= points + SILENT_MS // ROOM_SAMPLE_MS - 1, f"the room line stopped: {points} then {later} points"
    # the talk line: the first analysed person has talked since the first cue, the others not
    talk = {
        p.pid: await page.locator(f'.tile[data-participant="{p.pid}"] .talk-line').inner_text()
        for p in analysed(people)
    }
    speaker, *listeners = analysed(people)
    assert talk[speaker.pid] == "Talking 100%: micro-expressions not assessed", talk
    for p in listeners:
        expected_line = (
            "No audio: talking not known" if p.audio == "no audio" else "Not heard talking: micro-expressions assessed"
        )
        assert talk[p.pid] == expected_line, talk

    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in VIEWPORTS:
        where = f"{count} people at {width} px"
        await page.set_viewport_size({"width": width, "height": height})
        await frames(page)
        layout = await page.evaluate("() => layoutChecks.layout()")
        assert layout["tiles"] == count, where
        assert layout["problems"] == [], f"{where}:\n" + "\n".join(layout["problems"])
        drawn = await chart(page)
        assert drawn["points"] >= 2 and drawn["pixels"] >= 20, f"{where}: the room chart is empty: {drawn}"
        flat = [pid for pid, n in drawn["sparks"] if pid in last and n < 2]
        assert flat == [], f"{where}: engagement sparklines without a line: {flat} ({drawn['sparks']})"
        shot = SHOTS / f"{count:02d}people_{width}px.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert not_blank(shot) > MIN_PIXEL_STDDEV, f"{shot} looks blank"
    assert errors == []
    await page.close()
    report(f"dashboard layout, {count} people: room chart drawn {first_draw_s:.2f} s after the first engagement cue")
