"""Roles from the dashboard drive sales coaching: in Debian's chromium (Playwright) the presenter
sets "rep" and "buyer" on two tiles of a sales call whose participants joined as plain
participants; the live coaching panel and then the post-meeting report name the rep and the buyer.
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
from web.app import create_app

__all__ = ["browser", "chromium_path"]  # fixtures used by the tests below
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as live:
        yield live


def running_call(server: LiveServer) -> dict[str, Any]:
    """A sales call whose two people joined without a role; their cues are stored."""
    r = httpx.post(
        f"{server.base_url}/api/meetings",
        json={"title": "Discovery call", "kind": "sales", "context": "customer"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    m: dict[str, Any] = r.json()
    service = server.app.state.web.service

    async def people() -> None:
        async with service.sessions() as s:
            for pid, name in (("rep", "Rita Seller"), ("buyer", "Ben Client")):
                await repo.add_participant(
                    session=s, meeting_id=m["id"], participant_id=pid, display_name=name, consent=True
                )

    async def stored() -> int:
        async with service.sessions() as s:
            return len(await repo.cues_for_meeting(session=s, meeting_id=m["id"]))

    server.call(people())
    cues = sales_call(m["id"])
    server.publish(*cues)
    deadline = time.monotonic() + 15
    while server.call(stored()) < len(cues):
        assert time.monotonic() < deadline, "the store writer did not write every cue"
        time.sleep(0.05)
    return m


async def test_roles_set_on_tiles_drive_the_coaching(server: LiveServer, browser: Any) -> None:
    m = running_call(server)
    mid, token = m["id"], m["presenter_token"]
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(m["dashboard_url"].replace(server.app.state.web.settings.base_url, server.base_url))
    await page.wait_for_selector(".connection.live", timeout=10_000)
    roles = page.locator("#coaching-roles")
    await roles.filter(has_text="needs at least one participant with role 'rep'").wait_for(timeout=10_000)

    await page.locator('.tile[data-participant="rep"] select.role').select_option("rep")
    await page.locator('.tile[data-participant="rep"][data-role="rep"]').wait_for(timeout=10_000)
    await page.locator('.tile[data-participant="buyer"] select.role').select_option("buyer")
    await roles.filter(has_text="Rep: Rita Seller · buyer: Ben Client").wait_for(timeout=15_000)
    assert "67:33" in await page.locator("#coaching-figure").inner_text()  # sales_call's talk share
    assert await page.locator("#coaching-tips li").count() >= 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTIFACTS / "dashboard_roles.png"
    await page.screenshot(path=str(png), full_page=True)
    assert not_blank(png) > MIN_PIXEL_STDDEV, f"{png} looks blank"

    api = httpx.AsyncClient(
        base_url=f"{server.base_url}/api/meetings/{mid}", timeout=30, headers={"Authorization": f"Bearer {token}"}
    )
    people = (await api.get("/participants")).json()
    assert {p["id"]: p["role"] for p in people} == {"rep": "rep", "buyer": "buyer"}
    r = await api.post("/end")
    assert r.status_code == 200, r.text

    report = await browser.new_page(viewport={"width": 1100, "height": 900})
    response = await report.goto(f"{server.base_url}/api/meetings/{mid}/report.html?token={token}")
    assert response is not None and response.status == 200
    named = await report.locator("#coaching-roles").inner_text()
    assert await report.locator("#coaching-roles .rep").inner_text() == "Rita Seller", named
    assert await report.locator("#coaching-roles .buyer").inner_text() == "Ben Client", named
    assert await report.locator(".tips li").count() >= 3

    # a role changed after the meeting ended: the stored summary is stale and the report follows
    swap = await api.patch("/participants/rep", json={"role": "buyer"})
    assert swap.status_code == 200, swap.text
    await api.aclose()
    await report.reload()
    assert await report.get_by_text("coaching needs at least one participant with role 'rep'").count() == 1
    await page.close()
    await report.close()
