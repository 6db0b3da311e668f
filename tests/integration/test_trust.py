"""Issue 12 guarantees through the real app: no credential in logs, tokens that expire and can be
revoked, end/erase closing sockets, one purpose decision incl. the store writer (over MQTT too),
security headers and Host check, hard limits and rate limits. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from bridge.bus.mqtt import MqttBus
from bridge.config import Settings
from bridge.store import repo
from bridge.store.tables import Meeting, utcnow
from inference.cues import EMOTION_CUE_TYPES, Cue
from tests.live_server import LiveServer
from tests.services import MOSQUITTO, require_service
from tests.support.postgres import database_settings
from web.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
pytest_plugins = ["tests.support.service"]


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    yield from database_settings(request.param, tmp_path / "data", "microcue_trust")


def _create(base: str, context: str = "customer", **headers: str) -> dict[str, Any]:
    r = httpx.post(f"{base}/api/meetings", json={"title": "T", "context": context}, headers=headers, timeout=30)
    assert r.status_code == 201, r.text
    m: dict[str, Any] = r.json()
    m["join_token"] = m["join_url"].split("token=")[1]
    return m


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- 1. no credential in any log line -------------------------------------------------------------


def test_no_token_in_the_service_log(tmp_path: Path) -> None:
    """``microcue serve`` with uvicorn's access log on (INFO): every link that carries a token is
    used, then the whole log is searched for every token."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "web.cli",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--log-level",
            "INFO",
            "serve",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        m = _create(base)
        mid, token, join = m["id"], m["presenter_token"], m["join_token"]
        invite = httpx.post(f"{base}/api/meetings/{mid}/participants", headers=_bearer(token), timeout=10).json()
        secrets = {token, join, invite["join_token"]}
        assert httpx.get(m["dashboard_url"].replace(f"http://127.0.0.1:{port}", base), timeout=10).status_code == 200
        assert httpx.get(f"{base}/join/{mid}?token={join}", timeout=10).status_code == 200
        assert httpx.get(f"{base}/api/join/{mid}?token={join}", timeout=10).status_code == 200
        assert httpx.get(f"{base}/api/meetings/{mid}?token={token}", timeout=10).status_code == 200
        httpx.get(f"{base}/api/meetings/{mid}/report.json?token={token}", timeout=30)
        with ws_connect(f"ws://127.0.0.1:{port}/ws/meetings/{mid}/live?token={token}") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        with ws_connect(f"ws://127.0.0.1:{port}/ws/rooms/{mid}/signal?token={join}") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
            ws.send(json.dumps({"type": "join", "name": "Eve\r\nINFO forged: line", "consent": True}))
            assert json.loads(ws.recv(timeout=10))["type"] == "joined"
        # a wrong token is logged as a refusal too: still redacted
        httpx.get(f"{base}/api/meetings/{mid}?token=not-a-real-token-xyz", timeout=10)
        assert httpx.post(f"{base}/api/meetings/{mid}/end", headers=_bearer(token), timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    log = out + err
    assert f"/api/join/{mid}?token=[redacted]" in log  # the access log is on: the test is not vacuous
    for secret in [*secrets, "not-a-real-token-xyz"]:
        assert secret not in log, f"a token is in the service log: {secret[:6]}..."
    assert "\nINFO forged: line" not in log  # control characters of display names are escaped


# --- token expiry, revocation, the dashboard's cookie ----------------------------------------------


def test_tokens_expire_and_can_be_revoked(settings: Settings) -> None:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.base_url, timeout=30) as c:
        m = _create(server.base_url)
        mid, token = m["id"], m["presenter_token"]
        extra = c.post(f"/api/meetings/{mid}/participants", headers=_bearer(token)).json()["join_token"]
        # one join token revoked: it no longer opens anything; the other one still does
        r = c.post(f"/api/meetings/{mid}/tokens/revoke", json={"token": extra}, headers=_bearer(token))
        assert r.status_code == 200 and r.json()["revoked"] == 1
        assert c.get(f"/api/join/{mid}?token={extra}").status_code == 401
        assert c.get(f"/api/join/{mid}?token={m['join_token']}").status_code == 200
        # another meeting's token cannot be revoked from here
        other = _create(server.base_url)
        r = c.post(f"/api/meetings/{mid}/tokens/revoke", json={"token": other["join_token"]}, headers=_bearer(token))
        assert r.json()["revoked"] == 0
        assert c.get(f"/api/join/{other['id']}?token={other['join_token']}").status_code == 200
        assert c.post(f"/api/meetings/{mid}/tokens/revoke", json={}, headers=_bearer(token)).status_code == 422

        # ending expires join tokens at once; the presenter keeps the reports for the retention
        assert c.post(f"/api/meetings/{mid}/end", headers=_bearer(token)).status_code == 200
        r = c.get(f"/api/join/{mid}?token={m['join_token']}")
        assert r.status_code == 401 and "expired" in r.json()["detail"]
        assert c.get(f"/api/meetings/{mid}", headers=_bearer(token)).status_code == 200

        async def age(days: int) -> None:
            async with server.app.state.web.service.sessions() as s:
                ended = utcnow() - timedelta(days=days)
                await s.execute(update(Meeting).where(Meeting.id == mid).values(ended_at=ended))
                await s.commit()

        server.call(age(31))  # past the 30-day default retention after the end
        r = c.get(f"/api/meetings/{mid}", headers=_bearer(token))
        assert r.status_code == 401 and "expired" in r.json()["detail"]

        # revoking every presenter token locks the presenter out
        t2 = other["presenter_token"]
        r = c.post(f"/api/meetings/{other['id']}/tokens/revoke", json={"kind": "presenter"}, headers=_bearer(t2))
        assert r.json()["revoked"] == 1
        assert c.get(f"/api/meetings/{other['id']}", headers=_bearer(t2)).status_code == 401


