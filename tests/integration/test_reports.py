"""Summary, reports and ``microcue report`` through the real app, on SQLite and on PostgreSQL,
plus the crash test: ``microcue serve`` killed with SIGKILL mid-meeting keeps its stored cues.

Cues enter the way a bridge worker's do: published on the app's bus, written by the
real StoreWriter (crash test: published to the real Mosquitto, as a worker in another
process would, with ``MICROCUE_MQTT_URL``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from bridge.bus.mqtt import cue_topic
from bridge.config import Settings
from bridge.store import repo
from bridge.store.db import create_engine, create_session_factory
from inference.cues import EMOTION_CUE_TYPES, Cue
from tests.live_server import LiveServer
from tests.services import MOSQUITTO, require_service
from tests.support.cues import sales_call
from tests.support.postgres import database_settings
from web.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
pytest_plugins = ["tests.support.service"]

#: Seconds the store writer may take to write what was published (it flushes every 0.5 s).
STORE_TIMEOUT_S = 15.0


def check_sales_figures(summary: dict[str, Any], n_cues: int) -> None:
    """The figures ``sales_call`` was built to produce."""
    assert summary["cue_count"] == n_cues and summary["duration_s"] == 180.0
    people = {p["participant_id"]: p for p in summary["participants"]}
    assert people["rep"]["talk_time_s"] == pytest.approx(117.4) and people["buyer"]["talk_time_s"] == 57.5
    assert people["rep"]["role"] == "rep" and people["buyer"]["display_name"] == "Ben Buyer"
    # both in view all 180 s: talking (micro-expressions not assessed) that share of it
    assert people["rep"]["talk_share"] == pytest.approx(117.4 / 180.0, abs=1e-3)
    assert people["buyer"]["talk_share"] == pytest.approx(57.5 / 180.0, abs=1e-3)
    assert people["buyer"]["micro_not_assessed_s"] == pytest.approx(57.5)
    c = summary["coaching"]
    assert c["available"] is True and c["talk_to_listen"] == "67:33"
    assert (c["longest_monologue"]["t"], c["longest_monologue"]["end"]) == (2.0, 95.0)
    assert c["speaker_switches"] == 5
    assert c["buyer_engagement_during_rep_monologues"] == 0.35
    assert [h["t"] for h in c["hesitation_moments"]] == [40.0, 55.0, 130.0]
    assert [h["rep_activity"] for h in c["hesitation_moments"]] == ["speaking", "speaking", "listening"]
    assert c["sentiment_trend"] == "falling"
    assert 3 <= len(c["tips"]) <= 5 and all(t["moments"] for t in c["tips"][:2])


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    yield from database_settings(request.param, tmp_path / "data", "microcue_reports")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_meeting(server: LiveServer, client: httpx.Client, *, context: str = "customer") -> tuple[str, str, int]:
    """A sales meeting with a rep and a buyer whose cues go through the app's bus and StoreWriter."""
    r = client.post("/api/meetings", json={"title": "Discovery call, Acme", "kind": "sales", "context": context})
    assert r.status_code == 201, r.text
    mid, token = r.json()["id"], r.json()["presenter_token"]
    service = server.app.state.web.service

    async def people() -> None:
        async with service.sessions() as s:
            await repo.add_participant(
                session=s, meeting_id=mid, participant_id="rep", display_name="Rita Rep", role="rep", consent=True
            )
            await repo.add_participant(
                session=s, meeting_id=mid, participant_id="buyer", display_name="Ben Buyer", role="buyer", consent=True
            )

    server.call(people())
    cues = sales_call(mid)
    server.publish(*cues)

    async def stored() -> int:
        async with service.sessions() as s:
            return len(await repo.cues_for_meeting(session=s, meeting_id=mid))

    deadline = time.monotonic() + STORE_TIMEOUT_S
    # cue kinds the meeting's policy withholds are dropped by the writer (counted, never stored)
    while server.call(stored()) + service.writer.withheld < len(cues):
        assert time.monotonic() < deadline, "the store writer did not write every published cue"
        time.sleep(0.05)
    return mid, token, len(cues)


def stored_summary(server: LiveServer, mid: str) -> dict[str, Any] | None:
    service = server.app.state.web.service

    async def get() -> dict[str, Any] | None:
        async with service.sessions() as s:
            row = await repo.get_summary(session=s, meeting_id=mid)
            return None if row is None else dict(row.body)

    return server.call(get())


# --- tests -------------------------------------------------------------------------------------


