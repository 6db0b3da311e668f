"""Hypothesis fuzzing through the real service and decoder: API bodies, signalling over a live
socket, damaged video files. No crash (never a 500 or a 1011), a clear error to the sender, and
another meeting keeps working. Case counts are printed in the "MicroCue measurements" summary."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from bridge.config import Settings
from bridge.media.videofile import VideoError, probe, read_frames
from tests.live_server import LiveServer
from web.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=5),
    max_leaves=15,
)
NO_LIMITS = {
    "rate_create_per_min": 1_000_000,
    "rate_join_per_min": 1_000_000,
    "rate_token_per_min": 1_000_000,
    "max_meetings": 1_000_000,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("fuzz")
    with LiveServer(create_app(Settings(data_dir=data, join_timeout_s=2.0, **NO_LIMITS))) as live:
        yield live


def create_meeting(server: LiveServer) -> dict[str, Any]:
    r = httpx.post(f"{server.base_url}/api/meetings", json={"title": "control", "context": "customer"}, timeout=30)
    assert r.status_code == 201
    m: dict[str, Any] = r.json()
    m["join_token"] = m["join_url"].split("token=")[1]
    return m


def _control_still_works(server: LiveServer, m: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {m['presenter_token']}"}
    r = httpx.get(f"{server.base_url}/api/meetings/{m['id']}", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["ended_at"] is None
    with ws_connect(f"{server.ws_url}/ws/meetings/{m['id']}/live?token={m['presenter_token']}") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"


def test_fuzz_api_bodies(server: LiveServer, report: Callable[[str], None]) -> None:
    control = create_meeting(server)  # never addressed by the fuzzer: it must be unaffected
    target = create_meeting(server)
    statuses: dict[int, int] = {}
    cases = 0
    client = httpx.Client(base_url=server.base_url, timeout=30)
    auth = {"Authorization": f"Bearer {target['presenter_token']}"}
    bodies = st.one_of(
        JSON,
        st.fixed_dictionaries({}, optional={"title": JSON, "kind": JSON, "context": JSON, "retention_days": JSON}),
        st.fixed_dictionaries({}, optional={"janus": JSON, "room": JSON, "whep": JSON}),
        st.fixed_dictionaries({}, optional={"token": JSON, "kind": JSON.filter(lambda k: k != "presenter")}),
        # near-valid bodies, so the handlers behind validation are fuzzed too
        st.fixed_dictionaries(
            {
                "title": st.text(min_size=1, max_size=60),
                "context": st.sampled_from(["customer", "workplace", "education", "research", "boardroom"]),
            },
            optional={"kind": st.sampled_from(["general", "sales", "x"]), "retention_days": st.integers(-5, 4000)},
        ),
        st.fixed_dictionaries(
            {
                "janus": st.sampled_from(
                    [
                        "ws://192.0.2.1:8188",
                        "wss://janus.invalid",
                        "http://192.0.2.1:8188",
                        "ws://127.0.0.1:1",
                        "ws://[::1]:8188",
                        "ws://user:pw@192.0.2.1:8188",
                    ]
                ),
                "room": st.integers(-1, 2**65),
            }
        ),
        st.one_of(
            st.fixed_dictionaries({"token": st.text(min_size=1, max_size=300)}),
            # not "presenter": that would lock the fuzzer out of its own meeting
            st.fixed_dictionaries({"kind": st.sampled_from(["join", "admin"])}),
        ),
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(["/api/meetings", "bot", "tokens/revoke"]), st.one_of(bodies.map(json.dumps), st.text()))
    def run(where: str, body: str) -> None:
        nonlocal cases
        cases += 1
        path = where if where.startswith("/") else f"/api/meetings/{target['id']}/{where}"
        r = client.post(path, content=body.encode(), headers={"content-type": "application/json", **auth})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500 or r.status_code == 501, (path, body, r.text)
        assert "detail" in r.json() or r.status_code in (200, 201, 202)

    try:
        run()
    finally:
        client.close()
    _control_still_works(server, control)
    report(f"fuzz API bodies: {cases} cases, statuses {dict(sorted(statuses.items()))}")


def test_fuzz_signalling_over_a_live_socket(server: LiveServer, report: Callable[[str], None]) -> None:
    control = create_meeting(server)
    target = create_meeting(server)
    codes: dict[int | None, int] = {}
    cases = 0
    messages = st.lists(
        st.one_of(
            st.text(max_size=200),
            JSON.map(json.dumps),
            st.just(json.dumps({"type": "join", "name": "F", "consent": True})),
            st.builds(lambda sdp: json.dumps({"type": "offer", "sdp": sdp}), st.text(max_size=300)),
            st.binary(max_size=50),
        ),
        min_size=1,
        max_size=3,
    )

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages)
    def run(batch: list[str | bytes]) -> None:
        nonlocal cases
        cases += 1
        code: int | None = None
        with ws_connect(f"{server.ws_url}/ws/rooms/{target['id']}/signal?token={target['join_token']}") as ws:
            try:
                assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
                for message in batch:
                    ws.send(message)
                while True:
                    reply = json.loads(ws.recv(timeout=5))
                    if reply["type"] == "error":
                        assert reply["message"]
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            except TimeoutError:
                code = None  # still open: every message was acceptable
        codes[code] = codes.get(code, 0) + 1
        assert code != 1011, batch  # our failure: never for anything a client sends

    run()
    _control_still_works(server, control)
    report(f"fuzz signalling over a live socket: {cases} cases, close codes {codes}")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(15):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def test_fuzz_damaged_video_files(clip: bytes, tmp_path: Path, report: Callable[[str], None]) -> None:
    outcomes: dict[str, int] = {}
    cases = 0

    @st.composite
    def damaged(draw: st.DrawFn) -> bytes:
        how = draw(st.sampled_from(["truncated", "bit-flipped", "wrong container"]))
        if how == "truncated":
            return clip[: draw(st.integers(0, len(clip) - 1))]
        if how == "bit-flipped":
            data = bytearray(clip)
            for at in draw(st.lists(st.integers(0, len(clip) - 1), min_size=1, max_size=20)):
                data[at] ^= 1 << draw(st.integers(0, 7))
            return bytes(data)
        prefix = draw(st.sampled_from([b"", b"RIFF\x00\x00\x00\x00AVI ", b"\x1aE\xdf\xa3", b"OggS", b"GIF89a"]))
        return prefix + draw(st.binary(max_size=2000))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(damaged())
    def run(data: bytes) -> None:
        nonlocal cases
        cases += 1
        path = tmp_path / "damaged.mp4"
        path.write_bytes(data)
        try:
            info = probe(path)
            frames = sum(1 for _ in read_frames(info))
            outcome = f"decoded ({'some' if frames else 'no'} frames)"
        except VideoError as exc:  # the one error the CLI turns into a clear message and exit code 4
            assert str(exc)
            outcome = type(exc).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    report(f"fuzz video files: {cases} cases, outcomes {dict(sorted(outcomes.items()))}")
