"""The presenter live feed over real TCP: uvicorn on 127.0.0.1, cues published on the app's own bus.

Covers the snapshot, streaming, heartbeats, policy filtering, every refusal, a
slow reader skipping ahead, a stuck reader being closed with bounded memory, an
oversized client message, erasure, and one run with the MQTT bus on Mosquitto.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.bus.mqtt import MqttBus
from bridge.config import Settings
from bridge.store import repo
from inference.cues import Cue
from tests.live_server import LiveServer
from tests.services import MOSQUITTO, require_service
from web.app import create_app
from web.hub import LiveHub
from web.state import LiveOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = LiveOptions(heartbeat_s=0.3, send_queue=20, stuck_timeout_s=1.0, max_message_bytes=1024)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(data_dir=tmp_path), live_options=FAST)) as live:
        yield live


def create_meeting(server: LiveServer, context: str = "customer") -> dict[str, Any]:
    r = httpx.post(f"{server.base_url}/api/meetings", json={"title": "Demo", "context": context}, timeout=30)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    body["join_token"] = body["join_url"].split("token=")[1]
    return body


def feed_url(server: LiveServer, meeting: dict[str, Any], token: str | None = None) -> str:
    url = f"{server.ws_url}/ws/meetings/{meeting['id']}/live"
    tok = meeting["presenter_token"] if token is None else token
    return f"{url}?token={tok}" if tok else url


def cue(meeting_id: str, kind: str, seq: int, *, participant: str = "p1", **fields: Any) -> Cue:
    if kind.endswith("_expression"):
        base: dict[str, Any] = {
            "onset_s": seq - 0.2,
            "apex_s": seq - 0.1,
            "offset_s": float(seq),
            "emotion": "surprise",
            "aus": ("AU1", "AU2"),
            "confidence": 0.8,
        }
    else:
        base = {"value": 0.5}
    base.update(fields)
    return Cue(type=kind, t=float(seq), meeting_id=meeting_id, participant_id=participant, seq=seq, **base)  # type: ignore[arg-type]


async def recv(ws: ClientConnection, wait_s: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(wait_s):
        message: dict[str, Any] = json.loads(await ws.recv())
        return message


async def recv_cues(ws: ClientConnection, n: int, wait_s: float = 5.0) -> list[dict[str, Any]]:
    """The next ``n`` cue messages, skipping heartbeats."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        message = await recv(ws, wait_s)
        if message["type"] == "cue":
            out.append(message["cue"])
    return out


def hub(server: LiveServer) -> LiveHub:
    live_hub: LiveHub = server.app.state.web.hub
    return live_hub


async def test_snapshot_then_streamed_cues(server: LiveServer) -> None:
    m = create_meeting(server)
    mid = m["id"]
    service = server.app.state.web.service

    async def join() -> None:
        async with service.sessions() as s:
            await repo.add_participant(session=s, meeting_id=mid, participant_id="p1", display_name="Ada", consent=True)

    server.call(join())
    server.publish(
        cue(mid, "engagement", 1, value=0.8),
        cue(mid, "sentiment", 2, value=-0.2),
        cue(mid, "micro_expression", 3),
        cue(mid, "presence", 4, participant="p2", value=1.0),
        cue("some-other-meeting", "engagement", 5, value=0.1),
    )
    await asyncio.sleep(0.2)  # the hub takes them from the bus
    async with connect(feed_url(server, m)) as ws:
        snap = await recv(ws)
        assert snap["type"] == "snapshot" and snap["meeting_id"] == mid
        people = {p["participant_id"]: p for p in snap["participants"]}
        assert set(people) == {"p1", "p2"}
        assert people["p1"]["display_name"] == "Ada" and people["p1"]["consent"] is True
        assert people["p1"]["latest"]["engagement"]["value"] == 0.8
        assert people["p1"]["latest"]["sentiment"]["value"] == -0.2
        assert people["p2"]["latest"]["presence"]["value"] == 1.0 and people["p2"]["consent"] is None
        assert [c["type"] for c in snap["recent"]] == ["micro_expression"]
        assert snap["policy"]["emotions_allowed"] is True

        server.publish(*(cue(mid, "engagement", 10 + i, value=i / 10) for i in range(5)))
        server.publish(cue("some-other-meeting", "engagement", 99))
        server.publish(cue(mid, "micro_expression", 20))
        got = await recv_cues(ws, 6)
        assert [c["seq"] for c in got] == [10, 11, 12, 13, 14, 20]
        assert got[-1] == cue(mid, "micro_expression", 20).to_dict()
        assert hub(server).connection_count == 1
    deadline = time.monotonic() + 5
    while hub(server).connection_count:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_heartbeat(server: LiveServer) -> None:
    m = create_meeting(server)
    async with connect(feed_url(server, m)) as ws:
        assert (await recv(ws))["type"] == "snapshot"
        assert await recv(ws, wait_s=FAST.heartbeat_s * 5) == {"type": "ping"}


