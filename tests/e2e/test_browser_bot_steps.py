"""The browser bot's recipe engine in Debian's chromium, on a page with a chat box: it types its
name, joins, posts its announcement in the chat (the recipe names a chat box here, unlike the
Janus demo), shows its card as camera with the microphone muted, and leaves when the page shows
the recipe's "ended" element. No meeting media is involved (the Janus demo test covers that)."""

from __future__ import annotations

import asyncio
import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.errors import MicroCueError
from bridge.rooms.browser import ANNOUNCEMENT, BrowserBot, Recipe, Step
from tests.support.browser import chromium_path
from tests.support.chat_meeting import PAGE, RECIPE
from tests.support.sessions import run_own_session

__all__ = ["chromium_path"]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]
#: Chromium starts, joins and leaves in 2-5 s here; a hang shows as this whole limit.
SCENARIO_TIMEOUT_S = 90


@pytest.fixture
def chat_page(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "index.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_bot_announces_in_chat_keeps_mic_muted_and_leaves_when_the_call_ends(
    chromium_path: str, chat_page: str
) -> None:
    bot = BrowserBot(
        chat_page, RECIPE, whip_url="http://127.0.0.1:9/whip/none", join_token="unused", executable=chromium_path
    )
    running = asyncio.create_task(bot.run())
    try:
        async with asyncio.timeout(60):
            await bot.joined.wait()
        assert await bot.in_page(lambda page: page.evaluate("window.joinedAs")) == "MicroCue notetaker"
        assert await bot.in_page(lambda page: page.locator("#log li").all_inner_texts()) == [ANNOUNCEMENT]
        assert await bot.in_page(lambda page: page.evaluate("window.mic.enabled")) is False  # the mic is muted
        # the card is its camera (it plays once the first frame is decoded)
        await bot.in_page(
            lambda page: page.wait_for_function("document.getElementById('me').videoWidth === 640", timeout=10_000)
        )
        assert bot.workdir is not None and (bot.workdir / "card.y4m").exists()
        workdir = bot.workdir
        await bot.in_page(lambda page: page.click("#hangup"))  # the page ends the call: the bot leaves on its own
        async with asyncio.timeout(30):
            await running
        assert not workdir.exists()  # its scratch folder (card, profile) is gone with it
    finally:
        if not running.done():
            running.cancel()


async def test_a_page_the_bot_cannot_join_is_a_clear_error_and_leaves_no_browser(
    chromium_path: str, chat_page: str
) -> None:
    """The recipe's first step waits for a box this page does not have: ``run()`` raises on the
    caller's loop (the error crosses from the bot's browser thread) and chromium is gone."""
    missing = Recipe(
        name="test-missing",
        description="a box the page lacks",
        steps=(Step("fill", "#nobody", "{name}"),),
        tile="div",
        participant_name="#who",
    )
    bot = BrowserBot(
        chat_page, missing, whip_url="http://127.0.0.1:9/whip/none", join_token="-", executable=chromium_path
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("bridge.rooms.browser.STEP_TIMEOUT_S", 2.0)
        with pytest.raises(MicroCueError, match=r"(?s)could not join .* with recipe 'test-missing'.*#nobody"):
            async with asyncio.timeout(60):
                await bot.run()
    assert not bot.joined.is_set()
    assert bot.workdir is not None and not bot.workdir.exists()  # scratch folder removed, chromium with it
    with pytest.raises(MicroCueError, match="not in a meeting page"):
        await bot.in_page(lambda page: page.title())


def test_bot_starts_chromium_from_a_uvloop_service_whose_threads_hold_scalers(
    chromium_path: str, chat_page: str
) -> None:
    """The service runs on uvloop, whose subprocess spawn ran the interpreter's after-fork code in
    the child (uvloop issue 749): with a decoding thread's scaler in thread-local storage, the
    child hung before exec, and the spawning process with it. The bot must join and leave anyway."""
    argv = [sys.executable, "-m", "tests.support.uvloop_bot", chat_page, chromium_path]
    # its own session, so a hang is killed with the half-forked child it leaves behind
    proc, hung = run_own_session(argv, cwd=REPO, timeout_s=SCENARIO_TIMEOUT_S)
    if hung:
        pytest.fail(f"the uvloop service hung for {SCENARIO_TIMEOUT_S} s while its bot started chromium")
    assert proc.returncode == 0 and proc.stdout.strip() == "left", (
        f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
