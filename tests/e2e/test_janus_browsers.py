"""The service's bot in a real Janus VideoRoom with chromium participants publishing from Janus's
own demo page (Debian's janus-demos), each a real face on chromium's fake camera. Three people
each time: the bot joins last (the case that lost a person), the bot joins first and then one
person leaves and comes back. Checked: every publisher analysed steadily and evenly from 3 s after
the bot subscribed or they joined (the 10-fps target is judged by bench/browser_rooms.py, which runs
these tests); the presenter's dashboard (in chromium) shows the Janus display
names and the consent state that governs analysis; the summary uses the names."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright

from bridge.config import Settings
from tests.live_server import LiveServer
from tests.support import janus_demo
from tests.support.browser import ARTIFACTS, CHROMIUM, fake_camera_args
from tests.support.janus import PORT, ROOM, JanusServer
from tests.support.rates import check_steady_and_fair, loadavg, longest_stall, rate, record
from tests.support.rooms import create_meeting
from tests.support.waiting import wait_until
from web.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
pytest_plugins = ["tests.support.janus"]

#: analysis is judged from this long after subscribing / joining (the issue's "within 3 s")
WITHIN_S = 3.0
#: the window over which the rate is measured, after WITHIN_S
RATE_WINDOW_S = 6.0
NAMES = ("Alice", "Bob", "Cy")
#: In-page layout and chart checks shared with test_dashboard_layout_browser.py.
LAYOUT_CHECKS = Path(__file__).with_name("dashboard_layout_checks.js")


@pytest.fixture
def demo(janus: JanusServer, tmp_path: Path) -> Iterator[str]:
    gen = janus_demo.serve(janus_demo.demo_folder(tmp_path / "demo", janus.url))
    base = next(gen)
    yield base
    gen.close()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:

    args = fake_camera_args(tmp_path)
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield b
        finally:
            await b.close()


class Room:
    """The service with one meeting, its bot in the Janus room, and a sampler of the bot's counters."""

    def __init__(self, server: LiveServer, janus: JanusServer) -> None:
        self.server, self.janus = server, janus
        self.m = create_meeting(server)
        self.auth = {"Authorization": f"Bearer {self.m['presenter_token']}"}
        self.samples: dict[str, list[tuple[float, int]]] = {}  # display -> (perf_counter, analysed)
        self.ids: dict[str, str] = {}  # display -> participant id (the last one with that name)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def send_bot(self) -> float:
        r = await asyncio.to_thread(
            httpx.post,
            f"{self.server.base_url}/api/meetings/{self.m['id']}/bot",
            json={"janus": self.janus.url, "room": ROOM},
            headers=self.auth,
            timeout=60,
        )
        assert r.status_code == 202, r.text
        self._task = asyncio.create_task(self._sample())
        return time.perf_counter()

    def adapter(self) -> Any:
        running = self.server.app.state.web.bots.bots.get(self.m["id"])
        return running[0] if running else None

    async def _sample(self) -> None:
        while not self._stop.is_set():
            adapter = self.adapter()
            now = time.perf_counter()
            for pid, p in list(adapter.participants.items()) if adapter else []:
                key = f"{p.display}#{pid}"
                self.ids[p.display] = pid
                self.samples.setdefault(key, []).append((now, p.video.stats.analysed))
            await asyncio.sleep(0.5)

    def measure(self, display: str, since: float) -> tuple[float, float]:
        """Analysed frames per second of ``display``'s current feed in [since + WITHIN_S, + RATE_WINDOW_S],
        and the longest stall in it."""
        samples = self.samples.get(f"{display}#{self.ids[display]}", [])
        start, end = since + WITHIN_S, since + WITHIN_S + RATE_WINDOW_S
        return round(rate(samples, start, end), 1), longest_stall(samples, start, end)

    async def wait_window(self, since: float) -> None:
        await asyncio.sleep(max(0.0, since + WITHIN_S + RATE_WINDOW_S + 0.6 - time.perf_counter()))

    async def check_dashboard(self, browser: Any, expected: set[str]) -> None:
        """The presenter's view of this real meeting at the screen issue 25 was found on (1366 x 850):
        Janus names and the consent basis on every tile, every tile's content inside it with its
        labelled role picker, and the room engagement chart drawn from the live cues."""
        page = await browser.new_page(viewport={"width": 1366, "height": 850})
        await page.add_init_script(path=str(LAYOUT_CHECKS))
        try:
            await page.goto(
                self.m["dashboard_url"].replace(self.server.app.state.web.settings.base_url, self.server.base_url)
            )
            for name in expected:
                tile = page.locator(".tile", has=page.locator(".name", has_text=name)).first
                await tile.wait_for(timeout=30_000)
                consent = tile.locator(".consent")
                await consent.filter(has_text="announced by the bot, not asked").wait_for(timeout=15_000)
            names = set(await page.locator(".tile:not(.away) .name").all_inner_texts())
            assert expected <= names, names
            assert not any(n.startswith("Participant ") for n in names), names
            await page.wait_for_function("() => layoutChecks.roomDraws()", timeout=30_000)
            layout = await page.evaluate("() => layoutChecks.layout()")
            assert layout["problems"] == [], "\n".join(layout["problems"])
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "janus_dashboard_names.png"), full_page=True)
        finally:
            await page.close()

    async def summary_names(self) -> set[str]:
        await self.stop()
        r = await asyncio.to_thread(
            httpx.post, f"{self.server.base_url}/api/meetings/{self.m['id']}/end", headers=self.auth, timeout=60
        )
        assert r.status_code == 200, r.text
        body = (
            await asyncio.to_thread(
                httpx.get, f"{self.server.base_url}/api/meetings/{self.m['id']}/summary", headers=self.auth, timeout=60
            )
        ).json()
        return {p["display_name"] for p in body["summary"]["participants"]}

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None


