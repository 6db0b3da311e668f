"""The dashboard in a real browser: Debian's chromium (headless) through Playwright, against a
real uvicorn on 127.0.0.1; cues are published on the app's bus as a bridge worker would.

Screenshots land in tests/artifacts/ (git-ignored) and must not be blank.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.config import Settings
from bridge.store import repo
from inference.cues import Cue
from tests.live_server import LiveServer
from tests.support.browser import ARTIFACTS, MIN_PIXEL_STDDEV, browser, chromium_path, not_blank
from web.app import create_app

__all__ = ["browser", "chromium_path"]  # fixtures used by the tests below
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


PEOPLE = [
    ("p1", "Ada Lovelace", True),
    ("p2", "Grace Hopper", True),
    ("p3", "Alan Turing", True),
    ("p4", "Katherine Johnson", False),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as live:
        yield live


def create_meeting(server: LiveServer, context: str) -> dict[str, Any]:
    r = httpx.post(
        f"{server.base_url}/api/meetings",
        json={"title": "Quarterly pitch", "kind": "sales", "context": context},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def add_people(server: LiveServer, meeting_id: str) -> None:
    service = server.app.state.web.service

    async def join() -> None:
        async with service.sessions() as s:
            for pid, name, consent in PEOPLE:
                await repo.add_participant(
                    session=s, meeting_id=meeting_id, participant_id=pid, display_name=name, consent=consent
                )

    server.call(join())


def stream_cues(
    server: LiveServer,
    meeting_id: str,
    seconds: float,
    *,
    rate_hz: float = 4.0,
    start_t: float = 0.0,
    expressions: bool = True,
) -> float:
    """Plausible cues for the three consenting people, in real time: what a bridge would publish."""
    seq = int(start_t * 100)
    steps = int(seconds * rate_hz)
    t = start_t
    for step in range(steps):
        t = start_t + step / rate_hz
        cues: list[Cue] = []
        for k, (pid, _, consent) in enumerate(PEOPLE):
            if not consent:
                continue
            seq += 1
            engagement = 0.62 + 0.22 * math.sin(t / 6 + k * 1.7) - 0.05 * k
            cues.append(
                Cue(
                    type="engagement",
                    t=t,
                    value=max(0.0, min(1.0, engagement)),
                    confidence=0.9,
                    meeting_id=meeting_id,
                    participant_id=pid,
                    seq=seq,
                )
            )
            seq += 1
            cues.append(
                Cue(
                    type="sentiment",
                    t=t,
                    value=0.45 * math.sin(t / 9 + k),
                    meeting_id=meeting_id,
                    participant_id=pid,
                    seq=seq,
                )
            )
            seq += 1
            cues.append(
                Cue(
                    type="attention",
                    t=t,
                    value=0.7 + 0.2 * math.cos(t / 5 + k),
                    meeting_id=meeting_id,
                    participant_id=pid,
                    seq=seq,
                )
            )
            seq += 1
            cues.append(
                Cue(
                    type="presence",
                    t=t,
                    value=0.0 if (pid == "p3" and t > 5) else 1.0,
                    meeting_id=meeting_id,
                    participant_id=pid,
                    seq=seq,
                )
            )
            if pid == "p2":
                seq += 1
                cues.append(Cue(type="speaking", t=t, value=1.0, meeting_id=meeting_id, participant_id=pid, seq=seq))
        if expressions and step % int(rate_hz * 1.5) == 2:
            pid = PEOPLE[(step // 3) % 3][0]
            emotion = ("surprise", "happiness", "contempt", "disgust")[(step // 5) % 4]
            aus = {
                "surprise": ("AU1", "AU2", "AU5"),
                "happiness": ("AU6", "AU12"),
                "contempt": ("AU14R",),
                "disgust": ("AU9", "AU10"),
            }[emotion]
            seq += 1
            cues.append(
                Cue(
                    type="micro_expression",
                    t=t,
                    onset_s=t - 0.28,
                    apex_s=t - 0.16,
                    offset_s=t,
                    emotion=emotion,  # type: ignore[arg-type]
                    aus=aus,
                    confidence=0.55 + 0.1 * (step % 4),
                    valence=0.0,
                    meeting_id=meeting_id,
                    participant_id=pid,
                    seq=seq,
                )
            )
        server.publish(*cues)
        time.sleep(1 / rate_hz)
    return t


def assert_not_blank(path: Path) -> float:
    spread = not_blank(path)
    assert spread > MIN_PIXEL_STDDEV, f"screenshot {path} looks blank (stddev {spread})"
    return spread


async def test_dashboard_shows_tiles_and_micro_expressions(server: LiveServer, browser: Any, report: Any) -> None:
    m = create_meeting(server, "customer")
    add_people(server, m["id"])
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    started = time.monotonic()
    await page.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
    await page.wait_for_selector(".connection.live", timeout=10_000)
    feeder = asyncio.create_task(asyncio.to_thread(stream_cues, server, m["id"], 9.0))
    tile = page.locator('.tile[data-participant="p1"]')
    await tile.wait_for(timeout=10_000)
    entry = page.locator(".feed-item").first
    await entry.wait_for(timeout=10_000)
    first_cue_visible_s = time.monotonic() - started
    await feeder
    await page.wait_for_timeout(600)  # a couple of render frames and one room sample

    assert await tile.locator(".name").inner_text() == "Ada Lovelace"
    assert await tile.locator(".consent").inner_text() == "consented"
    assert "%" in await tile.locator(".engagement .metric-value").inner_text()
    assert await page.locator('.tile[data-participant="p4"] .consent').inner_text() == "declined"
    assert "absent" in (await page.locator('.tile[data-participant="p3"] .face').get_attribute("class") or "")
    text = await entry.inner_text()
    assert "signal" in text.lower() and "confidence" in text.lower()
    assert "truth" not in text.lower()
    assert "signal" in (await page.locator("#feed-caveat").inner_text()).lower()
    assert await page.locator("#policy-banner").is_hidden()
    assert "%" in await page.locator("#room-value").inner_text()
    assert errors == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard_customer.png"
    await page.screenshot(path=str(shot), full_page=True)
    stddev = assert_not_blank(shot)
    report(
        f"dashboard e2e: tile and micro-expression visible {first_cue_visible_s:.1f} s after page load; "
        f"screenshot {shot.name} stddev {stddev:.1f}"
    )


async def test_workplace_dashboard_shows_policy_and_no_emotions(server: LiveServer, browser: Any) -> None:
    m = create_meeting(server, "workplace")
    add_people(server, m["id"])
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
    await page.wait_for_selector(".connection.live", timeout=10_000)
    await asyncio.to_thread(stream_cues, server, m["id"], 4.0)
    await page.locator('.tile[data-participant="p1"] .engagement .metric-value').filter(has_text="%").wait_for()
    banner = page.locator("#policy-banner")
    assert await banner.is_visible()
    assert "does not infer emotions" in await banner.inner_text()
    assert await page.locator(".feed-item").count() == 0
    assert await page.locator('.tile[data-participant="p1"] .sentiment').is_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard_workplace.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(shot)


async def test_dashboard_token_leaves_the_address_bar_and_a_reload_still_works(
    server: LiveServer, browser: Any
) -> None:
    """The token shows during screen sharing and lands in the history while it is in the URL."""
    m = create_meeting(server, "customer")
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
    await page.wait_for_selector(".connection.live", timeout=10_000)
    assert "token" not in page.url and page.url.endswith(f"/meetings/{m['id']}/dashboard")
    await page.reload()
    await page.wait_for_selector(".connection.live", timeout=10_000)
    assert "token" not in page.url


async def test_dashboard_shows_reconnecting_and_recovers(tmp_path: Path, browser: Any) -> None:
    """The server goes away and comes back on the same port: the page says so, then goes live again."""
    settings = Settings(data_dir=tmp_path)
    first = LiveServer(create_app(settings)).start()
    port = first.port
    m = create_meeting(first, "customer")
    page = await browser.new_page()
    await page.goto(f"{first.base_url}/meetings/{m['id']}/dashboard?token={m['presenter_token']}")
    await page.wait_for_selector(".connection.live", timeout=10_000)
    await asyncio.to_thread(first.stop)
    await page.wait_for_selector(".connection.reconnecting", timeout=10_000)
    assert "Reconnecting" in await page.locator("#connection").inner_text()
    second = LiveServer(create_app(settings), port=port).start()
    try:
        await page.wait_for_selector(".connection.live", timeout=20_000)
    finally:
        await asyncio.to_thread(second.stop)


async def test_refused_link_is_explained(server: LiveServer, browser: Any) -> None:
    m = create_meeting(server, "customer")
    page = await browser.new_page()
    response = await page.goto(f"{server.base_url}/meetings/{m['id']}/dashboard?token=wrong")
    assert response is not None and response.status == 401
    assert "invalid token" in (await page.inner_text("body")).lower()


def test_chromium_is_debians(chromium_path: str) -> None:
    assert shutil.which("chromium") == chromium_path or Path(chromium_path).exists()


async def test_alert_when_several_people_dip_together(server: LiveServer, browser: Any) -> None:
    """Two of three participants drop in engagement at once: the calm alert appears (fake page clock,
    so 50 s of meeting take a few real seconds)."""
    m = create_meeting(server, "customer")
    add_people(server, m["id"])
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.clock.install()
    await page.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
    await page.wait_for_selector(".connection.live", timeout=10_000)
    seq = 0

    async def step(t: float, values: dict[str, float], advance_ms: int) -> None:
        nonlocal seq
        cues = []
        for pid, value in values.items():
            seq += 1
            cues.append(Cue(type="engagement", t=t, value=value, meeting_id=m["id"], participant_id=pid, seq=seq))
        server.publish(*cues)
        await asyncio.sleep(0.25)  # real time: the messages reach the page
        await page.clock.run_for(advance_ms)

    t = 0.0
    for _ in range(8):  # 40 s of steady attention
        await step(t, {"p1": 0.8, "p2": 0.8, "p3": 0.8}, 5000)
        t += 5
    assert await page.locator("#alert").is_hidden()
    for _ in range(4):  # two people drop together, the third does not
        await step(t, {"p1": 0.3, "p2": 0.25, "p3": 0.8}, 2000)
        t += 2
    alert = page.locator("#alert")
    assert await alert.is_visible()
    text = await alert.inner_text()
    assert "Engagement dipped for 2 of 3 people" in text
    assert "Ada Lovelace" in text and "Grace Hopper" in text and "Alan Turing" not in text
    assert "dipping" in (await page.locator('.tile[data-participant="p1"]').get_attribute("class") or "")
    assert "dipping" not in (await page.locator('.tile[data-participant="p3"]').get_attribute("class") or "")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard_dip_alert.png"), full_page=True)


async def test_no_dip_alert_while_people_settle_in(server: LiveServer, browser: Any) -> None:
    """The first seconds of a meeting (people turning to the camera, settling) are no baseline: the
    same drop that raises the alert after 40 s of steady attention raises none 16 s in."""
    m = create_meeting(server, "customer")
    add_people(server, m["id"])
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.clock.install()
    await page.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
    await page.wait_for_selector(".connection.live", timeout=10_000)
    seq = 0
    t = 0.0
    for values in [{"p1": 0.85, "p2": 0.85, "p3": 0.85}] * 4 + [{"p1": 0.3, "p2": 0.25, "p3": 0.8}] * 6:
        cues = []
        for pid, value in values.items():
            seq += 1
            cues.append(Cue(type="engagement", t=t, value=value, meeting_id=m["id"], participant_id=pid, seq=seq))
        server.publish(*cues)
        await asyncio.sleep(0.25)
        await page.clock.run_for(2000)
        t += 2
        assert await page.locator("#alert").is_hidden(), f"a dip alert {t:.0f} s into the meeting"
    assert "dipping" not in (await page.locator('.tile[data-participant="p1"]').get_attribute("class") or "")


async def test_join_page_discloses_and_hands_consent_to_the_webrtc_hook(server: LiveServer, browser: Any) -> None:
    m = create_meeting(server, "education")
    url = m["join_url"].replace(server.app.state.web.settings.base_url, server.base_url)
    page = await browser.new_page()
    await page.goto(url)
    await page.wait_for_selector("#disclosure:not([hidden])")
    inferred = await page.locator("#inferred").inner_text()
    assert "engagement" in inferred and "micro-expressions" not in inferred
    assert "micro-expressions" in await page.locator("#not-inferred").inner_text()
    assert "an education meeting" in await page.locator("#notice").inner_text()
    await page.click("#join-decline")
    # the real WebRTC hook runs: this browser has no camera, which the page says plainly
    await page.wait_for_selector("#status:has-text('Could not join')", timeout=10_000)

    # The WebRTC part plugs in as window.MicroCueJoin and receives the participant's choice.
    hooked = await browser.new_page()
    await hooked.add_init_script("window.MicroCueJoin = {start: async (o) => { window.__joined = o; }};")
    await hooked.goto(url)
    await hooked.wait_for_selector("#disclosure:not([hidden])")
    await hooked.fill("#display-name", "Ada")
    await hooked.click("#join-decline")
    joined = await hooked.evaluate("window.__joined")
    assert joined["consent"] is False and joined["displayName"] == "Ada"
    assert joined["meetingId"] == m["id"] and joined["signalUrl"] == f"/ws/rooms/{m['id']}/signal"
    assert joined["token"] == m["join_url"].split("token=")[1]
