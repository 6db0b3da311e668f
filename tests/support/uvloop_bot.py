"""A service on uvloop whose decoding threads hold PyAV scalers sends a browser bot into a page:
``python -m tests.support.uvloop_bot PAGE_URL CHROMIUM`` prints ``left`` once the bot joined and
left. Run as its own process by ``tests/e2e/test_browser_bot_steps.py``: where the spawn of
chromium's driver hangs, it hangs with the GIL held, and only a process can be timed out and killed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys

import av
import numpy as np

from bridge import eventloop
from bridge.rooms.browser import BrowserBot
from tests.support.chat_meeting import RECIPE


def scale_a_frame_in_this_thread() -> None:
    """What a decoding thread does to each frame: PyAV keeps the scaler, with its slice threads,
    in this thread's thread-local storage."""
    frame = av.VideoFrame.from_ndarray(np.zeros((480, 640, 3), np.uint8), format="rgb24")
    frame.reformat(width=320, height=240, format="yuv420p")


async def service(page_url: str, chromium: str) -> None:
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(2) as decoders:
        await asyncio.gather(*(loop.run_in_executor(decoders, scale_a_frame_in_this_thread) for _ in range(4)))
        bot = BrowserBot(page_url, RECIPE, whip_url="http://127.0.0.1:9/whip/none", join_token="-", executable=chromium)
        running = asyncio.create_task(bot.run())
        async with asyncio.timeout(60):
            await bot.joined.wait()
        await bot.aclose()
        async with asyncio.timeout(30):
            await running


if __name__ == "__main__":
    eventloop.run(service(sys.argv[1], sys.argv[2]))
    print("left", flush=True)
