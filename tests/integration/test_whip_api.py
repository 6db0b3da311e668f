"""WHIP endpoint refusals over real HTTP (no media needed): each says what was expected, and
the CORS preflight lets browser publishers on other origins in. The media path is proven by
tests/e2e/test_whip.py with a third-party client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.config import Settings
from tests.live_server import LiveServer
from web.app import create_app
from web.routes.whip import parse_sdpfrag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with (
        LiveServer(create_app(Settings(data_dir=tmp_path))) as live,
        httpx.Client(base_url=live.base_url, timeout=30) as c,
    ):
        yield c


def test_whip_refuses_clearly(client: httpx.Client) -> None:
    m = client.post("/api/meetings", json={"title": "W", "context": "customer"}).json()
    join = m["join_url"].split("token=")[1]
    url = f"/whip/{m['id']}?consent=yes"
    missing = client.post(url, headers=SDP, content="v=0\r\n")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in missing.json()["detail"]
    presenter = client.post(url, headers={**SDP, "Authorization": f"Bearer {m['presenter_token']}"}, content="v=0")
    assert presenter.status_code == 403
    bearer = {"Authorization": f"Bearer {join}"}
    wrong_type = client.post(url, headers={**bearer, "Content-Type": "text/plain"}, content="v=0")
    assert wrong_type.status_code == 415 and "application/sdp" in wrong_type.json()["detail"]
    no_consent = client.post(f"/whip/{m['id']}", headers={**bearer, **SDP}, content="v=0")
    assert no_consent.status_code == 400 and "consent=yes" in no_consent.json()["detail"]
    not_sdp = client.post(url, headers={**bearer, **SDP}, content="hello")
    assert not_sdp.status_code == 400 and "not SDP" in not_sdp.json()["detail"]
    assert not_sdp.headers["access-control-allow-origin"] == "*"  # browsers can read the reason
    presenter_auth = {"Authorization": f"Bearer {m['presenter_token']}"}
    assert client.get(f"/api/meetings/{m['id']}/participants", headers=presenter_auth).json() == []  # nobody joined
    assert client.delete(f"/whip/{m['id']}/nope", headers=bearer).status_code == 404
    frag = {**bearer, "Content-Type": "application/trickle-ice-sdpfrag"}
    assert client.patch(f"/whip/{m['id']}/nope", headers=frag, content="").status_code == 404
    pre = client.options(url, headers={"Origin": "http://elsewhere", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and "Location" in pre.headers["access-control-expose-headers"]
    client.post(f"/api/meetings/{m['id']}/end", headers={"Authorization": f"Bearer {m['presenter_token']}"})
    ended = client.post(url, headers={**bearer, **SDP}, content="v=0\r\n")
    # join tokens end with the meeting (docs/privacy.md): refused as expired, saying why
    assert ended.status_code == 403 and "meeting has ended" in ended.json()["detail"]


def test_sdpfrag_parsing() -> None:
    frag = (
        "a=ice-ufrag:abc\r\na=ice-pwd:def\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:1\r\na=candidate:2 1 udp 1 10.0.0.2 6000 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    candidates, end = parse_sdpfrag(frag)
    assert candidates == [
        ("0", "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host"),
        ("1", "candidate:2 1 udp 1 10.0.0.2 6000 typ host"),
    ]
    assert end is True
    assert parse_sdpfrag("a=ice-ufrag:x\r\n") == ([], False)