def test_dashboard_reload_works_from_a_cookie_scoped_to_its_page(tmp_path: Path) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server, httpx.Client(timeout=30) as c:
        m = _create(server.base_url)
        page = f"{server.base_url}/meetings/{m['id']}/dashboard"
        first = c.get(f"{page}?token={m['presenter_token']}")
        assert first.status_code == 200
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and f"path=/meetings/{m['id']}/dashboard" in cookie
        assert c.get(page).status_code == 200  # the reload, token no longer in the URL
        assert httpx.get(page, timeout=30).status_code == 401  # no cookie, no token


# --- end and erase close the sockets; the bot can be recalled ---------------------------------------


def _closed_code(ws: Any, within_s: float) -> int | None:
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        return None
    return None


@pytest.mark.parametrize(("action", "code"), [("end", 4409), ("erase", 4410)])
def test_end_and_erase_close_signalling_and_live_sockets_within_2_s(tmp_path: Path, action: str, code: int) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = _create(server.base_url)
        mid, token = m["id"], m["presenter_token"]
        signal_ws = ws_connect(f"{server.ws_url}/ws/rooms/{mid}/signal?token={m['join_token']}")
        live_ws = ws_connect(f"{server.ws_url}/ws/meetings/{mid}/live?token={token}")
        try:
            assert json.loads(signal_ws.recv(timeout=10))["type"] == "welcome"
            signal_ws.send(json.dumps({"type": "join", "name": "Ada", "consent": True}))
            assert json.loads(signal_ws.recv(timeout=10))["type"] == "joined"
            assert json.loads(live_ws.recv(timeout=10))["type"] == "snapshot"
            if action == "end":
                r = httpx.post(f"{server.base_url}/api/meetings/{mid}/end", headers=_bearer(token), timeout=30)
            else:
                r = httpx.delete(f"{server.base_url}/api/meetings/{mid}", headers=_bearer(token), timeout=30)
            assert r.status_code == 200
            started = time.monotonic()
            assert _closed_code(signal_ws, 2.0) == code
            assert _closed_code(live_ws, 2.0) == code
            assert time.monotonic() - started < 2.0
            assert server.app.state.web.signal_sockets.count(mid) == 0
        finally:
            signal_ws.close()
            live_ws.close()


def test_recalling_a_bot_that_is_not_there_is_404(tmp_path: Path) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        m = _create(server.base_url)
        r = httpx.delete(
            f"{server.base_url}/api/meetings/{m['id']}/bot", headers=_bearer(m["presenter_token"]), timeout=30
        )
        assert r.status_code == 404 and "no bot" in r.json()["detail"]
        assert httpx.delete(f"{server.base_url}/api/meetings/{m['id']}/bot", timeout=30).status_code == 401


# --- 5. one purpose decision: the store writer withholds, whoever publishes ------------------------


