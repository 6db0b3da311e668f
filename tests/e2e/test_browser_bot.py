"""The browser bot against a third-party meeting UI that runs offline: Janus's own VideoRoom demo
page (``videoroomtest.html`` from Debian's janus-demos) next to a real Janus, all inside a private
network namespace. Two aiortc publishers show a real face in the room; the presenter asks for a
bot with ``{"page", "recipe"}``; Debian's chromium joins the page under the bot's name with its
card as camera, forwards each publisher over WHIP, and each gets cues under the display name
the page shows. A publisher leaves -> presence 0; the bot is recalled -> chromium exits.

The demo's ``settings.js`` (janus-demos 1.1.2) never defines ``token`` and ``apisecret``, which
the page reads; the test serves the package's files as they are, except a ``settings.js`` that
points at the test's Janus and sets both to null. The page is served from ``localhost`` because
it calls getUserMedia, which needs a secure context.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import websockets

from bridge.config import Settings
from tests.live_server import LiveServer
from tests.support.janus import PORT, JanusServer, Publisher
from web.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
pytest_plugins = ["tests.support.janus"]

DEMOS = Path("/usr/share/janus/demos")
REPO = Path(__file__).resolve().parents[2]
#: How long the bot may take from the API call to cues for everyone (chromium start, page, WHIP).
FIRST_CUES_S = 120


class _DemoHandler(http.server.SimpleHTTPRequestHandler):
    settings_js = b""

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/settings.js":
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(self.settings_js)))
            self.end_headers()
            self.wfile.write(self.settings_js)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def demo_page(janus: JanusServer) -> Iterator[str]:
    """videoroomtest.html served from localhost, its settings.js pointing at the test's Janus."""
    if not (DEMOS / "videoroomtest.html").exists():
        pytest.fail(f"{DEMOS}/videoroomtest.html is missing: install Debian's janus-demos (make system-deps)")
    settings = (
        f'var server = "ws://{janus.addr}:{PORT}";\nvar iceServers = null;\nvar token = null;\nvar apisecret = null;\n'
    )
    handler = type("Handler", (_DemoHandler,), {"settings_js": settings.encode()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(DEMOS)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}/videoroomtest.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _chromium_running(workdir: Path) -> list[int]:
    """Processes whose command line names the bot's scratch folder (its card file): its chromium."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(workdir).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


async def test_browser_bot_joins_the_janus_demo_page_and_forwards_each_publisher(
    janus: JanusServer,
    publishers: list[Publisher],
    face_yuv: list[np.ndarray],
    demo_page: str,
    netns: str,
    tmp_path: Path,
) -> None:
    for feed, name in ((101, "Alice"), (102, "Bob")):
        publisher = Publisher(janus.url, feed, name, face_yuv)
        publishers.append(publisher)
        await publisher.start()
    bob = publishers[1]
    port = _free_port()
    page_port = urlsplit(demo_page).port
    # host:port pairs; localhost resolves to loopback, which must be listed as itself (bridge/targets.py)
    allow = f"localhost:{page_port},127.0.0.1:{page_port},[::1]:{page_port}"
    settings = Settings(data_dir=tmp_path / "data", join_allow=allow, port=port)
    with LiveServer(create_app(settings), port=port) as server:
        api = httpx.AsyncClient(base_url=f"{server.base_url}/api/meetings", timeout=60)
        m = (await api.post(server.base_url + "/api/meetings", json={"title": "Demo", "context": "customer"})).json()
        auth = {"Authorization": f"Bearer {m['presenter_token']}"}
        feed = f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}"
        async with websockets.connect(feed) as live:
            assert json.loads(await live.recv())["type"] == "snapshot"
            bad = await api.post(f"/{m['id']}/bot", headers=auth, json={"page": demo_page, "recipe": "zoom-magic"})
            assert bad.status_code == 422 and "no recipe 'zoom-magic'" in bad.text
            r = await api.post(f"/{m['id']}/bot", headers=auth, json={"page": demo_page, "recipe": "janus-videoroom"})
            assert r.status_code == 202, r.text
            assert r.json()["detail"] == {"status": "joining", "kind": "page"}
            bot = server.app.state.web.bots.running(m["id"])
            assert bot is not None

            names: dict[str, str] = {}  # participant id -> display name
            seen: dict[str, set[str]] = {}
            async with asyncio.timeout(FIRST_CUES_S):
                while set(names.values()) != {"Alice", "Bob"} or any(
                    not {"presence", "engagement"} <= seen.get(pid, set()) for pid in names
                ):
                    msg = json.loads(await live.recv())
                    if msg["type"] == "cue":
                        seen.setdefault(msg["cue"]["participant_id"], set()).add(msg["cue"]["type"])
                        if msg["cue"]["participant_id"] not in names:
                            people = (await api.get(f"/{m['id']}/participants", headers=auth)).json()
                            names = {p["id"]: p["display_name"] for p in people}
            by_name = {v: k for k, v in names.items()}
            assert bot.workdir is not None and _chromium_running(bot.workdir), "chromium should be running"
            forwarded = await asyncio.to_thread(server.call, bot.forwarded())  # on the server's loop
            assert sorted(forwarded["forwarded"]) == ["Alice", "Bob"], forwarded

            await bob.stop()  # Bob leaves the Janus room: the page hangs up, the bot stops forwarding him
            async with asyncio.timeout(60):
                while True:
                    msg = json.loads(await live.recv())
                    cue: dict[str, Any] = msg.get("cue") or {}
                    if cue.get("participant_id") == by_name["Bob"] and cue["type"] == "presence" and cue["value"] == 0:
                        break

            workdir = bot.workdir
            recalled = await api.delete(f"/{m['id']}/bot", headers=auth)
            assert recalled.status_code == 200, recalled.text
            assert not _chromium_running(workdir), "recalling the bot waits for its chromium to close"
            # Alice's forward ended with the bot: she leaves the MicroCue meeting too
            async with asyncio.timeout(30):
                while True:
                    msg = json.loads(await live.recv())
                    cue = msg.get("cue") or {}
                    if cue.get("participant_id") == by_name["Alice"] and cue["type"] == "presence":
                        assert cue["value"] == 0
                        break
            assert (await api.delete(f"/{m['id']}/bot", headers=auth)).status_code == 404  # nothing left to recall

            # sent again, then the meeting ends: the bot leaves with it
            r = await api.post(f"/{m['id']}/bot", headers=auth, json={"page": demo_page, "recipe": "janus-videoroom"})
            assert r.status_code == 202, r.text
            again = server.app.state.web.bots.running(m["id"])
            # the event belongs to the server's loop: wait for it there
            await asyncio.to_thread(server.call, asyncio.wait_for(again.joined.wait(), 60), 70)
            assert again.workdir is not None and _chromium_running(again.workdir)
            assert (await api.post(f"/{m['id']}/end", headers=auth)).status_code == 200
            assert not _chromium_running(again.workdir), "ending the meeting waits for the bot's chromium to close"
        await api.aclose()


async def test_join_page_command_prints_cues_and_leaves_when_the_page_ends_the_call(
    janus: JanusServer,
    publishers: list[Publisher],
    face_yuv: list[np.ndarray],
    demo_page: str,
    netns: str,
    tmp_path: Path,
) -> None:
    """``microcue join --page URL --recipe janus-videoroom``: cues of both publishers on stdout; Janus
    goes away, the demo page shows its error dialog (the recipe's "ended"), and the command ends on
    its own long before ``--duration``."""
    for feed, name in ((201, "Carol"), (202, "Dave")):
        publisher = Publisher(janus.url, feed, name, face_yuv)
        publishers.append(publisher)
        await publisher.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "web.cli",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(_free_port()),
        "join",
        "--context",
        "customer",
        "--page",
        demo_page,
        "--recipe",
        "janus-videoroom",
        "--duration",
        "240",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    present: set[str] = set()
    try:
        async with asyncio.timeout(FIRST_CUES_S):
            while len(present) < 2:
                line = await proc.stdout.readline()
                assert line, (await proc.stderr.read()).decode()[-3000:]
                cue = json.loads(line)
                if cue["type"] == "presence" and cue["value"] == 1:
                    present.add(cue["participant_id"])
        janus.kill()  # the meeting server goes away: the page ends the call
        async with asyncio.timeout(90):
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    assert code == 0, err[-3000:]
    assert "participant " in err and ": Carol" in err and ": Dave" in err, err[-3000:]
    assert "report:" in err
    assert "the page ended the call" in err, err[-3000:]