def test_summary_saved_on_end_and_reports(
    server: LiveServer, client: httpx.Client, settings: Settings, tmp_path: Path
) -> None:
    mid, token, n = run_meeting(server, client)

    # Before the end: computed on demand from the stored cues, not stored.
    r = client.get(f"/api/meetings/{mid}/summary", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["ended"] is False and r.json()["summary"]["cue_count"] == n
    assert stored_summary(server, mid) is None

    join = client.post(f"/api/meetings/{mid}/participants", headers=bearer(token))
    assert join.status_code == 201, join.text
    join_token = join.json()["join_token"]

    assert client.post(f"/api/meetings/{mid}/end", headers=bearer(token)).status_code == 200
    body = stored_summary(server, mid)
    assert body is not None and body["ended"] is True
    check_sales_figures(body, n)
    assert client.get(f"/api/meetings/{mid}/summary", headers=bearer(token)).json()["summary"] == body

    # Auth: no token 401, a join token 403, the presenter token as Bearer or ?token= 200.
    for fmt in ("html", "json", "csv"):
        assert client.get(f"/api/meetings/{mid}/report.{fmt}").status_code == 401
        assert client.get(f"/api/meetings/{mid}/report.{fmt}?token=wrong").status_code == 401
        assert client.get(f"/api/meetings/{mid}/report.{fmt}", headers=bearer(join_token)).status_code == 403

    html = client.get(f"/api/meetings/{mid}/report.html?token={token}")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    page = html.text
    assert "Signal, not truth" in page and "not the truth" in page
    assert page.count("<svg") >= 4  # engagement, sentiment, activity, talk time
    assert "Sales-call coaching" in page and "43:57" in page and "Gong research" in page
    assert "@media print" in page and "Discovery call, Acme" in page
    assert "talking: micro-expressions not assessed" in page and "65 % of time in view" in page
    assert "The reactions MicroCue reads best are those of people who listen" in page
    # Self-contained: nothing fetched (namespace URIs inside the SVGs are not fetches).
    assert not any(f in page for f in ('src="http', 'href="http', "url(http", "<script", "<link"))

    data = client.get(f"/api/meetings/{mid}/report.json", headers=bearer(token)).json()
    assert data["summary"] == body and data["meeting"]["title"] == "Discovery call, Acme"

    text = client.get(f"/api/meetings/{mid}/report.csv", headers=bearer(token))
    assert text.headers["content-type"].startswith("text/csv")
    assert "attachment" in text.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(text.text)))
    by = {(r["section"], r["participant_id"], r["metric"]): r["value"] for r in rows}
    assert float(by[("meeting", "", "duration_s")]) == 180.0
    assert float(by[("participant", "rep", "talk_time_s")]) == pytest.approx(117.4)
    assert float(by[("participant", "buyer", "talk_share")]) == pytest.approx(57.5 / 180.0, abs=1e-3)
    assert by[("coaching", "", "talk_to_listen")] == "67:33"
    assert float(by[("coaching", "", "longest_monologue_s")]) == 93.0
    assert sum(r["section"] == "hesitation" for r in rows) == 3
    assert sum(r["section"] == "tip" for r in rows) == len(body["coaching"]["tips"])
    curve = [float(r["value"]) for r in rows if r["section"] == "meeting_curve"]
    assert curve == [v for v in body["meeting"]["engagement_curve"] if v is not None]

    # The CLI reads the same database and writes the same numbers.
    env = {**os.environ, "MICROCUE_DATA_DIR": str(settings.data_dir), "MICROCUE_DATABASE_URL": settings.database_url}
    out = tmp_path / "out" / "report.json"
    r = subprocess.run(
        [sys.executable, "-m", "web.cli", "report", mid, "--format", "json", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["summary"] == body
    for fmt, marker in (("html", "<svg"), ("csv", "section,participant_id")):
        r = subprocess.run(
            [sys.executable, "-m", "web.cli", "report", mid, "--format", fmt],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0 and marker in r.stdout, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "web.cli", "report", "no-such-meeting"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1 and "no meeting with id 'no-such-meeting'" in r.stderr and "Traceback" not in r.stderr


def test_workplace_report_has_no_emotion_figures(server: LiveServer, client: httpx.Client) -> None:
    """Even with emotion cues in the store (a producer writing to the database directly, past the
    writer's policy gate), a workplace report shows none."""
    mid, token, _ = run_meeting(server, client, context="workplace")
    assert server.app.state.web.service.writer.withheld > 0  # the gate dropped what was published

    async def write_past_the_gate() -> None:
        async with server.app.state.web.service.sessions() as s:
            emotional = [c for c in sales_call(mid) if c.type in EMOTION_CUE_TYPES]
            await repo.insert_cues(session=s, cues=emotional)

    server.call(write_past_the_gate())
    assert client.post(f"/api/meetings/{mid}/end", headers=bearer(token)).status_code == 200
    data = client.get(f"/api/meetings/{mid}/report.json", headers=bearer(token)).json()
    s = data["summary"]
    assert s["policy"]["emotions_withheld"] is True and "Art. 5(1)(f)" in s["policy"]["statement"]
    assert all(p["sentiment_timeline"] is None and p["expressions"] is None for p in s["participants"])
    assert s["coaching"]["hesitation_moments"] is None and s["coaching"]["talk_to_listen"] == "67:33"
    page = client.get(f"/api/meetings/{mid}/report.html?token={token}").text
    assert "No emotion figures" in page and "Sentiment over time" not in page and "Hesitation moments (" not in page
    rows = client.get(f"/api/meetings/{mid}/report.csv?token={token}").text
    assert "sentiment" not in {r["section"].split("_")[0] for r in csv.DictReader(io.StringIO(rows))}
    assert "micro:" not in rows


def test_unrestricted_override_is_stated_in_every_report(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", policy="unrestricted")
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        mid, token, _ = run_meeting(server, client, context="education")
        assert client.post(f"/api/meetings/{mid}/end", headers=bearer(token)).status_code == 200
        page = client.get(f"/api/meetings/{mid}/report.html?token={token}").text
        assert "operator override" in page and "MICROCUE_POLICY=unrestricted" in page
        data = client.get(f"/api/meetings/{mid}/report.json?token={token}").json()
        assert data["summary"]["policy"]["overridden"] is True
        assert "MICROCUE_POLICY=unrestricted" in client.get(f"/api/meetings/{mid}/report.csv?token={token}").text
    # Read back later under the default policy: the override no longer holds, emotions are withheld.
    data = _cli_json(Settings(data_dir=tmp_path / "data"), mid)
    assert data["summary"]["policy"]["emotions_withheld"] is True


def _cli_json(settings: Settings, mid: str) -> dict[str, Any]:
    env = {**os.environ, "MICROCUE_DATA_DIR": str(settings.data_dir), "MICROCUE_POLICY": settings.policy}
    env.pop("MICROCUE_DATABASE_URL", None)
    r = subprocess.run(
        [sys.executable, "-m", "web.cli", "report", mid, "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


# --- crash test --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MICROCUE_DATA_DIR": str(data_dir),
        "MICROCUE_PORT": str(port),
        "MICROCUE_MQTT_URL": f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}",
    }
    env.pop("MICROCUE_DATABASE_URL", None)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "web.cli", "serve"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"microcue serve did not become ready:\n{log.read_text()}"
        time.sleep(0.1)


async def _publish_mqtt(cues: list[Cue]) -> None:
    """As a bridge worker in another process: QoS 1 on the meeting's topic (bridge/bus/mqtt.py)."""

    async with aiomqtt.Client(MOSQUITTO[0], MOSQUITTO[1], identifier=f"crash-test-{uuid.uuid4().hex[:8]}") as client:
        for cue in cues:
            payload = json.dumps(cue.to_dict(), separators=(",", ":"))
            await client.publish(cue_topic(cue.meeting_id), payload, qos=1)


async def _add_people(settings: Settings, mid: str) -> None:
    """What the room adapter does when people join (the store is shared with the running service)."""
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as s:
            for pid, name, role in (("rep", "Rita Rep", "rep"), ("buyer", "Ben Buyer", "buyer")):
                await repo.add_participant(
                    session=s, meeting_id=mid, participant_id=pid, display_name=name, role=role, consent=True
                )
    finally:
        await engine.dispose()


async def _stored(settings: Settings, mid: str) -> int:
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as s:
            return len(await repo.cues_for_meeting(session=s, meeting_id=mid))
    finally:
        await engine.dispose()


def test_crash_mid_meeting_keeps_stored_cues(tmp_path: Path) -> None:
    """Real ``microcue serve`` (SQLite file, MQTT bus), SIGKILL mid-meeting, restart, end: the summary
    has every cue stored before the crash."""
    require_service("Mosquitto", MOSQUITTO)
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    port = _free_port()
    proc = _serve(data_dir, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        m = httpx.post(
            f"{base}/api/meetings", json={"title": "Crash", "kind": "sales", "context": "customer"}, timeout=30
        ).json()
        mid, token = m["id"], m["presenter_token"]
        settings = Settings(data_dir=data_dir)
        asyncio.run(_add_people(settings, mid))
        cues = sales_call(mid)
        before = [c for c in cues if c.t < 120.0]
        asyncio.run(_publish_mqtt(before))
        deadline = time.monotonic() + STORE_TIMEOUT_S
        while asyncio.run(_stored(settings, mid)) < len(before):
            assert time.monotonic() < deadline, f"cues never reached the store:\n{log.read_text()}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    proc = _serve(data_dir, port, log)
    try:
        r = httpx.post(f"{base}/api/meetings/{mid}/end", headers=bearer(token), timeout=30)
        assert r.status_code == 200, r.text
        s = httpx.get(f"{base}/api/meetings/{mid}/summary", headers=bearer(token), timeout=30).json()["summary"]
        assert s["ended"] is True and s["cue_count"] == len(before)
        assert s["duration_s"] == max(max(c.t, c.offset_s or 0.0) for c in before)
        people = {p["participant_id"]: p for p in s["participants"]}
        # Rep talk before 120 s: 2-50, 50.6-95 and 110-120 (still talking at the crash: runs to the end).
        assert people["rep"]["talk_time_s"] == pytest.approx(48.0 + 44.4 + (s["duration_s"] - 110.0))
        assert [h["t"] for h in s["coaching"]["hesitation_moments"]] == [40.0, 55.0]
        report = httpx.get(f"{base}/api/meetings/{mid}/report.json?token={token}", timeout=60).json()
        assert report["summary"] == s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
