"""The HTTP API through the real app (lifespan, bus, store writer), on SQLite and on PostgreSQL.

Each PostgreSQL run gets a database of its own (``microcue_api_<random>``), dropped afterwards.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from bridge.config import Settings
from bridge.store import repo
from bridge.targets import JoinTarget
from inference.cues import Cue
from tests.live_server import LiveServer
from tests.support.postgres import database_settings
from web.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
pytest_plugins = ["tests.support.service"]


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    yield from database_settings(request.param, tmp_path / "data", "microcue_api")


def create(client: httpx.Client, context: str = "customer", **extra: Any) -> dict[str, Any]:
    r = client.post("/api/meetings", json={"title": "Pitch", "kind": "sales", "context": context, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_meeting_lifecycle(client: httpx.Client, server: LiveServer, settings: Settings) -> None:
    m = create(client)
    mid, token = m["id"], m["presenter_token"]
    assert m["dashboard_url"] == f"{settings.base_url}/meetings/{mid}/dashboard?token={token}"
    assert m["join_url"].startswith(f"{settings.base_url}/join/{mid}?token=")
    join_token = m["join_url"].split("token=")[1]
    assert join_token != token

    got = client.get(f"/api/meetings/{mid}", headers=bearer(token))
    assert got.status_code == 200 and got.json()["kind"] == "sales"
    assert got.json()["policy"]["emotions_allowed"] is True
    # ?token= works as well as the header (links opened in a browser).
    assert client.get(f"/api/meetings/{mid}?token={token}").status_code == 200

    # Cues published on the bus reach the store through the app's writer.
    service = server.app.state.web.service
    cue = Cue(type="engagement", t=1.0, value=0.7, meeting_id=mid, participant_id="p1", seq=1)
    server.call(service.bus.publish(cue))

    async def stored() -> int:
        async with service.sessions() as s:
            return len(await repo.cues_for_meeting(session=s, meeting_id=mid))

    deadline = time.monotonic() + 10
    while server.call(stored()) < 1:
        assert time.monotonic() < deadline, "the store writer never wrote the published cue"
        time.sleep(0.05)

    # The live feed's snapshot (seeded from this database) shows it.
    with ws_connect(f"{server.ws_url}/ws/meetings/{mid}/live?token={token}") as ws:
        snapshot = json.loads(ws.recv(timeout=10))
    assert snapshot["participants"][0]["latest"]["engagement"]["value"] == 0.7

    # The app installs the summaries feature's hook: computed on demand while running, stored at the end.
    summary = client.get(f"/api/meetings/{mid}/summary", headers=bearer(token))
    assert summary.status_code == 200 and isinstance(summary.json()["summary"], dict)
    ended = client.post(f"/api/meetings/{mid}/end", headers=bearer(token))
    assert ended.status_code == 200 and ended.json()["ended_at"] is not None
    again = client.post(f"/api/meetings/{mid}/end", headers=bearer(token))
    assert again.json()["ended_at"] == ended.json()["ended_at"]  # idempotent
    summary = client.get(f"/api/meetings/{mid}/summary", headers=bearer(token))
    assert summary.status_code == 200 and summary.json()["meeting_id"] == mid

    # A build without summaries answers 404 with the reason.
    service.summary_hook = None
    m2 = create(client)
    summary = client.get(f"/api/meetings/{m2['id']}/summary", headers=bearer(m2["presenter_token"]))
    assert summary.status_code == 404 and "when the meeting ends" in summary.json()["detail"]
    client.post(f"/api/meetings/{m2['id']}/end", headers=bearer(m2["presenter_token"]))
    summary = client.get(f"/api/meetings/{m2['id']}/summary", headers=bearer(m2["presenter_token"]))
    assert summary.status_code == 404 and "not available in this build" in summary.json()["detail"]

    # Whatever hook is installed is called at the end, and what it stored is served.
    m3 = create(client)

    async def summarise(meeting_id: str) -> None:
        async with service.sessions() as s:
            await repo.save_summary(session=s, meeting_id=meeting_id, body={"engagement_mean": 0.5})

    service.summary_hook = summarise
    client.post(f"/api/meetings/{m3['id']}/end", headers=bearer(m3["presenter_token"]))
    got_summary = client.get(f"/api/meetings/{m3['id']}/summary", headers=bearer(m3["presenter_token"]))
    assert got_summary.status_code == 200 and got_summary.json()["summary"] == {"engagement_mean": 0.5}

    erased = client.delete(f"/api/meetings/{mid}", headers=bearer(token))
    assert erased.status_code == 200
    assert erased.json()["rows"]["cues"] == 1 and erased.json()["rows"]["tokens"] == 2
    # The token went with the meeting.
    assert client.get(f"/api/meetings/{mid}", headers=bearer(token)).status_code == 401


def test_participants_invitations(client: httpx.Client, server: LiveServer) -> None:
    m = create(client)
    mid, token = m["id"], m["presenter_token"]
    r = client.post(f"/api/meetings/{mid}/participants", headers=bearer(token))
    assert r.status_code == 201
    link = r.json()
    assert link["join_url"].endswith(f"/join/{mid}?token={link['join_token']}")
    # The join token opens the join page and its info, never presenter endpoints.
    analysis = server.app.state.web.analysis
    assert client.get(f"/join/{mid}?token={token}").status_code == 403
    assert not analysis.preload_started  # a refused page loads nothing
    assert client.get(f"/join/{mid}?token={link['join_token']}").status_code == 200
    assert analysis.preload_started  # the models load while the participant reads the disclosure
    info = client.get(f"/api/join/{mid}?token={link['join_token']}")
    assert info.status_code == 200 and info.json()["title"] == "Pitch"
    assert client.get(f"/api/meetings/{mid}", headers=bearer(link["join_token"])).status_code == 403
    assert client.get(f"/api/join/{mid}?token={token}").status_code == 403  # presenter token is not a join token

    service = server.app.state.web.service

    async def joined() -> None:
        async with service.sessions() as s:
            await repo.add_participant(session=s, meeting_id=mid, participant_id="p1", display_name="Ada", consent=True)

    server.call(joined())
    people = client.get(f"/api/meetings/{mid}/participants", headers=bearer(token)).json()
    assert [(p["id"], p["display_name"], p["consent"]) for p in people] == [("p1", "Ada", True)]

    client.post(f"/api/meetings/{mid}/end", headers=bearer(token))
    late = client.post(f"/api/meetings/{mid}/participants", headers=bearer(token))
    assert late.status_code == 409 and "ended" in late.json()["detail"]


def test_presenter_endpoints_refuse_missing_wrong_and_participant_tokens(client: httpx.Client) -> None:
    a, b = create(client), create(client)
    join_a = a["join_url"].split("token=")[1]
    calls = [
        ("GET", f"/api/meetings/{a['id']}"),
        ("POST", f"/api/meetings/{a['id']}/end"),
        ("GET", f"/api/meetings/{a['id']}/summary"),
        ("GET", f"/api/meetings/{a['id']}/participants"),
        ("POST", f"/api/meetings/{a['id']}/participants"),
        ("DELETE", f"/api/meetings/{a['id']}"),
    ]
    for method, path in calls:
        missing = client.request(method, path)
        assert missing.status_code == 401, (method, path)
        assert "missing token" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        unknown = client.request(method, path, headers=bearer("not-a-token"))
        assert unknown.status_code == 401 and "invalid token" in unknown.json()["detail"]
        other = client.request(method, path, headers=bearer(b["presenter_token"]))
        assert other.status_code == 403 and "another meeting" in other.json()["detail"]
        participant = client.request(method, f"{path}?token={join_a}")
        assert participant.status_code == 403 and "join token cannot be used" in participant.json()["detail"]
    # Nothing above ended or erased meeting a.
    assert client.get(f"/api/meetings/{a['id']}", headers=bearer(a["presenter_token"])).json()["ended_at"] is None
    # The dashboard page itself refuses bad links with a readable page.
    page = client.get(f"/meetings/{a['id']}/dashboard?token={b['presenter_token']}")
    assert page.status_code == 403 and "another meeting" in page.text
    assert client.get(f"/meetings/{a['id']}/dashboard").status_code == 401
    ok = client.get(f"/meetings/{a['id']}/dashboard?token={a['presenter_token']}")
    assert ok.status_code == 200 and ok.headers["referrer-policy"] == "no-referrer"


def test_create_validates_the_request(client: httpx.Client) -> None:
    bad = [
        {"title": "x"},  # context is required: it decides what may be inferred
        {"title": "", "context": "customer"},
        {"title": "x" * 201, "context": "customer"},
        {"title": "x", "context": "party"},
        {"title": "x", "context": "customer", "kind": "webinar"},
        {"title": "x", "context": "customer", "unexpected": 1},
    ]
    for body in bad:
        r = client.post("/api/meetings", json=body)
        assert r.status_code == 422, body
        assert r.json()["detail"][0]["msg"]


def test_oversized_bodies_are_refused_before_reading(client: httpx.Client) -> None:
    big = b'{"title": "' + b"x" * 100_000 + b'", "context": "customer"}'
    r = client.post("/api/meetings", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"title": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'", "context": "customer"}'

    r = client.post("/api/meetings", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_api_key_guards_creation_and_bots(settings: Settings) -> None:
    # 192.0.2.10 (TEST-NET-1, RFC 5737) is not public: allowed only because it is listed itself
    keyed = settings.model_copy(update={"api_key": "operator-key", "join_allow": "192.0.2.10:8188"})
    with LiveServer(create_app(keyed)) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        body = {"title": "x", "context": "customer"}
        r = client.post("/api/meetings", json=body)
        assert r.status_code == 401 and "MICROCUE_API_KEY" in r.json()["detail"]
        assert client.post("/api/meetings", json=body, headers=bearer("wrong")).status_code == 401
        m = client.post("/api/meetings", json=body, headers=bearer("operator-key")).json()
        assert client.post("/api/meetings", json=body, headers={"X-API-Key": "operator-key"}).status_code == 201

        bot = f"/api/meetings/{m['id']}/bot"
        janus = {"janus": "ws://192.0.2.10:8188", "room": 1234}
        # Presenter token without the key, and the key without the token: both refused.
        assert client.post(bot, json=janus, headers=bearer(m["presenter_token"])).status_code == 401
        assert client.post(bot, json=janus, headers=bearer("operator-key")).status_code == 401
        # Both (key as header, token as query): allowed host, but no bridge hook (a web-only process).
        server.app.state.web.service.bot_hook = None
        r = client.post(f"{bot}?token={m['presenter_token']}", json=janus, headers=bearer("operator-key"))
        assert r.status_code == 501 and r.json()["detail"] == "bot joining not available in this build"
        headers = {**bearer(m["presenter_token"]), "X-API-Key": "operator-key"}
        # Host not on the allow-list.
        r = client.post(bot, json={"janus": "ws://evil.example:8188", "room": 1}, headers=headers)
        assert r.status_code == 403 and "MICROCUE_JOIN_ALLOW" in r.json()["detail"]
        # WHEP is not built: 501 whatever the host, since nothing would connect anywhere.
        r = client.post(bot, json={"whep": "https://evil.example/whep/1"}, headers=headers)
        assert r.status_code == 501 and "WHEP is not built yet" in r.json()["detail"]
        # Invalid bodies.
        for invalid in (
            {},
            {"janus": "ws://janus.example:8188"},
            {"janus": "http://192.0.2.10:8188", "room": 1},  # only ws/wss: never a 500 from the adapter
            {"whep": "ftp://janus.example/x"},
            {"janus": "ws://janus.example", "room": 1, "whep": "https://janus.example/w"},
        ):
            assert client.post(bot, json=invalid, headers=headers).status_code == 422, invalid

        # The service's own bots: WHEP is not built (501, nothing loaded); a page host must be allowed too.
        server.app.state.web.service.bot_hook = server.app.state.web.bots
        r = client.post(bot, json={"whep": "https://janus.example/whep/1"}, headers=headers)
        assert r.status_code == 501 and "WHEP is not built yet" in r.json()["detail"]
        r = client.post(bot, json={"page": "https://meet.evil.example/r", "recipe": "janus-videoroom"}, headers=headers)
        assert r.status_code == 403 and "MICROCUE_JOIN_ALLOW" in r.json()["detail"]

        # With the bridge's hook installed the request reaches it.
        seen: list[tuple[str, JoinTarget]] = []

        async def join(meeting_id: str, target: JoinTarget) -> dict[str, Any]:
            seen.append((meeting_id, target))
            return {"worker": "bridge-1"}

        server.app.state.web.service.bot_hook = join
        r = client.post(bot, json=janus, headers=headers)
        assert r.status_code == 202 and r.json()["detail"] == {"worker": "bridge-1"}
        # the hook gets the address the check resolved: the bot connects there, not to a new DNS answer
        assert seen == [
            (m["id"], JoinTarget(kind="janus", url="ws://192.0.2.10:8188", room=1234, address="192.0.2.10"))
        ]


def test_health_ready_metrics_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] and ready.json()["bus"]
    text = client.get("/metrics").text
    for name in (
        "microcue_participants",
        "microcue_analysed_frames_total",
        "microcue_dropped_frames",
        "microcue_websocket_clients",
        "microcue_bus_lag_seconds",
        "microcue_store_written_cues_total",
    ):
        assert name in text, name
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/meetings",
        "/api/meetings/{meeting_id}/end",
        "/api/meetings/{meeting_id}/summary",
        "/api/meetings/{meeting_id}/bot",
        "/api/meetings/{meeting_id}/participants",
        "/healthz",
    ):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_readyz_says_not_ready_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens on port 1: the engine is created lazily, so the app starts and readiness fails.
    settings = Settings(data_dir=tmp_path, database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with LiveServer(create_app(settings, apply_migrations=False)) as server:
        r = httpx.get(f"{server.base_url}/readyz", timeout=30)
        assert r.status_code == 503
        assert r.json() == {
            "status": "not ready",
            "database": False,
            "bus": True,
            "bus_kind": "InProcessBus",
            "bus_connected": None,
        }
        assert httpx.get(f"{server.base_url}/healthz", timeout=30).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _microcue(*args: str) -> list[str]:
    return [sys.executable, "-m", "web.cli", *args]


def test_serve_command_migrates_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """``microcue serve`` as a user runs it: a fresh data dir, a real port, SIGTERM to stop."""
    port = _free_port()
    proc = subprocess.Popen(
        _microcue("--data-dir", str(tmp_path / "fresh"), "--port", str(port), "serve"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "microcue serve did not become ready"
            time.sleep(0.1)
        m = httpx.post(
            f"http://127.0.0.1:{port}/api/meetings", json={"title": "t", "context": "public"}, timeout=10
        ).json()
        assert m["dashboard_url"].startswith(f"http://127.0.0.1:{port}/meetings/{m['id']}/dashboard?token=")
        assert (tmp_path / "fresh" / "microcue.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert "MicroCue serving on" in stderr
    assert "Traceback" not in stderr


def test_serve_command_explains_a_busy_port_and_an_open_interface(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            _microcue("--data-dir", str(tmp_path), "--port", str(port), "serve"),
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        _microcue("--data-dir", str(tmp_path), "--host", "0.0.0.0", "serve"),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "MICROCUE_API_KEY" in r.stderr


def test_roles_invitations_and_patch(client: httpx.Client, server: LiveServer) -> None:
    """A role-bound invitation seats its holder in that role; PATCH changes role and name; the live
    feed hears about it; bad roles and unknown participants are refused with a reason."""
    m = create(client)
    mid, token = m["id"], m["presenter_token"]
    r = client.post(f"/api/meetings/{mid}/participants", headers=bearer(token), json={"role": "buyer"})
    assert r.status_code == 201 and r.json()["role"] == "buyer", r.text
    join_token = r.json()["join_token"]
    bad = client.post(f"/api/meetings/{mid}/participants", headers=bearer(token), json={"role": "presenter"})
    assert bad.status_code == 422
    ws_base = server.base_url.replace("http", "ws")
    # joining with the buyer invitation over the built-in room's signalling makes a buyer
    with ws_connect(f"{ws_base}/ws/rooms/{mid}/signal?token={join_token}") as ws:
        welcome = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "join", "name": "Ben", "consent": True}))
        assert json.loads(ws.recv(timeout=10))["type"] == "joined"
    pid = welcome["participant_id"]
    people = client.get(f"/api/meetings/{mid}/participants", headers=bearer(token)).json()
    assert [(p["id"], p["display_name"], p["role"]) for p in people] == [(pid, "Ben", "buyer")]

    with ws_connect(f"{ws_base}/ws/meetings/{mid}/live?token={token}") as live:
        snapshot = json.loads(live.recv(timeout=10))
        assert snapshot["type"] == "snapshot"
        assert snapshot["coaching"]["available"] is False  # a buyer but no rep yet
        patch = {"role": "rep", "display_name": "Ben R"}
        r = client.patch(f"/api/meetings/{mid}/participants/{pid}", headers=bearer(token), json=patch)
        assert r.status_code == 200 and (r.json()["role"], r.json()["display_name"]) == ("rep", "Ben R"), r.text
        changed = json.loads(live.recv(timeout=10))
        assert changed["type"] == "participant" and changed["participant"]["role"] == "rep"
        coaching = json.loads(live.recv(timeout=10))
        assert coaching["type"] == "coaching" and coaching["coaching"]["available"] is False  # no buyer now

    assert client.patch(f"/api/meetings/{mid}/participants/{pid}", headers=bearer(token), json={}).status_code == 422
    wrong = client.patch(f"/api/meetings/{mid}/participants/{pid}", headers=bearer(token), json={"role": "boss"})
    assert wrong.status_code == 422
    missing = client.patch(f"/api/meetings/{mid}/participants/nobody", headers=bearer(token), json={"role": "rep"})
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    assert (
        client.patch(
            f"/api/meetings/{mid}/participants/{pid}", headers=bearer(join_token), json={"role": "rep"}
        ).status_code
        == 403
    )
