"""Janus's own VideoRoom demo page (Debian's ``janus-demos``) served from loopback, so chromium
participants publish into a real Janus room exactly as people do with the demo.

The page is served from a folder of links to ``/usr/share/janus/demos`` with one file of our
own, ``settings.js``, pointing at the test's Janus (WebSocket transport) with no token and no
API secret."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DEMOS = Path("/usr/share/janus/demos")
REPO = Path(__file__).resolve().parents[2]


def demo_folder(folder: Path, janus_url: str) -> Path:
    if not (DEMOS / "videoroomtest.html").exists():
        if os.geteuid() == 0:
            subprocess.run(["bash", "scripts/system-deps.sh", "janus-demos"], cwd=REPO, check=True, timeout=600)
        else:
            pytest.fail("Janus's demo pages are not installed: run `make system-deps` (Debian's janus-demos)")
    folder.mkdir(parents=True, exist_ok=True)
    for entry in DEMOS.iterdir():
        if entry.name != "settings.js":
            (folder / entry.name).symlink_to(entry)
    (folder / "settings.js").write_text(
        f'var server = "{janus_url}";\nvar iceServers = null;\nvar token = null;\nvar apisecret = null;\n'
    )
    return folder


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@functools.cache
def _handler(directory: str) -> Any:
    return functools.partial(_Quiet, directory=directory)


def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) until the generator is closed."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, name="janus-demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def publish(context: Any, base: str, name: str, room: int) -> Any:
    """Open the demo page, join ``room`` as ``name`` and wait until the camera is published."""
    page = await context.new_page()
    await page.goto(f"{base}/videoroomtest.html?room={room}")
    await page.click("#start")
    await page.wait_for_selector("#username:visible", timeout=30_000)
    await page.fill("#username", name)
    await page.click("#register")
    # the demo shows the local video once Janus answered the publish offer
    await page.wait_for_function(
        "() => { const v = document.querySelector('#videolocal video'); return v && v.videoWidth > 0; }",
        timeout=60_000,
    )
    return page
