"""Debian's chromium for the browser tests: its path, the flags this closed network needs, a
Playwright browser fixture, and the checks on what a page showed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from playwright.async_api import async_playwright

from tests.support.rooms import write_y4m

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps calling home, which this network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # tests/artifacts
#: Per-channel standard deviation below which a screenshot counts as blank (a flat page is ~0).
MIN_PIXEL_STDDEV = 10.0


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def not_blank(png: Path) -> float:
    """The largest per-channel standard deviation of a screenshot (0 for a flat page)."""
    stat = ImageStat.Stat(Image.open(png).convert("RGB"))
    return float(max(stat.stddev))


def fake_camera_args(folder: Path) -> list[str]:
    """Chromium flags for a participant whose camera plays a real face (a Y4M written in ``folder``)."""
    y4m = folder / "face.y4m"
    if not y4m.exists():
        write_y4m(y4m)
    return [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    ]