async def test_token_in_the_authorization_header(server: LiveServer) -> None:
    """Non-browser clients may send the token as a header instead of in the URL."""
    m = create_meeting(server)
    url = feed_url(server, m, token="")
    async with connect(url, additional_headers={"Authorization": f"Bearer {m['presenter_token']}"}) as ws:
        assert (await recv(ws))["type"] == "snapshot"
    code, _ = await refused_with(url, {"Authorization": f"Basic {m['presenter_token']}"})
    assert code == 4401


async def refused_with(url: str, headers: dict[str, str]) -> tuple[int, str]:
    async with connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def refused(url: str) -> tuple[int, str]:
    async with connect(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def test_refusals_missing_wrong_meeting_and_participant_tokens(server: LiveServer) -> None:
    a, b = create_meeting(server), create_meeting(server)
    code, reason = await refused(feed_url(server, a, token=""))
    assert code == 4401 and "missing token" in reason
    code, reason = await refused(feed_url(server, a, token="not-a-token"))
    assert code == 4401 and "invalid token" in reason
    code, reason = await refused(feed_url(server, a, token=b["presenter_token"]))
    assert code == 4403 and "another meeting" in reason
    code, reason = await refused(feed_url(server, a, token=a["join_token"]))
    assert code == 4403 and "join token" in reason
    assert hub(server).connection_count == 0


async def test_revoking_the_presenter_token_closes_the_feeds_it_opened(server: LiveServer) -> None:
    """A revoked token must not keep an open dashboard streaming: closed within a heartbeat."""
    m, other = create_meeting(server), create_meeting(server)
    async with connect(feed_url(server, m)) as ws, connect(feed_url(server, other)) as untouched:
        assert (await recv(ws))["type"] == "snapshot" and (await recv(untouched))["type"] == "snapshot"
        r = await asyncio.to_thread(
            httpx.post,
            f"{server.base_url}/api/meetings/{m['id']}/tokens/revoke",
            json={"kind": "presenter"},
            timeout=30,
            headers={"Authorization": f"Bearer {m['presenter_token']}"},
        )
        assert r.status_code == 200 and r.json()["revoked"] == 1
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5 * FAST.heartbeat_s + 5):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401, closed.value
        assert "revoked" in closed.value.rcvd.reason
        server.publish(cue(other["id"], "engagement", 1))  # the other meeting's feed goes on
        assert (await recv_cues(untouched, 1))[0]["type"] == "engagement"


async def test_policy_filters_emotion_cues_for_workplace(server: LiveServer) -> None:
    m = create_meeting(server, context="workplace")
    mid = m["id"]
    server.publish(cue(mid, "micro_expression", 1), cue(mid, "sentiment", 2), cue(mid, "engagement", 3))
    await asyncio.sleep(0.2)
    async with connect(feed_url(server, m)) as ws:
        snap = await recv(ws)
        assert snap["policy"]["emotions_allowed"] is False
        assert "Art. 5(1)(f)" in snap["policy"]["notice"]
        assert snap["recent"] == []
        assert set(snap["participants"][0]["latest"]) == {"engagement"}
        server.publish(
            cue(mid, "micro_expression", 4),
            cue(mid, "macro_expression", 5),
            cue(mid, "sentiment", 6),
            cue(mid, "engagement", 7),
            cue(mid, "attention", 8),
            cue(mid, "presence", 9),
            cue(mid, "speaking", 10),
        )
        got = await recv_cues(ws, 4)
        assert [c["type"] for c in got] == ["engagement", "attention", "presence", "speaking"]