def _cue(meeting_id: str, kind: str, seq: int) -> Cue:
    if kind in ("micro_expression", "macro_expression"):
        return Cue(
            type=kind,
            t=float(seq),
            meeting_id=meeting_id,
            participant_id="p1",
            seq=seq,  # type: ignore[arg-type]
            onset_s=0.0,
            apex_s=0.1,
            offset_s=0.3,
            emotion="happiness",
            confidence=0.9,
        )
    return Cue(type=kind, t=float(seq), meeting_id=meeting_id, participant_id="p1", seq=seq, value=0.5)  # type: ignore[arg-type]


def _stored_types(server: LiveServer, mid: str, want: int) -> list[str]:
    service = server.app.state.web.service

    async def stored() -> list[str]:
        async with service.sessions() as s:
            return [c.type for c in await repo.cues_for_meeting(session=s, meeting_id=mid)]

    deadline = time.monotonic() + 15
    while len(types := server.call(stored())) < want:
        assert time.monotonic() < deadline, f"only {types} stored"
        time.sleep(0.1)
    time.sleep(1.0)  # the writer flushes every 0.5 s: anything withheld would have landed by now
    return server.call(stored())


KINDS = ["engagement", "sentiment", "micro_expression", "macro_expression", "attention", "presence"]


def test_writer_drops_withheld_cue_kinds_of_a_workplace_meeting(settings: Settings) -> None:
    with LiveServer(create_app(settings)) as server:
        work = _create(server.base_url, "workplace")
        sales = _create(server.base_url, "customer")
        server.publish(*(_cue(work["id"], k, i) for i, k in enumerate(KINDS, 1)))
        server.publish(*(_cue(sales["id"], k, i) for i, k in enumerate(KINDS, 1)))
        assert sorted(_stored_types(server, work["id"], 3)) == ["attention", "engagement", "presence"]
        assert sorted(_stored_types(server, sales["id"], 6)) == sorted(KINDS)
        assert server.app.state.web.service.writer.withheld == 3


def test_mqtt_cues_of_any_client_are_filtered_by_policy(tmp_path: Path) -> None:
    require_service("Mosquitto", MOSQUITTO)
    url = f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"
    with LiveServer(create_app(Settings(data_dir=tmp_path, mqtt_url=url))) as server:
        work = _create(server.base_url, "education")

        async def publish() -> None:
            other = MqttBus(url)  # any client of the broker, not a bridge of ours
            await other.start()
            try:
                for i, kind in enumerate(KINDS, 1):
                    await other.publish(_cue(work["id"], kind, i))
                async with asyncio.timeout(10):
                    await other.flush()
            finally:
                await other.aclose()

        asyncio.run(publish())
        stored = _stored_types(server, work["id"], 3)
        assert not set(stored) & EMOTION_CUE_TYPES, stored


def test_the_stricter_of_stored_and_current_policy_decides_live_and_store(tmp_path: Path) -> None:
    """Created while the operator ran unrestricted, served after they switched back: no emotion
    cue is stored or shown; and the other way round, a default meeting never gains them."""
    loose = Settings(data_dir=tmp_path, policy="unrestricted")
    with LiveServer(create_app(loose)) as server:
        m = _create(server.base_url, "workplace")
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server:
        got = httpx.get(f"{server.base_url}/api/meetings/{m['id']}", headers=_bearer(m["presenter_token"]), timeout=30)
        assert got.json()["policy"]["emotions_allowed"] is False
        server.publish(*(_cue(m["id"], k, i) for i, k in enumerate(KINDS, 1)))
        assert not set(_stored_types(server, m["id"], 3)) & EMOTION_CUE_TYPES
        strict = _create(server.base_url, "workplace")
    with LiveServer(create_app(loose)) as server:
        got = httpx.get(
            f"{server.base_url}/api/meetings/{strict['id']}", headers=_bearer(strict["presenter_token"]), timeout=30
        )
        assert got.json()["policy"]["emotions_allowed"] is False
        with ws_connect(f"{server.ws_url}/ws/meetings/{strict['id']}/live?token={strict['presenter_token']}") as ws:
            snap = json.loads(ws.recv(timeout=10))
            assert snap["policy"]["emotions_allowed"] is False
        server.publish(*(_cue(strict["id"], k, i) for i, k in enumerate(KINDS, 1)))
        assert not set(_stored_types(server, strict["id"], 3)) & EMOTION_CUE_TYPES


