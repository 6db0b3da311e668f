"""The post-meeting report in a real browser: Debian's chromium (headless) through Playwright,
against a real uvicorn serving the app; the meeting's cues went through the bus and the store
writer. The page must render (screenshot not blank) and print to PDF (at least one page).

Screenshots and PDFs land in tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.config import Settings
from bridge.store import repo
from tests.live_server import LiveServer
from tests.support.browser import ARTIFACTS, MIN_PIXEL_STDDEV, browser, chromium_path, not_blank
from tests.support.cues import sales_call
from tests.support.pdf import MIN_PDF_BYTES, pdf_pages
from web.app import create_app

__all__ = ["browser", "chromium_path"]  # fixtures used by the tests below
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: A printed report with charts is far larger than an empty PDF (~1 kB).


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as live:
        yield live


def ended_meeting(server: LiveServer, context: str) -> tuple[str, str]:
    """A sales call with a rep and a buyer, cues through the bus and the store writer, then ended."""
    r = httpx.post(
        f"{server.base_url}/api/meetings",
        json={"title": "Discovery call, Acme Corp", "kind": "sales", "context": context},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    mid, token = r.json()["id"], r.json()["presenter_token"]
    service = server.app.state.web.service

    async def people() -> None:
        async with service.sessions() as s:
            for pid, name, role in (("rep", "Rita Rep", "rep"), ("buyer", "Ben Buyer", "buyer")):
                await repo.add_participant(
                    session=s, meeting_id=mid, participant_id=pid, display_name=name, role=role, consent=True
                )

    async def stored() -> int:
        async with service.sessions() as s:
            return len(await repo.cues_for_meeting(session=s, meeting_id=mid))

    server.call(people())
    cues = sales_call(mid)
    server.publish(*cues)
    deadline = time.monotonic() + 15
    # kinds the meeting's policy withholds (workplace: emotions) are dropped by the writer, counted
    while server.call(stored()) + service.writer.withheld < len(cues):
        assert time.monotonic() < deadline, "the store writer did not write every cue"
        time.sleep(0.05)
    r = httpx.post(
        f"{server.base_url}/api/meetings/{mid}/end", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    return mid, token


@pytest.mark.parametrize("context", ["customer", "workplace"])
async def test_report_renders_and_prints(server: LiveServer, browser: Any, context: str) -> None:
    mid, token = ended_meeting(server, context)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(req.url))
    response = await page.goto(f"{server.base_url}/api/meetings/{mid}/report.html?token={token}")
    assert response is not None and response.status == 200
    await page.wait_for_load_state("networkidle")
    assert failed == []
    assert await page.locator("h1").inner_text() == "Discovery call, Acme Corp"
    charts = await page.locator(".chart svg").count()
    heading = page.get_by_role("heading", name="Sales-call coaching")
    assert await heading.count() == 1
    if context == "customer":
        assert charts == 4  # engagement, sentiment, activity, talk time
        assert await page.locator(".tips li").count() >= 3
        assert await page.get_by_text("Hesitation moments").count() == 1
    else:
        assert charts == 3  # no sentiment chart
        assert await page.get_by_text("No emotion figures", exact=False).count() == 1
        assert await page.get_by_text("Hesitation moments (").count() == 0
    # Every chart has a real size on screen.
    for box in [await page.locator(".chart svg").nth(i).bounding_box() for i in range(charts)]:
        assert box is not None and box["width"] > 500 and box["height"] > 80

    png = ARTIFACTS / f"report_{context}.png"
    await page.screenshot(path=str(png), full_page=True)
    assert not_blank(png) > MIN_PIXEL_STDDEV, f"{png} looks blank"

    pdf = ARTIFACTS / f"report_{context}.pdf"
    await page.emulate_media(media="print")
    await page.pdf(path=str(pdf), format="A4", print_background=True)
    assert pdf.stat().st_size > MIN_PDF_BYTES
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pdf_pages(pdf) >= 1
    await page.close()
