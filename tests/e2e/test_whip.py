"""WHIP ingest (RFC 9725) with a WHIP client nobody here wrote: medooze's ``whip-whep`` 1.2.0
(npm, fetched by ``scripts/test-clients.sh``) in Debian's chromium, publishing a fake camera that
shows a real face. Its offer carries no candidates: they arrive trickled over PATCH, so this
proves trickle too. The publisher holds a role-bound invitation and becomes a buyer; its cues
reach the live feed; ICE restarts are refused with 422 as RFC 9725 section 4.3.1 asks of a
session without them; DELETE (the client's ``stop()``) makes it leave with presence 0.
Runs in a private network namespace like every WebRTC test.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from playwright.async_api import async_playwright

from bridge.config import Settings
from tests.live_server import LiveServer
from tests.support.browser import ARTIFACTS, CHROMIUM, fake_camera_args
from web.app import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CLIENTS = Path(os.environ.get("MICROCUE_TEST_CLIENTS", Path.home() / ".cache/microcue/npm"))
WHIP_JS = CLIENTS / "whip-whep@1.2.0/node_modules/whip-whep/whip.js"

PAGE = """<!doctype html><meta charset="utf-8"><title>WHIP publisher</title>
<script type="module">
import { WHIPClient } from "./whip.js";
window.publish = async (url, token) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const client = new WHIPClient();
  await client.publish(pc, url, token);
  window.whip = client;
  window.pc = pc;
  return client.resourceURL.href;
};
window.ready = true;
</script>"""


@pytest.fixture
def whip_page(tmp_path: Path) -> Iterator[str]:
    """The third-party client and a page that uses it, served from another origin on 127.0.0.1."""
    if not WHIP_JS.exists():
        pytest.fail(f"{WHIP_JS} is missing: run scripts/test-clients.sh (make test-clients) first")
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(WHIP_JS, site / "whip.js")
    (site / "index.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_third_party_whip_client_publishes_a_participant(netns: str, tmp_path: Path, whip_page: str) -> None:

    args = fake_camera_args(tmp_path)
    with LiveServer(create_app(Settings(data_dir=tmp_path / "data"))) as server:
        api = httpx.AsyncClient(base_url=server.base_url, timeout=30)
        m = (await api.post("/api/meetings", json={"title": "WHIP", "kind": "sales", "context": "customer"})).json()
        presenter = {"Authorization": f"Bearer {m['presenter_token']}"}
        invite = await api.post(f"/api/meetings/{m['id']}/participants", headers=presenter, json={"role": "buyer"})
        token = invite.json()["join_token"]
        endpoint = f"{server.base_url}/whip/{m['id']}?consent=yes&name=OBS%20Ana"
        feed = f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}"
        async with async_playwright() as pw, websockets.connect(feed) as live:
            assert json.loads(await live.recv())["type"] == "snapshot"
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = await browser.new_page()
                await page.goto(whip_page)
                await page.wait_for_function("window.ready === true")
                resource = await page.evaluate("([u, t]) => window.publish(u, t)", [endpoint, token])
                assert resource.startswith(f"{server.base_url}/whip/{m['id']}/")
                people = (await api.get(f"/api/meetings/{m['id']}/participants", headers=presenter)).json()
                assert [(p["display_name"], p["role"], p["consent"]) for p in people] == [("OBS Ana", "buyer", True)]
                pid = people[0]["id"]
                seen: set[str] = set()
                async with asyncio.timeout(120):
                    while not {"presence", "engagement"} <= seen:
                        msg = json.loads(await live.recv())
                        if msg["type"] == "cue" and msg["cue"]["participant_id"] == pid:
                            seen.add(msg["cue"]["type"])
                assert await page.evaluate("window.pc.connectionState") == "connected"

                # RFC 9725 4.3.1: trickle works, restarts do not -> 422; a stale ETag -> 412
                bearer = {"Authorization": f"Bearer {token}"}
                frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
                body = "a=ice-ufrag:new1\r\na=ice-pwd:newnewnewnewnewnewnewnew\r\n"
                restart = await api.patch(resource, headers={**bearer, **frag, "If-Match": "*"}, content=body)
                assert restart.status_code == 422 and "restart" in restart.json()["detail"]
                stale = await api.patch(resource, headers={**bearer, **frag, "If-Match": '"nope"'}, content="")
                assert stale.status_code == 412
                # a trickled candidate with the session's own ICE credentials and ETag is taken (204)
                local = (await page.evaluate("window.pc.localDescription.sdp")).splitlines()
                ufrag = next(line for line in local if line.startswith("a=ice-ufrag:"))
                pwd = next(line for line in local if line.startswith("a=ice-pwd:"))
                fragment = (
                    f"{ufrag}\r\n{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
                    "a=candidate:1 1 udp 2122260223 10.254.0.1 50000 typ host\r\n"
                )
                etag = await page.evaluate("window.whip.etag")
                taken = await api.patch(resource, headers={**bearer, **frag, "If-Match": etag}, content=fragment)
                assert taken.status_code == 204, taken.text
                wrong_type = await api.patch(resource, headers={**bearer, "Content-Type": "text/plain"}, content="")
                assert wrong_type.status_code == 415
                other = (await api.post(f"/api/meetings/{m['id']}/participants", headers=presenter)).json()
                theirs = await api.delete(resource, headers={"Authorization": f"Bearer {other['join_token']}"})
                assert theirs.status_code == 403  # another participant cannot end this session

                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "whip_publisher.png"))
                await page.evaluate("window.whip.stop()")  # DELETE on the session
                async with asyncio.timeout(30):
                    while True:
                        msg = json.loads(await live.recv())
                        cue: dict[str, Any] = msg.get("cue") or {}
                        if cue.get("participant_id") == pid and cue["type"] == "presence" and cue["value"] == 0:
                            break
                people = (await api.get(f"/api/meetings/{m['id']}/participants", headers=presenter)).json()
                assert people[0]["left_at"] is not None
                assert (await api.delete(resource, headers=bearer)).status_code == 404  # already ended

                # a publisher that goes without DELETE (its connection closed) leaves too
                second = await page.evaluate(
                    "([u, t]) => window.publish(u, t)", [endpoint.replace("OBS%20Ana", "Gone"), token]
                )
                people = (await api.get(f"/api/meetings/{m['id']}/participants", headers=presenter)).json()
                gone = next(p["id"] for p in people if p["display_name"] == "Gone")
                async with asyncio.timeout(60):  # analysed: presence 1
                    while True:
                        msg = json.loads(await live.recv())
                        cue = msg.get("cue") or {}
                        if cue.get("participant_id") == gone and cue["type"] == "presence" and cue["value"] == 1:
                            break
                await page.evaluate("window.pc.close()")  # no DELETE
                async with asyncio.timeout(60):
                    while True:
                        msg = json.loads(await live.recv())
                        cue = msg.get("cue") or {}
                        if cue.get("participant_id") == gone and cue["type"] == "presence" and cue["value"] == 0:
                            break
                async with asyncio.timeout(10):
                    while (await api.delete(second, headers=bearer)).status_code != 404:  # the session is gone
                        await page.wait_for_timeout(100)
                people = (await api.get(f"/api/meetings/{m['id']}/participants", headers=presenter)).json()
                assert next(p for p in people if p["id"] == gone)["left_at"] is not None
            finally:
                await browser.close()
                await api.aclose()
