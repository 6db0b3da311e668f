"""Bot targets (bridge/targets.py) and client ICE candidates (bridge/rooms/ice.py): what the
bridge may be pointed at. Name resolution is faked here; the e2e bot tests use real Janus."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from bridge import targets
from bridge.rooms.ice import DEFAULT_ICE_ALLOW, filter_candidates, parse_networks
from bridge.targets import TargetRefused, check_target, parse_allow

pytestmark = pytest.mark.unit

ALLOW = parse_allow("janus.example.org:8188, 10.0.0.5:8188, rebind.example.org:8188")


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in answers:
            raise TargetRefused(f"cannot resolve {host!r}", status=422)
        return answers[host]

    monkeypatch.setattr(targets, "_resolve", resolve)
    return asked


async def test_allowed_host_port_resolves_once_to_a_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_dns(monkeypatch, {"janus.example.org": ["93.184.216.34"]})
    checked = await check_target("wss://janus.example.org:8188/janus", ALLOW)
    assert (checked.host, checked.port, checked.address, checked.scheme) == (
        "janus.example.org",
        8188,
        "93.184.216.34",
        "wss",
    )
    assert asked == ["janus.example.org"]


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("http://janus.example.org:8188", 422, "ws or wss"),
        ("ftp://janus.example.org:8188", 422, "ws or wss"),
        ("ws://janus.example.org:9999", 403, "allow-list"),  # the host is listed, this port is not
        ("ws://janus.example.org", 403, "allow-list"),  # default port 80 is not listed
        ("ws://other.example.org:8188", 403, "allow-list"),
        ("ws://user:pw@janus.example.org:8188", 422, "credentials"),
        ("ws://rebind.example.org:8188", 403, "non-public"),  # a listed name that resolves inside
        ("ws://[::1]:8188", 403, "allow-list"),
        ("ws://janus.example.org:99999", 422, "usable"),
    ],
)
async def test_refusals_are_4xx_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, url: str, status: int, words: str
) -> None:
    _fake_dns(monkeypatch, {"janus.example.org": ["93.184.216.34"], "rebind.example.org": ["127.0.0.1"]})
    with pytest.raises(TargetRefused) as refused:
        await check_target(url, ALLOW)
    assert refused.value.status == status and words in str(refused.value)


async def test_a_private_address_is_allowed_only_when_listed_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {})
    assert (await check_target("ws://10.0.0.5:8188", ALLOW)).address == "10.0.0.5"
    with pytest.raises(TargetRefused, match="allow-list"):
        await check_target("ws://10.0.0.6:8188", ALLOW)


async def test_every_resolved_address_must_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"janus.example.org": ["93.184.216.34", "169.254.169.254"]})
    with pytest.raises(TargetRefused, match=r"169\.254\.169\.254"):
        await check_target("ws://janus.example.org:8188", ALLOW)


async def test_real_resolution_of_localhost_is_refused() -> None:
    """No fake: getaddrinfo of a listed name that is loopback."""
    socket.getaddrinfo("localhost", 1)  # resolvable on this machine
    with pytest.raises(TargetRefused, match="non-public"):
        await check_target("ws://localhost:8188", parse_allow("localhost:8188"))


def test_allow_list_entries_need_a_port() -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_allow("janus.example.org")


def _offer(*candidates: str) -> str:
    lines = ["v=0", "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0"]
    lines += [f"a=candidate:1 1 udp 2122260223 {c} 50000 typ host" for c in candidates]
    return "\r\n".join([*lines, ""])


def _kept(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.split("\r\n") if line.startswith("a=candidate:")]


@pytest.mark.parametrize(
    ("allow", "kept"),
    [
        (DEFAULT_ICE_ALLOW, ["10.1.2.3", "192.168.1.20", "93.184.216.34", "2001:4860:4860::8888"]),
        ("", ["93.184.216.34", "2001:4860:4860::8888"]),
        ("10.1.0.0/16", ["10.1.2.3", "93.184.216.34", "2001:4860:4860::8888"]),
    ],
)
def test_ice_candidates_are_filtered(allow: str, kept: list[str]) -> None:
    offer = _offer(
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "192.168.1.20",
        "93.184.216.34",
        "0.0.0.0",
        "224.0.0.1",
        "abcd-1234.local",
        "::1",
        "fe80::1",
        "2001:4860:4860::8888",
        "::ffff:127.0.0.1",
    )
    out: Any = filter_candidates(offer, parse_networks(allow))
    assert _kept(out) == kept
    assert out.startswith("v=0\r\nm=video") and out.endswith("\r\n")


def test_ice_allow_must_be_cidrs() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks("10.0.0.0/8, lan")