@pytest.fixture
async def room(janus: JanusServer, netns: str, tmp_path: Path) -> AsyncIterator[Room]:
    with LiveServer(create_app(Settings(data_dir=tmp_path / "data", join_allow=f"{netns}:{PORT}"))) as server:
        r = Room(server, janus)
        try:
            yield r
        finally:
            await r.stop()


async def test_bot_joining_last_analyses_everyone_already_there(room: Room, demo: str, browser: Any) -> None:
    context = await browser.new_context()
    for name in NAMES:
        await janus_demo.publish(context, demo, name, ROOM)
    await asyncio.sleep(10)  # people talk for a while before the bot comes in
    subscribed = await room.send_bot()
    await room.wait_window(subscribed)
    measured = {name: room.measure(name, subscribed) for name in NAMES}
    rates, stalls = {n: r for n, (r, _) in measured.items()}, {n: s for n, (_, s) in measured.items()}
    stats = {
        p.display: {k: v for k, v in p.stats().items() if "latency" not in k}
        for p in room.adapter().participants.values()
    }
    record(
        f"bot joined last: analysed fps {rates}; longest stall {max(stalls.values()):.1f} s; {loadavg()}; "
        f"stats {stats}",
        scenario="Janus bot joining last",
        rates=rates,
    )
    assert all(s["received"] > 0 for s in stats.values()), stats  # nobody lost (was: 0 frames for one)
    await room.check_dashboard(browser, set(NAMES))
    assert set(NAMES) <= await room.summary_names()
    check_steady_and_fair(rates, stalls)


async def test_bot_joining_first_follows_people_who_come_leave_and_return(room: Room, demo: str, browser: Any) -> None:
    await room.send_bot()
    await asyncio.wait_for(room.server.app.state.web.bots.bots[room.m["id"]][0].connected.wait(), 30)
    context = await browser.new_context()
    pages, joined = {}, {}
    for name in NAMES:
        pages[name] = await janus_demo.publish(context, demo, name, ROOM)
        joined[name] = time.perf_counter()
    await room.wait_window(joined[NAMES[-1]])
    measured = {name: room.measure(name, joined[name]) for name in NAMES}
    # Bob leaves (closes the page), then comes back in a new page: a new Janus feed
    old_bob = room.ids["Bob"]
    await pages["Bob"].close()
    adapter = room.adapter()
    deadline = time.monotonic() + 30
    while adapter.participants[old_bob].video.attached:
        assert time.monotonic() < deadline, "the bot did not notice Bob leaving"
        await asyncio.sleep(0.2)
    pages["Bob"] = await janus_demo.publish(context, demo, "Bob", ROOM)
    back = time.perf_counter()
    # Janus announces the new feed and the bot subscribes: seconds on a loaded box, not a fixed 1 s
    await wait_until(lambda: room.ids["Bob"] != old_bob, 30, "the bot to take Bob's new feed")
    await room.wait_window(back)
    measured["Bob (back)"] = room.measure("Bob", back)
    rates, stalls = {n: r for n, (r, _) in measured.items()}, {n: s for n, (_, s) in measured.items()}
    stats = {
        f"{p.display}#{pid}": {k: v for k, v in p.stats().items() if "latency" not in k}
        for pid, p in room.adapter().participants.items()
    }
    record(
        f"bot joined first: analysed fps {rates}; longest stall {max(stalls.values()):.1f} s; {loadavg()}; "
        f"stats {stats}",
        scenario="Janus bot joining first",
        rates=rates,
    )
    assert room.adapter().participants[room.ids["Bob"]].video.stats.received > 0, stats
    await room.check_dashboard(browser, set(NAMES))
    assert set(NAMES) <= await room.summary_names()
    check_steady_and_fair(rates, stalls)