# --- 6. security headers and the Host check ---------------------------------------------------------


def test_every_page_carries_the_security_headers_and_host_is_checked(tmp_path: Path) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path))) as server, httpx.Client(timeout=30) as c:
        m = _create(server.base_url)
        b, t = server.base_url, m["presenter_token"]
        for path in (
            f"/join/{m['id']}?token={m['join_token']}",
            f"/meetings/{m['id']}/dashboard?token={t}",
            f"/api/meetings/{m['id']}/report.html?token={t}",
            f"/api/meetings/{m['id']}/report.csv?token={t}",
            "/healthz",
            "/nowhere",
            "/static/join.js",
            f"/join/{m['id']}?token=bad",
        ):
            r = c.get(b + path)
            csp = r.headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp, path
            script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
            assert "unsafe-inline" not in script_src, path
            assert r.headers.get("x-content-type-options") == "nosniff", path
            assert r.headers.get("referrer-policy") == "no-referrer", path
        r = c.get(f"{b}/static/join.js", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and "Host" in r.json()["detail"]
    public = Settings(data_dir=tmp_path / "p", public_url="https://meet.example.org")
    with LiveServer(create_app(public)) as server:
        page = f"{server.base_url}/static/join.js"
        assert httpx.get(page, timeout=30).status_code == 400  # Host: 127.0.0.1:port
        assert httpx.get(page, headers={"Host": "meet.example.org"}, timeout=30).status_code == 200
        # probes answer whatever the Host: kubelet and Prometheus call them by the pod's address
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(f"{server.base_url}{probe}", timeout=30).status_code == 200, probe


# --- 3. hard limits and rate limits ----------------------------------------------------------------


def test_meeting_cap_and_creation_rate_limit(tmp_path: Path) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path, max_meetings=2))) as server:
        a = _create(server.base_url)
        _create(server.base_url)
        r = httpx.post(f"{server.base_url}/api/meetings", json={"title": "x", "context": "public"}, timeout=30)
        assert r.status_code == 429 and "MICROCUE_MAX_MEETINGS" in r.json()["detail"]
        httpx.post(f"{server.base_url}/api/meetings/{a['id']}/end", headers=_bearer(a["presenter_token"]), timeout=30)
        _create(server.base_url)  # an ended meeting frees its place
    with LiveServer(create_app(Settings(data_dir=tmp_path / "r", rate_create_per_min=3))) as server:
        for _ in range(3):
            _create(server.base_url)
        r = httpx.post(f"{server.base_url}/api/meetings", json={"title": "x", "context": "public"}, timeout=30)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_token_check_rate_limit(tmp_path: Path) -> None:
    with LiveServer(create_app(Settings(data_dir=tmp_path, rate_token_per_min=5))) as server:
        m = _create(server.base_url)
        codes = [
            httpx.get(f"{server.base_url}/api/meetings/{m['id']}?token=guess{i}", timeout=30).status_code
            for i in range(7)
        ]
        assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
        with ws_connect(f"{server.ws_url}/ws/meetings/{m['id']}/live?token=x") as ws:
            assert _closed_code(ws, 5.0) == 4429


def test_signalling_limits_sockets_join_rate_timeout_and_binary(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_signal_sockets=2, join_timeout_s=0.5, rate_join_per_min=5)
    with LiveServer(create_app(settings)) as server:
        m = _create(server.base_url)
        url = f"{server.ws_url}/ws/rooms/{m['id']}/signal?token={m['join_token']}"
        # the join timeout: a socket that sends no offer is closed
        with ws_connect(url) as idle:
            assert json.loads(idle.recv(timeout=10))["type"] == "welcome"
            assert _closed_code(idle, 5.0) == 4408
        # a binary frame is a protocol error (4400), not a crash (1011)
        with ws_connect(url) as ws:
            ws.recv(timeout=10)
            ws.send(b"\x00\x01binary")
            assert _closed_code(ws, 5.0) == 4400
        # the socket cap per meeting
        a, b = ws_connect(url), ws_connect(url)
        try:
            a.recv(timeout=10)
            b.recv(timeout=10)
            with ws_connect(url) as third:
                assert _closed_code(third, 5.0) == 4429
        finally:
            a.close()
            b.close()
        # the 5 joins a minute of one address were used above; the next is refused
        with ws_connect(url) as late:
            assert _closed_code(late, 5.0) == 4429
