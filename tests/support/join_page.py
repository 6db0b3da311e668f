"""A person on the built-in room's join page in chromium: joining as a new user would (open the
link, type a name, consent) and what their page shows of the others' video. Shared by the browser
room tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.browser import ARTIFACTS

#: what a page reports about the others' video it shows: name, size, and pixel spread
PAGE_VIDEOS = """() => [...document.querySelectorAll('#remote-media figure.remote-slot')]
  .filter((f) => !f.hidden && f.querySelector('video'))
  .map((f) => {
    const v = f.querySelector('video');
    const c = document.createElement('canvas');
    c.width = 64; c.height = 48;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0, 64, 48);
    const px = g.getImageData(0, 0, 64, 48).data;
    let n = 0, s = 0, s2 = 0;
    for (let i = 0; i < px.length; i += 4) { const y = (px[i] + px[i + 1] + px[i + 2]) / 3; n++; s += y; s2 += y * y; }
    const mean = s / n;
    return { name: f.dataset.name, width: v.videoWidth, height: v.videoHeight, paused: v.paused,
             frames: v.getVideoPlaybackQuality().totalVideoFrames,
             stddev: Math.sqrt(Math.max(0, s2 / n - mean * mean)) };
  })"""
#: a face on camera is far from flat; a black or frozen-grey frame is ~0
MIN_STDDEV = 10.0


@dataclass
class Person:
    name: str
    page: Any = None
    participant_id: str = ""
    joined: float = 0.0  # perf_counter at the click
    left: float | None = None
    console: list[str] = field(default_factory=list)  # the page's console, for failure messages
    samples: list[tuple[float, int]] = field(default_factory=list)  # (perf_counter, analysed)


async def start_join(context: Any, url: str, person: Person) -> Any:
    """Open the join link in a new page, type the name and consent; the page, still joining."""
    person.page = page = await context.new_page()
    page.on("console", lambda msg: person.console.append(f"{msg.type}: {msg.text}"))
    await page.goto(url)
    await page.wait_for_selector("#disclosure:not([hidden])")
    await page.fill("#display-name", person.name)
    person.joined = time.perf_counter()
    await page.click("#join-consent")
    return page


async def join(context: Any, url: str, person: Person) -> None:
    """Join as a new user would, until the page says they are in the meeting."""
    page = await start_join(context, url, person)
    await page.wait_for_selector("#status:has-text('You are in the meeting')", timeout=60_000)
    person.participant_id = await page.evaluate("window.MicroCueJoin.session.participantId")


async def sees(person: Person, others: set[str], timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Wait until the page shows exactly ``others``' video, playing and not flat."""
    deadline = time.monotonic() + timeout_s
    while True:
        videos = await person.page.evaluate(PAGE_VIDEOS)
        good = {v["name"] for v in videos if v["width"] > 0 and v["stddev"] > MIN_STDDEV}
        if good == others and len(videos) == len(others):
            return list(videos)
        if time.monotonic() > deadline:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await person.page.screenshot(path=str(ARTIFACTS / f"builtin_{person.name}_missing.png"), full_page=True)
            raise AssertionError(f"{person.name}'s page shows {videos}, expected the video of {sorted(others)}")
        await asyncio.sleep(0.5)