async def test_unrestricted_policy_shows_emotions_with_override_notice(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, policy="unrestricted")
    with LiveServer(create_app(settings, live_options=FAST)) as server:
        m = create_meeting(server, context="education")
        async with connect(feed_url(server, m)) as ws:
            snap = await recv(ws)
            assert snap["policy"]["emotions_allowed"] and snap["policy"]["overridden"]
            server.publish(cue(m["id"], "micro_expression", 1))
            assert (await recv_cues(ws, 1))[0]["type"] == "micro_expression"


async def test_oversized_client_message_closes_with_1009(server: LiveServer) -> None:
    m = create_meeting(server)
    async with connect(feed_url(server, m)) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "pong"}))  # small messages are fine
        await ws.send("x" * (FAST.max_message_bytes + 1))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await recv(ws)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert "too big" in info.value.rcvd.reason


PADDING = "x" * 4000  # makes each cue ~4 kB so socket buffers fill after a few hundred


def publish_flood(server: LiveServer, meeting_id: str, n: int, start: int = 0) -> None:
    """``n`` big cues in batches, yielding between them so the hub's bus queue never overflows."""
    for first in range(start, start + n, 100):
        server.publish(*(cue(meeting_id, "engagement", i, detail=PADDING) for i in range(first, first + 100)))
        time.sleep(0.01)


async def test_slow_reader_skips_ahead_and_is_told(server: LiveServer, report: Any) -> None:
    m = create_meeting(server)
    # max_queue=2: the client library stops reading the socket when two messages wait.
    async with connect(feed_url(server, m), max_queue=2, max_size=None) as ws:
        await recv(ws)
        await asyncio.to_thread(publish_flood, server, m["id"], 3000)
        skipped = 0
        last_seq = -1
        while last_seq < 2999:
            message = await recv(ws)
            if message["type"] == "skipped":
                skipped += message["count"]
            elif message["type"] == "cue":
                assert message["cue"]["seq"] > last_seq  # order kept, skipping only forwards
                last_seq = message["cue"]["seq"]
        assert skipped > 0
        report(f"live ws slow reader: 3000 cues of 4 kB published, {skipped} skipped (queue {FAST.send_queue})")


def raw_websocket(port: int, path: str) -> socket.socket:
    """A websocket handshake by hand, on a socket with a tiny receive buffer that we then never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_stuck_reader_is_closed_and_memory_stays_bounded(server: LiveServer, report: Any) -> None:
    m = create_meeting(server)
    sock = raw_websocket(server.port, f"/ws/meetings/{m['id']}/live?token={m['presenter_token']}")
    try:
        await asyncio.sleep(0.2)
        assert hub(server).connection_count == 1
        conn = next(iter(hub(server)._meetings[m["id"]].connections))
        # Publish for longer than the stuck timeout; the queue never exceeds its bound meanwhile.
        high_water = 0
        started = time.monotonic()
        seq = 0
        while hub(server).connection_count and time.monotonic() - started < 20:
            await asyncio.to_thread(publish_flood, server, m["id"], 200, seq)
            seq += 200
            high_water = max(high_water, len(conn))
        closed_after = time.monotonic() - started
        assert hub(server).connection_count == 0, "the stuck client was never closed"
        assert high_water <= FAST.send_queue
        assert conn.skipped_total > 0
        assert closed_after < FAST.stuck_timeout_s + 8
        metrics_text = (await asyncio.to_thread(httpx.get, f"{server.base_url}/metrics", timeout=30)).text
        assert "microcue_websocket_closed_slow_total 1.0" in metrics_text
        report(
            f"live ws stuck reader: closed after {closed_after:.1f} s (timeout {FAST.stuck_timeout_s} s), "
            f"queue high water {high_water}/{FAST.send_queue}, {conn.skipped_total} skipped"
        )
    finally:
        sock.close()


async def test_erasure_closes_the_feed(server: LiveServer) -> None:
    m = create_meeting(server)
    async with connect(feed_url(server, m)) as ws:
        await recv(ws)
        r = await asyncio.to_thread(
            httpx.delete,
            f"{server.base_url}/api/meetings/{m['id']}",
            headers={"Authorization": f"Bearer {m['presenter_token']}"},
            timeout=30,
        )
        assert r.status_code == 200
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await recv(ws)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4410


async def test_meeting_end_is_announced(server: LiveServer) -> None:
    m = create_meeting(server)
    async with connect(feed_url(server, m)) as ws:
        await recv(ws)
        await asyncio.to_thread(
            httpx.post,
            f"{server.base_url}/api/meetings/{m['id']}/end",
            headers={"Authorization": f"Bearer {m['presenter_token']}"},
            timeout=30,
        )
        message = await recv(ws)
        while message["type"] == "ping":
            message = await recv(ws)
        assert message == {"type": "meeting_ended", "meeting_id": m["id"]}


async def test_mqtt_bus_cues_from_another_process_reach_the_feed_and_the_store(tmp_path: Path) -> None:
    require_service("Mosquitto", MOSQUITTO)
    url = f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"
    with LiveServer(create_app(Settings(data_dir=tmp_path, mqtt_url=url), live_options=FAST)) as server:
        ready = (await asyncio.to_thread(httpx.get, f"{server.base_url}/readyz", timeout=30)).json()
        assert ready["bus_kind"] == "MqttBus"
        m = create_meeting(server)
        worker_bus = MqttBus(url)  # stands for a bridge worker in another process
        await worker_bus.start()
        try:
            async with connect(feed_url(server, m)) as ws:
                await recv(ws)
                for i in range(5):
                    await worker_bus.publish(cue(m["id"], "micro_expression" if i == 4 else "engagement", i))
                async with asyncio.timeout(10):
                    await worker_bus.flush()
                got = await recv_cues(ws, 5, wait_s=10)
                assert [c["seq"] for c in got] == [0, 1, 2, 3, 4]
        finally:
            await worker_bus.aclose()
        service = server.app.state.web.service

        async def stored() -> int:
            async with service.sessions() as s:
                return len(await repo.cues_for_meeting(session=s, meeting_id=m["id"]))

        deadline = time.monotonic() + 10
        while server.call(stored()) < 5:
            assert time.monotonic() < deadline, "cues from the MQTT bus were not stored"
            await asyncio.sleep(0.1)


async def test_snapshot_after_a_restart_comes_from_the_store(tmp_path: Path) -> None:
    """A presenter reloading the dashboard after a service restart sees the state, not an empty room."""
    settings = Settings(data_dir=tmp_path)
    with LiveServer(create_app(settings, live_options=FAST)) as first:
        m = create_meeting(first)
        mid = m["id"]
        first.publish(
            cue(mid, "engagement", 1, value=0.2),
            cue(mid, "engagement", 2, value=0.9),
            cue(mid, "presence", 3, value=1.0),
            cue(mid, "micro_expression", 4),
            cue(mid, "engagement", 5, participant="p2", value=0.4),
        )
    # Shut down: the store writer flushed everything on the way out.
    with LiveServer(create_app(settings, live_options=FAST)) as second:
        second.publish(cue(mid, "engagement", 6, participant="p2", value=0.6))  # live, newer than the store
        await asyncio.sleep(0.2)
        async with connect(feed_url(second, m)) as ws:
            snap = await recv(ws)
    people = {p["participant_id"]: p["latest"] for p in snap["participants"]}
    assert people["p1"]["engagement"]["value"] == 0.9 and people["p1"]["presence"]["value"] == 1.0
    assert people["p2"]["engagement"]["value"] == 0.6
    assert [c["seq"] for c in snap["recent"]] == [4]


async def test_signals_below_the_confidence_floor_are_hidden_and_counted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, min_confidence=0.5)
    with LiveServer(create_app(settings, live_options=FAST)) as server:
        m = create_meeting(server)
        mid = m["id"]
        server.publish(cue(mid, "micro_expression", 1, confidence=0.2), cue(mid, "micro_expression", 2))
        await asyncio.sleep(0.2)
        async with connect(feed_url(server, m)) as ws:
            snap = await recv(ws)
            assert [c["seq"] for c in snap["recent"]] == [2]
            assert snap["hidden"] == {"count": 1, "min_confidence": 0.5}
            server.publish(cue(mid, "macro_expression", 3, confidence=0.1), cue(mid, "micro_expression", 4))
            hidden = await recv(ws)
            while hidden["type"] != "hidden":
                hidden = await recv(ws)
            assert hidden["count"] == 2
            assert [c["seq"] for c in await recv_cues(ws, 1)] == [4]
